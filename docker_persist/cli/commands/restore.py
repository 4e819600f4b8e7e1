"""`docker persist restore NAME`: restore volumes from a snapshot by name."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

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
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UnsafeOperationError, UsageError

if TYPE_CHECKING:
    from docker_persist.actions.restore import ResolvedRestore
    from docker_persist.config.model import Project
    from docker_persist.store import Store


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument(
        "--volume", action="append", default=[], metavar="stringArray", help="Restore only this volume of the snapshot"
    )
    parser.add_argument("--to", metavar="string", help="Restore into this volume instead (one --volume)")
    parser.add_argument("--from-project", metavar="string", help="Restore a snapshot of another project")
    parser.add_argument(
        "--path", metavar="string", help="Restore only this file or folder of the volume (with --to-dir)"
    )
    parser.add_argument(
        "--to-dir",
        metavar="string",
        help='Restore --path into this new or empty host folder, touching no volume ("-": a file to stdout)',
    )
    parser.add_argument(
        "--dump", action="store_true", help="Load the database dump where the snapshot holds both dump and files"
    )
    parser.add_argument("-y", "--yes", action="store_true", help="Do not ask for confirmation")
    add_identity_flag(parser)
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def confirm(context: Context, question: str) -> bool:
    """Ask on the terminal. Raise UnsafeOperationError without one (the user must pass --yes)."""
    if not (context.env.stderr_isatty and getattr(context.env.stdin, "isatty", lambda: False)()):
        raise UnsafeOperationError(
            "this restore replaces volumes and there is no terminal to ask on: pass --yes to restore without asking"
        )
    context.env.stderr.write(f"{question} [y/N] ")
    context.env.stderr.flush()
    return context.env.stdin.readline().strip().lower() in ("y", "yes")


def describe_restore(context: Context, project: Project, resolved: ResolvedRestore, to: str | None) -> tuple[str, bool]:
    """Return what the restore will do, a line per volume, and whether it replaces anything that exists."""
    from docker_persist.core.dumps import volume_of
    from docker_persist.core.manifest import format_datetime
    from docker_persist.units import format_bytes

    manifest = resolved.manifest
    size = sum(r.bytes for r in resolved.records)
    lines = [f"Restore from snapshot {manifest.name!r} ({format_datetime(manifest.created)}, "
             f"{format_bytes(size)} of data, {manifest.reason}):"]  # fmt: skip
    replaces = False
    for record in resolved.records:
        key = volume_of(record)
        name = to or project.volumes[key].name
        exists = context.engine.inspect_volume(name) is not None
        replaces = replaces or exists
        users = [s.name for s in project.services_using(key)] if to is None else []
        used = f", used by {', '.join(users)} (stopped, then started again)" if users else ""
        state = "replacing what it holds now" if exists else "a new volume"
        how = ", a database dump loaded into a fresh database" if record.kind == "dump" else ""
        lines.append(f"  {record.key} ({format_bytes(record.bytes)}{how}) -> volume {name}{used}: {state}")
    if replaces:
        lines.append(
            "An undo snapshot of what they hold now is taken first (docker persist restore UNDO takes it back)."
        )
    return "\n".join(lines), replaces


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.restore import RestoreRequest, resolve_restore, restore

    output = check_format(args, "restore")
    if not args.name:
        raise UsageError('"docker persist restore" requires a snapshot NAME', f"{ROOT} restore")
    pending = PendingProject(context, args)
    project = pending.wait_for_store()
    store = open_project_store(context, args, project)
    if args.path is not None or args.to_dir is not None:
        return _restore_paths(args, context, project, store)
    request = RestoreRequest(
        args.name, tuple(args.volume), args.to, args.from_project, identity_path(context, args), dump=args.dump
    )
    resolved = resolve_restore(store, project, request)  # a bad name, --volume or key fails before anyone is asked
    if not args.yes:
        text, replaces = describe_restore(context, project, resolved, args.to)
        if replaces and not confirm(context, f"{text}\nGo ahead?"):
            context.env.stderr.write("Nothing was changed.\n")
            return ExitStatus.FAILED
    progress = make_progress(context)
    try:
        result = restore(make_workspace(context, pending, project, progress), store, request, resolved)
    finally:
        progress.done()
    if output == "json":
        document = {"snapshot": result.manifest.name, "volumes": [{"key": k, "volume": v} for k, v in result.volumes],
                    "undo": result.undo, "restarted": list(result.restarted)}  # fmt: skip
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        for key, volume in result.volumes:
            context.env.stdout.write(f"Restored {key} into {volume} from {result.manifest.name}\n")
        if result.undo:
            context.env.stdout.write(f"Undo snapshot: {result.undo} (docker persist restore {result.undo})\n")
        if result.restarted:
            context.env.stdout.write(f"Started again: {', '.join(result.restarted)}\n")
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] NAME")


def _restore_paths(args: argparse.Namespace, context: Context, project: Project, store: Store) -> int:
    """`restore NAME --volume V --path P --to-dir DIR`: files out of a snapshot, into a host folder or to stdout."""
    from docker_persist.actions.browse import extract_paths, open_snapshot

    if args.path is None or args.to_dir is None:
        raise UsageError("--path and --to-dir go together: the file or folder, and where to put it", f"{ROOT} restore")
    if args.to or args.from_project:
        raise UsageError("--to-dir restores into a host folder: not with --to or --from-project", f"{ROOT} restore")
    opened = open_snapshot(store, project.name, args.name, identity_path(context, args))
    keys = list(args.volume) or [r.key for r in opened.manifest.volumes]
    if len(keys) != 1:
        raise UsageError(f"snapshot {args.name!r} holds {', '.join(keys)}: choose one with --volume", f"{ROOT} restore")
    record = opened.record(keys[0])
    if args.to_dir == "-":
        stdout = getattr(context.env.stdout, "buffer", None)
        if stdout is None:
            raise UsageError("--to-dir - needs a byte stream on stdout", f"{ROOT} restore")
        extract_paths(store, project.name, opened, record, args.path, stdout)
        stdout.flush()
        return ExitStatus.OK
    count = extract_paths(store, project.name, opened, record, args.path, args.to_dir)
    context.env.stderr.write(f"Restored {count} entries of {record.key}:{args.path} into {args.to_dir}\n")
    return ExitStatus.OK
