"""Carry out the `up` plan: create the precious volumes, restore the empty ones per policy, protect them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docker_persist.actions.snapshots import LOCK_TIMEOUT, Progress, extract_into_volume, list_manifests, load_keys
from docker_persist.config.model import Project, Volume
from docker_persist.core.manifest import Manifest, VolumeRecord
from docker_persist.core.planner import UpPlan, latest_snapshot_with
from docker_persist.core.state import SnapshotInfo
from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_VOLUME, Engine
from docker_persist.engine.guards import create_guard
from docker_persist.errors import PersistError
from docker_persist.store import Store

Say = Callable[[str], None]


def compose_volume_labels(project: Project, volume: Volume) -> dict[str, str]:
    """Return the labels for creating a project volume so that Compose adopts it as its own."""
    return {**volume.labels, COMPOSE_PROJECT: project.name, COMPOSE_VOLUME: volume.key}


def carry_out_up(
    engine: Engine,
    store: Store,
    project: Project,
    plan: UpPlan,
    say: Say,
    progress: Progress,
    identity: str | None = None,
) -> None:
    """Create, restore and protect as the plan says. It never touches a volume that holds data.

    `identity` is the age identity file for encrypted snapshots. Which snapshot each restore
    reads, and its key, are settled before anything is created. Raise PersistError naming
    the step that failed, IdentityError (nothing done) for a missing or wrong key.
    """
    with store.lock(project.name, timeout=LOCK_TIMEOUT):
        sources = _restore_sources(store, project, plan, identity)
        for step in plan.steps:
            volume = project.volumes[step.key]
            if step.action == "create":
                say(f"creating volume {volume.name}")
                engine.create_volume(
                    volume.name, volume.driver or "local", volume.driver_opts, compose_volume_labels(project, volume)
                )
            elif step.action == "restore":
                assert volume.policy is not None
                source = sources.get(volume.key)
                if source is None:
                    say(f"{volume.key}: no snapshot to restore ({volume.policy.restore}); it starts empty")
                    continue
                manifest, record, keys = source
                say(f"restoring {volume.key} from {manifest.name}")
                try:
                    extract_into_volume(engine, store, project.name, manifest, record, volume.name, progress, keys)
                except PersistError as error:
                    raise PersistError(
                        f"restoring {volume.key} from snapshot {manifest.name!r} into the empty volume "
                        f"{volume.name!r} failed: {error}. The volume may hold part of it: remove it "
                        f"(docker volume rm {volume.name}) and run `docker persist up` again"
                    ) from error
            elif step.action == "protect":
                say(f"protecting {volume.name}")
                create_guard(engine, volume.name, project.name)


def _restore_sources(
    store: Store, project: Project, plan: UpPlan, identity: str | None
) -> dict[str, tuple[Manifest, VolumeRecord, tuple[Any, ...]]]:
    """Return, per volume key the plan restores, the snapshot, its record and the keys to read it."""
    sources: dict[str, tuple[Manifest, VolumeRecord, tuple[Any, ...]]] = {}
    restores = [step.key for step in plan.steps if step.action == "restore"]
    if not restores:
        return sources
    manifests = list_manifests(store, project.name)
    infos = tuple(SnapshotInfo(m.name, m.created, tuple(v.key for v in m.volumes)) for m in manifests)
    for key in restores:
        policy = project.volumes[key].policy
        assert policy is not None
        if policy.restore == "latest":
            newest = latest_snapshot_with(infos, key)
            manifest = next((m for m in manifests if newest and m.name == newest.name), None)
        else:
            manifest = next((m for m in manifests if m.name == policy.restore), None)
        record = manifest.volume(key) if manifest is not None else None
        if manifest is not None and record is not None:
            sources[key] = (manifest, record, load_keys(store, project.name, manifest, [record], identity))
    return sources
