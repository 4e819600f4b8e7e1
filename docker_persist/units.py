"""Sizes and durations, for people and from them."""

from __future__ import annotations

import dataclasses
import datetime
import re

from docker_persist.errors import ConfigError


def format_bytes(size: float) -> str:
    """Return a size for people: 1.2 GB, 340.0 kB, 12 B."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


# --- durations: one grammar for every duration docker-persist reads ---------------------------

# In the order they must be written; `m` alone is refused: minutes or months?
DURATION_UNITS = ("y", "mo", "w", "d", "h", "min", "s")
_DURATION = re.compile("^" + "".join(f"(?:([0-9]+){unit})?" for unit in DURATION_UNITS) + "$")
DURATION_HELP = "e.g. 26h, 7d, 2w, 6mo, 1y6mo or 90min (y, mo, w, d, h, min, s, largest first)"
EARLIEST = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Duration:
    """A duration, as written: calendar years and months, then weeks, days, hours, minutes, seconds.

    Years and months move the calendar (2026-03-31 less a month is in March: months do not all
    have 31 days, and Go's normalisation, which restic's `within` follows, overflows rather than
    clamps); weeks are 7 days; the rest are exact.
    """

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def __str__(self) -> str:
        """Return the duration in the grammar it is read in: `1y6mo`, `26h`, `90min`."""
        parts = zip(dataclasses.astuple(self), DURATION_UNITS, strict=True)
        return "".join(f"{value}{unit}" for value, unit in parts if value) or "0s"

    def is_zero(self) -> bool:
        """Return True if every part is zero."""
        return not any(dataclasses.astuple(self))

    def subtract_from(self, moment: datetime.datetime) -> datetime.datetime:
        """Return `moment` less this duration, as Go's `AddDate(-y, -m, -d).Add(-rest)` computes it.

        A day-of-month the new month does not have overflows into the next month: March 31 less
        1mo is March 3 (March 2 in a leap year), not February 28. A result before year 1 is
        EARLIEST.
        """
        month_index = moment.month - 1 - self.months
        year = moment.year - self.years + month_index // 12
        month = month_index % 12 + 1
        rest = datetime.timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)
        try:
            first_of_month = moment.replace(year=year, month=month, day=1)
            return first_of_month + datetime.timedelta(days=moment.day - 1 - self.weeks * 7 - self.days) - rest
        except (ValueError, OverflowError):
            return EARLIEST


DEFAULT_MAX_AGE = Duration(days=7)
"""How old the newest snapshot of a precious volume may be when x-persist sets neither max_age nor schedule."""
DEFAULT_VERIFY_MAX_AGE = Duration(days=30)
"""How long ago a verify of a precious volume must have passed when x-persist sets no verify_max_age."""


def parse_duration(text: str, allow_zero: bool = False) -> Duration:
    """Return the Duration of a text such as `26h`, `7d`, `2w3d`, `6mo` or `1y6mo`.

    Units, largest first, each at most once: y (years), mo (months), w (weeks), d (days),
    h (hours), min (minutes), s (seconds). A bare `m` is refused as ambiguous (restic reads
    months, other tools minutes). Raise ConfigError for anything else, and for zero unless
    `allow_zero`.
    """
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped) if stripped else None
    if match is None:
        hint = ""
        if re.fullmatch(r"(?:\d+[a-z]+)+", stripped) and re.search(r"\d+m(?!in|o)", stripped):
            hint = ": 'm' is ambiguous, write 'mo' for months or 'min' for minutes"
        raise ConfigError(f"invalid duration {text!r}{hint}; expected {DURATION_HELP}")
    duration = Duration(*(int(value or 0) for value in match.groups()))
    if duration.is_zero() and not allow_zero:
        raise ConfigError(f"invalid duration {text!r}: must be more than zero")
    return duration
