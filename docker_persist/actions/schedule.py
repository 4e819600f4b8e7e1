"""Scheduled backups: the scheduler's state between runs and restarts, and the one-scheduler rule.

The loop itself is pure (core/scheduler.py); this module keeps its state in
$XDG_STATE_HOME/docker-persist/schedule/<engine>-<project>.json, written whole after each
change. One scheduler runs per project and engine: it holds a lock beside its state file for as
long as it runs, and a second one refuses to start, naming the first; otherwise two schedulers
would both back up on every fire time and overwrite each other's counters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from docker_persist.core.scheduler import ScheduleState, dump_state, load_state
from docker_persist.errors import BusyError
from docker_persist.host.files import write_atomically
from docker_persist.host.locks import FileLock
from docker_persist.host.paths import engine_state_file


class SchedulerRunningError(BusyError):
    """Another scheduler runs for the project on this engine."""


def state_path(environ: Mapping[str, str], engine_host: str, project: str) -> str:
    """Return the path of the scheduler state file of `project` on the engine at `engine_host`."""
    return engine_state_file(environ, "schedule", engine_host, project)


def scheduler_lock(path: str, project: str) -> FileLock:
    """Return the lock the scheduler of the state file `path` holds while it runs."""
    return FileLock(os.path.splitext(path)[0] + ".lock", SchedulerRunningError, f"the scheduler of project {project!r}")


def read_state(path: str) -> ScheduleState:
    """Return the state saved at `path` (a fresh one if there is none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return load_state(handle.read())
    except (OSError, UnicodeDecodeError):  # missing or unreadable: only counters; metrics must still answer
        return ScheduleState()


def write_state(path: str, state: ScheduleState) -> None:
    """Save the state at `path` atomically (temp file, then rename)."""
    write_atomically(path, dump_state(state).encode())
