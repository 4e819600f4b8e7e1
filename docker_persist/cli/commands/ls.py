"""`docker persist ls SNAPSHOT [VOLUME[:PATH]]`: the files of a snapshot, without restoring it."""

from __future__ import annotations

import argparse
import datetime
import json
import stat

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

TYPE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "char": stat.S_IFCHR,
             "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}  # fmt: skip


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("snapshot", nargs="?", metavar="SNAPSHOT", help=argparse.SUPPRESS)
    parser.add_argument("where", nargs="?", metavar="VOLUME[:PATH]", help=argparse.SUPPRESS)
    parser.add_argument("--utc", action="store_true", help="Show times in UTC (default: local time)")
    add_identity_flag(parser)
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def split_where(where: str | None) -> tuple[str | None, str]:
    """Given `VOLUME[:PATH]`, return the volume key (None: every volume) and the path ("" for all of it)."""
    if not where:
        return None, ""
    key, _, path = where.partition(":")
    return key, path


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.browse import list_files, open_snapshot
    from docker_persist.core.fileindex import under

    output = check_format(args, "ls")
    if not args.snapshot:
        raise UsageError(
            '"docker persist ls" requires a SNAPSHOT (`docker persist snapshots` lists them)', f"{ROOT} ls"
        )
    key, path = split_where(args.where)
    project = PendingProject(context, args).wait_for_store(read_only=True)
    store = open_project_store(context, args, project)
    opened = open_snapshot(store, project.name, args.snapshot, identity_path(context, args))
    records = [opened.record(key)] if key else [r for r in opened.manifest.volumes if r.kind != "dump"]
    out = context.env.stdout
    rows = []
    found = 0
    for record in records:
        for entry in under(list_files(store, project.name, opened, record), path):
            found += 1
            if output == "json":
                rows.append({"volume": record.key, "path": entry.path, "type": entry.kind, "mode": f"{entry.mode:04o}",
                             "uid": entry.uid, "gid": entry.gid, "size": entry.size, "mtime": entry.mtime,
                             "sha256" if entry.kind == "file" else "target": entry.what or None,
                             "hardlink_group": entry.link_group or None})  # fmt: skip
                continue
            moment = datetime.datetime.fromtimestamp(entry.mtime, datetime.timezone.utc if args.utc else None)
            mode = stat.filemode(TYPE_BITS.get(entry.kind, 0) | entry.mode)
            shown = entry.path if len(records) == 1 else f"{record.key}:{entry.path}"
            link = f" -> {entry.what}" if entry.kind == "symlink" else ""
            out.write(f"{mode} {entry.uid:>6}:{entry.gid:<6} {entry.size:>12} {moment:%Y-%m-%d %H:%M}  {shown}{link}\n")
    if output == "json":
        out.write(json.dumps({"snapshot": opened.manifest.name, "entries": rows}, indent=2) + "\n")
    if path and not found:
        context.env.stderr.write(f"Nothing at {path!r} in snapshot {opened.manifest.name}.\n")
        return ExitStatus.FAILED
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] SNAPSHOT [VOLUME[:PATH]]")
