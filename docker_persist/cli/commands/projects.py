"""`docker persist projects`: the projects a store holds snapshots of, with the newest of each."""

from __future__ import annotations

import argparse
import json
from typing import Any

from docker_persist.cli.commands.base import Command, add_format_flag, add_store_flag, check_format
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.errors import ExitStatus


def add_arguments(parser: DockerArgumentParser) -> None:
    add_store_flag(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.catalog import read_catalog
    from docker_persist.cli.progress import format_bytes
    from docker_persist.core.manifest import format_datetime
    from docker_persist.store import open_store

    output = check_format(args, "projects")
    # No project here: --store, else $DOCKER_PERSIST_STORE, else the default (x-persist.store needs a project).
    store = open_store(args.store or context.env.environ.get("DOCKER_PERSIST_STORE"), context.env.environ)
    rows: list[dict[str, Any]] = []
    for name in store.list_projects():
        catalog = read_catalog(store, name)
        newest = catalog.latest() or (catalog.manifests[-1] if catalog.manifests else None)
        rows.append(
            {
                "project": name,
                "snapshots": len(catalog.manifests),
                "damaged": len(catalog.damaged),
                "newest": newest.name if newest else None,
                "created": format_datetime(newest.created) if newest else None,
                # a deduplicating store's (restic's) to count: see `snapshots`
                "stored_bytes": None if store.deduplicates else sum(m.total_bytes for m in catalog.manifests),
            }
        )
    if output == "json":
        context.env.stdout.write(json.dumps({"store": store.url, "projects": rows}, indent=2) + "\n")
        return ExitStatus.OK
    if not rows:
        context.env.stdout.write(f"No snapshots in {store.url}.\n")
        return ExitStatus.OK
    table = [("PROJECT", "SNAPSHOTS", "NEWEST", "CREATED", "STORED")]
    for row in rows:
        count = f"{row['snapshots']}" + (f" ({row['damaged']} damaged)" if row["damaged"] else "")
        shown, created = str(row["newest"] or "-"), str(row["created"] or "-")
        stored = "-" if row["stored_bytes"] is None else format_bytes(row["stored_bytes"])
        table.append((str(row["project"]), count, shown, created, stored))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        context.env.stdout.write("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")
    context.env.stdout.write(f"\nFrom anywhere: docker persist snapshots -p PROJECT --store {store.url}\n")
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
