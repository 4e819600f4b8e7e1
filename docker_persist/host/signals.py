"""Ctrl-C and SIGTERM, held back while docker-persist puts things back.

`main` turns SIGTERM into KeyboardInterrupt, so both unwind the same way: every `finally` runs,
stopped services are started again, staging is removed, and the exit code is 130. A second
signal must not cut that clean-up short: inside `interrupts_deferred()`, a signal is only noted,
and raised as KeyboardInterrupt once the block is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_state = {"depth": 0, "pending": False}


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block; raise KeyboardInterrupt after it if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["depth"]:
        _state["depth"] += 1
        try:
            yield
        finally:
            _state["depth"] -= 1
        return

    def note(signum: int, frame: Any) -> None:
        _state["pending"] = True

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    _state["depth"], _state["pending"] = 1, False
    try:
        yield
    finally:
        _state["depth"] = 0
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt
