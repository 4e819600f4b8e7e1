"""`docker persist copy NAME --to STORE_URL`: replicate a snapshot to another store."""

from __future__ import annotations

import argparse
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_store_flag,
    check_format,
    make_progress,
    open_project_store,
    reported,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UsageError


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument(
        "--to", metavar="string", help="The store to copy to: a path, file:///path or s3://bucket/prefix"
    )
    parser.add_argument("--all", action="store_true", help="Copy every snapshot the target does not have yet")
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.common import IntegrityError
    from docker_persist.actions.copy import copy_snapshot
    from docker_persist.core.manifest import ManifestError
    from docker_persist.store import open_store

    output = check_format(args, "copy")
    if not args.to:
        raise UsageError('"docker persist copy" requires --to STORE_URL', f"{ROOT} copy")
    if bool(args.names) == bool(args.all):
        raise UsageError("give snapshot names or --all", f"{ROOT} copy")
    project = PendingProject(context, args).wait_for_store(read_only=True)
    source = open_project_store(context, args, project)
    target = open_store(args.to, context.env.environ)
    if source.url == target.url:
        raise UsageError("the source and target stores are the same", f"{ROOT} copy")
    names = list(args.names) or [n for n in source.list_snapshots(project.name)
                                 if n not in set(target.list_snapshots(project.name))]  # fmt: skip
    progress = make_progress(context)
    failed: list[str] = []
    copied: list[str] = []
    with reported(context, project, "copy", ()) as report:
        try:
            for name in names:
                report.snapshot = name
                try:
                    copy_snapshot(source, target, project.name, name, progress)
                except (IntegrityError, ManifestError) as error:
                    # A damaged snapshot is the source's fault, not the copy's: the others still go.
                    failed.append(f"{name}: {error}")
                    continue
                copied.append(name)
                if output != "json":
                    context.env.stdout.write(f"Copied {name} to {target.url}\n")
        finally:
            progress.done()
        report.snapshot = ", ".join(copied + [line.split(":", 1)[0] for line in failed]) or None
        report.error = f"not copied, damaged: {'; '.join(failed)}" if failed else None
    if output == "json":
        document = {"from": source.url, "to": target.url, "copied": copied, "damaged": failed}
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
    elif not names:
        context.env.stdout.write(f"{target.url} already has every snapshot of {project.name}.\n")
    for line in failed:
        context.env.stderr.write(f"Not copied, damaged: {line}\n")
    return ExitStatus.FAILED if failed else ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] NAME... --to STORE_URL")
