"""An in-memory snapshot store with the contract of `store.base.Store`, for unit tests.

It keeps what a store keeps (published snapshots, their parts and manifests) and refuses what a
store refuses (a name taken, a snapshot that does not exist, a lock another process holds). A
pending snapshot is invisible until `publish`, which writes the manifest last. Tests reach past
the contract through `snapshots` (published: project -> name -> files), `held_elsewhere` (projects
whose lock another process holds) and `fail_next` (make the next call of a method raise).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from docker_persist.core.manifest import MANIFEST_FILE, check_snapshot_name
from docker_persist.store.base import (
    PendingSnapshot,
    StoreError,
    StoreLockedError,
    check_part_name,
    check_project_name,
    not_found,
    snapshot_exists,
)

Files = dict[str, bytes]


class MemoryStore:
    """Snapshots in memory: project -> snapshot name -> file name -> bytes."""

    deduplicates = False

    def __init__(self, name: str = "test") -> None:
        self.url = f"memory://{name}"
        self.snapshots: dict[str, dict[str, Files]] = {}
        self.held_elsewhere: set[str] = set()
        self.fail_next: dict[str, BaseException] = {}
        self.pending: dict[tuple[str, str], Files] = {}  # what pending snapshots have written so far
        self._held: dict[str, int] = {}

    def _call(self, name: str) -> None:
        error = self.fail_next.pop(name, None)
        if error is not None:
            raise error

    def _published(self, project: str, name: str) -> Files:
        check_project_name(project)
        check_snapshot_name(name)
        files = self.snapshots.get(project, {}).get(name)
        if files is None:
            raise not_found(project, name, self.list_snapshots(project))
        return files

    @contextlib.contextmanager
    def lock(self, project: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the project's lock (re-entrant); raise StoreLockedError if `held_elsewhere` still has it after
        `timeout` seconds."""
        self._call("lock")
        check_project_name(project)
        deadline = time.monotonic() + timeout
        while project in self.held_elsewhere:
            if time.monotonic() >= deadline:
                raise StoreLockedError(f"another docker-persist operation on project {project!r} holds the lock")
            time.sleep(0.01)
        self._held[project] = self._held.get(project, 0) + 1
        try:
            yield
        finally:
            self._held[project] -= 1

    def list_snapshots(self, project: str) -> list[str]:
        """Return the names of the project's published snapshots, sorted."""
        self._call("list_snapshots")
        return sorted(self.snapshots.get(check_project_name(project), {}))

    def list_projects(self) -> list[str]:
        """Return the projects that have published snapshots, sorted."""
        self._call("list_projects")
        return sorted(project for project, names in self.snapshots.items() if names)

    def read_manifest(self, project: str, name: str) -> bytes:
        """Return a snapshot's manifest bytes."""
        self._call("read_manifest")
        return self._published(project, name)[MANIFEST_FILE]

    def open_part(self, project: str, name: str, filename: str) -> BinaryIO:
        """Return a stream reading a part of a published snapshot."""
        self._call("open_part")
        files = self._published(project, name)
        data = files.get(check_part_name(filename))
        if data is None:
            raise StoreError(f"snapshot {name!r} of project {project!r} has no file {filename!r}")
        return io.BytesIO(data)

    def begin(self, project: str, name: str) -> PendingSnapshot:
        """Start writing a snapshot; the caller holds the lock."""
        self._call("begin")
        check_project_name(project)
        check_snapshot_name(name)
        if not self._held.get(project):
            raise RuntimeError("MemoryStore.begin needs the lock")
        if name in self.snapshots.get(project, {}) or (project, name) in self.pending:
            raise snapshot_exists(project, name)
        files: Files = {}
        self.pending[(project, name)] = files
        return _MemoryPending(self, project, name, files)

    def replace_manifest(self, project: str, name: str, manifest: bytes) -> None:
        """Replace a snapshot's manifest."""
        self._call("replace_manifest")
        self._published(project, name)[MANIFEST_FILE] = manifest

    def delete(self, project: str, name: str) -> None:
        """Remove a snapshot."""
        self._call("delete")
        self._published(project, name)
        del self.snapshots[project][name]

    def reclaim(self) -> None:
        """Nothing to do: a deleted snapshot's space is freed at once."""


class _Part(io.BytesIO):
    def __init__(self, files: Files, filename: str) -> None:
        super().__init__()
        self._files = files
        self._filename = filename

    def close(self) -> None:
        if not self.closed:
            self._files[self._filename] = self.getvalue()
        super().close()


class _MemoryPending:
    def __init__(self, store: MemoryStore, project: str, name: str, files: Files) -> None:
        self._store = store
        self._project = project
        self._name = name
        self._files = files
        self._parts: list[_Part] = []
        self._state = "open"

    def open_part(self, filename: str) -> BinaryIO:
        if self._state != "open":
            raise ValueError(f"snapshot {self._name!r} was {self._state} already")
        check_part_name(filename)
        if filename in self._files or any(p._filename == filename for p in self._parts):
            raise ValueError(f"the part {filename!r} of snapshot {self._name!r} was opened already")
        part = _Part(self._files, filename)
        self._parts.append(part)
        return part

    def publish(self, manifest: bytes) -> None:
        if self._state != "open":
            raise ValueError(f"snapshot {self._name!r} was {self._state} already")
        try:
            self._store._call("publish")
            for part in self._parts:
                part.close()
            published = self._store.snapshots.setdefault(self._project, {})
            if self._name in published:
                raise snapshot_exists(self._project, self._name)
            published[self._name] = {**self._files, MANIFEST_FILE: manifest}
        except BaseException:
            self.abort()
            raise
        self._state = "published"
        self._store.pending.pop((self._project, self._name), None)

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        for part in self._parts:
            part.close()
        self._store.pending.pop((self._project, self._name), None)


if TYPE_CHECKING:  # mypy checks that the fake keeps the whole protocol
    from docker_persist.store.base import Store

    def _conforms(store: MemoryStore) -> Store:
        return store
