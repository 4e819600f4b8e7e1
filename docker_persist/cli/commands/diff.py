"""`docker persist diff A B [VOLUME...]`: what was added, removed and changed between two snapshots."""

from __future__ import annotations

import argparse
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_identity_flag,
    add_store_flag,
    check_format,
    identity_path,
    open_project_store,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UsageError


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=argparse.SUPPRESS)
    add_identity_flag(parser)
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.browse import diff_snapshots, open_snapshot

    output = check_format(args, "diff")
    if len(args.names) < 2:
        raise UsageError('"docker persist diff" requires two snapshot names, then volumes if you like', f"{ROOT} diff")
    first, second, *keys = args.names
    project = PendingProject(context, args).wait_for_store(read_only=True)
    store = open_project_store(context, args, project)
    identity = identity_path(context, args)
    before, after = (open_snapshot(store, project.name, name, identity) for name in (first, second))
    changes = diff_snapshots(store, project.name, before, after, keys)
    volumes = {key for key, *_ in changes}
    if output == "json":
        document = [{"volume": key, "change": change, "path": path, "detail": detail}
                    for key, change, path, detail in changes]  # fmt: skip
        context.env.stdout.write(json.dumps({"from": first, "to": second, "changes": document}, indent=2) + "\n")
    else:
        for key, change, path, detail in changes:
            where = f"{key}:{path}" if len(volumes) > 1 or not path else path
            context.env.stdout.write(
                f"{change} {where}" + (f"  ({detail})" if change == "M" or not path else "") + "\n"
            )
        if not changes:
            context.env.stdout.write(f"No differences between {first} and {second}.\n")
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] SNAPSHOT SNAPSHOT [VOLUME...]")
