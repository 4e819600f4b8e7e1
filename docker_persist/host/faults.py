"""Crash points: where the crash tests kill docker-persist with -9, between two steps of an operation.

Inert unless armed: with DOCKER_PERSIST_CRASH_AT=<point> in the environment, the process kills
itself (SIGKILL, as `kill -9` would) the first time it reaches that point; with nothing set,
`crash_point` is one comparison. The points are named `<operation>:<step>`, for example
`restore:undo-taken`; tests/engine/test_crashes.py arms each in turn and proves the next run
recovers.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "DOCKER_PERSIST_CRASH_AT"
_ARMED = os.environ.get(CRASH_ENV) or None


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_crash = _kill  # unit tests swap in an exception that no handler catches


def crash_point(name: str) -> None:
    """Die here, as kill -9 would, if the crash tests armed this point."""
    if _ARMED is not None and name == _ARMED:
        _crash()
