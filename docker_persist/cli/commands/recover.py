"""`docker persist recover [--abandon]`: finish or take back what an interrupted operation left."""

from __future__ import annotations

import argparse
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    check_format,
    make_progress,
    make_workspace,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus

EPILOG = """Every command recovers what it can by itself first: services a killed backup stopped start again,
and a restore killed before it replaced anything is taken back. What only a restore can finish (a
volume that held data is replaced in part) blocks every command but that restore; --abandon
gives up on it instead, leaving the volumes exactly as they are."""


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument(
        "--abandon",
        action="store_true",
        help="Forget the interrupted operation, leaving its volumes as they are (and saying how they are)",
    )
    add_project_flags(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.common import LOCK_TIMEOUT
    from docker_persist.actions.recover import UnfinishedOperationError, abandon, recover
    from docker_persist.core.operations import describe

    output = check_format(args, "recover")
    pending = PendingProject(context, args)
    project, _ = pending.wait()
    ws = make_workspace(context, pending, project, make_progress(context))
    with ws.journal.hold("recover", LOCK_TIMEOUT):
        before = ws.journal.read().operation
        if args.abandon:
            operation = abandon(ws)
            state = "abandoned" if operation is not None else "nothing"
            message = (
                f"Abandoned: {describe(operation)}. The volumes are left as they are"
                + (f"; still stopped: {', '.join(operation.running)}" if operation and operation.running else "")
                + "."
                if operation is not None
                else f"Nothing to recover for project {project.name}."
            )
            code = ExitStatus.OK
        else:
            try:
                recover(ws)
                state = "recovered" if before is not None else "nothing"
                message = (
                    f"Recovered: {describe(before)}; it is settled now."
                    if before is not None
                    else f"Nothing to recover for project {project.name}."
                )
                code = ExitStatus.OK
            except UnfinishedOperationError as error:
                state, message, code = "unfinished", str(error), ExitStatus.FAILED
    if output == "json":
        document = {"project": project.name, "state": state, "message": message}
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        (context.env.stdout if code == ExitStatus.OK else context.env.stderr).write(message + "\n")
    return code


COMMAND = Command(add_arguments=add_arguments, run=run, epilog=EPILOG)
