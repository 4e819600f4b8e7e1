"""`docker persist up [compose up args]`: create, restore and protect the precious volumes, then `docker compose up`."""

from __future__ import annotations

import argparse

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_identity_flag,
    add_store_flag,
    identity_path,
    make_progress,
    open_project_store,
    read_live_state,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing, run nothing")
    add_identity_flag(parser, short=False)  # no -i: the rest of the line is Compose's
    add_store_flag(parser)
    add_project_flags(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.up import carry_out_up
    from docker_persist.cli.commands.plan import render_up
    from docker_persist.core.planner import plan_up
    from docker_persist.host.process import run_docker_compose

    pending = PendingProject(context, args)
    project, _ = pending.wait()
    state = read_live_state(context, args, project, 10_000_000, with_sizes=True)
    plan = plan_up(project, state)
    if args.dry_run:
        context.env.stdout.write(render_up(plan))
        return ExitStatus.OK
    progress = make_progress(context)
    try:
        store = open_project_store(context, args, project)
        identity = identity_path(context, args)
        carry_out_up(context.engine, store, project, plan, progress.say, progress, identity)
    finally:
        progress.done()
    for step in plan.steps:
        context.env.stderr.write(f"docker-persist: {step.action} {step.volume}: {step.detail}\n")
    return run_docker_compose(
        context.options.to_argv(),
        pending.options.to_argv(),
        ["up", *args.passthrough],
        context.env.environ,
        own_terminal=True,
    )


COMMAND = Command(
    add_arguments=add_arguments, run=run, usage="[OPTIONS] [COMPOSE UP OPTIONS] [SERVICE...]", passthrough=True
)
