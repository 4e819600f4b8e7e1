"""`docker persist down [OPTIONS] [compose down options]`: back up what down would destroy, then run it."""

from __future__ import annotations

import argparse

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_layer_threshold_flag,
    add_store_flag,
    check_compose_line,
    layer_threshold,
    make_progress,
    make_workspace,
    open_project_store,
    read_live_state,
    reported,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags

EPILOG = """Every other option, -v/--volumes included, is docker compose down's (written as Compose reads
them: -vt0, --volumes=false, ...), and is checked by Compose before anything is touched."""


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="Go ahead where on_down says refuse (no backup of those)")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing, run nothing")
    add_layer_threshold_flag(parser, "is backed up")
    add_store_flag(parser)
    add_project_flags(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.down import DownRequest, down
    from docker_persist.cli.commands.plan import render_down
    from docker_persist.core.composeargs import parse_subcommand
    from docker_persist.core.planner import plan_down
    from docker_persist.host.process import run_docker_compose

    threshold = layer_threshold(args)
    line = list(args.passthrough)
    command = parse_subcommand("down", line)
    pending = PendingProject(context, args)
    check_compose_line(context, pending, "down", line)  # a typo fails here, before a service is stopped
    project, _ = pending.wait()
    remove_volumes = command.removes_volumes()
    if args.dry_run:
        state = read_live_state(context, args, project, threshold, with_sizes=True)
        context.env.stdout.write(render_down(plan_down(project, state, remove_volumes is not False, threshold)))
        return 0
    progress = make_progress(context)

    def compose_down(child_environ: dict[str, str]) -> int:
        progress.done()
        return run_docker_compose(context.options.to_argv(), pending.options.to_argv(), ["down", *line],
                                  {**context.env.environ, **child_environ}, own_terminal=True)  # fmt: skip

    with reported(context, project, "down", ()) as report:
        try:
            result = down(
                make_workspace(context, pending, project, progress),
                open_project_store(context, args, project),
                DownRequest(remove_volumes, args.force, threshold),
                lambda: read_live_state(context, args, project, threshold, with_sizes=True),
                compose_down,
            )
        finally:
            progress.done()
        report.snapshot = result.snapshot.name if result.snapshot else None
    if result.snapshot is not None:
        keys = ", ".join(v.key for v in result.snapshot.volumes)
        context.env.stderr.write(
            f"docker-persist: snapshot {result.snapshot.name} holds what down removes ({keys}); "
            f"restore with: docker persist restore {result.snapshot.name}\n"
        )
    if result.compose_code and result.released:
        context.env.stderr.write("docker-persist: docker compose down failed: the guards are back in place\n")
    return result.compose_code or 0


COMMAND = Command(
    add_arguments=add_arguments,
    run=run,
    usage="[OPTIONS] [COMPOSE DOWN OPTIONS]",
    passthrough=True,
    epilog=EPILOG,
)
