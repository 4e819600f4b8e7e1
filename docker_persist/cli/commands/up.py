"""`docker persist up [compose up args]`: create, restore and protect the precious volumes, then `docker compose up`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_identity_flag,
    add_store_flag,
    check_compose_line,
    identity_path,
    make_progress,
    make_workspace,
    open_project_store,
    read_live_state,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags

if TYPE_CHECKING:
    from docker_persist.core.state import LiveState
from docker_persist.errors import ExitStatus


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing, run nothing")
    add_identity_flag(parser, short=False)  # no -i: the rest of the line is Compose's
    add_store_flag(parser)
    add_project_flags(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.up import prepare_volumes
    from docker_persist.cli.commands.plan import render_up
    from docker_persist.core.planner import DEFAULT_LAYER_THRESHOLD, plan_up
    from docker_persist.host.process import run_docker_compose

    pending = PendingProject(context, args)
    check_compose_line(context, pending, "up", args.passthrough)  # a typo fails here, before anything is done
    project, _ = pending.wait()

    def read_state() -> LiveState:
        return read_live_state(context, args, project, DEFAULT_LAYER_THRESHOLD, with_sizes=True)

    if args.dry_run:
        context.env.stdout.write(render_up(plan_up(project, read_state())))
        return ExitStatus.OK
    progress = make_progress(context)
    try:
        store = open_project_store(context, args, project)
        identity = identity_path(context, args)
        result = prepare_volumes(make_workspace(context, pending, project, progress), store, read_state, identity)
    finally:
        progress.done()
    for step in result.done:
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
