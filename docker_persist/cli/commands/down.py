"""`docker persist down [-v] [--force] [--dry-run]`: back up what down would destroy, then run it."""

from __future__ import annotations

import argparse

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_store_flag,
    make_progress,
    open_project_store,
    project_journal,
    read_live_state,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import UnsafeOperationError


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("-v", "--volumes", action="store_true", help="Remove named and anonymous volumes too")
    parser.add_argument("--force", action="store_true", help="Go ahead where on_down says refuse (no backup of those)")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing, run nothing")
    parser.add_argument(
        "--layer-threshold",
        default="10MB",
        metavar="string",
        help="Writable-layer data above this size is backed up (default 10MB)",
    )
    add_store_flag(parser)
    add_project_flags(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.snapshots import backup_before_down
    from docker_persist.cli.commands.plan import render_down
    from docker_persist.cli.progress import format_bytes
    from docker_persist.config.model import parse_size
    from docker_persist.core.planner import plan_down
    from docker_persist.engine.guards import create_guard, remove_guards
    from docker_persist.host.process import run_docker_compose

    threshold = parse_size(args.layer_threshold)
    pending = PendingProject(context, args)
    project, _ = pending.wait()
    engine = context.engine
    state = read_live_state(context, args, project, threshold, with_sizes=True)
    plan = plan_down(project, state, remove_volumes=args.volumes, layer_threshold=threshold)
    if args.dry_run:
        context.env.stdout.write(render_down(plan))
        return 0
    if plan.refused and not args.force:
        lost = "\n".join(
            f"  {loss.kind} {loss.key or loss.name}"
            + (f" ({loss.service}:{loss.path})" if loss.path else "")
            + f", {format_bytes(loss.size) if loss.size is not None else 'size unknown'}"
            for loss in plan.refused
        )
        raise UnsafeOperationError(
            f"refusing `down{' -v' if args.volumes else ''}` (x-persist on_down: refuse): it would destroy\n{lost}\n"
            "Back up first (docker persist backup), or pass --force to go ahead."
        )
    progress = make_progress(context)
    try:
        manifest = backup_before_down(
            engine,
            open_project_store(context, args, project),
            project,
            plan,
            state,
            progress.say,
            progress,
            project_journal(context, project),
        )
    finally:
        progress.done()
    if manifest is not None:
        keys = ", ".join(v.key for v in manifest.volumes)
        context.env.stderr.write(
            f"docker-persist: snapshot {manifest.name} holds what down removes ({keys}); "
            f"restore with: docker persist restore {manifest.name}\n"
        )
    # Only now, after a successful backup, let the engine remove exactly these volumes.
    released = list(plan.release_guards)
    for volume in released:
        remove_guards(engine, volume)
    compose_args = ["down", *(["--volumes"] if args.volumes else []), *args.passthrough]
    code = run_docker_compose(
        context.options.to_argv(), pending.options.to_argv(), compose_args, context.env.environ, own_terminal=True
    )
    if code != 0:
        for volume in released:
            if engine.inspect_volume(volume) is not None:
                create_guard(engine, volume, project.name)
        if released:
            context.env.stderr.write("docker-persist: docker compose down failed: the guards are back in place\n")
    return code


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] [COMPOSE DOWN OPTIONS]", passthrough=True)
