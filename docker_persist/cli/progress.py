"""Progress for byte streams: a live line on a terminal, nothing otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from docker_persist.units import format_bytes

__all__ = ["Progress", "format_bytes"]


class Progress:
    """Counts bytes per pass ("restore db_data"); on a TTY redraws one status line at most ten times a second:
    the pass, its share of the total where it is known, the rate and the time left."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.totals: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.started = time.monotonic()
        self._since: dict[str, float] = {}
        self._drawn = 0.0

    def expect(self, label: str, total: int | None) -> None:
        """Say how many bytes the pass `label` will move (None: unknown); it starts now."""
        if total:
            self.expected[label] = total
        self._since[label] = time.monotonic()

    def __call__(self, label: str, moved: int) -> None:
        self.totals[label] = self.totals.get(label, 0) + moved
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn < 0.1:
            return
        self._drawn = now
        self.stream.write(f"\r\033[K{self.line(label, now)}")
        self.stream.flush()

    def line(self, label: str, now: float) -> str:
        """Return the status line of pass `label` at time `now`."""
        done = self.totals.get(label, 0)
        elapsed = max(now - self._since.setdefault(label, self.started), 1e-6)
        rate = done / elapsed
        total = self.expected.get(label)
        if not total:
            return f"{label}: {format_bytes(done)} ({format_bytes(rate)}/s)"
        share = min(done / total, 0.99)  # the total is an estimate: never 100% before the end
        left = (total - done) / rate if rate > 0 and done < total else 0.0
        return f"{label}: {share:4.0%} of {format_bytes(total)} ({format_bytes(rate)}/s, {_duration(left)} left)"

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


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
