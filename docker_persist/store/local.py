"""The local snapshot store: a folder of the local file system. `LocalStore` keeps this layout under its root:

    <root>/<project>/.lock                                the per-project lock (flock), holding "<pid> <since>"
    <root>/<project>/<snapshot>/manifest.json             a published snapshot, with its parts
    <root>/<project>/<snapshot>/<volume>.tar.zst
    <root>/<project>/.staging-<snapshot>-<pid>-<random>/  a snapshot being written, invisible
    <root>/<project>/.staging-<snapshot>-<pid>-<random>.manifest   a manifest being replaced
    <root>/<project>/.trash-<snapshot>-<pid>-<random>/    a snapshot being deleted, invisible

Folders are created mode 0700 and files 0600, set explicitly whatever the umask: snapshots
hold databases. A snapshot appears by one rename of its staging folder, after every part and
the manifest are fsync'd, and disappears by one rename to `.trash-...`. A process killed
mid-way leaves only `.staging-...` or `.trash-...` entries, which `list_snapshots` never shows
and the next process to take the project's lock removes (for a backup, a forget or a copy alike:
no live writer owns them then).

Before a snapshot is published, each part is checked against the file system: it must still be
the very file this run wrote (same device and inode) and hold every byte written, so that a part
removed or replaced by anyone else is never published.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import io
import os
import re
import secrets
import shutil
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from docker_persist.core.manifest import MANIFEST_FILE, check_snapshot_name, format_datetime, is_snapshot_name
from docker_persist.errors import ConfigError
from docker_persist.host.faults import crash_point
from docker_persist.store.base import (
    PROJECT_NAME,
    PendingSnapshot,
    Store,
    StoreError,
    StoreLockedError,
    check_part_name,
    check_project_name,
    not_found,
    snapshot_exists,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

DIR_MODE = 0o700
FILE_MODE = 0o600
LOCK_FILE = ".lock"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
LOCK_POLL_SECONDS = 0.1
WRITE_BUFFER_BYTES = 1 << 20

SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCK_HOLDER = re.compile(r"^(\d+) (\S+)\n?$")


class LocalStore:
    """Snapshots in a folder of the local file system (see the module docstring for the layout)."""

    deduplicates = False

    def __init__(self, root: str) -> None:
        if not os.path.isabs(root):
            raise ValueError(f"LocalStore needs an absolute path, got {root!r}")
        self.root = Path(os.path.normpath(root))
        self.url = self.root.as_uri()
        self._held: dict[str, int] = {}  # project -> nesting depth of lock() in this process
        self._live_staging: set[str] = set()  # staging folders of this object's pending snapshots
        self._live_names: set[tuple[str, str]] = set()  # (project, name) of this object's pending snapshots

    @contextlib.contextmanager
    def lock(self, project: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the project's exclusive lock for the `with` block, waiting up to `timeout` seconds.

        The lock is flock(2) on `<root>/<project>/.lock`, so the kernel releases it when the
        process dies, even by kill -9. It is re-entrant within one LocalStore object.
        Raise StoreLockedError if another process still holds it after `timeout` seconds.
        """
        directory = self._project_dir(project)
        if self._held.get(project, 0):
            self._held[project] += 1
            try:
                yield
            finally:
                self._held[project] -= 1
            return
        self._make_dirs(directory)
        path = directory / LOCK_FILE
        with self._translate(f"opening the lock file of project {project!r}", path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        try:
            self._set_mode(fd, FILE_MODE)
            self._acquire(fd, project, path, timeout)
            self._held[project] = 1
            try:
                self._remove_leftovers(directory)  # what killed runs left: no live writer owns it now
                yield
            finally:
                del self._held[project]
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def list_snapshots(self, project: str) -> list[str]:
        """Return the names of the project's published snapshots, sorted."""
        directory = self._project_dir(project)
        with self._translate(f"listing the snapshots of project {project!r}", directory):
            try:
                entries = os.listdir(directory)
            except FileNotFoundError:
                return []
            # Only a published folder holds manifest.json: publish renames it in whole.
            return sorted(e for e in entries if is_snapshot_name(e) and (directory / e / MANIFEST_FILE).is_file())

    def list_projects(self) -> list[str]:
        """Return the names of the projects that have published snapshots, sorted."""
        with self._translate("listing the projects", self.root):
            try:
                entries = os.listdir(self.root)
            except FileNotFoundError:
                return []
        return sorted(e for e in entries if PROJECT_NAME.fullmatch(e) and self.list_snapshots(e))

    def read_manifest(self, project: str, name: str) -> bytes:
        """Return the bytes of a snapshot's manifest. Raise SnapshotNotFoundError if there is no such snapshot."""
        path = self._snapshot_dir(project, name) / MANIFEST_FILE
        with self._translate(f"reading the manifest of snapshot {name!r} of project {project!r}", path):
            try:
                return path.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                raise not_found(project, name, self.list_snapshots(project)) from None

    def open_part(self, project: str, name: str, filename: str) -> BinaryIO:
        """Return a stream reading a part of a published snapshot.

        Raise SnapshotNotFoundError if there is no such snapshot, StoreError if the part is missing.
        """
        snapshot = self._published_dir(project, name)
        path = snapshot / check_part_name(filename)
        with self._translate(f"opening {filename} of snapshot {name!r} of project {project!r}", path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                raise StoreError(
                    f"snapshot {name!r} of project {project!r} has no file {filename!r} ({path}): "
                    "the snapshot is incomplete or damaged"
                ) from None
            return os.fdopen(fd, "rb")

    def begin(self, project: str, name: str) -> PendingSnapshot:
        """Start writing a snapshot, after removing what killed runs left behind. The caller holds the lock.

        Raise SnapshotExistsError if the name is taken, or being written by this store already.
        """
        directory = self._project_dir(project)
        check_snapshot_name(name)
        if not self._held.get(project):
            raise RuntimeError(f"LocalStore.begin needs the lock: call it inside `with store.lock({project!r})`")
        if (directory / name).exists() or (project, name) in self._live_names:
            raise snapshot_exists(project, name)
        self._live_names.add((project, name))
        staging = directory / f"{STAGING_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        self._make_dirs(staging)
        self._live_staging.add(staging.name)
        return _LocalPending(self, project, name, staging)

    def replace_manifest(self, project: str, name: str, manifest: bytes) -> None:
        """Replace a snapshot's manifest atomically (write a temporary file, fsync, rename). The caller holds the lock.

        Raise SnapshotNotFoundError if there is no such snapshot.
        """
        snapshot = self._published_dir(project, name)
        # The temporary file is a staging entry, so a killed run's leftover is removed by the next begin.
        temp = snapshot.parent / f"{STAGING_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}.manifest"
        replaced = False
        try:
            self._write_file(temp, manifest, f"writing the manifest of snapshot {name!r} of project {project!r}")
            with self._translate(f"replacing the manifest of snapshot {name!r} of project {project!r}", snapshot):
                try:
                    os.replace(temp, snapshot / MANIFEST_FILE)
                except FileNotFoundError:
                    raise not_found(project, name, self.list_snapshots(project)) from None
                replaced = True
                _fsync_dir(snapshot)
        finally:
            if not replaced:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def delete(self, project: str, name: str) -> None:
        """Remove a snapshot: rename it away in one step, then remove its files. The caller holds the lock.

        Raise SnapshotNotFoundError if there is no such snapshot. Files that cannot be removed
        stay in a `.trash-...` folder, which the next `begin` removes.
        """
        snapshot = self._published_dir(project, name)
        trash = snapshot.parent / f"{TRASH_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        with self._translate(f"deleting snapshot {name!r} of project {project!r}", snapshot):
            try:
                os.rename(snapshot, trash)
            except FileNotFoundError:
                raise not_found(project, name, self.list_snapshots(project)) from None
            _fsync_dir(snapshot.parent)
        crash_point("forget:trashed")
        shutil.rmtree(trash, ignore_errors=True)

    def reclaim(self) -> None:
        """Nothing to do: a deleted snapshot's space is freed at once."""

    # Internals, shared with _LocalPending.

    def _project_dir(self, project: str) -> Path:
        return self.root / check_project_name(project)

    def _snapshot_dir(self, project: str, name: str) -> Path:
        return self._project_dir(project) / check_snapshot_name(name)

    def _published_dir(self, project: str, name: str) -> Path:
        """Return the folder of a published snapshot. Raise SnapshotNotFoundError if there is none."""
        snapshot = self._snapshot_dir(project, name)
        with self._translate(f"reading snapshot {name!r} of project {project!r}", snapshot):
            if not (snapshot / MANIFEST_FILE).is_file():
                raise not_found(project, name, self.list_snapshots(project))
        return snapshot

    def _acquire(self, fd: int, project: str, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreLockedError(_locked_message(project, fd)) from None
                time.sleep(min(LOCK_POLL_SECONDS, remaining))
            except OSError as error:
                raise self._error(error, f"locking project {project!r}", path) from error
        since = format_datetime(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
        # Only the message of a waiting process needs this, so a full disk must not fail the lock
        # (forget, which frees space, takes it too).
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {since}\n".encode(), 0)

    def _remove_leftovers(self, directory: Path) -> None:
        """Remove the staging and trash entries of killed runs (the caller holds the lock)."""
        with self._translate("cleaning up after an earlier run", directory):
            try:
                entries = os.listdir(directory)
            except FileNotFoundError:
                return
        for entry in entries:
            stale = entry.startswith(TRASH_PREFIX) or (
                entry.startswith(STAGING_PREFIX) and entry not in self._live_staging
            )
            if not stale:
                continue
            path = directory / entry
            with self._translate("removing what an earlier, interrupted run left behind", path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)

    def _make_dirs(self, path: Path) -> None:
        """Create `path` and its missing parents, each mode 0700 whatever the umask."""
        with self._translate("creating a store folder", path):
            missing = []
            while not path.exists():
                missing.append(path)
                path = path.parent
            for folder in reversed(missing):
                try:
                    os.mkdir(folder, DIR_MODE)
                except FileExistsError:
                    continue  # made by another process meanwhile: not ours to change
                os.chmod(folder, DIR_MODE)

    def _create_file(self, path: Path, doing: str) -> int:
        """Create `path` (which must not exist), mode 0600 whatever the umask, and return its descriptor."""
        with self._translate(doing, path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)
            except OSError:
                os.close(fd)
                raise
            return fd

    def _write_file(self, path: Path, data: bytes, doing: str) -> None:
        """Create `path` with `data`, fsync'd."""
        raw = _PartWriter(self._create_file(path, doing), self, path, doing)
        with io.BufferedWriter(raw, WRITE_BUFFER_BYTES) as stream:
            stream.write(data)

    def _set_mode(self, fd: int, mode: int) -> None:
        with contextlib.suppress(PermissionError):  # someone else's lock file in a shared store: leave it
            if os.fstat(fd).st_mode & 0o7777 != mode:
                os.fchmod(fd, mode)

    @contextlib.contextmanager
    def _translate(self, doing: str, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise self._error(error, doing, path) from error

    def _error(self, error: OSError, doing: str, path: Path) -> StoreError:
        """Return a StoreError that says what failed and what to do about it."""
        where = f"the store's disk ({self.root})"
        if error.errno == errno.ENOSPC:
            return StoreError(
                f"no space left on {where}: {doing} failed; free space there "
                "(`docker persist forget` removes old snapshots) or use another store"
            )
        if error.errno == errno.EDQUOT:
            return StoreError(f"disk quota exceeded on {where}: {doing} failed; free space or raise the quota")
        if error.errno == errno.EROFS:
            return StoreError(f"{where} is read-only: {doing} failed; remount it read-write or use another store")
        if error.errno in (errno.EACCES, errno.EPERM):
            return StoreError(
                f"permission denied on {path}: {doing} failed; the store ({self.root}) must be readable and "
                f"writable by this user (uid {os.getuid()})"
            )
        return StoreError(f"{doing} failed: {error.strerror or error} ({path})")


class _PartWriter(io.RawIOBase):
    """A raw file being written to the store: its OSErrors become StoreErrors, and close fsyncs it."""

    def __init__(self, fd: int, store: LocalStore, path: Path, doing: str, witness: bool = False) -> None:
        super().__init__()
        self._fd = fd
        self._store = store
        self._path = path
        self._doing = doing
        self.sync = True  # an aborted part is closed without the cost of fsync
        self.written = 0
        # Held open until the snapshot is published or aborted, so that the inode cannot be reused
        # meanwhile: a file put in this one's place is then always another inode.
        self.witness = os.dup(fd) if witness else -1

    def writable(self) -> bool:
        """Return True: this stream is for writing."""
        return True

    def fileno(self) -> int:
        """Return the file descriptor."""
        return self._fd

    def write(self, data: ReadableBuffer) -> int:
        """Write some of `data` and return how much (io.BufferedWriter writes the rest)."""
        try:
            size = os.write(self._fd, data)
            self.written += size
            return size
        except OSError as error:
            raise self._store._error(error, self._doing, self._path) from error

    def close(self) -> None:
        """fsync the file, unless discarded, and close it."""
        if self.closed:
            return
        try:
            if self.sync:
                os.fsync(self._fd)
        except OSError as error:
            raise self._store._error(error, self._doing, self._path) from error
        finally:
            os.close(self._fd)
            super().close()


class _LocalPending:
    """A snapshot being written into a staging folder of a LocalStore."""

    def __init__(self, store: LocalStore, project: str, name: str, staging: Path) -> None:
        self._store = store
        self._project = project
        self._name = name
        self._staging = staging
        self._parts: dict[str, tuple[io.BufferedWriter[_PartWriter], _PartWriter]] = {}
        self._state = "open"  # open | published | aborted

    def open_part(self, filename: str) -> BinaryIO:
        """Return a stream to write the part `filename` (a plain name) into; close it when done.

        Raise StoreError if the name is not a plain file name or the part cannot be created.
        """
        self._check_open()
        path = self._staging / check_part_name(filename)
        if filename in self._parts:
            raise ValueError(f"the part {filename!r} of snapshot {self._name!r} was opened already")
        doing = f"writing {filename} of snapshot {self._name!r} of project {self._project!r}"
        raw = _PartWriter(self._store._create_file(path, doing), self._store, path, doing, witness=True)
        stream = io.BufferedWriter(raw, WRITE_BUFFER_BYTES)
        self._parts[filename] = (stream, raw)
        return stream

    def publish(self, manifest: bytes) -> None:
        """Flush and fsync the parts, write the manifest last, and make the snapshot visible at once.

        On any failure nothing becomes visible and the staged data is removed.
        Raise SnapshotExistsError if the name was taken meanwhile, StoreError for other failures.
        """
        self._check_open()
        store, directory = self._store, self._staging.parent
        target = directory / self._name
        doing = f"publishing snapshot {self._name!r} of project {self._project!r}"
        published = False
        try:
            for stream, _ in self._parts.values():
                stream.close()  # flushes, then fsyncs (see _PartWriter.close)
            for filename, (_, raw) in self._parts.items():
                self._check_stored(self._staging / filename, raw, doing)
            store._write_file(self._staging / MANIFEST_FILE, manifest, doing)
            with store._translate(doing, self._staging):
                _fsync_dir(self._staging)
                if target.exists():
                    raise snapshot_exists(self._project, self._name)
                try:
                    os.rename(self._staging, target)
                except OSError as error:
                    if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        raise snapshot_exists(self._project, self._name) from error
                    raise
            published = True
        finally:
            if not published:
                self.abort()
        self._state = "published"
        self._close_witnesses()
        store._live_staging.discard(self._staging.name)
        store._live_names.discard((self._project, self._name))
        with store._translate(doing, directory):
            _fsync_dir(directory)

    def _check_stored(self, path: Path, raw: _PartWriter, doing: str) -> None:
        """Raise StoreError unless `path` is still the file `raw` wrote, with every byte it wrote."""
        ours = os.fstat(raw.witness)
        try:
            stat = os.stat(path, follow_symlinks=False)
            same = (stat.st_dev, stat.st_ino) == (ours.st_dev, ours.st_ino)
            found = f"{stat.st_size} bytes" if same else "another file"
        except OSError:
            stat, same, found = None, False, "nothing"
        if stat is None or not same or stat.st_size != raw.written:
            raise StoreError(
                f"{doing} failed: {path} is not what this backup wrote ({raw.written} bytes; found {found}): "
                "another process changed or removed it; nothing was published"
            )

    def abort(self) -> None:
        """Remove everything staged. Calling it again, or after publish, does nothing."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._close_witnesses()
        for stream, raw in self._parts.values():
            raw.sync = False
            with contextlib.suppress(OSError, StoreError):
                raw.close()  # first, so that closing the stream does not flush into a full disk
            stream.close()
        # What cannot be removed now is removed by the next begin.
        shutil.rmtree(self._staging, ignore_errors=True)
        self._store._live_staging.discard(self._staging.name)
        self._store._live_names.discard((self._project, self._name))

    def _close_witnesses(self) -> None:
        for _, raw in self._parts.values():
            if raw.witness >= 0:
                os.close(raw.witness)
                raw.witness = -1

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"snapshot {self._name!r} was {self._state} already")


def _locked_message(project: str, fd: int) -> str:
    try:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        holder = ""
    match = _LOCK_HOLDER.fullmatch(holder)
    who = f"pid {match.group(1)}, since {match.group(2)}" if match else "its process is still starting"
    return f"another docker-persist operation on project {project!r} holds the lock ({who}); try again when it finishes"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_store_path(environ: Mapping[str, str]) -> str:
    """Return the default store folder: $XDG_DATA_HOME/docker-persist/snapshots, else ~/.local/share/...."""
    data_home = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):  # the XDG spec says to ignore a relative value
        data_home = os.path.join(_home(environ), ".local", "share")
    return os.path.join(data_home, "docker-persist", "snapshots")


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def open_local_store(url: str, environ: Mapping[str, str]) -> Store:
    """Given a path, ~/path or file:/// URL, return the LocalStore. Raise ConfigError if it is not absolute."""
    if SCHEME.match(url):
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"invalid store {url!r}: a file store is local, so the URL takes no host: file:///absolute/path"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"invalid store {url!r}: a file:// URL takes no '?' or '#' part")
        path = urllib.parse.unquote(parts.path)
    elif url == "~" or url.startswith("~/"):
        path = _home(environ) + url[1:]
    else:
        path = url
    if "\0" in path:
        raise ConfigError(f"invalid store {url!r}: the path has a NUL character")
    if not os.path.isabs(path):
        raise ConfigError(
            f"invalid store {url!r}: the path must be absolute, e.g. /var/backups/docker-persist, "
            "~/backups or file:///var/backups/docker-persist"
        )
    return LocalStore(path)
