"""Retention: which snapshots `forget` keeps, with restic's semantics.

One pure function, `apply_policy`, maps a list of snapshots and a KeepPolicy to one
Decision per snapshot. It mirrors restic's `ApplyPolicy` (internal/restic/snapshot_policy.go, as of
restic 0.18) for the rules docker-persist has: last, hourly, daily, weekly, monthly,
yearly and within. No I/O, no clock unless `now` is left out.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Sequence

from docker_persist.config.model import KeepPolicy
from docker_persist.errors import ConfigError

UTC = datetime.timezone.utc
EARLIEST = datetime.datetime.min.replace(tzinfo=UTC)

EMPTY_POLICY_MESSAGE = "refusing to forget with an empty policy: give at least one --keep-* option"

_WITHIN_TEXT = re.compile(r"(?:[0-9]+[ymdh])+")
_WITHIN_PART = re.compile(r"([0-9]+)([ymdh])")
_WITHIN_UNITS = {"y": "years", "m": "months", "d": "days", "h": "hours"}


@dataclasses.dataclass(frozen=True)
class SnapshotRef:
    """A snapshot as retention sees it: its name and when it was taken (timezone-aware)."""

    name: str
    created: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether `forget` keeps a snapshot, and every rule that keeps it (empty when removed)."""

    snapshot: SnapshotRef
    keep: bool
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CalendarDuration:
    """A restic duration such as `1y2m3d4h`: calendar years, months and days, then hours."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __str__(self) -> str:
        """Return the duration as restic prints it: `1y2m3d4h`, leaving out the zero parts."""
        parts = ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
        return "".join(f"{value}{unit}" for value, unit in parts if value)

    def is_zero(self) -> bool:
        """Return True if every part is zero: restic then treats the rule as off."""
        return not (self.years or self.months or self.days or self.hours)

    def subtract_from(self, moment: datetime.datetime) -> datetime.datetime:
        """Return `moment` less this duration, as Go's `AddDate(-y, -m, -d).Add(-h hours)` computes it.

        Years and months move the calendar month; a day-of-month the new month does not have
        overflows into the next month, as Go normalises it, rather than being clamped: March 31
        less 1m is March 3 (March 2 in a leap year), not February 28. The days are then counted
        off, and the hours are exact hours. A result before year 1 is returned as EARLIEST.
        """
        month_index = moment.month - 1 - self.months
        year = moment.year - self.years + month_index // 12
        month = month_index % 12 + 1
        try:
            first_of_month = moment.replace(year=year, month=month, day=1)
            return first_of_month + datetime.timedelta(days=moment.day - 1 - self.days, hours=-self.hours)
        except (ValueError, OverflowError):
            return EARLIEST


def parse_within(text: str) -> CalendarDuration:
    """Return the CalendarDuration of a restic duration such as `1y2m3d4h`, `30d` or `12h`.

    The units are y (years), m (months, not minutes), d (days) and h (hours), in any order,
    each at most once; there are no weeks. Surrounding blanks are ignored. `0d` is accepted
    and turns the within rule off, as restic does.

    Raise ConfigError if the text is empty, has another unit, a sign, inner blanks or a
    repeated unit.
    """
    stripped = text.strip()
    if not _WITHIN_TEXT.fullmatch(stripped):
        raise ConfigError(
            f"invalid within duration {text!r}: expected e.g. 30d, 12h or 1y2m3d4h "
            "(y years, m months, d days, h hours; no weeks or minutes)"
        )
    values: dict[str, int] = {}
    for number, unit in _WITHIN_PART.findall(stripped):
        if _WITHIN_UNITS[unit] in values:
            raise ConfigError(f"invalid within duration {text!r}: the unit {unit!r} is given twice")
        values[_WITHIN_UNITS[unit]] = int(number)
    return CalendarDuration(**values)


# --- buckets: restic's bucker functions ---------------------------------------------


def _hour_bucket(moment: datetime.datetime, _: int) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day, moment.hour)


def _day_bucket(moment: datetime.datetime, _: int) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day)


def _week_bucket(moment: datetime.datetime, _: int) -> tuple[int, ...]:
    iso_year, iso_week, _weekday = moment.isocalendar()
    return (iso_year, iso_week)


def _month_bucket(moment: datetime.datetime, _: int) -> tuple[int, ...]:
    return (moment.year, moment.month)


def _year_bucket(moment: datetime.datetime, _: int) -> tuple[int, ...]:
    return (moment.year,)


def _position_bucket(_: datetime.datetime, position: int) -> tuple[int, ...]:
    # Every snapshot is a bucket of its own, so `last N` keeps the N newest.
    return (position,)


Bucketer = Callable[[datetime.datetime, int], tuple[int, ...]]

# In restic's order, which is also the order of the reasons.
COUNT_RULES: tuple[tuple[str, Bucketer, str], ...] = (
    ("last", _position_bucket, "last snapshot"),
    ("hourly", _hour_bucket, "hourly snapshot"),
    ("daily", _day_bucket, "daily snapshot"),
    ("weekly", _week_bucket, "weekly snapshot"),
    ("monthly", _month_bucket, "monthly snapshot"),
    ("yearly", _year_bucket, "yearly snapshot"),
)


@dataclasses.dataclass
class _CountRule:
    remaining: int  # -1: unlimited
    bucketer: Bucketer
    reason: str
    last_bucket: tuple[int, ...] | None = None


# --- the policy ---------------------------------------------------------------------


def _validated_counts(policy: KeepPolicy) -> dict[str, int]:
    counts: dict[str, int] = {}
    for field, _bucketer, _reason in COUNT_RULES:
        value = getattr(policy, field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"invalid keep {field} {value!r}: expected a whole number, or -1 for all")
        if value < -1:
            raise ConfigError(f"invalid keep {field} {value}: use a number above 0, or -1 for all (0 turns it off)")
        counts[field] = value
    return counts


def _aware_utc(moment: datetime.datetime, what: str) -> datetime.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} has no timezone: retention needs timezone-aware times")
    return moment.astimezone(UTC)


def _latest_before(times: Sequence[datetime.datetime], now: datetime.datetime) -> datetime.datetime | None:
    # restic measures `within` from the newest snapshot, leaving out any dated after now
    # (a wrong clock must not make every real snapshot look old).
    past = [t for t in times if t < now]
    return max(past) if past else None


def sort_snapshots(snapshots: Sequence[SnapshotRef]) -> list[SnapshotRef]:
    """Return the snapshots newest first; snapshots taken at the same time go by name, descending."""
    return sorted(snapshots, key=lambda s: (_aware_utc(s.created, f"snapshot {s.name!r}"), s.name), reverse=True)


def apply_policy(
    snapshots: Sequence[SnapshotRef], policy: KeepPolicy, now: datetime.datetime | None = None
) -> list[Decision]:
    """Return one Decision per snapshot, newest first, under restic's `forget` policy.

    The rules are a union: a snapshot is kept if any rule keeps it, and its reasons name
    every rule that does, in restic's order and wording: "within 2d", "last snapshot",
    "hourly snapshot", "daily snapshot", "weekly snapshot", "monthly snapshot",
    "yearly snapshot".

    - last N keeps the N newest snapshots.
    - hourly/daily/weekly/monthly/yearly N walk the snapshots newest first and keep the
      newest snapshot of each hour, day, ISO week (ISO year and week number), month or year,
      in UTC, for the first N distinct buckets. -1 means every bucket; 0 turns a rule off.
    - within D keeps every snapshot taken after (newest snapshot - D), measured from the
      newest snapshot dated strictly before `now` (default: the current time), not from
      `now` itself. Years and months are calendar arithmetic with Go's normalisation (see
      CalendarDuration.subtract_from). If no snapshot is dated before `now`, within keeps
      them all, as restic does.
    - The oldest snapshot (restic 0.16 and later): while a count rule has buckets left when
      the walk reaches the oldest snapshot, that rule keeps it too, even if a newer snapshot
      already holds its bucket. That reason then reads "oldest daily snapshot" (and so on),
      as restic prints it since late 2024 (restic PR #5039; 0.16 kept it under the plain
      reason). A -1 rule therefore always keeps the oldest.

    Raise ConfigError if the policy is empty, if every rule in it is off (0, or a zero
    within), if a count is below -1 or the within duration is invalid: a policy that keeps
    nothing must never remove everything by accident. Raise ValueError if a time is naive.
    """
    if policy.is_empty():
        raise ConfigError(EMPTY_POLICY_MESSAGE)
    counts = _validated_counts(policy)
    if policy.within is not None and not isinstance(policy.within, str):
        raise ConfigError(f"invalid keep within {policy.within!r}: expected a duration such as 30d or 1y2m3d4h")
    within = parse_within(policy.within) if policy.within is not None else None
    if within is not None and within.is_zero():
        within = None
    if within is None and not any(counts.values()):
        raise ConfigError(
            "refusing to forget with a policy that keeps nothing: every --keep-* option given is 0; "
            "give at least one above 0, or -1 for all"
        )

    ordered = sort_snapshots(snapshots)
    if not ordered:
        return []
    times = [_aware_utc(s.created, f"snapshot {s.name!r}") for s in ordered]
    reference = _aware_utc(now, "now") if now is not None else datetime.datetime.now(UTC)

    cutoff: datetime.datetime | None = None
    if within is not None:
        latest = _latest_before(times, reference)
        cutoff = EARLIEST if latest is None else within.subtract_from(latest)

    rules = [
        _CountRule(counts[field], bucketer, reason)
        for field, bucketer, reason in COUNT_RULES
        if counts.get(field, 0) != 0
    ]
    oldest = len(ordered) - 1
    decisions: list[Decision] = []
    for position, (snapshot, created) in enumerate(zip(ordered, times, strict=True)):
        reasons: list[str] = []
        if cutoff is not None and created > cutoff:
            reasons.append(f"within {within}")
        for rule in rules:
            if rule.remaining == 0:
                continue
            bucket = rule.bucketer(created, position)
            if bucket != rule.last_bucket or position == oldest:
                reasons.append(f"oldest {rule.reason}" if bucket == rule.last_bucket else rule.reason)
                rule.last_bucket = bucket
                if rule.remaining > 0:
                    rule.remaining -= 1
        decisions.append(Decision(snapshot=snapshot, keep=bool(reasons), reasons=tuple(reasons)))
    return decisions
