"""Progress for byte streams: a live line on a terminal, nothing otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from docker_persist.units import format_bytes

__all__ = ["Progress", "format_bytes"]


class Progress:
    """Counts bytes per label; on a TTY redraws one status line at most ten times a second."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.totals: dict[str, int] = {}
        self.started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, label: str, moved: int) -> None:
        self.totals[label] = self.totals.get(label, 0) + moved
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = sum(self.totals.values()) / max(now - self.started, 1e-6)
        self.stream.write(f"\r\033[K{label}: {format_bytes(self.totals[label])} ({format_bytes(rate)}/s)")
        self.stream.flush()

    def done(self) -> None:
        """Clear the status line."""
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def say(self, message: str) -> None:
        """Print a step on the terminal (stderr), above the status line."""
        if self.enabled:
            self.stream.write(f"\r\033[K{message}\n")
            self.stream.flush()
