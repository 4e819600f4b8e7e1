"""`forget`: apply a retention policy to the project's snapshots, per volume, or remove snapshots by name.

A policy never removes a pinned snapshot, the newest verified snapshot of a volume, nor a damaged
snapshot (one whose manifest cannot be read: what it holds is unknown, so it is reported, and
only removed by name). Every removal is atomic: a killed forget leaves a snapshot either there
or gone, and the store's clean-up removes what was half deleted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from docker_persist.actions.catalog import Catalog, Damaged, read_catalog
from docker_persist.actions.common import LOCK_TIMEOUT
from docker_persist.config.model import KeepPolicy
from docker_persist.core.dumps import volumes_held
from docker_persist.core.manifest import Manifest, check_snapshot_name
from docker_persist.core.retention import Decision, SnapshotFacts, plan_forget
from docker_persist.errors import UnsafeOperationError
from docker_persist.store import Store, not_found


@dataclasses.dataclass(frozen=True)
class ForgetResult:
    """Every decision (newest first), and the damaged snapshots the policy left alone."""

    decisions: tuple[Decision, ...]
    damaged: tuple[Damaged, ...]


def snapshot_facts(manifest: Manifest) -> SnapshotFacts:
    """Return what retention needs to know of a snapshot."""
    last = manifest.last_verification
    return SnapshotFacts(
        name=manifest.name,
        created=manifest.created,
        # A dump stands for its volume: retention counts it as a copy of that volume.
        volumes=volumes_held(manifest),
        automatic=manifest.automatic,
        pinned=manifest.pinned,
        verified=last is not None and last.ok,
    )


def plan_catalog(catalog: Catalog, policy: KeepPolicy) -> list[Decision]:
    """Return the decisions of a policy over the readable snapshots of a catalog (nothing is removed)."""
    return plan_forget([snapshot_facts(m) for m in catalog.manifests], policy)


def forget(store: Store, project: str, policy: KeepPolicy, dry_run: bool) -> ForgetResult:
    """Apply a retention policy to the project's snapshots, per volume; with dry_run remove nothing.

    Raise ConfigError for a policy that keeps nothing.
    """
    with store.lock(project, timeout=LOCK_TIMEOUT):
        catalog = read_catalog(store, project)
        decisions = plan_catalog(catalog, policy)
        if not dry_run:
            removed = [d.snapshot.name for d in decisions if not d.keep]
            for name in removed:
                store.delete(project, name)
            if removed:
                store.reclaim()
    return ForgetResult(tuple(decisions), catalog.damaged)


def forget_names(store: Store, project: str, names: Sequence[str], dry_run: bool) -> list[str]:
    """Remove the snapshots named, damaged ones included; return their names.

    Raise ConfigError for a bad name, SnapshotNotFoundError for one that does not exist, and
    UnsafeOperationError for a pinned one (unpin it first): in each case nothing is removed.
    """
    for name in names:
        check_snapshot_name(name)
    with store.lock(project, timeout=LOCK_TIMEOUT):
        catalog = read_catalog(store, project)
        known = {m.name: m for m in catalog.manifests}
        damaged = {d.name for d in catalog.damaged}
        for name in names:
            if name not in known and name not in damaged:
                raise not_found(project, name, [*known, *damaged])
            if name in known and known[name].pinned:
                raise UnsafeOperationError(
                    f"snapshot {name!r} is pinned: unpin it first (docker persist unpin {name}); nothing was removed"
                )
        if not dry_run:
            for name in dict.fromkeys(names):
                store.delete(project, name)
            store.reclaim()
    return list(dict.fromkeys(names))
