"""`pin` and `unpin`: mark snapshots that no retention policy may forget, or unmark them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from docker_persist.actions.catalog import read_manifest
from docker_persist.actions.common import LOCK_TIMEOUT
from docker_persist.core.manifest import dump_manifest
from docker_persist.store import Store


def set_pinned(store: Store, project: str, names: Sequence[str], pinned: bool) -> list[tuple[str, bool]]:
    """Pin (or unpin) each snapshot named; return (name, changed) for each.

    Every name is read first, so an unknown or damaged one changes nothing. Raise
    SnapshotNotFoundError (with the closest names) or ManifestError.
    """
    with store.lock(project, timeout=LOCK_TIMEOUT):
        manifests = [read_manifest(store, project, name) for name in dict.fromkeys(names)]
        rows = []
        for manifest in manifests:
            changed = manifest.pinned != pinned
            if changed:
                store.replace_manifest(
                    project, manifest.name, dump_manifest(dataclasses.replace(manifest, pinned=pinned))
                )
            rows.append((manifest.name, changed))
    return rows
