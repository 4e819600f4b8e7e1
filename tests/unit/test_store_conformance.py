"""The store contract (tests/conformance.py) on the local store and on the in-memory fake.

Pure: a temporary folder, no engine. A flock conflicts between open file descriptions, so a second
LocalStore on the same folder is as good a rival as another process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_persist.store import LocalStore, Store
from docker_persist.store.memory import MemoryStore

pytest.register_assert_rewrite("tests.conformance")  # so that its asserts say what they compared
from tests.conformance import StoreContract  # noqa: E402


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        yield LocalStore(str(tmp_path / "store"))

    @pytest.fixture
    def rival(self, store: Store) -> Iterator[Store]:
        assert isinstance(store, LocalStore)
        yield LocalStore(str(store.root))

    def contents(self, store: Store) -> list[str]:
        """Every file and folder under the root (folders end in '/'), but the project folders and their locks."""
        assert isinstance(store, LocalStore)
        found = []
        for directory, folders, files in os.walk(store.root):
            relative = Path(directory).relative_to(store.root)
            for entry in folders:
                if relative.parts:  # a project folder is where the lock lives, not content
                    found.append(f"{relative / entry}/")
            for entry in files:
                if not (len(relative.parts) == 1 and entry == ".lock"):
                    found.append(str(relative / entry))
        return sorted(found)


class RivalMemoryStore(MemoryStore):
    """Another process on a MemoryStore's storage: it shares the published snapshots (not what its own
    pending snapshots stage, which a killed process takes with it), and the two locks exclude each
    other through `held_elsewhere`, the fake's model of a lock that another process holds."""

    def __init__(self, peer: MemoryStore) -> None:
        super().__init__()
        self.url = peer.url
        self.snapshots = peer.snapshots
        self._peer = peer

    @contextlib.contextmanager
    def lock(self, project: str, timeout: float = 0.0) -> Iterator[None]:
        if self._peer._held.get(project):
            self.held_elsewhere.add(project)
        else:
            self.held_elsewhere.discard(project)
        with super().lock(project, timeout):
            self._peer.held_elsewhere.add(project)
            try:
                yield
            finally:
                if self._held[project] == 1:
                    self._peer.held_elsewhere.discard(project)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        yield MemoryStore()

    @pytest.fixture
    def rival(self, store: Store) -> Iterator[Store]:
        assert isinstance(store, MemoryStore)
        yield RivalMemoryStore(store)

    def contents(self, store: Store) -> list[str]:
        """The published files, and the files that pending snapshots staged (under '(pending)')."""
        assert isinstance(store, MemoryStore)
        found = [
            f"{project}/{name}/{filename}"
            for project, snapshots in store.snapshots.items()
            for name, files in snapshots.items()
            for filename in files
        ]
        found += [
            f"{project}/{name}/(pending)/{filename}"
            for (project, name), files in store.pending.items()
            for filename in files
        ]
        return sorted(found)
