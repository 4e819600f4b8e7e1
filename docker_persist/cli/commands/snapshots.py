"""`docker persist snapshots`: list a project's snapshots."""

from __future__ import annotations

import argparse
import datetime
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
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus


def add_arguments(parser: DockerArgumentParser) -> None:
    add_store_flag(parser)
    add_project_flags(parser)
    parser.add_argument("--utc", action="store_true", help="Show times in UTC (default: local time)")
    add_format_flag(parser)


def when(moment: datetime.datetime, now: datetime.datetime, utc: bool) -> str:
    """Return a time as a table shows it: local time (or UTC) to the minute, and how long ago."""
    shown = moment.astimezone(datetime.timezone.utc if utc else None)
    return f"{shown:%Y-%m-%d %H:%M}{' UTC' if utc else ''} ({ago(now - moment)})"


def ago(elapsed: datetime.timedelta) -> str:
    """Return a duration as "just now", "5 min ago", "3 h ago" or "12 d ago"."""
    seconds = elapsed.total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.catalog import read_catalog
    from docker_persist.cli.progress import format_bytes
    from docker_persist.core.manifest import format_datetime as format_time

    output = check_format(args, "snapshots")
    project = PendingProject(context, args).wait_for_store(read_only=True)
    store = open_project_store(context, args, project)
    catalog = read_catalog(store, project.name)
    manifests = catalog.manifests
    # What a deduplicating store (restic) takes for a snapshot is shared with others, and is its own to count
    # (`restic stats`): the sizes recorded here would say nothing true (0 for a part restic took file by file).
    sized = not store.deduplicates
    if output == "json":
        rows = []
        for m in manifests:
            last = m.last_verification
            rows.append(
                {
                    "name": m.name,
                    "created": format_time(m.created),
                    "reason": m.reason,
                    "volumes": [v.key for v in m.volumes],
                    "bytes": None if m.locked else sum(v.bytes for v in m.volumes),  # sealed with the key
                    "stored_bytes": m.total_bytes if sized else None,
                    "encrypted": any(v.encryption for v in m.volumes),
                    "pinned": m.pinned,
                    "verified": None if last is None else {"at": format_time(last.at), "ok": last.ok},
                }
            )
        rows += [{"name": d.name, "damaged": d.problem} for d in catalog.damaged]
        context.env.stdout.write(json.dumps({"project": project.name, "store": store.url, "snapshots": rows}, indent=2))
        context.env.stdout.write("\n")
        return ExitStatus.OK
    if not manifests and not catalog.damaged:
        context.env.stdout.write(f"No snapshots of project {project.name} in {store.url}.\n")
        return ExitStatus.OK
    table = [("NAME", "CREATED", "VOLUMES", "DATA", "STORED", "REASON", "VERIFIED")]
    now = datetime.datetime.now(datetime.timezone.utc)
    for m in manifests:
        last = m.last_verification
        verified = "never" if last is None else f"{'ok' if last.ok else 'FAILED'} {when(last.at, now, args.utc)}"
        data = "sealed" if m.locked else format_bytes(sum(v.bytes for v in m.volumes))
        table.append(
            (
                m.name,
                when(m.created, now, args.utc),
                ",".join(v.key for v in m.volumes),
                data,
                format_bytes(m.total_bytes) if sized else "-",
                m.reason + (", pinned" if m.pinned else ""),
                verified,
            )
        )
    table += [(d.name, "?", "?", "?", "?", "DAMAGED", "-") for d in catalog.damaged]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        context.env.stdout.write(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        context.env.stdout.write("\n")
    for damaged in catalog.damaged:
        context.env.stderr.write(
            f"damaged: {damaged.name}: {damaged.problem}; `docker persist forget {damaged.name}` removes it\n"
        )
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
