"""`docker persist backup`: take a named snapshot of the project's volumes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_store_flag,
    check_format,
    make_progress,
    make_workspace,
    open_project_store,
    reported,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.core.manifest import TREE_SUFFIX
from docker_persist.errors import ExitStatus, PersistError

if TYPE_CHECKING:
    from docker_persist.config.model import KeepPolicy, Project
    from docker_persist.store import Store


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("volumes", nargs="*", metavar="VOLUME", help=argparse.SUPPRESS)
    parser.add_argument("--name", metavar="string", help="Snapshot name (default: <UTC time>-manual)")
    parser.add_argument(
        "--service", action="append", default=[], metavar="stringArray", help="Back up the volumes this service mounts"
    )
    parser.add_argument("--compression", metavar="string", help='"zstd", "gzip" or "none" (default: x-persist, zstd)')
    parser.add_argument("--no-quiesce", action="store_true", help="Do not run hooks or stop/pause services")
    parser.add_argument("--pin", action="store_true", help="Pin the snapshot: no retention policy forgets it")
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.backup import BackupRequest, backup, volumes_for_services
    from docker_persist.cli.progress import format_bytes
    from docker_persist.core.dumps import volume_of
    from docker_persist.core.retention import validate_policy
    from docker_persist.streams.compression import check_compression

    output = check_format(args, "backup")
    if args.compression:
        check_compression(args.compression)
    pending = PendingProject(context, args)
    project, _ = pending.wait()
    store = open_project_store(context, args, project)
    progress = make_progress(context)
    request = BackupRequest(
        volume_keys=tuple(args.volumes),
        services=tuple(args.service),
        name=args.name,
        compression=args.compression,
        quiesce=not args.no_quiesce,
        pin=args.pin,
    )
    keep = project.policy.keep if project.policy.keep is not None and not project.policy.keep.is_empty() else None
    if keep is not None:
        validate_policy(keep)  # a policy that would be refused fails now, not after the backup
    named = request.volume_keys + tuple(volumes_for_services(project, request.services))
    with reported(context, project, "backup", named, ping=True) as report:
        try:
            result = backup(make_workspace(context, pending, project, progress), store, request)
        finally:
            progress.done()
        kept = [volume_of(v) for v in result.manifest.volumes if v.kind in ("volume", "bind", "dump")]
        report.volumes = tuple(dict.fromkeys(kept)) or report.volumes
        report.snapshot = result.manifest.name
    manifest, elapsed = result.manifest, result.seconds
    forgotten, damaged, retention_error = apply_retention(context, project, store, keep, report.volumes)
    from docker_persist.core.planner import skipped_by_backup

    skipped = skipped_by_backup(project, [v.key for v in manifest.volumes], args.service)
    if output == "json":
        document = {
            "skipped": [{"what": what, "why": why} for what, why in skipped],
            "name": manifest.name,
            "project": manifest.project,
            "store": store.url,
            "volumes": [{"key": v.key, "source": v.source, "bytes": v.bytes, "archive_bytes": v.archive_bytes,
                         "files": v.files, "content_digest": v.content_digest} for v in manifest.volumes],
            "seconds": round(elapsed, 3),
            "pinned": manifest.pinned,
            "forgotten": forgotten,
            "retention_error": str(retention_error) if retention_error else None,
            "damaged": damaged,
        }  # fmt: skip
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        size = sum(v.bytes for v in manifest.volumes)
        stored = sum(v.archive_bytes for v in manifest.volumes)
        folders = sum(v.file.endswith(TREE_SUFFIX) for v in manifest.volumes)
        how = f"{format_bytes(stored)} stored"
        if folders:  # restic read those itself: what they add to the repository is restic's to say
            how = "by restic, file by file" if folders == len(manifest.volumes) else f"{how}, the rest by restic"
        pinned = ", pinned" if manifest.pinned else ""
        context.env.stdout.write(
            f"Snapshot {manifest.name} of project {manifest.project} in {store.url}: {len(manifest.volumes)} "
            f"volume(s), {format_bytes(size)} of data ({how}) in {elapsed:.1f} s{pinned}\n"
        )
        for what, why in skipped:
            context.env.stdout.write(f"Not in it: {what}: {why}\n")
        for name in forgotten:
            context.env.stdout.write(f"Forgot {name} (retention)\n")
    if retention_error is not None:
        context.env.stderr.write(
            f"Error: the snapshot is safe, but retention (x-persist.keep) failed: {retention_error}\n"
        )
    for name in damaged:
        context.env.stderr.write(
            f"Warning: snapshot {name} is damaged: retention left it alone "
            f"(`docker persist snapshots` says why; `docker persist forget {name}` removes it)\n"
        )
    return ExitStatus.FAILED if retention_error is not None or damaged else ExitStatus.OK


def apply_retention(
    context: Context, project: Project, store: Store, keep: KeepPolicy | None, volumes: Sequence[str]
) -> tuple[list[str], list[str], PersistError | None]:
    """Apply x-persist.keep after a backup; return the snapshots forgotten, the damaged ones left alone, and
    the error that stopped it (the snapshot is published: a retention failure is reported apart)."""
    from docker_persist.actions.forget import forget

    if keep is None:
        return [], [], None
    with reported(context, project, "forget", volumes) as forgetting:
        try:
            applied = forget(store, project.name, keep, dry_run=False)
        except PersistError as error:
            forgetting.error = str(error)
            return [], [], error
    return [d.snapshot.name for d in applied.decisions if not d.keep], [d.name for d in applied.damaged], None


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] [VOLUME...]")
