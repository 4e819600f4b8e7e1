"""`protect` and `unprotect`: put engine guards on volumes, or take them off, holding the project lock."""

from __future__ import annotations

from collections.abc import Sequence

from docker_persist.actions.common import LOCK_TIMEOUT, Workspace
from docker_persist.engine.guards import create_guard, find_guards, remove_guards


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
