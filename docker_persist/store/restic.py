"""restic repositories as snapshot stores: `restic:REPOSITORY`, deduplicated and encrypted by restic.

REPOSITORY is any repository string restic takes (`/srv/restic`, `s3:http://host/bucket`,
`sftp:user@host:/path`, `rest:...`, `b2:...`, `azure:...`, `gs:...`, `rclone:remote:path`); the
password and the backend's credentials come the way restic takes them (RESTIC_PASSWORD_FILE,
RESTIC_PASSWORD_COMMAND, RESTIC_PASSWORD, AWS_ACCESS_KEY_ID, ...). The `restic` binary is found on
PATH (or $DOCKER_PERSIST_RESTIC), version 0.14 or newer; it is not bundled.

The mapping. Each part of a docker-persist snapshot (a volume's tar stream, its file index, a
dump) is one restic snapshot made with `restic backup --stdin`, at the path
`/docker-persist/<project>/<snapshot>/<part>`; the manifest is one more, at
`.../<snapshot>/manifest.json`, written last. Every one is tagged `docker-persist`,
`project=<project>`, `snapshot=<name>`, `part=<part>` and `run=<token>` (the token of the
backup that wrote it), parts of a volume also `volume=<key>`, and the manifest also
`reason=<reason>` and, when pinned, `pinned`. A snapshot is published when its manifest exists:
the parts it stands for are those of its run token, so the leftovers of a killed run (parts
without a manifest, or a replaced manifest) are never read and go with the next lock. Parts are
plain tar streams (restic compresses, and its content-defined chunking finds what an unchanged
volume shares with the last backup), so with the restic CLI alone:

    restic snapshots --tag project=shop
    restic dump --tag project=shop,snapshot=NAME,part=data.tar latest /docker-persist/shop/NAME/data.tar | tar -x -C DIR

A folder part (`<key>.tree`, see core.manifest.TREE_SUFFIX) is instead one `restic backup .` run in
the volume's folder on this machine (start_tree), tagged like the others plus `root=MODE-UID-GID`
(the folder's own mode, in octal, and owner, which restic does not keep for the folder it runs in):

    restic restore ID --target DIR && chown UID:GID DIR && chmod MODE DIR

The project lock is a flock on this machine (two machines writing one project into one
repository are not kept apart; restic keeps the repository itself consistent). Deleting a
snapshot is `restic forget`; `reclaim` runs `restic prune` once after a retention pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import IO, Any, BinaryIO, cast

from docker_persist.core.manifest import MANIFEST_FILE, TREE_SUFFIX, check_snapshot_name, is_snapshot_name
from docker_persist.errors import ConfigError
from docker_persist.host.files import write_atomically
from docker_persist.host.paths import cache_dir, state_dir
from docker_persist.host.process import child_environ
from docker_persist.store.base import (
    StoreError,
    StoreLockedError,
    check_part_name,
    check_project_name,
    not_found,
    snapshot_exists,
)
from docker_persist.streams.pipeline import ChunkReader

PREFIX = "restic:"
TAG = "docker-persist"
ROOT = "/docker-persist"
MIN_VERSION = (0, 14, 0)
PASSWORD_VARIABLES = ("RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_PASSWORD")
LOCK_POLL_SECONDS = 0.1
REPOSITORY_LOCK_WAIT = 120.0
"""How long a command waits, by default, for a lock another restic holds before giving up
($DOCKER_PERSIST_RESTIC_LOCK_WAIT overrides it)."""
KEPT_INDEX_BYTES = 64 << 20
"""A file index larger than this is not kept on this machine (it is read from the repository when needed)."""
INDEX_SUFFIX = ".index.zst"
READ_CACHE_SECONDS = 5.0
"""How long a listing read outside the lock is reused by the same store object (one command)."""
STOP_GRACE_SECONDS = 10.0
"""How long a restic stopped with SIGINT (see stop()) has to remove its lock and end before it is killed."""
FOREIGN_LEFTOVER_AGE = datetime.timedelta(days=1)
"""Leftovers written from another machine are removed only once this old: its run may be alive."""

log = logging.getLogger(__name__)

_VERSIONS: dict[str, tuple[int, ...]] = {}
_VERSION = re.compile(r"^restic (\d+)\.(\d+)\.(\d+)")
_CREDENTIALS = re.compile(r"(://[^/@\s:]+:)[^/@\s]+@")


class ResticError(StoreError):
    """restic failed; the message is restic's own, with what to do."""


def is_restic_url(url: str) -> bool:
    return url.startswith(PREFIX)


def masked(repository: str) -> str:
    """Return the repository string with a password in it (`rest:https://u:PASS@h/`) masked."""
    return _CREDENTIALS.sub(r"\1***@", repository)


def find_restic(environ: Mapping[str, str]) -> str:
    """Return the restic binary to run: $DOCKER_PERSIST_RESTIC, else `restic` on PATH; its version checked once.

    Raise ConfigError if there is none, or it is older than 0.14.
    """
    how = "install it (Debian/Ubuntu: apt install restic; or https://restic.net) or set DOCKER_PERSIST_RESTIC"
    configured = environ.get("DOCKER_PERSIST_RESTIC")
    binary = configured or shutil.which("restic", path=environ.get("PATH", os.defpath))
    if not binary:
        raise ConfigError(f"restic stores need the restic program, which is not on PATH: {how}")
    if binary not in _VERSIONS:
        try:
            result = subprocess.run([binary, "version"], capture_output=True, timeout=30,
                                    env=child_environ(environ), stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ConfigError(f"cannot run restic ({binary}): {error}; {how}") from error
        match = _VERSION.match(result.stdout.decode(errors="replace"))
        if result.returncode != 0 or match is None:
            raise ConfigError(f"{binary} does not answer `version` like restic: {how}")
        _VERSIONS[binary] = tuple(int(n) for n in match.groups())
    version = _VERSIONS[binary]
    if version < MIN_VERSION:
        found = ".".join(map(str, version))
        raise ConfigError(f"restic {found} ({binary}) is too old: restic stores need 0.14 or newer; {how}")
    return binary


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One restic snapshot written by docker-persist."""

    id: str
    time: str
    host: str
    project: str
    name: str
    part: str
    run: str
    path: str
    empty: bool = False  # restic cannot back up an empty stdin: an empty part is one byte, tagged `empty`
    root: str = ""  # a tree part's root folder: "MODE-UID-GID" (MODE in octal), from its tag `root=`


class Restic:
    """Runs restic on one repository, translating its failures."""

    def __init__(self, repository: str, environ: Mapping[str, str], password_file: str | None = None) -> None:
        self.repository = repository
        self.binary = find_restic(environ)
        env = child_environ(environ)
        env["RESTIC_REPOSITORY"] = repository
        env.pop("RESTIC_REPOSITORY_FILE", None)
        if password_file and not any(env.get(v) for v in PASSWORD_VARIABLES):
            env["RESTIC_PASSWORD_FILE"] = password_file
        if not any(env.get(v) for v in PASSWORD_VARIABLES):
            raise ConfigError(
                f"restic repository {masked(repository)} needs its password: set RESTIC_PASSWORD_FILE, "
                "RESTIC_PASSWORD_COMMAND or RESTIC_PASSWORD, or x-persist.store_password_file"
            )
        self.env = env
        # A restic this process stopped early (an unused primed part, an abort) may have been stopped in the
        # moment between writing its lock and knowing it holds one: ResticStore.lock runs `restic unlock` then.
        self.stale_locks_possible = False
        try:
            self.lock_wait = float(environ.get("DOCKER_PERSIST_RESTIC_LOCK_WAIT") or REPOSITORY_LOCK_WAIT)
        except ValueError:
            raise ConfigError("DOCKER_PERSIST_RESTIC_LOCK_WAIT must be a number of seconds") from None

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def stop(self, process: subprocess.Popen[bytes], interrupted: Callable[[], None] = lambda: None) -> None:
        """Stop a restic this process started and no longer wants (see stop())."""
        if process.poll() is None:
            self.stale_locks_possible = True
        stop(process, interrupted=interrupted)

    def run(self, *args: str, what: str, wait: float | None = None) -> bytes:
        """Run `restic ARGS`; return its standard output. Wait for a repository another restic holds
        (a prune; or any other run, for a command that locks exclusively, as forget does) up to `wait`
        seconds, removing the locks of killed restics once; raise ResticError on failure."""
        deadline = time.monotonic() + (self.lock_wait if wait is None else wait)
        unlocked = False
        while True:
            try:
                result = subprocess.run(self.argv(*args), capture_output=True, env=self.env,
                                        stdin=subprocess.DEVNULL, check=False)  # fmt: skip
            except OSError as error:
                raise ResticError(f"{what}: cannot run {self.binary}: {error}") from error
            if result.returncode == 0:
                return result.stdout
            stderr = result.stderr.decode(errors="replace")
            if not is_locked(stderr) or (unlocked and time.monotonic() > deadline):
                raise self.error(what, result.returncode, stderr)
            if not unlocked:  # a lock left by a killed restic: `unlock` removes only stale ones
                unlocked = True
                subprocess.run(self.argv("unlock"), capture_output=True, env=self.env,
                               stdin=subprocess.DEVNULL, check=False)  # fmt: skip
                continue
            time.sleep(1.0)

    def error(self, what: str, code: int, stderr: str) -> ResticError:
        """Return the error for restic's exit `code` and `stderr`, saying what to do."""
        where = f"restic repository {masked(self.repository)}"
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        said = " | ".join(lines[-3:]) or f"exit {code}"
        if "wrong password" in stderr or "no key found" in stderr:
            return ResticError(f"{what}: wrong password for {where} (RESTIC_PASSWORD_FILE, RESTIC_PASSWORD_COMMAND, "
                               "RESTIC_PASSWORD or x-persist.store_password_file)")  # fmt: skip
        if "Is there a repository at the following location?" in stderr or "repository does not exist" in stderr:
            return ResticError(f"{what}: there is no {where}; create one with "
                               f"`docker persist store init {PREFIX}{masked(self.repository)}` ({said})")  # fmt: skip
        if is_locked(stderr):
            return ResticLockedError(f"{what}: {where} is locked by another restic: {said}")
        return ResticError(f"{what}: restic failed on {where}: {said}")


class ResticLockedError(ResticError, StoreLockedError):
    """Another restic holds the repository exclusively, for longer than we wait."""


def is_locked(stderr: str) -> bool:
    return "repository is already locked" in stderr or "unable to create lock" in stderr


class ResticStore:
    """Snapshots in a restic repository (see the module docstring)."""

    deduplicates = True

    def __init__(self, repository: str, environ: Mapping[str, str], password_file: str | None = None) -> None:
        if not repository:
            raise ConfigError("invalid store 'restic:': give a restic repository after restic:")
        self.restic = Restic(repository, environ, password_file)
        self.url = PREFIX + masked(repository)
        self.host = socket.gethostname()
        self._locks_dir = os.path.join(state_dir(environ), "locks")
        self._repository_key = hashlib.sha256(repository.encode()).hexdigest()[:16]
        # Manifests already read, by restic snapshot id: `snapshots` then runs one restic command, not one a
        # snapshot. Keyed by repository too, so that no other repository's snapshot can answer.
        self._manifest_cache = os.path.join(cache_dir(environ), "restic", self._repository_key)
        self._held: dict[str, int] = {}
        self._live: dict[tuple[str, str], str] = {}  # (project, name) -> run token of a live pending snapshot
        # While this store holds a project's lock, no other run on this machine writes to it: its listing
        # is read once and kept up to date with our own writes, which saves a restic run (its key
        # derivation alone costs half a second) per step.
        self._cache: dict[str, list[_Entry]] = {}
        # Outside the lock, one command reads a listing many times in a row (a catalog reads every
        # manifest): a listing is reused for READ_CACHE_SECONDS, and forgotten at our own writes. With it, the
        # project's generation on this machine when it was read (see _generation).
        self._read_cache: dict[str | None, tuple[float, list[_Entry], str]] = {}

    # --- reading the repository ------------------------------------------------------------------

    def _entries(self, project: str | None = None) -> list[_Entry]:
        if project is not None and project in self._cache:
            return list(self._cache[project])
        read = self._read_cache.get(project)
        if read is not None and time.monotonic() - read[0] < READ_CACHE_SECONDS:
            return list(read[1])
        generation = self._generation(project) if project is not None else ""
        entries = self._list(project)
        self._read_cache[project] = (time.monotonic(), entries, generation)
        return list(entries)

    def _generation_path(self, project: str) -> str:
        return os.path.join(self._locks_dir, f"restic-{self._repository_key}-{project}.generation")

    def _generation(self, project: str) -> str:
        """Return the project's generation on this machine: a token every holder of its lock replaces when it
        lets go (after its writes). The same token before a listing and at the lock means no run on this
        machine wrote to the project in between."""
        try:
            with open(self._generation_path(project), "rb") as handle:
                return handle.read(64).decode(errors="replace")
        except OSError:
            return ""

    def _next_generation(self, project: str) -> None:
        path = self._generation_path(project)
        try:
            write_atomically(path, secrets.token_hex(16).encode(), durable=False)
        except OSError as error:  # then the next lock finds a stale token: remove it, so that it lists again
            log.warning("cannot record the generation of project %r (%s): the next run lists it again", project, error)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _list(self, project: str | None) -> list[_Entry]:
        tags = TAG + (f",project={project}" if project else "")
        what = f"listing the snapshots of project {project!r}" if project else "listing the projects"
        out = self.restic.run("snapshots", "--json", "--tag", tags, what=what)
        try:
            listed = json.loads(out or b"[]") or []
        except ValueError as error:
            raise ResticError(f"{what}: restic's answer is not JSON: {error}") from error
        entries = []
        for item in listed:
            found = dict(_tag(t) for t in item.get("tags") or ())
            paths = item.get("paths") or [""]
            if not {"project", "snapshot", "part", "run"} <= found.keys() or len(paths) != 1:
                continue
            entries.append(_Entry(item["id"], str(item.get("time", "")), str(item.get("hostname", "")),
                                  found["project"], found["snapshot"], found["part"], found["run"], paths[0],
                                  "empty" in found, found.get("root", "")))  # fmt: skip
        return entries

    @staticmethod
    def _manifests(entries: Sequence[_Entry]) -> dict[str, _Entry]:
        """Return the published snapshots' manifests by name: the newest, if a replaced one is left."""
        newest: dict[str, _Entry] = {}
        for entry in sorted(entries, key=lambda e: (_when(e.time), e.id)):
            if entry.part == MANIFEST_FILE and is_snapshot_name(entry.name):
                newest[entry.name] = entry
        return newest

    def _published(self, project: str, name: str) -> tuple[_Entry, list[_Entry]]:
        check_project_name(project)
        check_snapshot_name(name)
        entries = self._entries(project)
        manifests = self._manifests(entries)
        manifest = manifests.get(name)
        if manifest is None:
            raise not_found(project, name, sorted(manifests))
        parts = [e for e in entries if e.name == name and e.run == manifest.run and e.part != MANIFEST_FILE]
        return manifest, parts

    def list_snapshots(self, project: str) -> list[str]:
        """Return the names of the project's published snapshots (those with a manifest), sorted."""
        return sorted(self._manifests(self._entries(check_project_name(project))))

    def list_projects(self) -> list[str]:
        """Return the names of the projects that have published snapshots, sorted."""
        return sorted({e.project for e in self._manifests_all(self._entries())})

    @staticmethod
    def _manifests_all(entries: Sequence[_Entry]) -> list[_Entry]:
        return [e for e in entries if e.part == MANIFEST_FILE and is_snapshot_name(e.name) and _project_ok(e.project)]

    def read_manifest(self, project: str, name: str) -> bytes:
        """Return a manifest's bytes: from this machine's cache when read before (a restic snapshot never
        changes, and its id is the hash of what it holds), else with `restic dump`."""
        manifest, _ = self._published(project, name)
        cached = self._cached_manifest(manifest.id)
        if cached is not None:
            return cached
        written = self._cached_manifest(f"{manifest.id[:8]}-{manifest.run}")  # one this machine wrote
        if written is not None:
            self._cache_manifest(manifest.id, written)
            return written
        with self._dump(manifest, f"reading the manifest of snapshot {name!r}") as stream:
            content = stream.read()
        self._cache_manifest(manifest.id, content)
        return content

    def _index_cache_path(self, project: str, part: str, sha256: str) -> str:
        return os.path.join(self._manifest_cache, f"index-{project}-{part}-{sha256}")

    def keep_index(self, project: str, part: str, content: bytes) -> None:
        """Keep the file index just written for `part` on this machine, in place of the last one kept for it."""
        sha256 = hashlib.sha256(content).hexdigest()
        with contextlib.suppress(OSError):
            prefix = f"index-{project}-{part}-"
            for old in os.listdir(self._manifest_cache):
                if old.startswith(prefix) and old != f"{prefix}{sha256}":
                    os.unlink(os.path.join(self._manifest_cache, old))
        self._cache_file(self._index_cache_path(project, part, sha256), content)

    def kept_index(self, project: str, part: str, sha256: str) -> bytes | None:
        """Return the file index of `part` kept on this machine, if it is the one with this sha256; else None."""
        try:
            with open(self._index_cache_path(project, part, sha256), "rb") as handle:
                content = handle.read()
        except OSError:
            return None
        return content if hashlib.sha256(content).hexdigest() == sha256 else None

    def _manifest_cache_path(self, key: str) -> str | None:
        """A manifest's cache file: by its restic snapshot id, or for one this machine wrote (restic says only
        the short id) by the short id and its run token, which a listed snapshot must both match."""
        if not re.fullmatch(r"[0-9a-f]{64}|[0-9a-f]{8}-[0-9a-f]{16}", key):
            return None
        return os.path.join(self._manifest_cache, f"{key}.json")

    def _cached_manifest(self, snapshot_id: str) -> bytes | None:
        path = self._manifest_cache_path(snapshot_id)
        if path is None:
            return None
        try:
            with open(path, "rb") as handle:
                digest, _, content = handle.read().partition(b"\n")
        except OSError:
            return None
        # A file the disk damaged is read from the repository again.
        return content if hashlib.sha256(content).hexdigest().encode() == digest else None

    def _cache_manifest(self, snapshot_id: str, content: bytes) -> None:
        """Keep a manifest read from the repository; a cache that cannot be written is only slower."""
        path = self._manifest_cache_path(snapshot_id)
        if path is not None:
            self._cache_file(path, hashlib.sha256(content).hexdigest().encode() + b"\n" + content)

    @staticmethod
    def _cache_file(path: str, content: bytes) -> None:
        """Write a cache file; one that cannot be written is only slower."""
        with contextlib.suppress(OSError):
            write_atomically(path, content, durable=False)

    def open_part(self, project: str, name: str, filename: str) -> BinaryIO:
        check_part_name(filename)
        _, parts = self._published(project, name)
        part = next((p for p in reversed(parts) if p.part == filename), None)
        if part is None:
            raise StoreError(f"snapshot {name!r} of project {project!r} has no part {filename!r} in {self.url}")
        if part.empty:
            return io.BytesIO()
        if is_tree_part(filename):
            return self._staged_tree(part, f"reading {filename} of snapshot {name!r}")
        return self._dump(part, f"reading {filename} of snapshot {name!r}")

    def _tree_entry(self, project: str, name: str, filename: str) -> _Entry:
        _, parts = self._published(project, name)
        part = next((p for p in reversed(parts) if p.part == filename), None)
        if part is None or not is_tree_part(filename):
            raise StoreError(f"snapshot {name!r} of project {project!r} has no folder part {filename!r} in {self.url}")
        return part

    def restore_tree(self, project: str, name: str, filename: str, directory: str) -> None:
        """Restore a tree part (a volume's files, as `restic backup .` saw them) into `directory` with `restic
        restore`: owners, modes, mtimes, hard links, symlinks, xattrs. The folder's own mode and owner are the
        caller's to set (restic keeps none for the folder it was run in)."""
        check_part_name(filename)
        entry = self._tree_entry(project, name, filename)
        self.restic.run("restore", entry.id, "--target", directory,
                        what=f"restoring {filename} of snapshot {name!r}")  # fmt: skip

    def _staged_tree(self, entry: _Entry, what: str) -> BinaryIO:
        """Return a tree part as a tar stream (entries `./...`, GNU tar's as on the fast path): restic restores it
        into a private folder under $TMPDIR, which goes when the reader is closed. It needs the space of the
        volume; a restore into a volume on this machine restores straight into it instead (restore_tree)."""
        from docker_persist.host.process import find_gnu_tar, tar_create

        tar = find_gnu_tar()
        if tar is None:
            raise StoreError(f"{what}: reading a folder part of a restic store as a tar stream needs GNU tar")
        try:
            mode, uid, gid = (int(n, 8 if i == 0 else 10) for i, n in enumerate(entry.root.split("-")))
        except ValueError:
            raise StoreError(f"{what}: restic snapshot {entry.id[:8]} has no valid `root=` tag") from None
        staging = tempfile.mkdtemp(prefix="docker-persist-restic-")
        try:
            self.restic.run("restore", entry.id, "--target", staging, what=what)
            os.chown(staging, uid, gid)
            os.chmod(staging, mode & 0o7777)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cast(BinaryIO, _StagedReader(tar_create(tar, staging, self.restic.env), staging))

    def _dump(self, entry: _Entry, what: str) -> BinaryIO:
        argv = self.restic.argv("dump", entry.id, entry.path)
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=self.restic.env)  # fmt: skip
        except OSError as error:
            raise ResticError(f"{what}: cannot run {self.restic.binary}: {error}") from error
        return cast(BinaryIO, _DumpReader(process, self.restic, what))

    # --- the lock ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, project: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the project's lock on this machine for the block (a flock, gone with the process), waiting up
        to `timeout` seconds; re-entrant within one store. Taking it removes what killed runs left in the
        repository. Raise StoreLockedError if another process still holds it after `timeout` seconds."""
        check_project_name(project)
        if self._held.get(project):
            self._held[project] += 1
            try:
                yield
            finally:
                self._held[project] -= 1
            return
        os.makedirs(self._locks_dir, mode=0o700, exist_ok=True)
        path = os.path.join(self._locks_dir, f"restic-{self._repository_key}-{project}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "another process"
                        raise StoreLockedError(
                            f"project {project!r} in {self.url}: {holder} holds the lock on this machine; "
                            "wait for it to finish"
                        ) from None
                    time.sleep(LOCK_POLL_SECONDS)
            # A holder that ended normally emptied the file: one that says who held it was killed, and
            # the restic it ran may have left its own lock in the repository.
            killed = bool(os.pread(fd, 100, 0).strip())
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            self._held[project] = 1
            try:
                if killed:
                    self.restic.run("unlock", what="removing the locks a killed restic left (restic unlock)", wait=0)
                    # and once more at the release: a killed restic not yet reaped (a zombie) still counts as
                    # running, and restic leaves its lock until then
                    self.restic.stale_locks_possible = True
                self._remove_leftovers(project, reuse=not killed)
                yield
            finally:
                del self._held[project]
                self._cache.pop(project, None)
                self._next_generation(project)
                if self.restic.stale_locks_possible:  # of a restic stopped (or killed) while it locked: gone now
                    self.restic.stale_locks_possible = False
                    with contextlib.suppress(StoreError):
                        self.restic.run("unlock", what="removing the lock of a restic stopped early", wait=0)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def _require_lock(self, project: str) -> None:
        if not self._held.get(project):
            raise RuntimeError(f"writing to project {project!r} needs the lock: call within store.lock()")

    def _remove_leftovers(self, project: str, reuse: bool) -> None:
        """Forget what killed runs left: parts of a run with no manifest, and manifests replaced by newer ones.

        The listing kept while the lock is held starts here: fresh from restic, or (with `reuse`: the last holder
        let go normally) the one this command read just before, if no run on this machine has written since.
        """
        read = self._read_cache.get(project)
        if (reuse and read is not None and time.monotonic() - read[0] < READ_CACHE_SECONDS
                and read[2] == self._generation(project)):  # fmt: skip
            entries = list(read[1])
        else:
            entries = self._list(project)
        manifests = self._manifests(entries)
        live = set(self._live.values())
        now = datetime.datetime.now(datetime.timezone.utc)
        stale = []
        for entry in entries:
            kept = manifests.get(entry.name)
            if kept is not None and (entry.id == kept.id or (entry.run == kept.run and entry.part != MANIFEST_FILE)):
                continue
            if entry.run in live:
                continue
            if entry.host != self.host and now - _when(entry.time) < FOREIGN_LEFTOVER_AGE:
                continue  # another machine's run may still be writing it
            stale.append(entry.id)
        self._cache[project] = entries
        if stale:
            try:  # forget locks the repository exclusively: while another restic writes to it, not now
                self.forget(project, stale, f"removing what an earlier run left in project {project!r}", wait=0)
            except ResticLockedError as error:
                log.info("left for later: %s", error)

    def forget(self, project: str, ids: Sequence[str], what: str, wait: float | None = None) -> None:
        """`restic forget` the restic snapshots `ids` of the project."""
        self._read_cache.clear()
        self.restic.run("forget", *ids, what=what, wait=wait)
        if project in self._cache:
            self._cache[project] = [e for e in self._cache[project] if e.id not in ids]

    def recorded(
        self,
        project: str,
        name: str,
        part: str,
        run: str,
        snapshot_id: str,
        empty: bool,
        path: str = "",
        root: str = "",
    ) -> None:
        """Note a restic snapshot we just made in the kept listing (restic's full id is not needed: forget
        and dump take the short one)."""
        self._read_cache.clear()
        if project in self._cache:
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            path = path or f"{ROOT}/{project}/{name}/{part}"
            entry = _Entry(snapshot_id, now, self.host, project, name, part, run, path, empty, root)
            self._cache[project].append(entry)

    # --- writing -----------------------------------------------------------------------------------

    def begin(self, project: str, name: str) -> _ResticPending:
        check_project_name(project)
        check_snapshot_name(name)
        self._require_lock(project)
        if (project, name) in self._live or name in self.list_snapshots(project):
            raise snapshot_exists(project, name)
        run = secrets.token_hex(8)
        self._live[(project, name)] = run
        return _ResticPending(self, project, name, run)

    def backup_process(
        self,
        project: str,
        name: str,
        part: str,
        run: str,
        extra: Sequence[str] = (),
        directory: str | None = None,
        parent: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `restic backup` of one part: its standard input, or with `directory` the files in that folder
        (run there on `.`, so that the snapshot holds them at its root, and restic takes the last snapshot of
        the same folder as its parent: unchanged files are not read again)."""
        tags = [TAG, f"project={project}", f"snapshot={name}", f"part={part}", f"run={run}", *extra]
        common = ("--host", self.host, "--json", "--quiet", "--tag", ",".join(tags))
        if directory is None:
            source: tuple[str, ...] = ("--stdin", "--stdin-filename", f"{ROOT.lstrip('/')}/{project}/{name}/{part}")
        else:
            source = (".", *(("--parent", parent) if parent else ()))
        try:
            return subprocess.Popen(self.restic.argv("backup", *source, *common), cwd=directory,
                                    stdin=subprocess.PIPE if directory is None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.restic.env)  # fmt: skip
        except OSError as error:
            raise ResticError(
                f"writing {part} of snapshot {name!r}: cannot run {self.restic.binary}: {error}"
            ) from error

    def manifest_writer(self, project: str, name: str, run: str, tags: Sequence[str]) -> _PartWriter:
        where = (project, name, MANIFEST_FILE, run)
        return _PartWriter(self, f"writing the manifest of snapshot {name!r}", where, tags)

    def write_manifest(
        self, project: str, name: str, run: str, manifest: bytes, primed: _PartWriter | None = None
    ) -> None:
        """Write a manifest as a restic snapshot: through `primed` (a writer started early) if its tags are the
        manifest's, else a new run."""
        tags = _manifest_tags(manifest)
        if primed is not None and primed.tags != tags:
            primed.kill()
            primed = None
        writer = primed or self.manifest_writer(project, name, run, tags)
        try:
            writer.write(manifest)
        finally:
            writer.close()
        if writer.snapshot_id:  # restic told only its short id: the full one is learnt at the next listing
            self._cache_manifest(f"{writer.snapshot_id[:8]}-{run}", manifest)

    def replace_manifest(self, project: str, name: str, manifest: bytes) -> None:
        """Write the new manifest as a newer restic snapshot of the same run, then forget the old one."""
        check_project_name(project)
        check_snapshot_name(name)
        self._require_lock(project)
        old, _ = self._published(project, name)
        self.write_manifest(project, name, old.run, manifest)
        self.forget(project, [old.id], f"removing the replaced manifest of snapshot {name!r}")

    def delete(self, project: str, name: str) -> None:
        """Forget the snapshot: its manifest first (it disappears at once), then its parts. Space comes back
        with `reclaim` (restic prune)."""
        check_project_name(project)
        check_snapshot_name(name)
        self._require_lock(project)
        manifest, parts = self._published(project, name)
        manifests = [e.id for e in self._entries(project) if e.name == name and e.part == MANIFEST_FILE]
        self.forget(project, list(dict.fromkeys([manifest.id, *manifests])), f"removing snapshot {name!r}")
        if parts:
            self.forget(project, [p.id for p in parts], f"removing the parts of snapshot {name!r}")

    def reclaim(self) -> None:
        """Free the space of forgotten snapshots: `restic prune` (it locks the repository exclusively)."""
        self.restic.run("prune", what="freeing the space of removed snapshots (restic prune)")

    def init(self) -> None:
        """Create the repository (`restic init`). Raise ResticError if it exists or cannot be made."""
        self.restic.run("init", what="creating the repository")

    def check(self, read_data_subset: str | None = None) -> str:
        """Run `restic check` (with `--read-data-subset`, if given); return restic's report."""
        args = ["check", *([f"--read-data-subset={read_data_subset}"] if read_data_subset else [])]
        return self.restic.run(*args, what="checking the repository (restic check)").decode(errors="replace")


class _ResticPending:
    """A snapshot being written: one `restic backup --stdin` per part, the manifest last."""

    def __init__(self, store: ResticStore, project: str, name: str, run: str) -> None:
        self.store, self.project, self.name, self.run = store, project, name, run
        self.writers: dict[str, _PartWriter] = {}
        self.primed: dict[str, _PartWriter] = {}  # started by prime_part, not opened yet
        self.primed_manifest: _PartWriter | None = None
        self.finished = False

    def tree_parent(self, filename: str, directory: str) -> tuple[str, str] | None:
        """Return (snapshot name, restic id) of the newest published folder part `filename` of this project
        that restic made of `directory` on this machine, to be the next one's parent; or None."""
        entries = self.store._entries(self.project)
        manifests = self.store._manifests(entries)
        folder = os.path.realpath(directory)  # as restic records it: /proc/PID/root/x is /x
        found = [e for e in entries if e.part == filename and e.host == self.store.host and e.path == folder
                 and e.name in manifests and manifests[e.name].run == e.run]  # fmt: skip
        if not found:
            return None
        newest = max(found, key=lambda e: (_when(e.time), e.id))
        return newest.name, newest.id

    def start_tree(
        self, filename: str, directory: str, root: tuple[int, int, int], parent: str | None = None
    ) -> _TreeWriter:
        """Start backing up the files of `directory` (a volume's folder on this machine, its root's (mode, uid,
        gid) given) as the part `filename` (`<key>.tree`), against the restic snapshot `parent` if given (else
        restic picks one); the returned writer's close() waits for it, then its `summary` holds restic's."""
        self._check_open()
        check_part_name(filename)
        if not is_tree_part(filename):
            raise ValueError(f"part {filename!r} is not a folder part (<key>{TREE_SUFFIX})")
        if filename in self.writers:
            raise ValueError(f"part {filename!r} was opened already")
        key = filename.split(".", 1)[0]
        mode, uid, gid = root
        tags = (f"volume={key}", f"root={mode & 0o7777:o}-{uid}-{gid}")
        writer = _TreeWriter(self.store, f"backing up {directory} as {filename} of snapshot {self.name!r}",
                             (self.project, self.name, filename, self.run), tags, directory, parent)  # fmt: skip
        self.writers[filename] = writer
        return writer

    def _check_open(self) -> None:
        if self.finished:
            raise ValueError(f"snapshot {self.name!r} is already published or aborted")

    def _part_writer(self, filename: str) -> _PartWriter:
        key = filename.split(".", 1)[0]
        extra = (f"volume={key}",) if ".tar" in filename else ()
        return _PartWriter(self.store, f"writing {filename} of snapshot {self.name!r}",
                           (self.project, self.name, filename, self.run), extra)  # fmt: skip

    def prime_part(self, filename: str) -> None:
        """Start now the restic run of a part that will be written soon: its key derivation (half a second)
        and index load overlap the work before it. open_part(filename) then returns it."""
        self._check_open()
        check_part_name(filename)
        if filename in self.writers or filename in self.primed:
            return
        writer = self._part_writer(filename)
        self.primed[filename] = writer
        writer.prime()

    def prime_manifest(self, reason: str, pinned: bool) -> None:
        """Start now the restic run that will write the manifest (tagged with this reason and pin): its half
        second of key derivation then overlaps the backup. publish() uses it, or another if the tags differ."""
        self._check_open()
        if self.primed_manifest is None:
            tags = _manifest_tags(json.dumps({"reason": reason, "pinned": pinned}).encode())
            self.primed_manifest = self.store.manifest_writer(self.project, self.name, self.run, tags)
            self.primed_manifest.prime()

    def open_part(self, filename: str) -> BinaryIO:
        self._check_open()
        check_part_name(filename)
        if filename in self.writers:
            raise ValueError(f"part {filename!r} was opened already")
        writer = self.primed.pop(filename, None) or self._part_writer(filename)
        self.writers[filename] = writer
        return cast(BinaryIO, writer)

    def publish(self, manifest: bytes) -> None:
        self._check_open()
        try:
            for writer in self.writers.values():
                writer.close()
            for writer in self.primed.values():  # primed, never opened: no part
                writer.kill()
            if self.name in self.store.list_snapshots(self.project):
                raise snapshot_exists(self.project, self.name)
            primed, self.primed_manifest = self.primed_manifest, None
            self.store.write_manifest(self.project, self.name, self.run, manifest, primed)
        except BaseException:
            self.abort()
            raise
        self.finished = True
        self.store._live.pop((self.project, self.name), None)

    def abort(self) -> None:
        if self.finished:
            return
        self.finished = True
        ids = []
        manifest = [self.primed_manifest] if self.primed_manifest is not None else []
        for writer in [*self.writers.values(), *self.primed.values(), *manifest]:
            writer.kill()
            if writer.snapshot_id:
                ids.append(writer.snapshot_id)
        with contextlib.suppress(StoreError):  # what stays is forgotten by the next lock
            if ids:
                self.store.forget(self.project, ids, f"removing the parts of aborted snapshot {self.name!r}")
        self.store._live.pop((self.project, self.name), None)


class _PartWriter:
    """The standard input of one `restic backup --stdin`, started at the first write; close() waits for the
    snapshot and keeps its id. A part closed with nothing written is one byte tagged `empty` (restic cannot
    back up an empty standard input)."""

    def __init__(
        self, store: ResticStore, what: str, where: tuple[str, str, str, str], tags: Sequence[str] = ()
    ) -> None:
        self.store, self.what, self.where, self.tags = store, what, where, tuple(tags)
        self.snapshot_id: str | None = None
        self.summary: dict[str, Any] = {}
        self.closed = False
        self._process: subprocess.Popen[bytes] | None = None
        self._output: dict[str, bytes] = {}
        self._readers: list[threading.Thread] = []
        self._started_tags: tuple[str, ...] = ()
        self._written = False
        # A file index is kept on this machine too (see ResticStore.kept_index): the next backup of an
        # unchanged folder writes it again without a restic dump.
        self._kept: bytearray | None = bytearray() if where[2].endswith(INDEX_SUFFIX) else None

    def prime(self) -> None:
        """Start restic now (see _ResticPending.prime_part)."""
        if self._process is None:
            self._start(self.tags)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._start(self.tags)
        assert self._process is not None
        return self._process

    def _start(self, tags: Sequence[str]) -> None:
        project, name, part, run = self.where
        self._started_tags = tuple(tags)
        self._process = process = self.store.backup_process(project, name, part, run, tags)
        self._readers = [self._drain("stdout", process.stdout), self._drain("stderr", process.stderr)]

    def _drain(self, key: str, stream: IO[bytes] | None) -> threading.Thread:
        def read() -> None:
            assert stream is not None
            self._output[key] = stream.read()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed part")
        if not data:
            return 0
        self._written = True
        if self._kept is not None:
            self._kept += data
            if len(self._kept) > KEPT_INDEX_BYTES:
                self._kept = None
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
        except BrokenPipeError:
            self._finish()
            raise self._failed() from None
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self._written and self._process is not None:  # primed, then nothing came: an empty part after all
            self.store.restic.stop(self._process)
            self._finish()
            self._process = None
        if self._process is None:
            self._start((*self.tags, "empty"))
            assert self.process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.write(b"\0")
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        self._finish()
        if self.process.returncode != 0:
            raise self._failed()
        self._read_summary()
        if self.snapshot_id is None:
            raise ResticError(f"{self.what}: restic made no snapshot (no summary in its output)")
        self.store.recorded(*self.where, self.snapshot_id, "empty" in self._started_tags)
        if self._kept:
            self.store.keep_index(self.where[0], self.where[2], bytes(self._kept))

    def kill(self) -> None:
        """Stop restic before it makes a snapshot (abort), unless it already made one."""
        if self.closed:
            return
        self.closed = True
        if self._process is not None:
            self.store.restic.stop(self._process)
            self._finish()

    def _read_summary(self) -> None:
        """Keep restic's summary (its last JSON message) and the id of the snapshot it made, if any."""
        for line in self._output.get("stdout", b"").splitlines():
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and message.get("message_type") == "summary":
                    self.snapshot_id = str(message.get("snapshot_id") or "") or None
                    self.summary = message

    def _finish(self) -> None:
        self.process.wait()
        for thread in self._readers:
            thread.join()

    def _failed(self) -> ResticError:
        stderr = self._output.get("stderr", b"").decode(errors="replace")
        return self.store.restic.error(self.what, self.process.returncode or 0, stderr)


class _TreeWriter(_PartWriter):
    """One `restic backup .` in a volume's folder, started at once; close() waits for its snapshot. A run that
    could not read every file (restic's exit 3: it still made a snapshot) fails, its snapshot forgotten at abort."""

    def __init__(
        self,
        store: ResticStore,
        what: str,
        where: tuple[str, str, str, str],
        tags: Sequence[str],
        directory: str,
        parent: str | None = None,
    ) -> None:
        super().__init__(store, what, where, tags)
        self.directory, self.parent = directory, parent
        self._start(tags)

    def _start(self, tags: Sequence[str]) -> None:
        project, name, part, run = self.where
        self._started_tags = tuple(tags)
        self._process = process = self.store.backup_process(project, name, part, run, tags, self.directory,
                                                            self.parent)  # fmt: skip
        self._readers = [self._drain("stdout", process.stdout), self._drain("stderr", process.stderr)]

    def write(self, data: bytes | bytearray | memoryview) -> int:
        raise ValueError("a folder part is read by restic, not written")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._finish()
        self._read_summary()  # first: a run that failed may still have made a snapshot, for abort to forget
        if self.process.returncode != 0:
            raise self._failed()
        if self.snapshot_id is None:
            raise ResticError(f"{self.what}: restic made no snapshot (no summary in its output)")
        root = dict(_tag(t) for t in self.tags).get("root", "")
        self.store.recorded(*self.where, self.snapshot_id, False, os.path.realpath(self.directory), root)

    def kill(self) -> None:
        if self.closed:
            return
        self.closed = True
        assert self._process is not None
        self.store.restic.stop(self._process)
        self._finish()


class _StagedReader(ChunkReader):
    """The tar stream of a staged folder; closing it stops tar and removes the folder."""

    def __init__(self, chunks: Generator[bytes, None, None], staging: str) -> None:
        super().__init__(chunks)
        self._tar, self._staging = chunks, staging

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):  # tar stopped early says so: the reader chose to stop
                self._tar.close()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
            super().close()


class _DumpReader:
    """restic dump's standard output; at its end restic's exit status is checked: a failure is never a short read."""

    def __init__(self, process: subprocess.Popen[bytes], restic: Restic, what: str) -> None:
        self.process, self.restic, self.what = process, restic, what
        self.closed = False
        self._stderr = b""
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        self._stderr = self.process.stderr.read()

    def __enter__(self) -> _DumpReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed part")
        assert self.process.stdout is not None
        data = self.process.stdout.read(size) if size >= 0 else self.process.stdout.read()
        if (not data and size != 0) or size < 0:
            self.process.wait()
            self._reader.join()
            if self.process.returncode != 0:
                raise self.restic.error(self.what, self.process.returncode, self._stderr.decode(errors="replace"))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        assert self.process.stdout is not None
        self.restic.stop(self.process, interrupted=self.process.stdout.close)  # one blocked writing to us: EPIPE
        self._reader.join()


def stop(
    process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS, interrupted: Callable[[], None] = lambda: None
) -> None:
    """Stop a restic this process started and no longer wants: SIGINT, which restic answers by removing its lock
    from the repository (restic 0.14 leaves it on SIGTERM or SIGKILL, and the next exclusive command, a `restic
    check` or `prune` by hand included, then fails until someone runs `restic unlock`); SIGKILL only if it has
    not ended after `grace` seconds. `interrupted` runs after the signal, before the wait (closing a pipe restic
    may be blocked on). Waits for it to end."""
    import signal

    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
    interrupted()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
    process.wait()


def is_tree_part(filename: str) -> bool:
    """Return True for a folder part (`<key>.tree`): a volume's files backed up by restic itself."""
    return filename.endswith(TREE_SUFFIX)


def _tag(tag: str) -> tuple[str, str]:
    key, _, value = tag.partition("=")
    return key, value


def _project_ok(project: str) -> bool:
    try:
        check_project_name(project)
    except ConfigError:
        return False
    return True


def _when(text: str) -> datetime.datetime:
    """Parse restic's RFC 3339 time (nanoseconds, any offset); an unreadable one is very old."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if match is None:
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    fraction = (match.group(2) or "").ljust(6, "0")[:6]
    offset = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.datetime.fromisoformat(f"{match.group(1)}.{fraction}{offset}")


def _manifest_tags(manifest: bytes) -> tuple[str, ...]:
    """Return the tags a manifest adds for someone reading the repository with restic: its reason and pin.

    The store never depends on them (manifests are any bytes to it), so one that is not JSON adds none.
    """
    try:
        document = json.loads(manifest)
    except ValueError:
        return ()
    if not isinstance(document, dict):
        return ()
    tags = []
    reason = document.get("reason")
    if isinstance(reason, str) and reason and re.fullmatch(r"[A-Za-z0-9._:-]+", reason):
        tags.append(f"reason={reason}")
    if document.get("pinned") is True:
        tags.append("pinned")
    return tuple(tags)


def open_restic_store(url: str, environ: Mapping[str, str], password_file: str | None = None) -> ResticStore:
    """Return the ResticStore of a `restic:REPOSITORY` URL. Raise ConfigError for a bad one, or no restic."""
    return ResticStore(url[len(PREFIX) :], environ, password_file)
