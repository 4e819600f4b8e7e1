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


def cache_dir(environ: Mapping[str, str]) -> str:
    """Return docker-persist's cache dir (XDG_CACHE_HOME, else ~/.cache)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "docker-persist")
