"""Carry out the `up` plan: create the precious volumes, restore the empty ones per policy, protect them."""

from __future__ import annotations

from collections.abc import Callable

from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_VOLUME, Engine
from docker_persist.errors import PersistError
from docker_persist.guards import create_guard
from docker_persist.model import Project, Volume
from docker_persist.planner import UpPlan, latest_snapshot_with
from docker_persist.snapshots import LOCK_TIMEOUT, Progress, extract_into_volume, list_manifests
from docker_persist.state import SnapshotInfo
from docker_persist.store import Store

Say = Callable[[str], None]


def compose_volume_labels(project: Project, volume: Volume) -> dict[str, str]:
    """Return the labels for creating a project volume so that Compose adopts it as its own."""
    return {**volume.labels, COMPOSE_PROJECT: project.name, COMPOSE_VOLUME: volume.key}


def carry_out_up(engine: Engine, store: Store, project: Project, plan: UpPlan, say: Say, progress: Progress) -> None:
    """Create, restore and protect as the plan says. It never touches a volume that holds data.

    Raise PersistError naming the step that failed.
    """
    with store.lock(project.name, timeout=LOCK_TIMEOUT):
        manifests = None
        for step in plan.steps:
            volume = project.volumes[step.key]
            if step.action == "create":
                say(f"creating volume {volume.name}")
                engine.create_volume(
                    volume.name, volume.driver or "local", volume.driver_opts, compose_volume_labels(project, volume)
                )
            elif step.action == "restore":
                assert volume.policy is not None
                if manifests is None:
                    manifests = list_manifests(store, project.name)
                wanted = volume.policy.restore
                if wanted == "latest":
                    infos = tuple(SnapshotInfo(m.name, m.created, tuple(v.key for v in m.volumes)) for m in manifests)
                    newest = latest_snapshot_with(infos, volume.key)
                    manifest = next((m for m in manifests if newest and m.name == newest.name), None)
                else:
                    manifest = next((m for m in manifests if m.name == wanted), None)
                if manifest is None:
                    say(f"{volume.key}: no snapshot to restore ({wanted}); it starts empty")
                    continue
                record = manifest.volume(volume.key)
                assert record is not None
                say(f"restoring {volume.key} from {manifest.name}")
                try:
                    extract_into_volume(engine, store, project.name, manifest, record, volume.name, progress)
                except PersistError as error:
                    raise PersistError(
                        f"restoring {volume.key} from snapshot {manifest.name!r} into the empty volume "
                        f"{volume.name!r} failed: {error}. The volume may hold part of it: remove it "
                        f"(docker volume rm {volume.name}) and run `docker persist up` again"
                    ) from error
            elif step.action == "protect":
                say(f"protecting {volume.name}")
                create_guard(engine, volume.name, project.name)
