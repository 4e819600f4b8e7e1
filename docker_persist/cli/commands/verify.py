"""`docker persist verify [NAME...|--all]`: restore drills into scratch volumes."""

from __future__ import annotations

import argparse
import dataclasses
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_identity_flag,
    add_store_flag,
    check_format,
    identity_path,
    make_progress,
    make_workspace,
    open_project_store,
    reported,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UsageError


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--all", action="store_true", help="Verify every snapshot (default: the latest)")
    parser.add_argument(
        "--read-data-subset",
        metavar="string",
        help="restic stores: also run restic check, reading this share of the repository back (1/5, 10%%, 500M)",
    )
    add_identity_flag(parser)
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.verify import verify
    from docker_persist.core.manifest import format_datetime

    output = check_format(args, "verify")
    if args.all and args.names:
        raise UsageError("give snapshot names or --all, not both", f"{ROOT} verify")
    pending = PendingProject(context, args)
    project = pending.wait_for_store()
    store = open_project_store(context, args, project)
    if args.read_data_subset and not store.deduplicates:
        raise UsageError(f"--read-data-subset is for restic stores; {store.url} is not one", f"{ROOT} verify")
    names = list(args.names) or store.list_snapshots(project.name)
    if not names:
        raise UsageError(f"project {project.name!r} has no snapshots to verify in {store.url}", f"{ROOT} verify")
    if not args.names and not args.all:
        from docker_persist.actions.catalog import read_catalog

        latest = read_catalog(store, project.name).latest()  # never an undo snapshot
        if latest is None:
            raise UsageError(f"project {project.name!r} has no snapshot to verify but undo snapshots: name one",
                             f"{ROOT} verify")  # fmt: skip
        names = [latest.name]
    progress = make_progress(context)
    with reported(context, project, "verify", ()) as report:
        try:
            identity = identity_path(context, args)
            results = verify(make_workspace(context, pending, project, progress), store, names, identity)
        finally:
            progress.done()
        if args.read_data_subset:
            from docker_persist.store.restic import ResticStore

            assert isinstance(store, ResticStore)
            store.check(args.read_data_subset)  # a failure raises, and is reported as the verify's
            checked = f"restic check --read-data-subset={args.read_data_subset}: no errors"
            results = [(n, dataclasses.replace(v, detail=f"{v.detail}; {checked}")) for n, v in results]
        report.volumes = tuple(dict.fromkeys(key for _, v in results for key in v.volumes)) or report.volumes
        report.snapshot = ", ".join(name for name, _ in results)
        failed = [f"{name}: {v.detail}" for name, v in results if not v.ok]
        report.error = "; ".join(failed) if failed else None
    if output == "json":
        rows = [{"name": name, "ok": v.ok, "at": format_datetime(v.at), "detail": v.detail} for name, v in results]
        context.env.stdout.write(json.dumps({"project": project.name, "results": rows}, indent=2) + "\n")
    else:
        for name, verification in results:
            status = "ok" if verification.ok else "FAILED"
            context.env.stdout.write(f"{name}: {status}: {verification.detail}\n")
    return ExitStatus.OK if all(v.ok for _, v in results) else ExitStatus.FAILED


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] [NAME...]")
