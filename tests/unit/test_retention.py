"""Retention: restic's `forget` policy as one pure function.

Golden files pin the whole decision list of a few series of snapshots under a few policies:
`UPDATE_GOLDEN=1` rewrites them, and a rewritten file must be read and judged against
restic's rules before it is committed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from docker_persist.config.model import KeepPolicy
from docker_persist.core.retention import (
    EARLIEST,
    EMPTY_POLICY_MESSAGE,
    Decision,
    SnapshotFacts,
    SnapshotRef,
    apply_policy,
    parse_within,
    plan_forget,
    sort_snapshots,
)
from docker_persist.errors import ConfigError
from docker_persist.units import Duration

GOLDEN = Path(__file__).parent / "golden" / "retention"
UTC = datetime.timezone.utc
NOW = datetime.datetime(2027, 6, 1, 12, 0, tzinfo=UTC)  # after every series below
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


# --- building series ------------------------------------------------------------------


def at(text: str) -> datetime.datetime:
    """Return the UTC time for `2026-03-01T12:00` (seconds optional)."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def snap(created: datetime.datetime | str, name: str | None = None) -> SnapshotRef:
    moment = at(created) if isinstance(created, str) else created
    return SnapshotRef(name=name or f"{moment:%Y-%m-%dT%H%M%SZ}", created=moment)


def hourly_series() -> list[SnapshotRef]:
    """Return 60 snapshots 72 minutes apart from 2026-03-01 00:00: about hourly, over 3 days."""
    start = at("2026-03-01T00:00")
    return [snap(start + k * 72 * MINUTE) for k in range(60)]


def daily_series() -> list[SnapshotRef]:
    """Return daily 03:00 snapshots over 400 days from 2025-06-01, with gaps and some doubles.

    Every 7th day (from the 4th) is missing, and 20 days from 2025-09-29 to 2025-10-18 are
    missing (an outage); every 30th day also has a 15:30 snapshot.
    """
    start = at("2025-06-01T03:00")
    series = []
    for k in range(400):
        if k % 7 == 3 or 120 <= k < 140:
            continue
        series.append(snap(start + k * DAY))
        if k % 30 == 0:
            series.append(snap(start + k * DAY + 12 * HOUR + 30 * MINUTE))
    return series


def year_end_series() -> list[SnapshotRef]:
    """Return noon snapshots each day from 2026-12-24 to 2027-01-10: across ISO week 2026-W53."""
    start = at("2026-12-24T12:00")
    return [snap(start + k * DAY) for k in range(18)]


SERIES = {"hourly": hourly_series, "daily": daily_series, "year_end": year_end_series}


def policy_dict(policy: KeepPolicy) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(policy).items() if v is not None}


def decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "name": decision.snapshot.name,
        "created": decision.snapshot.created.isoformat(),
        "keep": decision.keep,
        "reasons": list(decision.reasons),
    }


def kept(decisions: list[Decision]) -> list[str]:
    return [d.snapshot.name for d in decisions if d.keep]


def reasons_of(decisions: list[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.snapshot.name: d.reasons for d in decisions if d.keep}


def assert_golden(name: str, series: str, policy: KeepPolicy) -> None:
    path = GOLDEN / f"{name}.json"
    decisions = apply_policy(SERIES[series](), policy, now=NOW)
    actual = {
        "series": series,
        "policy": policy_dict(policy),
        "now": NOW.isoformat(),
        "kept": sum(d.keep for d in decisions),
        "removed": sum(not d.keep for d in decisions),
        "decisions": [decision_dict(d) for d in decisions],
    }
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2) + "\n")
    assert actual == json.loads(path.read_text()), f"{path} differs; UPDATE_GOLDEN=1 rewrites it"


# --- golden files ---------------------------------------------------------------------

GOLDEN_CASES = [
    ("hourly_last_3", "hourly", KeepPolicy(last=3)),
    ("hourly_hourly_24", "hourly", KeepPolicy(hourly=24)),
    ("hourly_daily_7", "hourly", KeepPolicy(daily=7)),
    ("hourly_within_2d", "hourly", KeepPolicy(within="2d")),
    ("hourly_combined", "hourly", KeepPolicy(last=3, hourly=6, daily=2, within="12h")),
    ("daily_daily_7", "daily", KeepPolicy(daily=7)),
    ("daily_weekly_4", "daily", KeepPolicy(weekly=4)),
    ("daily_monthly_6", "daily", KeepPolicy(monthly=6)),
    ("daily_yearly_all", "daily", KeepPolicy(yearly=-1)),
    ("daily_yearly_5", "daily", KeepPolicy(yearly=5)),
    ("daily_within_1mo", "daily", KeepPolicy(within="1mo")),
    ("daily_combined", "daily", KeepPolicy(last=3, daily=7, weekly=4, monthly=6, yearly=-1)),
    ("year_end_weekly_all", "year_end", KeepPolicy(weekly=-1)),
]


@pytest.mark.parametrize(("name", "series", "policy"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_golden(name: str, series: str, policy: KeepPolicy) -> None:
    assert_golden(name, series, policy)


def test_series_are_what_the_goldens_say() -> None:
    assert len(hourly_series()) == 60
    assert hourly_series()[-1].created == at("2026-03-03T22:48")
    daily = daily_series()
    assert daily[0].created == at("2025-06-01T03:00")
    assert daily[-1].created == at("2026-07-05T03:00")
    assert not [s for s in daily if at("2025-09-29T00:00") <= s.created < at("2025-10-19T00:00")]


# --- the union ------------------------------------------------------------------------

SINGLE_RULES: dict[str, Any] = {
    "within": "2d",
    "last": 5,
    "hourly": 10,
    "daily": 4,
    "weekly": 3,
    "monthly": 8,
    "yearly": -1,
}


@pytest.mark.parametrize("series", sorted(SERIES))
def test_rules_are_a_union_and_each_reason_comes_from_its_rule(series: str) -> None:
    snapshots = SERIES[series]()
    combined = apply_policy(snapshots, KeepPolicy(**SINGLE_RULES), now=NOW)
    alone = {
        rule: apply_policy(snapshots, KeepPolicy(**{rule: value}), now=NOW) for rule, value in SINGLE_RULES.items()
    }
    for index, decision in enumerate(combined):
        # restic's order: within, then last, hourly, daily, weekly, monthly, yearly.
        expected = tuple(reason for rule in SINGLE_RULES for reason in alone[rule][index].reasons)
        assert decision.reasons == expected
        assert decision.keep == any(alone[rule][index].keep for rule in SINGLE_RULES)


def test_a_snapshot_kept_by_several_rules_lists_them_all() -> None:
    snapshots = [snap("2026-03-10T08:00"), snap("2026-03-10T07:00"), snap("2026-03-09T07:00")]
    decisions = apply_policy(snapshots, KeepPolicy(last=1, daily=2, monthly=1, within="2d"), now=NOW)
    assert [d.reasons for d in decisions] == [
        ("within 2d", "last snapshot", "daily snapshot", "monthly snapshot"),
        ("within 2d",),
        ("within 2d", "daily snapshot"),
    ]


def test_every_snapshot_gets_one_decision_and_removed_ones_have_no_reason() -> None:
    snapshots = daily_series()
    decisions = apply_policy(snapshots, KeepPolicy(weekly=2), now=NOW)
    assert sorted(d.snapshot.name for d in decisions) == sorted(s.name for s in snapshots)
    assert all(d.keep == bool(d.reasons) for d in decisions)
    assert kept(decisions) == ["2026-07-05T030000Z", "2026-06-28T030000Z"]  # two weeks; no buckets left for the oldest


# --- count rules ----------------------------------------------------------------------


def test_last_keeps_the_newest_n() -> None:
    decisions = apply_policy(hourly_series(), KeepPolicy(last=3), now=NOW)
    assert kept(decisions) == [s.name for s in sort_snapshots(hourly_series())[:3]]


def test_a_bucket_keeps_its_newest_snapshot() -> None:
    snapshots = [snap("2026-03-10T08:59"), snap("2026-03-10T08:01"), snap("2026-03-10T07:30")]
    decisions = apply_policy(snapshots, KeepPolicy(hourly=1), now=NOW)
    assert kept(decisions) == ["2026-03-10T085900Z"]


def test_minus_one_keeps_every_bucket() -> None:
    decisions = apply_policy(hourly_series(), KeepPolicy(daily=-1), now=NOW)
    assert reasons_of(decisions) == {
        "2026-03-03T224800Z": ("daily snapshot",),
        "2026-03-02T224800Z": ("daily snapshot",),
        "2026-03-01T224800Z": ("daily snapshot",),
        "2026-03-01T000000Z": ("oldest daily snapshot",),
    }


def test_last_minus_one_keeps_everything() -> None:
    decisions = apply_policy(hourly_series(), KeepPolicy(last=-1), now=NOW)
    assert all(d.reasons == ("last snapshot",) for d in decisions)


def test_the_oldest_is_kept_while_a_rule_has_buckets_left() -> None:
    # restic >= 0.16: two daily buckets exist, the policy asks for 5, so the oldest stays too.
    snapshots = [snap("2026-03-10T08:00"), snap("2026-03-09T20:00"), snap("2026-03-09T08:00")]
    decisions = apply_policy(snapshots, KeepPolicy(daily=5), now=NOW)
    assert [d.reasons for d in decisions] == [("daily snapshot",), ("daily snapshot",), ("oldest daily snapshot",)]


def test_the_oldest_is_not_kept_once_a_rule_has_used_its_buckets() -> None:
    snapshots = [snap("2026-03-10T08:00"), snap("2026-03-09T20:00"), snap("2026-03-09T08:00")]
    decisions = apply_policy(snapshots, KeepPolicy(daily=2), now=NOW)
    assert kept(decisions) == ["2026-03-10T080000Z", "2026-03-09T200000Z"]


def test_the_oldest_in_a_new_bucket_is_not_called_oldest() -> None:
    snapshots = [snap("2026-03-10T08:00"), snap("2026-03-09T08:00")]
    decisions = apply_policy(snapshots, KeepPolicy(daily=5), now=NOW)
    assert [d.reasons for d in decisions] == [("daily snapshot",), ("daily snapshot",)]


def test_a_zero_rule_is_off() -> None:
    snapshots = [snap("2026-03-10T08:00"), snap("2026-03-09T08:00")]
    decisions = apply_policy(snapshots, KeepPolicy(last=0, daily=1, within="0d"), now=NOW)
    assert [d.reasons for d in decisions] == [("daily snapshot",), ()]


@pytest.mark.parametrize(
    ("monday", "sunday", "iso"),
    [
        ("2026-12-28T00:00", "2027-01-03T23:59", "2026-W53"),
        ("2025-12-29T00:00", "2026-01-04T23:59", "2026-W01"),
    ],
)
def test_a_week_is_an_iso_week_across_the_new_year(monday: str, sunday: str, iso: str) -> None:
    # The bucket is the ISO year and week, so the days of one week share it across 1 January.
    assert f"{at(monday):%G-W%V}" == f"{at(sunday):%G-W%V}" == iso
    week = [snap(at(monday) + k * DAY) for k in range(7)]
    decisions = apply_policy(
        [*week, snap(at(monday) - MINUTE), snap(at(sunday) + MINUTE)], KeepPolicy(weekly=2), now=NOW
    )
    assert kept(decisions) == [snap(at(sunday) + MINUTE).name, week[-1].name]


def test_2026_12_31_and_2027_01_01_are_one_weekly_bucket() -> None:
    snapshots = [snap("2027-01-04T12:00"), snap("2027-01-01T12:00"), snap("2026-12-31T12:00")]
    decisions = apply_policy(snapshots, KeepPolicy(weekly=2), now=NOW)
    assert [d.reasons for d in decisions] == [("weekly snapshot",), ("weekly snapshot",), ()]


def test_buckets_are_taken_in_utc() -> None:
    eastern = datetime.timezone(datetime.timedelta(hours=-5))
    late = datetime.datetime(2026, 3, 1, 23, 30, tzinfo=eastern)  # 2026-03-02 04:30 UTC
    snapshots = [SnapshotRef("late", late), snap("2026-03-02T01:00", "early")]
    decisions = apply_policy(snapshots, KeepPolicy(daily=1), now=NOW)
    assert kept(decisions) == ["late"]


# --- within ---------------------------------------------------------------------------


def test_within_is_measured_from_the_newest_snapshot_not_from_now() -> None:
    snapshots = [snap("2026-03-10T08:00"), snap("2026-03-08T09:00"), snap("2026-03-08T08:00")]
    decisions = apply_policy(snapshots, KeepPolicy(within="2d"), now=at("2030-01-01T00:00"))
    # The cut-off is 2026-03-08 08:00, and a snapshot must be strictly newer.
    assert [d.reasons for d in decisions] == [("within 2d",), ("within 2d",), ()]


def test_within_ignores_a_snapshot_dated_after_now() -> None:
    now = at("2026-03-10T12:00")
    snapshots = [snap("2027-01-01T00:00"), snap("2026-03-10T08:00"), snap("2026-03-09T09:00"), snap("2026-03-07T08:00")]
    decisions = apply_policy(snapshots, KeepPolicy(within="1d"), now=now)
    assert kept(decisions) == ["2027-01-01T000000Z", "2026-03-10T080000Z", "2026-03-09T090000Z"]


def test_within_keeps_everything_when_every_snapshot_is_after_now() -> None:
    snapshots = [snap("2027-01-01T00:00"), snap("2020-01-01T00:00", "a")]
    decisions = apply_policy(snapshots, KeepPolicy(within="1d"), now=at("2019-01-01T00:00"))
    assert all(d.keep for d in decisions)


def test_within_is_strict_at_the_cut_off() -> None:
    newest = at("2026-03-10T08:00")
    snapshots = [
        snap(newest),
        snap(newest - 2 * DAY + datetime.timedelta(microseconds=1), "just"),
        snap(newest - 2 * DAY, "edge"),
    ]
    decisions = apply_policy(snapshots, KeepPolicy(within="2d"), now=NOW)
    assert kept(decisions) == ["2026-03-10T080000Z", "just"]


def test_within_months_overflow_as_go_does() -> None:
    # 2026-03-31 less one month is "2026-02-31", which Go normalises to 2026-03-03.
    snapshots = [
        snap("2026-03-31T12:00"),
        snap("2026-03-03T12:00:01"),
        snap("2026-03-03T12:00"),
        snap("2026-03-01T12:00"),
    ]
    decisions = apply_policy(snapshots, KeepPolicy(within="1mo"), now=NOW)
    assert kept(decisions) == ["2026-03-31T120000Z", "2026-03-03T120001Z"]


def test_within_combines_calendar_parts_and_hours() -> None:
    snapshots = [snap("2026-03-10T08:00"), snap("2025-01-07T04:00:01"), snap("2025-01-07T04:00")]
    decisions = apply_policy(snapshots, KeepPolicy(within="1y2mo3d4h"), now=NOW)
    assert [d.reasons for d in decisions] == [("within 1y2mo3d4h",), ("within 1y2mo3d4h",), ()]


def test_within_reason_is_printed_as_restic_prints_it() -> None:
    decisions = apply_policy([snap("2026-03-10T08:00")], KeepPolicy(within="0y48h"), now=NOW)
    assert decisions[0].reasons == ("within 48h",)


@pytest.mark.parametrize(
    ("moment", "duration", "expected"),
    [
        ("2026-01-31T10:00", Duration(months=1), "2025-12-31T10:00"),
        ("2026-03-31T10:00", Duration(months=1), "2026-03-03T10:00"),
        ("2028-03-31T10:00", Duration(months=1), "2028-03-02T10:00"),
        ("2028-02-29T10:00", Duration(years=1), "2027-03-01T10:00"),
        ("2026-01-15T10:00", Duration(months=13), "2024-12-15T10:00"),
        ("2026-03-01T02:00", Duration(days=1, hours=3), "2026-02-27T23:00"),
        ("2026-03-10T08:00", Duration(days=40), "2026-01-29T08:00"),
    ],
)
def test_subtract_from_follows_go_add_date(moment: str, duration: Duration, expected: str) -> None:
    assert duration.subtract_from(at(moment)) == at(expected)


def test_subtract_from_before_year_one_is_the_earliest_time() -> None:
    assert Duration(years=5000).subtract_from(at("2026-03-10T08:00")) == EARLIEST
    assert Duration(days=10**6).subtract_from(at("2026-03-10T08:00")) == EARLIEST


# --- order, ties and sizes ------------------------------------------------------------


def test_decisions_are_newest_first_and_ties_go_by_name_descending() -> None:
    same = at("2026-03-10T08:00")
    snapshots = [SnapshotRef("b", same), SnapshotRef("c", same - HOUR), SnapshotRef("a", same), SnapshotRef("z", same)]
    decisions = apply_policy(snapshots, KeepPolicy(last=1), now=NOW)
    assert [d.snapshot.name for d in decisions] == ["z", "b", "a", "c"]
    assert kept(decisions) == ["z"]


def test_ties_keep_the_greatest_name_in_a_bucket() -> None:
    same = at("2026-03-10T08:00")
    decisions = apply_policy([SnapshotRef("a", same), SnapshotRef("b", same)], KeepPolicy(daily=1), now=NOW)
    assert kept(decisions) == ["b"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unsorted_input_gives_the_same_decisions(seed: int) -> None:
    policy = KeepPolicy(last=3, daily=7, weekly=4, monthly=6, yearly=-1, within="10d")
    shuffled = daily_series()
    random.Random(seed).shuffle(shuffled)
    assert apply_policy(shuffled, policy, now=NOW) == apply_policy(daily_series(), policy, now=NOW)


@pytest.mark.parametrize(
    ("policy", "reasons"),
    [
        (KeepPolicy(last=1), ("last snapshot",)),
        (KeepPolicy(daily=3), ("daily snapshot",)),
        (KeepPolicy(yearly=-1), ("yearly snapshot",)),
        (KeepPolicy(within="1h"), ("within 1h",)),
        (KeepPolicy(hourly=1, within="1d"), ("within 1d", "hourly snapshot")),
    ],
)
def test_a_single_snapshot(policy: KeepPolicy, reasons: tuple[str, ...]) -> None:
    only = snap("2026-03-10T08:00")
    assert apply_policy([only], policy, now=NOW) == [Decision(only, True, reasons)]


def test_no_snapshots() -> None:
    assert apply_policy([], KeepPolicy(last=1), now=NOW) == []


def test_now_defaults_to_the_current_time() -> None:
    snapshots = [snap("2020-03-10T08:00"), snap("2020-03-01T08:00")]
    assert kept(apply_policy(snapshots, KeepPolicy(within="2d"))) == ["2020-03-10T080000Z"]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        apply_policy([SnapshotRef("a", datetime.datetime(2026, 3, 10))], KeepPolicy(last=1), now=NOW)
    with pytest.raises(ValueError, match="no timezone"):
        apply_policy([snap("2026-03-10T08:00")], KeepPolicy(within="1d"), now=datetime.datetime(2026, 3, 10))


# --- refusing ---------------------------------------------------------------------------


@pytest.mark.parametrize("snapshots", [[], [snap("2026-03-10T08:00")]])
def test_an_empty_policy_is_refused(snapshots: list[SnapshotRef]) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_policy(snapshots, KeepPolicy(), now=NOW)
    assert str(caught.value) == EMPTY_POLICY_MESSAGE
    assert EMPTY_POLICY_MESSAGE == "refusing to forget with an empty policy: give at least one --keep-* option"


@pytest.mark.parametrize(
    "policy", [KeepPolicy(last=0), KeepPolicy(daily=0, yearly=0, within="0d"), KeepPolicy(within="0h")]
)
def test_a_policy_whose_rules_are_all_off_is_refused(policy: KeepPolicy) -> None:
    with pytest.raises(ConfigError, match="keeps nothing"):
        apply_policy([snap("2026-03-10T08:00")], policy, now=NOW)


@pytest.mark.parametrize("field", ["last", "hourly", "daily", "weekly", "monthly", "yearly"])
def test_a_count_below_minus_one_is_refused(field: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid keep {field} -2"):
        apply_policy([snap("2026-03-10T08:00")], KeepPolicy(**{field: -2}), now=NOW)


@pytest.mark.parametrize("value", [True, "3", 1.5])
def test_a_count_that_is_not_a_whole_number_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="invalid keep daily"):
        apply_policy([], KeepPolicy(daily=value), now=NOW)  # type: ignore[arg-type]


def test_an_invalid_within_is_refused() -> None:
    with pytest.raises(ConfigError, match="invalid duration '6m': 'm' is ambiguous"):
        apply_policy([], KeepPolicy(within="6m"), now=NOW)
    with pytest.raises(ConfigError, match="invalid keep within 2"):
        apply_policy([], KeepPolicy(within=2), now=NOW)  # type: ignore[arg-type]


# --- parse_within: the one duration grammar (docker_persist/units.py), 0 allowed ----------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1y2mo3d4h", Duration(years=1, months=2, days=3, hours=4)),
        ("30d", Duration(days=30)),
        ("12h", Duration(hours=12)),
        ("6mo", Duration(months=6)),
        ("2y", Duration(years=2)),
        ("2w3d", Duration(weeks=2, days=3)),
        ("1d12h", Duration(days=1, hours=12)),
        ("90min", Duration(minutes=90)),
        (" 7d ", Duration(days=7)),
        ("0d", Duration()),
        ("0100h", Duration(hours=100)),
    ],
)
def test_parse_within_accepts(text: str, expected: Duration) -> None:
    assert parse_within(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "3 days",
        "6m",
        "1y6m",
        "12h1d",
        "1d 2h",
        "d",
        "5",
        "1.5d",
        "1M",
        "1D",
        "-1d",
        "+1d",
        "1d1d",
        "y1",
        "٣d",
    ],
)
def test_parse_within_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_within(text)


@pytest.mark.parametrize(("text", "printed"), [("1y2mo3d4h", "1y2mo3d4h"), ("0y2d", "2d"), ("2w", "2w"), ("0d", "0s")])
def test_a_within_duration_prints_as_it_is_written(text: str, printed: str) -> None:
    assert str(parse_within(text)) == printed


# --- plan_forget: per volume, pins, automatic snapshots apart, the newest verified kept --------------


def facts(
    name: str, when: str, volumes: tuple[str, ...] = ("data",), automatic: bool = False, pinned: bool = False,
    verified: bool = False,
) -> SnapshotFacts:  # fmt: skip
    return SnapshotFacts(name, at(when), volumes, automatic, pinned, verified)


def plan(snapshots: list[SnapshotFacts], policy: KeepPolicy) -> dict[str, tuple[str, ...]]:
    return {d.snapshot.name: d.reasons for d in plan_forget(snapshots, policy, now=NOW)}


def test_a_volume_s_last_copy_is_never_forgotten_for_another_volume_s_sake() -> None:
    """keep last 2: a snapshot of va and vb, then two of va alone. vb's only copy stays."""
    snapshots = [
        facts("full", "2026-03-01T00:00", ("va", "vb")),
        facts("va-1", "2026-03-02T00:00", ("va",)),
        facts("va-2", "2026-03-03T00:00", ("va",)),
    ]
    reasons = plan(snapshots, KeepPolicy(last=2))
    assert reasons["full"] == ("last snapshot of vb",)
    assert reasons["va-2"] == ("last snapshot of va",) and reasons["va-1"] == ("last snapshot of va",)
    assert plan(snapshots, KeepPolicy(last=1))["va-1"] == ()


def test_automatic_snapshots_do_not_use_up_the_slots_of_the_others() -> None:
    snapshots = [
        facts("before-upgrade", "2026-03-01T00:00"),
        facts("2026-03-02T000000Z-pre-restore", "2026-03-02T00:00", automatic=True),
        facts("2026-03-03T000000Z-pre-down", "2026-03-03T00:00", automatic=True),
        facts("2026-03-04T000000Z-pre-restore", "2026-03-04T00:00", automatic=True),
    ]
    reasons = plan(snapshots, KeepPolicy(last=1))
    assert reasons["before-upgrade"] == ("last snapshot of data",)
    assert reasons["2026-03-04T000000Z-pre-restore"] == ("last snapshot of data (automatic)",)
    assert reasons["2026-03-03T000000Z-pre-down"] == reasons["2026-03-02T000000Z-pre-restore"] == ()


def test_pinned_snapshots_and_the_newest_verified_are_kept_by_any_policy() -> None:
    snapshots = [
        facts("old-pinned", "2025-01-01T00:00", pinned=True),
        facts("verified", "2026-01-01T00:00", verified=True),
        facts("older-verified", "2025-06-01T00:00", verified=True),
        facts("a", "2026-03-01T00:00"),
        facts("b", "2026-03-02T00:00"),
    ]
    reasons = plan(snapshots, KeepPolicy(last=1))
    assert reasons["old-pinned"] == ("pinned",)
    assert reasons["verified"] == ("newest verified snapshot of data",)
    assert reasons["older-verified"] == ()
    assert reasons["b"] == ("last snapshot of data",) and reasons["a"] == ()


def test_plan_forget_refuses_what_apply_policy_refuses_even_with_nothing_to_forget() -> None:
    with pytest.raises(ConfigError):
        plan_forget([], KeepPolicy(), now=NOW)
    with pytest.raises(ConfigError, match="keeps nothing"):
        plan_forget([], KeepPolicy(last=0), now=NOW)


@pytest.mark.parametrize("seed", range(30))
def test_plan_forget_never_forgets_the_newest_snapshot_of_any_volume(seed: int) -> None:
    rng = random.Random(seed)
    volumes = ["va", "vb", "vc"]
    snapshots = []
    for index in range(rng.randint(1, 25)):
        held = tuple(v for v in volumes if rng.random() < 0.5) or (rng.choice(volumes),)
        when = at("2026-01-01T00:00") + datetime.timedelta(hours=rng.randint(0, 24 * 90))
        snapshots.append(SnapshotFacts(f"s{index:02d}", when, held, rng.random() < 0.3, rng.random() < 0.1))
    policy = rng.choice([KeepPolicy(last=1), KeepPolicy(daily=2), KeepPolicy(weekly=1, within="3d")])
    kept = {d.snapshot.name for d in plan_forget(snapshots, policy, now=NOW) if d.keep}
    for volume in volumes:
        for automatic in (False, True):
            holding = [s for s in snapshots if volume in s.volumes and s.automatic == automatic]
            if holding:
                newest = max(holding, key=lambda s: (s.created, s.name))
                assert newest.name in kept, (volume, automatic, newest.name)
    assert all(s.name in kept for s in snapshots if s.pinned)
