"""Snapshot stores, picked by URL from an explicit registry.

`base` holds the protocols (`Store`, `PendingSnapshot`), the errors and the name rules; `local`
is a folder of the local file system; `s3` an S3-compatible bucket, imported only for s3://
URLs; `restic` a restic repository (`restic:REPOSITORY`), imported only for those. The names of
`base` are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from docker_persist.errors import ConfigError
from docker_persist.store.base import (
    PROJECT_NAME,
    PendingSnapshot,
    SnapshotExistsError,
    Store,
    StoreError,
    StoreLockedError,
    check_part_name,
    check_project_name,
    not_found,
    snapshot_exists,
)
from docker_persist.store.local import SCHEME, LocalStore, default_store_path, open_local_store

__all__ = [
    "PROJECT_NAME",
    "STORE_BACKENDS",
    "LocalStore",
    "PendingSnapshot",
    "SnapshotExistsError",
    "Store",
    "StoreError",
    "StoreLockedError",
    "check_part_name",
    "check_project_name",
    "default_store_path",
    "not_found",
    "open_store",
    "snapshot_exists",
]


def _open_s3(url: str, environ: Mapping[str, str]) -> Store:
    from docker_persist.store.s3 import open_s3_store  # imported here: only s3:// commands load the S3 client

    return open_s3_store(url, environ)


STORE_BACKENDS: dict[str, Callable[[str, Mapping[str, str]], Store]] = {
    "file": open_local_store,
    "s3": _open_s3,
}
"""Store backends by URL scheme; a plain path is the "file" backend."""


def open_store(url: str | None, environ: Mapping[str, str], password_file: str | None = None) -> Store:
    """Given a store URL (None for the default) and the environment, return the Store.

    "file:///abs", "/abs" and "~/x" give a LocalStore, "s3://..." an S3Store, "restic:REPOSITORY" a
    ResticStore (opened with `password_file` when the environment gives restic no password).
    Raise ConfigError for anything else.
    """
    if url is None:
        return LocalStore(default_store_path(environ))
    if not url:
        raise ConfigError("invalid store '': give a path, a file:/// URL, an s3:// URL or restic:REPOSITORY")
    if url.startswith("restic:"):
        from docker_persist.store.restic import open_restic_store  # only restic: commands load it

        return open_restic_store(url, environ, password_file)
    match = SCHEME.match(url)
    scheme = match.group(1).lower() if match else "file"
    backend = STORE_BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{s}://" for s in STORE_BACKENDS)
        raise ConfigError(
            f"invalid store {url!r}: unknown scheme {scheme!r}; a store is a local path, restic:REPOSITORY "
            f"or one of {known}"
        )
    return backend(url, environ)
