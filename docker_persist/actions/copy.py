"""`copy`: replicate a snapshot to another store, checking every part on the way."""

from __future__ import annotations

import hashlib

from docker_persist.actions.catalog import read_manifest
from docker_persist.actions.common import LOCK_TIMEOUT, IntegrityError, Progress, expect
from docker_persist.core.manifest import (
    Manifest,
    dump_manifest,
)
from docker_persist.host.faults import crash_point
from docker_persist.store import Store


def copy_snapshot(source: Store, target: Store, project: str, name: str, progress: Progress) -> Manifest:
    """Copy a published snapshot, byte for byte, to another store (e.g. local to S3, for an off-site copy).

    Each part's size and sha256 are checked against the manifest while it streams; the
    manifest is published last, so the copy appears only once complete. Raise
    SnapshotExistsError if the target already has the name, IntegrityError for a
    corrupt source part.
    """
    manifest = read_manifest(source, project, name)
    with target.lock(project, timeout=LOCK_TIMEOUT):
        if name in target.list_snapshots(project):
            from docker_persist.store import SnapshotExistsError

            raise SnapshotExistsError(f"{target.url} already has snapshot {name!r} of project {project!r}")
        pending = target.begin(project, name)
        try:
            for record in manifest.volumes:
                parts = [(record.file, record.archive_bytes, record.archive_sha256)]
                if record.index is not None:
                    parts.append((record.index.file, record.index.bytes, record.index.sha256))
                expect(progress, f"copy {record.key}", sum(size for _, size, _ in parts))
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
            pending.publish(dump_manifest(manifest))
        except BaseException:
            pending.abort()
            raise
    return manifest
