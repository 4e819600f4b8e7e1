"""What every snapshot store shares: the two protocols, the errors, and the rules for names.

Callers see two protocols, `Store` and `PendingSnapshot`, and get a store from
`docker_persist.store.open_store`, which picks the backend from an explicit registry. A store
moves bytes: it never parses a manifest (see core/manifest.py).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Sequence
from typing import BinaryIO, Protocol

from docker_persist.core.manifest import is_part_name
from docker_persist.errors import BusyError, ConfigError, PersistError, SnapshotNotFoundError

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
"""Compose's rule for project names."""


class StoreError(PersistError):
    """The store could not be read or written: full disk, permissions, a damaged snapshot."""


class StoreLockedError(StoreError, BusyError):
    """Another docker-persist process holds the project's lock in this store."""


class SnapshotExistsError(StoreError):
    """A snapshot with the name already exists in the project."""


def not_found(project: str, name: str, existing: Sequence[str]) -> SnapshotNotFoundError:
    """Return the error for a missing snapshot, suggesting the closest of the `existing` names."""
    message = f"no snapshot named {name!r} in project {project!r}"
    close = difflib.get_close_matches(name, existing, n=3, cutoff=0.6)
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif existing:
        message += "; `docker persist snapshots` lists its snapshots"
    else:
        message += "; the project has no snapshots yet (`docker persist backup` takes one)"
    return SnapshotNotFoundError(message)


def check_project_name(project: str) -> str:
    """Given a Compose project name, return it unchanged if it is valid.

    Raise ConfigError otherwise, so that no project name can reach outside the store's root.
    """
    if PROJECT_NAME.fullmatch(project) is None:
        raise ConfigError(
            f"invalid project name {project!r}: a Compose project name is lowercase letters, digits, "
            "'_' and '-', starting with a letter or digit"
        )
    return project


class PendingSnapshot(Protocol):
    """A snapshot being written: invisible until `publish`, gone without a trace after `abort`."""

    def open_part(self, filename: str) -> BinaryIO:
        """Return a stream to write the part `filename` (a plain name) into; close it when done.

        Raise StoreError if the name is not a plain file name or the part cannot be created.
        """
        ...

    def publish(self, manifest: bytes) -> None:
        """Flush and fsync the parts, write the manifest last, and make the snapshot visible at once.

        On any failure nothing becomes visible and the staged data is removed.
        Raise SnapshotExistsError if the name was taken meanwhile, StoreError for other failures.
        """
        ...

    def abort(self) -> None:
        """Remove everything staged. Calling it again, or after publish, does nothing."""
        ...


class Store(Protocol):
    """Where snapshots are kept. Names are checked before anything is touched."""

    url: str
    deduplicates: bool
    """True if the store finds what parts share itself (restic): parts are then written uncompressed."""

    def lock(self, project: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[None]:
        """Return a context that holds the project's exclusive lock, waiting up to `timeout` seconds.

        The lock goes away with the process, even after kill -9. Raise StoreLockedError on timeout.
        """
        ...

    def list_snapshots(self, project: str) -> list[str]:
        """Return the names of the project's published snapshots, sorted."""
        ...

    def list_projects(self) -> list[str]:
        """Return the names of the projects that have published snapshots, sorted."""
        ...

    def read_manifest(self, project: str, name: str) -> bytes:
        """Return the bytes of a snapshot's manifest. Raise SnapshotNotFoundError if there is no such snapshot."""
        ...

    def open_part(self, project: str, name: str, filename: str) -> BinaryIO:
        """Return a stream reading a part of a published snapshot.

        Raise SnapshotNotFoundError if there is no such snapshot, StoreError if the part is missing.
        """
        ...

    def begin(self, project: str, name: str) -> PendingSnapshot:
        """Start writing a snapshot, after removing what killed runs left behind. The caller holds the lock.

        Raise SnapshotExistsError if the name is taken, or being written (a pending snapshot of this
        store object): parts may be written in place (S3), so two writers of one name never overlap.
        """
        ...

    def replace_manifest(self, project: str, name: str, manifest: bytes) -> None:
        """Replace a snapshot's manifest atomically (e.g. to record a verification). The caller holds the lock.

        Raise SnapshotNotFoundError if there is no such snapshot.
        """
        ...

    def delete(self, project: str, name: str) -> None:
        """Remove a snapshot; it disappears atomically. The caller holds the lock.

        Raise SnapshotNotFoundError if there is no such snapshot.
        """
        ...

    def reclaim(self) -> None:
        """Free the space of the snapshots deleted so far, where `delete` leaves that for later (restic prune);
        otherwise do nothing. Called once after a retention pass."""
        ...


def check_part_name(filename: str) -> str:
    if not is_part_name(filename):
        raise StoreError(f"invalid file name {filename!r} for a part of a snapshot: expected a plain file name")
    return filename


def snapshot_exists(project: str, name: str) -> SnapshotExistsError:
    return SnapshotExistsError(
        f"a snapshot named {name!r} already exists in project {project!r}: choose another name, "
        "or remove the old one with `docker persist forget`"
    )
