"""`docker persist pin|unpin NAME...`: keep snapshots from every retention policy, or let them go again."""

from __future__ import annotations

import argparse
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_store_flag,
    check_format,
    open_project_store,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UsageError


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=argparse.SUPPRESS)
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def _run(args: argparse.Namespace, context: Context, pinned: bool) -> int:
    from docker_persist.actions.pin import set_pinned

    verb = "pin" if pinned else "unpin"
    output = check_format(args, verb)
    if not args.names:
        raise UsageError(f'"docker persist {verb}" requires at least one snapshot NAME', f"{ROOT} {verb}")
    project = PendingProject(context, args).wait_for_store()
    rows = set_pinned(open_project_store(context, args, project), project.name, args.names, pinned)
    if output == "json":
        document = [{"name": name, "pinned": pinned, "changed": changed} for name, changed in rows]
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        state = "pinned" if pinned else "not pinned"
        for name, changed in rows:
            context.env.stdout.write(f"{name}: {state}{'' if changed else ' (already)'}\n")
    return ExitStatus.OK


def run_pin(args: argparse.Namespace, context: Context) -> int:
    return _run(args, context, pinned=True)


def run_unpin(args: argparse.Namespace, context: Context) -> int:
    return _run(args, context, pinned=False)


PIN = Command(add_arguments=add_arguments, run=run_pin, usage="[OPTIONS] NAME...")
UNPIN = Command(add_arguments=add_arguments, run=run_unpin, usage="[OPTIONS] NAME...")
