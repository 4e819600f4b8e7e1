"""`forget`: apply a retention policy to the project's snapshots."""

from __future__ import annotations

from docker_persist.actions.catalog import list_manifests
from docker_persist.actions.common import LOCK_TIMEOUT
from docker_persist.config.model import KeepPolicy
from docker_persist.core.retention import Decision
from docker_persist.store import Store


def forget(store: Store, project: str, policy: KeepPolicy, dry_run: bool) -> list[Decision]:
    """Apply a retention policy to the project's snapshots; return every decision (newest first).

    Raise ConfigError for an empty policy. With dry_run nothing is removed.
    """
    from docker_persist.core.retention import SnapshotRef, apply_policy

    with store.lock(project, timeout=LOCK_TIMEOUT):
        manifests = list_manifests(store, project)
        decisions = apply_policy([SnapshotRef(m.name, m.created) for m in manifests], policy)
        if not dry_run:
            for decision in decisions:
                if not decision.keep:
                    store.delete(project, decision.snapshot.name)
    return decisions
