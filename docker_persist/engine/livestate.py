"""Gather the live state of a project: the engine's view, plus bind sources on this host."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable

from docker_persist.config.model import Project
from docker_persist.core.state import LiveState, SnapshotInfo
from docker_persist.engine import Engine
from docker_persist.engine.markers import incomplete_volumes
from docker_persist.host.dockerconfig import Endpoint


def engine_is_local(endpoint: Endpoint) -> bool:
    """Return True if the engine runs on this host, so bind sources can be looked at here."""
    return endpoint.host.startswith("unix://") or endpoint.host.startswith(("tcp://127.", "tcp://localhost:"))


def stat_host_paths(paths: Iterable[str]) -> dict[str, str]:
    """Return file, dir, other or missing for each host path."""
    kinds = {}
    for path in paths:
        if os.path.isfile(path):
            kinds[path] = "file"
        elif os.path.isdir(path):
            kinds[path] = "dir"
        elif os.path.lexists(path):
            kinds[path] = "other"
        else:
            kinds[path] = "missing"
    return kinds


def gather_live_state(
    project: Project,
    engine: Engine,
    endpoint: Endpoint,
    layer_threshold: int,
    with_sizes: bool = False,
    snapshots: tuple[SnapshotInfo, ...] | None = None,
    now: datetime.datetime | None = None,
) -> LiveState:
    """Read, without changing anything, what the engine holds for `project`.

    `snapshots` is None while no snapshot store is read: check then reports "unknown".
    """
    containers = engine.list_project_containers(project.name, changes_above=layer_threshold)
    names = {v.name for v in project.volumes.values()}
    names |= {m.name for c in containers for m in c.mounts if m.name}
    volumes = engine.list_volumes(names, with_sizes=with_sizes)
    images = [s.image for s in project.services if s.image]
    bind_sources = [m.source for s in project.services for m in s.mounts if m.type == "bind" and m.source]
    return LiveState(
        now=now or datetime.datetime.now(datetime.timezone.utc),
        containers=tuple(containers),
        volumes=volumes,
        image_volumes=engine.image_volumes(images),
        guards=tuple(engine.list_guards(project.name)),
        incomplete=incomplete_volumes(engine, project.name),
        snapshots=snapshots,
        host_paths=stat_host_paths(bind_sources) if engine_is_local(endpoint) else {},
    )


def static_state(now: datetime.datetime | None = None) -> LiveState:
    """Return an empty live state, for checking a project's files without an engine."""
    return LiveState(now=now or datetime.datetime.now(datetime.timezone.utc))
