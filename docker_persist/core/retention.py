"""Retention: which snapshots `forget` keeps, with restic's semantics.

One pure function, `apply_policy`, maps a list of snapshots and a KeepPolicy to one
Decision per snapshot. It mirrors restic's `ApplyPolicy` (internal/restic/snapshot_policy.go, as of
restic 0.18) for the rules docker-persist has: last, hourly, daily, weekly, monthly,
yearly and within. No I/O, no clock unless `now` is left out.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence

from docker_persist.config.model import KeepPolicy
from docker_persist.errors import ConfigError
from docker_persist.units import EARLIEST, Duration, parse_duration

UTC = datetime.timezone.utc

EMPTY_POLICY_MESSAGE = "refusing to forget with an empty policy: give at least one --keep-* option"


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


def parse_within(text: str) -> Duration:
    """Return the Duration of a `within` rule, in docker-persist's one duration grammar (core/units.py):
    `30d`, `12h`, `1y6mo`, `2w`. `0d` is accepted and turns the rule off, as restic does.

    Raise ConfigError for anything else (a bare `m` is ambiguous: restic reads months).
    """
    return parse_duration(text, allow_zero=True)


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
      units.Duration.subtract_from). If no snapshot is dated before `now`, within keeps
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
        raise ConfigError(f"invalid keep within {policy.within!r}: expected a duration such as 30d or 1y6mo")
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


# --- per volume: what docker-persist's `forget` and `keep` apply ----------------------------------


@dataclasses.dataclass(frozen=True)
class SnapshotFacts:
    """What retention needs to know of a snapshot beyond its name and time."""

    name: str
    created: datetime.datetime
    volumes: tuple[str, ...]  # the volume keys it holds
    automatic: bool = False  # pre-restore or pre-down: docker-persist took it on its own
    pinned: bool = False
    verified: bool = False  # its newest drill passed


def plan_forget(
    snapshots: Sequence[SnapshotFacts], policy: KeepPolicy, now: datetime.datetime | None = None
) -> list[Decision]:
    """Return one Decision per snapshot, newest first: the policy applied to each volume's history.

    A snapshot is kept if any volume in it is kept, so forgetting never takes the last copy of a
    volume another snapshot happens not to hold. Per volume, snapshots taken by hand or on
    schedule and automatic ones (pre-restore, pre-down) are counted apart, each with the whole
    policy: automatic snapshots never use up the slots of the others. Also always kept:

    - a pinned snapshot ("pinned");
    - the newest snapshot of each volume whose last drill passed ("newest verified snapshot of V").

    Each reason names its volume: "daily snapshot of db_data". Raise ConfigError for a policy that
    apply_policy refuses (empty, or keeping nothing).
    """
    groups: dict[tuple[str, bool], list[SnapshotRef]] = {}
    for snapshot in snapshots:
        for volume in snapshot.volumes or ("",):
            groups.setdefault((volume, snapshot.automatic), []).append(SnapshotRef(snapshot.name, snapshot.created))
    reasons: dict[str, list[str]] = {s.name: [] for s in snapshots}
    if not snapshots:
        apply_policy([], policy, now)  # the policy is checked even with nothing to apply it to
    for (volume, automatic), refs in sorted(groups.items()):
        suffix = f" of {volume}" if volume else ""
        suffix += " (automatic)" if automatic else ""
        for decision in apply_policy(refs, policy, now):
            reasons[decision.snapshot.name] += [f"{reason}{suffix}" for reason in decision.reasons]
    newest_verified: dict[str, SnapshotFacts] = {}
    for snapshot in snapshots:
        if snapshot.verified:
            for volume in snapshot.volumes:
                held = newest_verified.get(volume)
                if held is None or (snapshot.created, snapshot.name) > (held.created, held.name):
                    newest_verified[volume] = snapshot
    for volume, snapshot in sorted(newest_verified.items()):
        reasons[snapshot.name].append(f"newest verified snapshot of {volume}")
    for snapshot in snapshots:
        if snapshot.pinned:
            reasons[snapshot.name].insert(0, "pinned")
    ordered = sort_snapshots([SnapshotRef(s.name, s.created) for s in snapshots])
    return [Decision(ref, bool(reasons[ref.name]), tuple(reasons[ref.name])) for ref in ordered]


def validate_policy(policy: KeepPolicy) -> None:
    """Raise ConfigError if applying `policy` would be refused: check it before any work it follows."""
    apply_policy([], policy, datetime.datetime.now(UTC))
