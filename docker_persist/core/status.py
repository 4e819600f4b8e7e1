"""One screen of health: each volume's newest snapshot, newest passing drill, guard and last failure.

Pure: `volume_status` takes what the command read (snapshots, guards, the alert state, the
scheduler's next run) and judges it. The same judgement feeds the `stale` notifications, so
`status`, `check --notify` and the scheduler agree on what is too old.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from docker_persist.config.model import Project, Volume
from docker_persist.core.alerts import AlertState, Failure, Staleness
from docker_persist.core.rules import max_age_of, verify_max_age_of
from docker_persist.core.state import SnapshotInfo
from docker_persist.units import DEFAULT_MAX_AGE, DEFAULT_VERIFY_MAX_AGE, Duration

GREEN, YELLOW, RED = "green", "yellow", "red"


@dataclasses.dataclass(frozen=True)
class VolumeStatus:
    """What is known of one volume's safety, and how it is judged."""

    project: str
    volume: str
    newest: SnapshotInfo | None
    max_age: Duration
    verified: SnapshotInfo | None  # the newest snapshot of it that passed verify
    verified_at: datetime.datetime | None
    verify_max_age: Duration
    stale: bool  # no snapshot, or the newest is older than max_age
    unverified: bool  # no passing drill, or the newest is older than verify_max_age
    verify_failed: bool  # the newest snapshot failed its drill
    guard: bool | None  # None: not protected, or not known
    failing: tuple[str, ...]  # operations failing now
    last_failure: Failure | None
    last_operation: str | None
    next_run: datetime.datetime | None

    @property
    def colour(self) -> str:
        """Red: stale, failing, a failed drill or a missing guard; yellow: the drill is overdue; else green."""
        if self.stale or self.failing or self.verify_failed or self.guard is False:
            return RED
        return YELLOW if self.unverified else GREEN

    def staleness(self, now: datetime.datetime) -> list[Staleness]:
        """Return the volume's ages against its two limits, as notification facts."""
        if self.newest is None:
            snapshot = "no snapshot holds it"
        else:
            snapshot = f"newest snapshot {self.newest.name} is {format_age(now - self.newest.created)} old"
        if self.verified_at is None:
            drill = "no snapshot of it has passed verify"
        else:
            drill = f"last passing verify {format_age(now - self.verified_at)} ago"
        return [
            Staleness(self.volume, "max_age", self.stale, f"{snapshot} (max_age {self.max_age})"),
            Staleness(
                self.volume, "verify_max_age", self.unverified, f"{drill} (verify_max_age {self.verify_max_age})"
            ),
        ]


def format_age(delta: datetime.timedelta) -> str:
    """Return an age as a person reads it: 45s, 12min, 5h 3min, 3d 4h."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}min" if minutes else f"{hours}h"
    return f"{minutes}min" if minutes else f"{seconds}s"


def volume_status(
    project_name: str,
    key: str,
    snapshots: Sequence[SnapshotInfo],
    now: datetime.datetime,
    *,
    project: Project | None = None,
    guard: bool | None = None,
    alerts: AlertState | None = None,
    next_run: datetime.datetime | None = None,
) -> VolumeStatus:
    """Return the status of volume `key`; its limits come from `project` when known, else the defaults."""
    volume: Volume | None = None
    if project is not None:
        volume = project.volumes.get(key) or next((v for v in project.precious_binds() if v.key == key), None)
    max_age = max_age_of(project, volume) if project and volume else DEFAULT_MAX_AGE
    verify_max_age = verify_max_age_of(project, volume) if project and volume else DEFAULT_VERIFY_MAX_AGE
    holding = sorted((s for s in snapshots if key in s.volumes and s.damaged is None), key=lambda s: s.created)
    newest = holding[-1] if holding else None
    passed = [s for s in holding if s.verified_ok is True and s.verified_at is not None]
    verified = max(passed, key=lambda s: (s.created, s.name), default=None)
    verified_at = max((s.verified_at for s in passed if s.verified_at), default=None)
    state = alerts or AlertState()
    return VolumeStatus(
        project=project_name,
        volume=key,
        newest=newest,
        max_age=max_age,
        verified=verified,
        verified_at=verified_at,
        verify_max_age=verify_max_age,
        stale=newest is None or newest.created < max_age.subtract_from(now),
        unverified=verified_at is None or verified_at < verify_max_age.subtract_from(now),
        verify_failed=newest is not None and newest.verified_ok is False,
        guard=guard,
        failing=tuple(sorted(op for (v, op) in state.failing if v == key)),
        last_failure=state.last_failure.get(key),
        last_operation=state.last_operation.get(key),
        next_run=next_run,
    )


def project_staleness(project: Project, snapshots: Sequence[SnapshotInfo], now: datetime.datetime) -> list[Staleness]:
    """Return the ages of the project's precious volumes (and binds) against their limits."""
    keys = [v.key for v in [*project.precious_volumes(), *project.precious_binds()] if not v.disposable]
    facts: list[Staleness] = []
    for key in keys:
        facts += volume_status(project.name, key, snapshots, now, project=project).staleness(now)
    return facts
