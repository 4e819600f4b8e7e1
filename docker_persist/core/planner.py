"""What `up` and `down` would do: pure functions of the project and the live state.

The same plans are printed by `docker persist plan` and carried out by `up`/`down`, so
what a user previews is what happens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from docker_persist.config.model import Project, Volume
from docker_persist.core.manifest import UNDO_REASON
from docker_persist.core.state import LiveState, SnapshotInfo, is_anonymous_volume_name

DEFAULT_LAYER_THRESHOLD = 10_000_000
"""Writable-layer data above this many bytes counts as data that `down` would destroy (10 MB)."""

# Paths whose writes in a container layer are expected and not data.
EPHEMERAL_PREFIXES = ("/tmp", "/run", "/var/run", "/var/log", "/var/cache", "/proc", "/sys", "/dev")


def is_ephemeral_path(path: str) -> bool:
    """Return True for a container path whose contents nobody expects to keep."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in EPHEMERAL_PREFIXES)


@dataclasses.dataclass(frozen=True)
class UpStep:
    """One thing `up` does before `docker compose up`."""

    action: str  # create | restore | protect
    volume: str  # engine name
    key: str  # compose key
    detail: str


@dataclasses.dataclass(frozen=True)
class UpPlan:
    """What `docker persist up` would do."""

    project: str
    steps: tuple[UpStep, ...]


@dataclasses.dataclass(frozen=True)
class Loss:
    """Data that `down` would destroy (or orphan)."""

    kind: str  # named-volume | anonymous-volume | container-layer
    name: str  # the volume's engine name, or the container's name
    key: str | None = None  # compose volume key, for named volumes
    service: str | None = None
    path: str | None = None  # container path of the mount
    size: int | None = None  # bytes, where known
    precious: bool = False
    action: str = "backup"  # backup | refuse | allow


@dataclasses.dataclass(frozen=True)
class DownPlan:
    """What `docker persist down` would do."""

    project: str
    remove_volumes: bool
    on_down: str
    losses: tuple[Loss, ...]
    release_guards: tuple[str, ...]  # volume names whose guards are released (with -v, after the backup)
    refused_guards: tuple[str, ...] = ()  # guarded volumes on_down refuses: released too only with --force

    @property
    def to_back_up(self) -> tuple[Loss, ...]:
        """Return the losses a snapshot must hold before `down` may go ahead."""
        return tuple(loss for loss in self.losses if loss.action == "backup")

    @property
    def refused(self) -> tuple[Loss, ...]:
        """Return the losses that make `down` refuse (on_down: refuse)."""
        return tuple(loss for loss in self.losses if loss.action == "refuse")


def latest_snapshot_with(snapshots: tuple[SnapshotInfo, ...], key: str) -> SnapshotInfo | None:
    """Return `latest` for volume `key`: the newest snapshot that holds it and is not an undo snapshot
    (pre-restore: what a restore replaced), or None."""
    holding = [s for s in snapshots if key in s.volumes and s.reason != UNDO_REASON and s.damaged is None]
    return max(holding, key=lambda s: s.created) if holding else None


def _restore_detail(volume: Volume, state: LiveState) -> str | None:
    """Return what would be restored into `volume` when it is empty, or None for nothing."""
    assert volume.policy is not None
    wanted = volume.policy.restore
    if wanted == "none":
        return None
    if state.snapshots is None:
        return f"snapshot {wanted!r}, if the store has it" if wanted != "latest" else "the latest snapshot, if any"
    if wanted == "latest":
        latest = latest_snapshot_with(state.snapshots, volume.key)
        return f"snapshot {latest.name!r} (latest)" if latest else None
    if any(s.name == wanted and s.damaged is None for s in state.snapshots):
        return f"snapshot {wanted!r}"
    return f"snapshot {wanted!r}, which the store does not have (or is damaged): `up` refuses and creates nothing"


def plan_up(project: Project, state: LiveState) -> UpPlan:
    """Return the steps `up` takes for the precious volumes, in file order."""
    steps: list[UpStep] = []
    guarded = {g.volume for g in state.guards}
    for volume in project.precious_volumes():
        assert volume.policy is not None
        live = state.volumes.get(volume.name)
        if volume.external:
            pass  # Compose never creates an external volume, and neither do we.
        elif live is None:
            steps.append(UpStep("create", volume.name, volume.key, f"driver {volume.driver or 'local'}"))
        empty = live is None or live.size == 0
        detail = _restore_detail(volume, state) if empty and not volume.external else None
        if detail is not None:
            steps.append(UpStep("restore", volume.name, volume.key, f"{detail} into the empty volume"))
        if volume.policy.protect and volume.name not in guarded:
            steps.append(UpStep("protect", volume.name, volume.key, "add an engine guard"))
    return UpPlan(project.name, tuple(steps))


def plan_down(project: Project, state: LiveState, remove_volumes: bool, layer_threshold: int) -> DownPlan:
    """Return what `down` (with `-v` if `remove_volumes`) would destroy, and what on_down does about it.

    The loss set: named volumes (with -v; never external ones), anonymous volumes (the
    next `up` makes new ones, even without -v), and writable-layer data above
    `layer_threshold` outside ephemeral paths.
    """
    on_down = project.policy.on_down
    losses: list[Loss] = []
    by_name = {v.name: v for v in project.volumes.values()}
    if remove_volumes:
        for volume in project.volumes.values():
            live = state.volumes.get(volume.name)
            if volume.external or live is None:
                continue
            users = project.services_using(volume.key)
            service = users[0].name if users else None
            path = next((m.target for m in users[0].mounts if m.source == volume.key), None) if users else None
            precious = volume.policy is not None
            losses.append(
                Loss("named-volume", volume.name, volume.key, service, path, live.size, precious,
                     "allow" if volume.disposable else on_down)
            )  # fmt: skip
    seen: set[str] = set()
    for container in state.containers:
        for mount in container.mounts:
            if mount.type != "volume" or not mount.name or mount.name in by_name or mount.name in seen:
                continue
            if not is_anonymous_volume_name(mount.name):
                continue
            seen.add(mount.name)
            size = state.volumes[mount.name].size if mount.name in state.volumes else None
            losses.append(
                Loss("anonymous-volume", mount.name, None, container.service, mount.destination, size, False, on_down)
            )
        if container.size_rw is not None and container.size_rw > layer_threshold:
            changes = container.changes
            if changes is None or any(not is_ephemeral_path(p) for p in changes):
                losses.append(
                    Loss("container-layer", container.name, None, container.service, None, container.size_rw, False,
                         on_down)
                )  # fmt: skip
    guarded = {g.volume for g in state.guards}
    guarded_losses = [loss for loss in losses if loss.kind == "named-volume" and loss.name in guarded]
    release = tuple(loss.name for loss in guarded_losses if loss.action != "refuse")
    refused = tuple(loss.name for loss in guarded_losses if loss.action == "refuse")
    return DownPlan(project.name, remove_volumes, on_down, tuple(losses), release, refused)


def skipped_by_backup(project: Project, chosen: Sequence[str], services: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Return what a backup of the volume keys `chosen` leaves out that may hold data, and why: (what, why).

    Looked at: the mounts of `services`, or of every service if none is named. Left out of the
    answer: anonymous volumes and tmpfs (`check` covers them), read-only binds, and mounts
    declared disposable (`x-persist: false`).
    """
    skipped: dict[str, str] = {}
    for service in project.services:
        if services and service.name not in services:
            continue
        for mount in service.mounts:
            if mount.precious is False or not mount.source or mount.source in chosen:
                continue
            if (
                mount.type == "bind"
                and mount.precious
                and any(v.bind_source == mount.source and v.key in chosen for v in project.precious_binds())
            ):
                continue
            if mount.type == "bind" and not mount.read_only:
                skipped.setdefault(
                    f"{mount.source} ({service.name}:{mount.target})",
                    "a bind-mounted host folder: back it up on the host, or move it into a named volume",
                )
            elif mount.type == "volume":
                volume = project.volumes.get(mount.source)
                if volume is None or volume.disposable or volume.external:
                    continue
                why = "not named on the command line" if volume.policy is not None else "not marked with x-persist"
                skipped.setdefault(f"volume {mount.source}", why)
    return sorted(skipped.items())
