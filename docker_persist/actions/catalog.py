"""Reading snapshots from a store: manifests, keys, and archives streamed back with every check."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from docker_persist.actions.common import IntegrityError, Progress, expect, tar_size
from docker_persist.core.archive import ArchiveSummary, MalformedArchiveError, TarDigester, UnsafeArchiveError
from docker_persist.core.dumps import dump_key
from docker_persist.core.manifest import (
    TREE_SUFFIX,
    UNDO_REASON,
    Manifest,
    ManifestError,
    RootEntry,
    VolumeRecord,
    check_snapshot_name,
    load_manifest,
    open_sealed,
)
from docker_persist.engine import Engine
from docker_persist.errors import PersistError, SnapshotNotFoundError
from docker_persist.host.faults import crash_point
from docker_persist.store import Store, StoreError, not_found
from docker_persist.streams.compression import CorruptArchiveError, iter_decompressed
from docker_persist.streams.encryption import DecryptionError, IdentityError
from docker_persist.streams.pipeline import in_background

if TYPE_CHECKING:
    from docker_persist.host.process import RemovalBehind


def read_manifest(store: Store, project: str, name: str) -> Manifest:
    """Return the manifest of snapshot `name`. Raise SnapshotNotFoundError with the closest names."""
    check_snapshot_name(name)
    try:
        data = store.read_manifest(project, name)
    except SnapshotNotFoundError:
        raise not_found(project, name, store.list_snapshots(project)) from None
    return load_manifest(data, f"{store.url}/{project}/{name}/manifest.json")


@dataclasses.dataclass(frozen=True)
class Damaged:
    """A snapshot whose manifest cannot be read: its name and why."""

    name: str
    problem: str


@dataclasses.dataclass(frozen=True)
class Catalog:
    """A project's snapshots in a store: those that can be read, oldest first, and those that cannot."""

    manifests: tuple[Manifest, ...]
    damaged: tuple[Damaged, ...] = ()

    def latest(self, key: str | None = None) -> Manifest | None:
        """Return the newest snapshot (holding volume `key`, if given) a user would want back: never an
        undo snapshot (pre-restore), which holds what a restore replaced."""
        for manifest in reversed(self.manifests):
            holds = key is None or manifest.volume(key) is not None or manifest.volume(dump_key(key)) is not None
            if manifest.reason != UNDO_REASON and holds:
                return manifest
        return None


def read_catalog(store: Store, project: str) -> Catalog:
    """Return every snapshot of the project: a damaged manifest is listed as damaged, not fatal.

    Raise StoreError only if the store itself cannot be listed.
    """
    manifests, damaged = [], []
    for name in store.list_snapshots(project):
        try:
            manifests.append(read_manifest(store, project, name))
        except ManifestError as error:
            damaged.append(Damaged(name, str(error)))
        except SnapshotNotFoundError:
            continue  # forgotten since it was listed (retention running meanwhile): it is no more
        except StoreError as error:  # a manifest that cannot be read (unreadable)
            damaged.append(Damaged(name, str(error)))
    return Catalog(tuple(sorted(manifests, key=lambda m: (m.created, m.name))), tuple(damaged))


def list_manifests(store: Store, project: str) -> list[Manifest]:
    """Return every snapshot of the project that can be read, oldest first (see read_catalog for the rest)."""
    return list(read_catalog(store, project).manifests)


def load_keys(
    store: Store, project: str, manifest: Manifest, records: Sequence[VolumeRecord], identity: str | None
) -> tuple[Any, ...]:
    """Return the identities that open the encrypted parts among `records` (none if none is encrypted).

    `identity` is the identity file (--identity, else $DOCKER_PERSIST_IDENTITY). Each encrypted
    part's age header is tried, so a missing or wrong key fails here, before anything is touched.
    Raise IdentityError (a ConfigError), or IntegrityError for a damaged header.
    """
    from docker_persist.streams.encryption import HEAD_BYTES, check_identities, require_identities

    encrypted = [r for r in records if r.encryption]
    if not encrypted and not manifest.locked:
        return ()
    identities = tuple(require_identities(identity, f"snapshot {manifest.name!r}"))
    for record in encrypted:
        with store.open_part(project, manifest.name, record.file) as part:
            head = part.read(HEAD_BYTES)
        try:
            check_identities(head, identities, f"snapshot {manifest.name!r}: {record.file}")
        except DecryptionError as error:
            raise IntegrityError(str(error)) from error
    return identities


def unlock(
    store: Store, project: str, manifest: Manifest, keys: Sequence[str], identity: str | None
) -> tuple[Manifest, list[VolumeRecord], tuple[Any, ...]]:
    """Return the manifest with its sealed fields read, the records of volume `keys`, and their identities.

    See load_keys; for an encrypted snapshot the identity also opens the manifest's sealed fields.
    Raise IdentityError, or IntegrityError if what is sealed is damaged.
    """
    from docker_persist.streams.encryption import unseal

    identities = load_keys(store, project, manifest, [r for r in manifest.volumes if r.key in keys], identity)
    if manifest.locked:
        where = f"{store.url}/{project}/{manifest.name}/manifest.json"
        try:
            manifest = open_sealed(manifest, unseal(manifest.sealed, identities, where), where)
        except (DecryptionError, ManifestError) as error:
            raise IntegrityError(str(error)) from error
    by_key = {r.key: r for r in manifest.volumes}
    return manifest, [by_key[key] for key in keys], identities


def iter_archive(
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    digester: TarDigester | None = None,
    identities: Sequence[Any] = (),
) -> Iterator[bytes]:
    """Yield the tar bytes of one volume of a snapshot; check the stored file's size and sha256 at its end.

    Reading, hashing, decrypting (with `identities`, see load_keys), decompressing and (if
    given) feeding the digester run in background threads, beside the caller's work. Raise
    IntegrityError if the file differs from the manifest (once its last byte is read) or
    cannot be decrypted or decompressed.
    """
    from docker_persist.streams.encryption import iter_decrypted

    if record.encryption and not identities:
        raise IdentityError(f"snapshot {manifest.name!r}: {record.file} is encrypted, and no identity was given")

    def produce() -> Iterator[bytes]:
        sha256 = hashlib.sha256()
        size = 0

        def compressed() -> Iterator[bytes]:
            nonlocal size
            with store.open_part(project, manifest.name, record.file) as part:
                while data := part.read(1 << 20):
                    sha256.update(data)
                    size += len(data)
                    yield data

        where = f"snapshot {manifest.name!r}: {record.file}"
        stored = compressed()
        if record.encryption:
            stored = iter_decrypted(stored, identities, where)
        try:
            for data in iter_decompressed(record.compression, stored):
                if digester is not None:
                    digester.feed(data)
                yield data
        except DecryptionError as error:
            raise IntegrityError(str(error)) from error
        except CorruptArchiveError as error:
            raise IntegrityError(f"{where}: {error}") from error
        if record.file.endswith(TREE_SUFFIX):
            return  # restic restored it: no stored file of ours to check; the content digest is (by the caller)
        if size != record.archive_bytes or sha256.hexdigest() != record.archive_sha256:
            raise IntegrityError(
                f"snapshot {manifest.name!r}: {record.file} does not match its manifest "
                f"(sha256 {sha256.hexdigest()[:16]}…, {size} bytes; expected {record.archive_sha256[:16]}…, "
                f"{record.archive_bytes} bytes): the archive is corrupt or was changed"
            )

    return in_background(produce())


def check_archive(
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    progress: Progress,
    identities: Sequence[Any] = (),
) -> ArchiveSummary:
    """Read a volume's archive end to end and change nothing.

    Checks the stored file's size and sha256, that it decompresses, that every entry is safe to
    extract, the entry count and the content digest: everything that can refuse the archive, so
    that a restore refuses before it stops a service or replaces a volume. Raise IntegrityError,
    naming the file and the fault.
    """
    digester = TarDigester(check_safety=True)
    label = f"check {record.key}"
    expect(progress, label, tar_size(record.entries, record.bytes))
    try:
        for chunk in iter_archive(store, project, manifest, record, digester, identities):
            progress(label, len(chunk))
        summary = digester.finish()
    except (IntegrityError, SnapshotNotFoundError, IdentityError):
        raise
    except PersistError as error:  # unsafe or malformed entries, store errors
        raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error
    if summary.entries != record.entries:
        raise IntegrityError(
            f"snapshot {manifest.name!r}: {record.file} holds {summary.entries} entries, its manifest says "
            f"{record.entries}: the archive or the manifest was changed"
        )
    if summary.digest != record.content_digest:
        raise IntegrityError(
            f"snapshot {manifest.name!r}: the content of {record.file} does not match the content digest its "
            "manifest records: the archive or the manifest was changed"
        )
    return summary


def iter_dump(
    store: Store, project: str, manifest: Manifest, record: VolumeRecord, identities: Sequence[Any] = ()
) -> Iterator[bytes]:
    """Yield the bytes of a dump part as it was dumped; raise IntegrityError at its end if the stored file or the
    dump differs from the manifest (the file's size and sha256, the dump's size and content digest)."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter_archive(store, project, manifest, record, None, identities):
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != record.bytes or f"sha256:{digest.hexdigest()}" != record.content_digest:
        raise IntegrityError(
            f"snapshot {manifest.name!r}: the dump in {record.file} does not match the content digest its manifest "
            "records: the part or the manifest was changed"
        )


def check_dump(
    store: Store, project: str, manifest: Manifest, record: VolumeRecord, progress: Progress,
    identities: Sequence[Any] = (),
) -> None:  # fmt: skip
    """Read a dump part end to end and change nothing; raise IntegrityError as iter_dump does."""
    label = f"check {record.key}"
    expect(progress, label, record.bytes)
    try:
        for chunk in iter_dump(store, project, manifest, record, identities):
            progress(label, len(chunk))
    except (IntegrityError, SnapshotNotFoundError, IdentityError):
        raise
    except PersistError as error:
        raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error


def extract_into_volume(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    target: str,
    progress: Progress,
    identities: Sequence[Any] = (),
    crash: str = "restore:extracting",
) -> ArchiveSummary:
    """Extract a volume's archive into the empty volume `target`, setting its root; return what was written.

    `crash` names the crash point reached once the first bytes are in (see host/faults.py).
    Raise IntegrityError if what was streamed does not match the manifest.
    """
    return _extract(engine, store, project, manifest, record, target, progress, identities, crash)[0]


def extract_and_read_back(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    target: str,
    progress: Progress,
    identities: Sequence[Any] = (),
    crash: str = "restore:extracting",
    behind: RemovalBehind | None = None,
) -> ArchiveSummary | None:
    """Extract as extract_into_volume does, then read the volume back: return its summary if it holds exactly
    what was written, else None.

    A folder part restored by its store is read back once: that read is where its digest comes from. With
    `behind` (a scratch volume's), what the read-back has gone past is removed as it reads on.
    """
    written, read_back = _extract(engine, store, project, manifest, record, target, progress, identities, crash,
                                  behind)  # fmt: skip
    if read_back:
        return written
    return holds_exactly(engine, project, target, written, behind)


def _extract(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    target: str,
    progress: Progress,
    identities: Sequence[Any],
    crash: str,
    behind: RemovalBehind | None = None,
) -> tuple[ArchiveSummary, bool]:
    """Extract into `target`; return what was written, and whether that is the volume as read back."""
    root = record.root or RootEntry(0o755, 0, 0)
    digester = TarDigester(check_safety=True)
    label = f"{crash.split(':', maxsplit=1)[0]} {record.key}"  # "restore db_data", "verify db_data"
    expect(progress, label, tar_size(record.entries, record.bytes))
    folder = engine.host_path(target, writable=True) if record.file.endswith(TREE_SUFFIX) else None
    restore_tree = getattr(store, "restore_tree", None)
    if folder is not None and restore_tree is not None:
        # A folder part, with the volume on this machine: restic restores it straight into the volume's folder
        # (no staged copy), and the volume read back gives the digest.
        restore_tree(project, manifest.name, record.file, folder)
        crash_point(crash)
        os.chown(folder, root.uid, root.gid)
        os.chmod(folder, root.mode & 0o7777)
        summary = volume_read_digest(engine, project, target, behind)
        read_back = True
    else:

        def stream() -> Iterator[bytes]:
            for chunk in iter_archive(store, project, manifest, record, digester, identities):
                progress(label, len(chunk))
                yield chunk
                crash_point(crash)

        try:
            engine.extract_volume_archive(target, project, (root.mode, root.uid, root.gid), stream())
        except (UnsafeArchiveError, MalformedArchiveError) as error:
            raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error
        summary = digester.finish()
        read_back = False
    if summary.digest != record.content_digest:
        raise IntegrityError(f"volume {target!r}: the restored content does not match snapshot {manifest.name!r}")
    return summary, read_back


@contextlib.contextmanager
def scratch_volume(engine: Engine, project: str) -> Iterator[str]:
    """Within the block, a new volume for a drill to restore into, labelled as the project's scratch (so what a
    killed drill leaves is removed by the next operation); removed after it."""
    import secrets

    from docker_persist.engine import LABEL_PROJECT, LABEL_ROLE

    scratch = f"docker-persist-verify-{secrets.token_hex(6)}"
    engine.create_volume(scratch, labels={LABEL_ROLE: "scratch", LABEL_PROJECT: project})
    try:
        yield scratch
    finally:
        engine.remove_volume(scratch, force=True)


def drill(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    scratch: str,
    progress: Progress,
    identities: Sequence[Any],
    crash: str,
    remove_behind: bool,
) -> ArchiveSummary:
    """Restore a volume's part into the scratch volume `scratch` and read it back; return what it holds. Raise
    IntegrityError if that differs from the snapshot.

    With `remove_behind` (nothing looks at the scratch volume after), its files are removed as the read-back
    goes past them, when they are on this machine: see host.process.RemovalBehind.
    """
    from docker_persist.host.process import RemovalBehind

    folder = engine.host_path(scratch, writable=True) if remove_behind else None
    with contextlib.ExitStack() as stack:
        behind = stack.enter_context(RemovalBehind(folder, os.environ)) if folder is not None else None
        restored = extract_and_read_back(engine, store, project, manifest, record, scratch, progress, identities,
                                         crash, behind)  # fmt: skip
    if restored is None:
        raise IntegrityError(f"{record.key}: the volume read back after the drill differs from the snapshot")
    return restored


@dataclasses.dataclass(frozen=True)
class CheckedPart:
    """A folder part restored into a scratch volume and found exact: what it holds, and where."""

    scratch: str
    summary: ArchiveSummary


@contextlib.contextmanager
def checked_folder_part(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    progress: Progress,
    identities: Sequence[Any] = (),
    keep: bool = False,
) -> Iterator[CheckedPart | None]:
    """Check a folder part (restic's, file by file) before a restore touches anything, as check_archive checks a
    tar: with the engine on this machine, restic restores it into a scratch volume, on the engine's disk where
    the restore needs the space anyway, not under $TMPDIR (often a small tmpfs), and it is read back and its
    digest compared. Through a remote engine, check_archive. Raise IntegrityError as check_archive does.

    With `keep`, the block gets the scratch volume, holding exactly the part, for the restore to move its files
    into the volume (move_checked) instead of restoring them again; else its files are removed behind the read
    and the block gets None (as it does through a remote engine). The scratch volume is removed after the block.
    """
    with scratch_volume(engine, project) as scratch:
        if engine.host_path(scratch, writable=True) is None:
            check_archive(store, project, manifest, record, progress, identities)
            yield None
            return
        try:
            summary = drill(engine, store, project, manifest, record, scratch, progress, identities,
                            "restore:checking", remove_behind=not keep)  # fmt: skip
        except (IntegrityError, SnapshotNotFoundError, IdentityError):
            raise
        except PersistError as error:  # store errors: restic could not restore it
            raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error
        yield CheckedPart(scratch, summary) if keep else None


def move_checked(engine: Engine, checked: CheckedPart, volume: str, root: RootEntry, crash: str) -> bool:
    """Move what a checked scratch volume holds into the empty volume `volume` (both on this machine), entry by
    top-level entry, and give its root `root`'s mode and owner. Return False, with nothing moved, if they are
    not on one file system (or not both here): then the caller restores the part as usual.

    A rename keeps every inode as it is (content, owner, mode, xattrs, hard links); the mtime of each entry
    moved is set again all the same (a directory's may change with its `..`). The caller reads the volume
    back: that, not the check, is the proof for the volume itself.
    """
    source = engine.host_path(checked.scratch, writable=True)
    target = engine.host_path(volume, writable=True)
    if source is None or target is None or os.stat(source).st_dev != os.stat(target).st_dev:
        return False
    names = os.listdir(os.fsencode(source))
    for index, name in enumerate(names):
        old, new = os.path.join(os.fsencode(source), name), os.path.join(os.fsencode(target), name)
        status = os.lstat(old)
        try:
            os.rename(old, new)
        except OSError as error:
            if index == 0 and error.errno == errno.EXDEV:  # another mount of the same file system
                return False
            raise PersistError(
                f"cannot move the checked files of {checked.scratch!r} into {volume!r}: {error}"
            ) from error
        os.utime(new, ns=(status.st_atime_ns, status.st_mtime_ns), follow_symlinks=False)
        crash_point(crash)
    os.chown(target, root.uid, root.gid)
    os.chmod(target, root.mode & 0o7777)
    return True


def volume_is_empty(engine: Engine, project: str, volume: str) -> bool:
    """Return True if a volume holds no entry at all but its root (an empty file or folder is an entry).

    Only the start of the volume's archive is read.
    """
    digester = TarDigester(check_safety=False, hash_data=False)
    with engine.volume_archive(volume, project) as archive:
        for chunk in archive:
            digester.feed(chunk)
            if digester.entries_seen > 1:
                return False
    return digester.finish().entries <= 1


def volume_read_digest(
    engine: Engine, project: str, volume: str, behind: RemovalBehind | None = None
) -> ArchiveSummary:
    """Return the content summary of a volume as it is now, read back through the engine.

    With `behind`, every top-level entry the read has gone past (the archive is written depth-first) is
    given to it to remove: for a scratch volume that is removed after the read anyway.
    """
    digester = TarDigester(check_safety=False)
    if behind is not None:
        digester.track_tops()
    with engine.volume_archive(volume, project) as archive:
        for chunk in archive:
            digester.feed(chunk)
            if behind is not None:
                behind.passed(digester.passed_tops())
                if behind.removing:
                    crash_point("read-back:removing")
    return digester.finish()


def holds_exactly(
    engine: Engine, project: str, volume: str, expected: ArchiveSummary, behind: RemovalBehind | None = None
) -> ArchiveSummary | None:
    """Read a volume back; return its summary if it holds exactly what `expected` describes, else None.

    Through the engine's archive API, which sends no xattr but security.capability, the
    comparison leaves the others out: they went in, but cannot be read back that way.
    `behind`: see volume_read_digest.
    """
    held = volume_read_digest(engine, project, volume, behind)
    if held.digest == expected.digest:
        return held
    if not engine.reads_all_xattrs(volume) and held.portable_digest == expected.portable_digest:
        return held
    return None
