"""`protect` and `unprotect`: put engine guards on volumes, or take them off, holding the project lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from docker_persist.actions.common import LOCK_TIMEOUT, Workspace
from docker_persist.config.model import Project, Volume
from docker_persist.engine.guards import create_guard, find_guards, remove_guards
from docker_persist.errors import ConfigError


def select_named_volumes(
    project: Project, names: Sequence[str], verb: str, exists: Callable[[str], bool]
) -> list[tuple[str, str]]:
    """Return (key, engine name) of each volume named: a project volume's key or engine name, or a volume
    on the engine (`exists` asks it).

    Raise ConfigError for a name that is neither, listing the precious volumes, and (for `protect`) for a
    project volume declared `x-persist: false`: a guard would contradict that declaration.
    """
    chosen: list[tuple[str, str]] = []
    for name in names:
        volume = project.volumes.get(name) or next((v for v in project.volumes.values() if v.name == name), None)
        if volume is None:
            if not exists(name):
                raise ConfigError(f"volume {name!r} does not exist: {_no_such_volume(project, name)}")
            chosen.append((name, name))
            continue
        where = _declared_disposable(project, volume)
        if verb == "protect" and where is not None:
            raise ConfigError(
                f"volume {volume.key!r} is declared disposable (`x-persist: false` at {where}), so it is not "
                "protected: a guard would keep what the project says may be thrown away. "
                "Remove that `x-persist: false` to protect it"
            )
        chosen.append((volume.key, volume.name))
    for key, name in chosen:
        if key != name and not exists(name):
            raise ConfigError(
                f"volume {name!r} does not exist (project volume {key!r}): `docker persist up` creates it"
            )
    return chosen


def _no_such_volume(project: Project, name: str) -> str:
    precious = [v.key for v in project.precious_volumes() if not v.disposable]
    known = f"the precious volumes are: {', '.join(precious)}" if precious else "no volume of it is marked x-persist"
    return f"project {project.name!r} has no volume {name!r} and the engine has none by that name; {known}"


def _declared_disposable(project: Project, volume: Volume) -> str | None:
    """Return where the project declares `volume` disposable (`x-persist: false`), or None."""
    if volume.disposable:
        return f"volumes.{volume.key}"
    if volume.policy is None:
        for service in project.services:
            for mount in service.mounts:
                if mount.type == "volume" and mount.source == volume.key and mount.precious is False:
                    return f"services.{service.name}.volumes, target {mount.target}"
    return None


def protect(ws: Workspace, volumes: Sequence[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """Guard each (key, engine name) volume; return (key, name, changed): False if a running guard was there."""
    rows = []
    with ws.journal.hold("protect", LOCK_TIMEOUT):
        for key, name in volumes:
            had = any(g.state in ("running", "restarting") for g in find_guards(ws.engine, name))
            create_guard(ws.engine, name, ws.project.name)
            rows.append((key, name, not had))
    return rows


def unprotect(ws: Workspace, volumes: Sequence[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """Remove the guards of each (key, engine name) volume; return (key, name, changed)."""
    with ws.journal.hold("unprotect", LOCK_TIMEOUT):
        return [(key, name, remove_guards(ws.engine, name) > 0) for key, name in volumes]
