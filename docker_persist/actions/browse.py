"""Looking into snapshots without restoring them: `ls`, `diff`, and restoring single files to a folder."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator, Sequence
from typing import IO, Any

from docker_persist.actions.catalog import iter_archive, read_manifest, unlock
from docker_persist.actions.common import IntegrityError
from docker_persist.core.archive import MalformedArchiveError, TarDigester, UnsafeArchiveError
from docker_persist.core.fileindex import FileIndexError, IndexEntry, read
from docker_persist.core.manifest import Manifest, VolumeRecord
from docker_persist.errors import ConfigError
from docker_persist.store import Store
from docker_persist.streams.pipeline import ChunkReader


@dataclasses.dataclass(frozen=True)
class Opened:
    """A snapshot with its sealed fields read, and the identities that open its parts."""

    manifest: Manifest
    identities: tuple[Any, ...]

    def record(self, key: str) -> VolumeRecord:
        """Return the record of volume `key`. Raise ConfigError, naming the volumes it holds, if there is none."""
        record = self.manifest.volume(key)
        if record is None:
            held = ", ".join(r.key for r in self.manifest.volumes) or "none"
            raise ConfigError(f"snapshot {self.manifest.name!r} has no volume {key!r} (it holds: {held})")
        if record.kind == "dump":
            raise ConfigError(
                f"{key!r} in snapshot {self.manifest.name!r} is a database dump, not files: restore it into its "
                f"volume with `docker persist restore {self.manifest.name} --dump`, or read its part {record.file} "
                "by hand (zstd -d, then psql or mysql)"
            )
        return record


def open_snapshot(store: Store, project: str, name: str, identity: str | None) -> Opened:
    """Read a snapshot's manifest and, for an encrypted one, open it with the identity. Raise as unlock does."""
    manifest = read_manifest(store, project, name)
    manifest, _, identities = unlock(store, project, manifest, [r.key for r in manifest.volumes], identity)
    return Opened(manifest, identities)


def list_files(store: Store, project: str, opened: Opened, record: VolumeRecord) -> Iterator[IndexEntry]:
    """Yield a volume's file index, sorted by path: the index part if the snapshot has one (checked against its
    sha256 as it is read), else what reading the whole archive finds. Raise IntegrityError if either is damaged."""
    where = f"snapshot {opened.manifest.name!r}: {record.key}"
    if record.index is None:  # taken before docker-persist wrote indexes: read the archive
        digester = TarDigester(check_safety=False, index=True)
        try:
            for _ in iter_archive(store, project, opened.manifest, record, digester, opened.identities):
                pass
            digester.finish()
        except (MalformedArchiveError, UnsafeArchiveError) as error:
            raise IntegrityError(f"{where}: {error}") from error
        yield from digester.index_entries()
        return
    index = record.index
    as_part = dataclasses.replace(
        record, file=index.file, archive_bytes=index.bytes, archive_sha256=index.sha256, compression="zstd"
    )
    try:
        yield from read(iter_archive(store, project, opened.manifest, as_part, None, opened.identities))
    except FileIndexError as error:
        raise IntegrityError(f"{where}: the file index {index.file} is damaged ({error})") from error


def diff_snapshots(
    store: Store, project: str, before: Opened, after: Opened, keys: Sequence[str] = ()
) -> list[tuple[str, str, str, str]]:
    """Return (volume key, change, path, detail) for what differs between two snapshots, volume by volume.

    A volume only one of them holds is reported as added or removed as a whole.
    """
    from docker_persist.core.fileindex import diff

    old = {r.key: r for r in before.manifest.volumes if r.kind != "dump"}  # a dump has no files to compare
    new = {r.key: r for r in after.manifest.volumes if r.kind != "dump"}
    wanted = list(keys) or sorted(old.keys() | new.keys())
    for key in keys:
        if key not in old and key not in new:
            raise ConfigError(f"neither snapshot holds volume {key!r}")
    changes = []
    for key in wanted:
        if key not in new:
            changes.append((key, "-", "", "the volume is not in the second snapshot"))
        elif key not in old:
            changes.append((key, "+", "", "the volume is not in the first snapshot"))
        else:
            a = list(list_files(store, project, before, old[key]))
            b = list(list_files(store, project, after, new[key]))
            changes += [(key, change, path, detail) for change, path, detail in diff(a, b)]
    return changes


def extract_paths(
    store: Store, project: str, opened: Opened, record: VolumeRecord, path: str, target: str | IO[bytes]
) -> int:
    """Restore `path` (a file or a folder, with what is below it) of a volume into the host folder `target`,
    or, for a single file, its content to the stream `target`; return how many entries were written.

    The archive is read and checked as a restore reads it (nothing may escape the folder or be
    written through a symlink). The folder must be empty or not exist: nothing in it is replaced.
    Owners are kept when run as root. Raise ConfigError if nothing in the volume is at `path`.
    """
    import tarfile

    wanted = path.strip("/")
    if wanted in ("", "."):
        wanted = ""
    if isinstance(target, str):
        if os.path.lexists(target) and (not os.path.isdir(target) or os.listdir(target)):
            raise ConfigError(f"{target} is not an empty folder: give a new or empty one, so that nothing is replaced")
        os.makedirs(target, exist_ok=True)
    digester = TarDigester(check_safety=True)
    chunks = iter_archive(store, project, opened.manifest, record, digester, opened.identities)
    stream = io.BufferedReader(ChunkReader(chunks), 1 << 20)
    written = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = member.name[2:] if member.name.startswith("./") else member.name.lstrip("/")
                if wanted and name != wanted and not name.startswith(wanted + "/"):
                    continue
                if not isinstance(target, str):
                    if not member.isfile() or name != wanted:
                        raise ConfigError(f"{path} is a {_kind(member)}, not a file: restore it with --to-dir DIR")
                    source = archive.extractfile(member)
                    assert source is not None
                    while block := source.read(1 << 20):
                        target.write(block)
                    return 1
                kept = os.geteuid() == 0
                member.name = name or "."
                archive.extract(member, target, set_attrs=True, numeric_owner=kept, **_trusted())
                written += 1
    except (MalformedArchiveError, UnsafeArchiveError, tarfile.TarError) as error:
        raise IntegrityError(f"snapshot {opened.manifest.name!r}: {record.file}: {error}") from error
    if not written:
        raise ConfigError(f"volume {record.key} of snapshot {opened.manifest.name!r} has nothing at {path!r}")
    return written


def _kind(member: Any) -> str:
    return "folder" if member.isdir() else "symlink" if member.issym() else "special file"


def _trusted() -> dict[str, Any]:
    """The extraction filter for an archive the digester has checked entry by entry as it streamed (Python
    3.12 warns without one; older ones have none)."""
    import tarfile

    return {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
