"""`copy`: replicate a snapshot to another store, checking every part on the way."""

from __future__ import annotations

import dataclasses
import hashlib

from docker_persist.actions.catalog import read_manifest
from docker_persist.actions.common import LOCK_TIMEOUT, IntegrityError, Progress, expect
from docker_persist.core.manifest import (
    ARCHIVE_SUFFIXES,
    TREE_SUFFIX,
    Manifest,
    VolumeRecord,
    dump_manifest,
)
from docker_persist.errors import PersistError
from docker_persist.host.faults import crash_point
from docker_persist.store import PendingSnapshot, Store, StoreError


def copy_snapshot(source: Store, target: Store, project: str, name: str, progress: Progress) -> Manifest:
    """Copy a published snapshot, byte for byte, to another store (e.g. local to S3, for an off-site copy).

    Each part's size and sha256 are checked against the manifest while it streams; the
    manifest is published last, so the copy appears only once complete. A folder part of a
    restic store (`<key>.tree`) has no bytes of its own: it is copied as the tar restic's
    restore of it makes (`<key>.tar`), checked by its content digest, and its record says so.
    Raise SnapshotExistsError if the target already has the name, IntegrityError for a
    corrupt source part.
    """
    manifest = read_manifest(source, project, name)
    with target.lock(project, timeout=LOCK_TIMEOUT):
        if name in target.list_snapshots(project):
            from docker_persist.store import SnapshotExistsError

            raise SnapshotExistsError(f"{target.url} already has snapshot {name!r} of project {project!r}")
        pending = target.begin(project, name)
        try:
            records = []
            for record in manifest.volumes:
                parts = [(record.file, record.archive_bytes, record.archive_sha256)]
                if record.index is not None:
                    parts.append((record.index.file, record.index.bytes, record.index.sha256))
                expect(progress, f"copy {record.key}", sum(size for _, size, _ in parts))
                if record.file.endswith(TREE_SUFFIX):
                    record = _copy_tree(source, pending, project, manifest, record, progress)  # noqa: PLW2901
                    parts = parts[1:]
                for filename, expected_size, expected_sha256 in parts:
                    digest, size = hashlib.sha256(), 0
                    with source.open_part(project, name, filename) as reader, pending.open_part(filename) as writer:
                        while data := reader.read(1 << 20):
                            digest.update(data)
                            size += len(data)
                            writer.write(data)
                            progress(f"copy {record.key}", len(data))
                    if size != expected_size or digest.hexdigest() != expected_sha256:
                        raise IntegrityError(
                            f"snapshot {name!r}: {filename} in {source.url} does not match its manifest: not copied"
                        )
                    crash_point("copy:part-written")
                records.append(record)
            copied = dataclasses.replace(manifest, volumes=tuple(records))
            pending.publish(dump_manifest(copied))
        except BaseException:
            pending.abort()
            raise
    return copied


def _copy_tree(
    source: Store, pending: PendingSnapshot, project: str, manifest: Manifest, record: VolumeRecord, progress: Progress
) -> VolumeRecord:
    """Copy a folder part as a plain tar part; return its new record. Raise IntegrityError if its content differs
    from the record's digest."""
    from docker_persist.core.archive import TarDigester

    filename = f"{record.file.removesuffix(TREE_SUFFIX)}{ARCHIVE_SUFFIXES['none']}"
    digester = TarDigester(check_safety=True)
    digest, size = hashlib.sha256(), 0
    try:
        with source.open_part(project, manifest.name, record.file) as reader, pending.open_part(filename) as writer:
            while data := reader.read(1 << 20):
                digester.feed(data)
                digest.update(data)
                size += len(data)
                writer.write(data)
                progress(f"copy {record.key}", len(data))
        summary = digester.finish()
    except IntegrityError:
        raise
    except PersistError as error:
        if isinstance(error, StoreError):
            raise
        raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error
    if summary.digest != record.content_digest:
        raise IntegrityError(
            f"snapshot {manifest.name!r}: the content of {record.file} in {source.url} does not match the content "
            "digest its manifest records: not copied"
        )
    crash_point("copy:part-written")
    return dataclasses.replace(
        record, file=filename, compression="none", archive_sha256=digest.hexdigest(), archive_bytes=size
    )
