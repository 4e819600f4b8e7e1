"""`down`: save what `docker compose down` would destroy, release exactly those guards, then let it run.

One sequence serves the wrapper (`docker persist down`, which then runs `docker compose down`
itself) and the Compose provider (which Compose runs in the middle of its own `down`, after the
containers are gone and before the volumes are):

1. hold the project lock and recover what a killed run left;
2. plan what the down destroys (named volumes with -v, anonymous volumes, writable-layer data)
   and apply on_down: refuse, back up (the `<time>-pre-down` snapshot), or allow;
3. release the guards of exactly the volumes being removed, and only when -v is known to be
   given: a command line that cannot be read backs up as if -v were given, but never releases;
4. (wrapper) run `docker compose down`; if it fails, put the guards back.

The journal records the phases (planned, backed-up, guards-released) so that a killed `down`
gets its guards back. The provider that the wrapper's own `docker compose down` runs inherits
the wrapper's lock and finds its record: it neither backs up a second time nor waits for itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from docker_persist.actions.backup import (
    backup_layer,
    backup_volume,
    part_format,
    publish_snapshot,
    refuse_incomplete,
    unique_automatic_name,
)
from docker_persist.actions.common import LOCK_TIMEOUT, Workspace
from docker_persist.actions.quiesce import QuiescePlan, plan_quiesce, quiesced
from docker_persist.actions.recover import recover
from docker_persist.config.model import Volume
from docker_persist.core.manifest import Manifest, VolumeRecord
from docker_persist.core.operations import Operation
from docker_persist.core.planner import DEFAULT_LAYER_THRESHOLD, DownPlan, is_ephemeral_path, plan_down
from docker_persist.core.state import LiveState
from docker_persist.engine.guards import create_guard, remove_guards
from docker_persist.engine.volumeio import layer_paths
from docker_persist.errors import UnsafeOperationError
from docker_persist.host.faults import crash_point
from docker_persist.host.signals import interrupts_deferred
from docker_persist.store import Store
from docker_persist.units import format_bytes


@dataclasses.dataclass(frozen=True)
class DownRequest:
    """What the down does: `remove_volumes` is None when the command line could not be read."""

    remove_volumes: bool | None
    force: bool = False  # go ahead where on_down says refuse
    layer_threshold: int = DEFAULT_LAYER_THRESHOLD
    wrapper: bool = True  # docker persist down (which takes --force), or the provider (which does not)


@dataclasses.dataclass(frozen=True)
class DownResult:
    """What was saved and released before Compose's own down."""

    plan: DownPlan | None  # None when inherited
    snapshot: Manifest | None
    released: tuple[str, ...]
    compose_code: int | None = None  # the wrapper's `docker compose down` exit code
    inherited: bool = False  # the provider, run by `docker persist down`: the wrapper did it all


def down(
    ws: Workspace,
    store: Store,
    request: DownRequest,
    read_state: Callable[[], LiveState],
    run_compose_down: Callable[[dict[str, str]], int] | None = None,
) -> DownResult:
    """Back up what the down destroys (as on_down says), release those guards, then run
    `run_compose_down` (given the environment that lets the provider share the lock), if given.

    Raise UnsafeOperationError when on_down refuses (nothing done), UnfinishedOperationError
    while a restore is unfinished, PersistError if the backup fails (nothing released).
    """
    with ws.journal.hold("down", LOCK_TIMEOUT):
        parent = ws.journal.read().operation
        if ws.journal.inherited() and parent is not None and parent.kind == "down":
            # The provider inside `docker persist down`'s own `docker compose down`: done already.
            return DownResult(None, None, tuple(parent.released), inherited=True)
        with store.lock(ws.project.name, timeout=LOCK_TIMEOUT):
            recover(ws)
            state = read_state()
            destructive = request.remove_volumes is not False
            plan = plan_down(ws.project, state, remove_volumes=destructive, layer_threshold=request.layer_threshold)
            if plan.refused and not request.force:
                raise UnsafeOperationError(_refusal(plan, destructive, request.wrapper))
            refuse_incomplete(ws, [loss.name for loss in plan.to_back_up if loss.kind == "named-volume"])
            operation = Operation(kind="down", snapshot="", source=ws.project.name, store=store.url)
            ws.journal.set_operation(operation)
            manifest = backup_before_down(ws, store, plan, state)
            operation.snapshot, operation.phase = (manifest.name if manifest else ""), "backed-up"
            ws.journal.set_operation(operation)
            crash_point("down:backed-up")
        released: tuple[str, ...] = ()
        if request.remove_volumes is True:
            # Backed up: now Compose may remove exactly these volumes (their guards would stop it), and
            # with --force those on_down refuses (not backed up: the user said so).
            released = plan.release_guards + (plan.refused_guards if request.force else ())
            operation.released, operation.phase = list(released), "guards-released"
            ws.journal.set_operation(operation)
            for volume in released:
                remove_guards(ws.engine, volume)
            crash_point("down:guards-released")
        code = None
        if run_compose_down is not None:
            code = run_compose_down(ws.journal.child_environ({}))
            if code != 0:
                with interrupts_deferred():
                    for volume in released:
                        if ws.engine.inspect_volume(volume) is not None:
                            create_guard(ws.engine, volume, ws.project.name)
        ws.journal.set_operation(None)
        return DownResult(plan, manifest, released, code)


def _refusal(plan: DownPlan, destructive: bool, wrapper: bool) -> str:
    lost = "\n".join(
        f"  {loss.kind} {loss.key or loss.name}"
        + (f" ({loss.service}:{loss.path})" if loss.path else "")
        + f", {format_bytes(loss.size) if loss.size is not None else 'size unknown'}"
        for loss in plan.refused
    )
    instead = "pass --force to go ahead" if wrapper else "run `docker persist down --force` to go ahead"
    return (
        f"refusing `down{' -v' if destructive else ''}` (x-persist on_down is refuse): it would destroy\n{lost}\n"
        f"Back up first (docker persist backup), or {instead}."
    )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower() or "root"


def backup_before_down(ws: Workspace, store: Store, plan: DownPlan, state: LiveState) -> Manifest | None:
    """Take the `<time>-pre-down` snapshot of everything `down` would destroy that on_down says to keep.

    Named volumes, anonymous volumes (kind anonymous-volume) and the changed paths of
    writable layers (kind container-layer), quiescing each affected service by its
    consistency setting. Return None when there is nothing to back up. The caller holds the locks.
    """
    project, engine = ws.project, ws.engine
    losses = plan.to_back_up
    if not losses:
        return None
    services = sorted({loss.service for loss in losses if loss.service})
    plans = [p for p in plan_quiesce(project, [v.key for v in project.volumes.values()]) if p.service in services]
    planned = {p.service for p in plans}
    for service in project.services:
        if service.name in services and service.name not in planned:
            policy = service.policy
            plans.append(
                QuiescePlan(service.name, policy.consistency, policy.pre, policy.post)
                if policy
                else QuiescePlan(service.name, "none")
            )
    # A service that is dumped rather than quiesced is stopped before its files are copied: it goes down
    # anyway, and files copied at rest restore exactly.
    dumped = {s.name for s in project.services if s.policy and s.policy.dump}
    plans = [dataclasses.replace(p, consistency="stop") if p.service in dumped and p.consistency == "none" else p
             for p in plans]  # fmt: skip
    containers = {c.name: c for c in state.containers}
    fmt = part_format(project, store)
    name = unique_automatic_name(store, project.name, "pre-down")
    pending = store.begin(project.name, name)
    try:
        records: list[VolumeRecord] = []
        keys: set[str] = set()
        with quiesced(engine, project.name, plans, ws.say, ws.journal):
            for loss in losses:
                if loss.kind == "named-volume" and loss.key:
                    volume = project.volumes[loss.key]
                    records.append(backup_volume(engine, project.name, volume, pending, fmt, ws.progress))
                    continue
                base = f"{'anon' if loss.kind == 'anonymous-volume' else 'layer'}-{_slug(loss.service or 'x')}"
                key = base + (f"-{_slug(loss.path)}" if loss.path else "")
                number = 2
                while key in keys or key in project.volumes:
                    key, number = f"{base}-{number}", number + 1
                keys.add(key)
                if loss.kind == "anonymous-volume":
                    anonymous = Volume(key=key, name=loss.name)
                    records.append(
                        backup_volume(engine, project.name, anonymous, pending, fmt, ws.progress, "anonymous-volume")
                    )
                else:
                    container = containers[loss.name]
                    paths = layer_paths(container.changes or (), is_ephemeral_path)
                    if paths:
                        records.append(backup_layer(engine, key, container, paths, pending, fmt, ws.progress))
    except BaseException:
        pending.abort()
        raise
    return publish_snapshot(pending, project.name, name, "pre-down", records, plans, recipients=fmt.recipients)


def describe_losses(plan: DownPlan) -> Sequence[str]:
    """Return one line per loss, for messages."""
    return [f"{loss.kind} {loss.key or loss.name}" for loss in plan.losses]
