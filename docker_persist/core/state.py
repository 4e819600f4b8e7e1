"""Live state read from the engine (and the host, for bind sources): pure data.

`engine.Engine.read_live_state` fills these in; check rules and the planner read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping

_ANONYMOUS_VOLUME = re.compile(r"^[0-9a-f]{64}$")


def is_anonymous_volume_name(name: str) -> bool:
    """Return True for the 64-hex name the engine gives an anonymous volume."""
    return bool(_ANONYMOUS_VOLUME.match(name))


@dataclasses.dataclass(frozen=True)
class ContainerMount:
    """A mount of a live container, as the engine reports it."""

    type: str  # volume | bind | tmpfs
    destination: str
    name: str | None = None  # the volume's engine name; None for binds and tmpfs
    source: str = ""  # host path (a volume's mountpoint for volumes)
    rw: bool = True


@dataclasses.dataclass(frozen=True)
class ContainerState:
    """A container of the project, found by its Compose labels."""

    id: str
    name: str
    service: str
    image: str
    state: str  # running | exited | paused | created | ...
    mounts: tuple[ContainerMount, ...] = ()
    size_rw: int | None = None  # bytes in the writable layer
    changes: tuple[str, ...] | None = None  # changed or added paths in the writable layer; None if not read
    oneoff: bool = False  # started by `docker compose run`


@dataclasses.dataclass(frozen=True)
class VolumeState:
    """A volume that exists in the engine."""

    name: str
    driver: str
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    mountpoint: str = ""
    size: int | None = None  # bytes, where the engine reports it (local driver)


@dataclasses.dataclass(frozen=True)
class GuardState:
    """An engine guard: a labelled container that keeps a volume from being removed."""

    id: str
    volume: str
    project: str
    running: bool = True  # a stopped guard is one `docker container prune` removes


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    """What `check` needs to know of one snapshot."""

    name: str
    created: datetime.datetime
    volumes: tuple[str, ...]  # volume keys in the project
    verified_at: datetime.datetime | None = None
    verified_ok: bool | None = None
    reason: str = "manual"  # manual | scheduled | pre-restore | pre-down
    pinned: bool = False
    damaged: str | None = None  # why its manifest cannot be read (it then holds no volume we know of)


@dataclasses.dataclass(frozen=True)
class LiveState:
    """Everything read from the engine for one project, read-only."""

    now: datetime.datetime
    containers: tuple[ContainerState, ...] = ()
    volumes: Mapping[str, VolumeState] = dataclasses.field(default_factory=dict)  # by engine name
    image_volumes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # image -> VOLUMEs
    guards: tuple[GuardState, ...] = ()
    snapshots: tuple[SnapshotInfo, ...] | None = None  # None: unknown (no store to read)
    incomplete: Mapping[str, str] = dataclasses.field(default_factory=dict)  # volume -> snapshot partly restored
    host_paths: Mapping[str, str] = dataclasses.field(default_factory=dict)  # bind source -> file|dir|missing

    def containers_of(self, service: str) -> list[ContainerState]:
        """Return the live containers of `service` (one-off `run` containers excluded)."""
        return [c for c in self.containers if c.service == service and not c.oneoff]
