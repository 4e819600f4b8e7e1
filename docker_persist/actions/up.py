"""`up`: create the precious volumes, restore the empty ones per policy, protect them.

Run by the `up` wrapper before `docker compose up`, and by the Compose provider in the middle of
Compose's own `up` (after Compose created the volumes, before the services that depend on the
provider start). It never touches a volume that holds anything: "empty" means no entry at all
but the volume's root, read from the volume itself (an empty file is data).

A restore into an empty volume is journaled like any restore (kind "up"; core/operations.py):
the volume is marked incomplete until its content digest matches, so nothing starts on half
of it, and a killed or failed one is taken back (the volume emptied again) by the next run,
which then restores it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from docker_persist.actions.catalog import extract_into_volume, read_catalog, unlock, volume_is_empty
from docker_persist.actions.common import LOCK_TIMEOUT, Workspace
from docker_persist.actions.dumps import load_snapshot_dump
from docker_persist.actions.recover import UnfinishedOperationError, recover, roll_back
from docker_persist.actions.restore import compose_volume_labels
from docker_persist.config.model import Volume
from docker_persist.core.dumps import dump_key
from docker_persist.core.manifest import Manifest, VolumeRecord
from docker_persist.core.operations import Operation, Target
from docker_persist.core.planner import UpPlan, UpStep, plan_up
from docker_persist.core.state import LiveState
from docker_persist.engine.guards import create_guard
from docker_persist.engine.markers import clear_incomplete, incomplete_volumes, mark_incomplete
from docker_persist.errors import PersistError, SnapshotNotFoundError, add_note
from docker_persist.host.faults import crash_point
from docker_persist.host.signals import interrupts_deferred
from docker_persist.store import Store, not_found

Source = tuple[Manifest, VolumeRecord, tuple[Any, ...]]  # the snapshot, its record, the keys to read it


@dataclasses.dataclass(frozen=True)
class UpResult:
    """What `up` did to the volumes, step by step (skipped restores included, with why)."""

    plan: UpPlan
    done: tuple[UpStep, ...]


def prepare_volumes(
    ws: Workspace, store: Store, read_state: Callable[[], LiveState], identity: str | None = None
) -> UpResult:
    """Create, restore and protect as `plan_up` says, holding the project lock.

    `identity` is the age identity file for encrypted snapshots. Which snapshot each restore
    reads, and its key, are settled before anything is created. Raise SnapshotNotFoundError for
    a named restore the store does not have, IdentityError for a missing or wrong key (nothing
    done either way), UnfinishedOperationError while a volume holds part of an interrupted
    restore, PersistError naming the step that failed.
    """
    project, engine = ws.project, ws.engine
    with ws.journal.hold("up", LOCK_TIMEOUT), store.lock(project.name, timeout=LOCK_TIMEOUT):
        recover(ws)
        marked = incomplete_volumes(engine, project.name)
        partial = [v.name for v in project.precious_volumes() if v.name in marked]
        if partial:
            raise UnfinishedOperationError(
                f"volume {partial[0]} holds part of snapshot {marked[partial[0]]!r}: a restore into it was interrupted "
                "by another user or host; finish it there (`docker persist restore`), or remove the volume, "
                "before `up` starts anything on it"
            )
        plan = plan_up(project, read_state())
        sources = _restore_sources(ws, store, plan, identity)
        done: list[UpStep] = []
        for step in plan.steps:
            volume = project.volumes[step.key]
            if step.action == "create":
                ws.say(f"creating volume {volume.name}")
                engine.create_volume(
                    volume.name, volume.driver or "local", volume.driver_opts, compose_volume_labels(project, volume)
                )
                done.append(step)
            elif step.action == "restore" and volume.key not in sources:
                done.append(
                    dataclasses.replace(step, action="skip", detail="no snapshot holds it yet: it starts empty")
                )
            elif step.action == "restore":
                done.append(_restore_if_empty(ws, store, volume, step, sources[volume.key], plan))
            elif step.action == "protect":
                ws.say(f"protecting {volume.name}")
                create_guard(engine, volume.name, project.name)
                done.append(step)
        return UpResult(plan, tuple(done))


def _restore_if_empty(
    ws: Workspace, store: Store, volume: Volume, step: UpStep, source: Source, plan: UpPlan
) -> UpStep:
    """Restore the snapshot into `volume` if it holds nothing; return the step as done (or skipped)."""
    engine, project = ws.engine, ws.project
    manifest, record, keys = source
    created = any(s.action == "create" and s.key == volume.key for s in plan.steps)
    if not created and not volume_is_empty(engine, project.name, volume.name):
        return dataclasses.replace(step, action="skip", detail="it holds data: never restored over")
    live = engine.inspect_volume(volume.name)
    target = Target(
        key=volume.key,
        volume=volume.name,
        before="absent" if created else "empty",
        status="replacing",
        driver=live.driver if live else (volume.driver or "local"),
        driver_opts=dict(live.options) if live else dict(volume.driver_opts),
        labels=dict(live.labels) if live else compose_volume_labels(project, volume),
    )
    operation = Operation("up", manifest.name, project.name, store.url, phase="replacing", targets=[target])
    ws.journal.set_operation(operation)
    ws.say(f"restoring {volume.key} from {manifest.name}")
    try:
        mark_incomplete(engine, volume.name, project.name, manifest.name)
        if record.kind == "dump":
            load_snapshot_dump(ws, store, project.name, manifest, record, keys, volume.name, "up:extracting")
        else:
            extract_into_volume(
                engine, store, project.name, manifest, record, volume.name, ws.progress, keys, "up:extracting"
            )
    except BaseException as error:
        try:
            roll_back(ws, operation)
            add_note(error, f"volume {volume.name} is empty again; `docker persist up` restores it again")
        except (PersistError, KeyboardInterrupt) as cleanup:
            add_note(error, f"emptying {volume.name} again failed too ({cleanup}): run `docker persist recover`")
        raise
    with interrupts_deferred():
        clear_incomplete(engine, volume.name)
        ws.journal.set_operation(None)
    crash_point("up:restored")
    return step


def _restore_sources(ws: Workspace, store: Store, plan: UpPlan, identity: str | None) -> dict[str, Source]:
    """Return, per volume key the plan restores, the snapshot, its record and the keys to read it.

    `latest` is the newest snapshot that holds the volume (none is fine: the volume starts empty).
    A named snapshot must exist and hold the volume. Raise SnapshotNotFoundError otherwise.
    """
    project = ws.project
    restores = [step.key for step in plan.steps if step.action == "restore"]
    if not restores:
        return {}
    catalog = read_catalog(store, project.name)
    manifests = catalog.manifests
    sources: dict[str, Source] = {}
    for key in restores:
        policy = project.volumes[key].policy
        assert policy is not None
        if policy.restore == "latest":
            manifest = catalog.latest(key)
            if manifest is None:
                continue
        else:
            manifest = next((m for m in manifests if m.name == policy.restore), None)
            damaged = next((d for d in catalog.damaged if d.name == policy.restore), None)
            if damaged is not None:
                raise SnapshotNotFoundError(
                    f"volumes.{key}.x-persist.restore names snapshot {damaged.name!r}, which is damaged "
                    f"({damaged.problem}); nothing was created"
                )
            if manifest is None:
                error = not_found(project.name, policy.restore, [m.name for m in manifests])
                raise SnapshotNotFoundError(
                    f"volumes.{key}.x-persist.restore names a snapshot the store ({store.url}) does not have: "
                    f"{error}; nothing was created"
                )
        record = manifest.volume(key) or manifest.volume(dump_key(key))  # its files, else its dump
        if record is None:
            raise SnapshotNotFoundError(
                f"volumes.{key}.x-persist.restore: snapshot {manifest.name!r} does not hold volume {key!r}; "
                "nothing was created"
            )
        manifest, records, keys = unlock(store, project.name, manifest, [record.key], identity)
        sources[key] = (manifest, records[0], keys)
    return sources
