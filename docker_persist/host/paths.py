"""Where docker-persist keeps its own files on this machine (the XDG base directories)."""

from __future__ import annotations

import os
from collections.abc import Mapping


def state_dir(environ: Mapping[str, str]) -> str:
    """Return docker-persist's state dir ($XDG_STATE_HOME, else ~/.local/state)."""
    base = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "docker-persist")


def engine_state_file(environ: Mapping[str, str], folder: str, engine_host: str, project: str) -> str:
    """Return the state file of `project` on the engine at `engine_host` in the state dir's `folder`:
    `<folder>/<engine>-<project>.json`, the engine a hash of its address (see engine_state_projects)."""
    return os.path.join(state_dir(environ), folder, f"{_engine_tag(engine_host)}-{project}.json")


def engine_state_projects(environ: Mapping[str, str], folder: str, engine_host: str) -> set[str]:
    """Return the projects with a state file of the engine at `engine_host` in `folder` (none if it cannot be read)."""
    prefix = f"{_engine_tag(engine_host)}-"
    try:
        names = os.listdir(os.path.join(state_dir(environ), folder))
    except OSError:
        return set()
    return {n[len(prefix) : -len(".json")] for n in names if n.startswith(prefix) and n.endswith(".json")}


def _engine_tag(engine_host: str) -> str:
    import hashlib

    return hashlib.sha256(engine_host.encode()).hexdigest()[:12]


def cache_dir(environ: Mapping[str, str]) -> str:
    """Return docker-persist's cache dir (XDG_CACHE_HOME, else ~/.cache)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "docker-persist")
