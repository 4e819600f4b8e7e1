"""Scheduled backups: where the scheduler's state is kept between runs and restarts.

The loop itself is pure (core/scheduler.py); this module keeps its state in
$XDG_STATE_HOME/docker-persist/schedule/<project>.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from docker_persist.core.scheduler import ScheduleState, dump_state, load_state
from docker_persist.host.files import write_atomically
from docker_persist.host.paths import state_dir


def state_path(environ: Mapping[str, str], project: str) -> str:
    """Return the path of the project's scheduler state file."""
    return os.path.join(state_dir(environ), "schedule", f"{project}.json")


def read_state(path: str) -> ScheduleState:
    """Return the state saved at `path` (a fresh one if there is none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return load_state(handle.read())
    except FileNotFoundError:
        return ScheduleState()


def write_state(path: str, state: ScheduleState) -> None:
    """Save the state at `path` atomically (temp file, then rename)."""
    write_atomically(path, dump_state(state).encode())
