"""Cron parsing and next fire times: fields, names, aliases, the Vixie day rule, catch-up once."""

from __future__ import annotations

import datetime

import pytest

from docker_persist.core.cron import due_runs, missed_runs, parse_cron
from docker_persist.errors import ConfigError

UTC = datetime.timezone.utc


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", "2026-01-01 10:00:30", "2026-01-01 10:01:00"),
        ("* * * * *", "2026-01-01 10:00:00", "2026-01-01 10:01:00"),  # strictly after
        ("0 3 * * *", "2026-01-01 03:00:00", "2026-01-02 03:00:00"),
        ("0 3 * * *", "2026-01-01 02:59:59", "2026-01-01 03:00:00"),
        ("*/15 * * * *", "2026-01-01 10:01:00", "2026-01-01 10:15:00"),
        ("5/20 * * * *", "2026-01-01 10:26:00", "2026-01-01 10:45:00"),
        ("0 9-17/4 * * *", "2026-01-01 13:00:00", "2026-01-01 17:00:00"),
        ("30 1,13 * * *", "2026-01-01 02:00:00", "2026-01-01 13:30:00"),
        ("0 0 1 * *", "2026-01-15 00:00:00", "2026-02-01 00:00:00"),
        ("0 0 31 * *", "2026-02-01 00:00:00", "2026-03-31 00:00:00"),
        ("0 0 29 feb *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),
        ("0 12 * * mon-fri", "2026-01-02 12:00:00", "2026-01-05 12:00:00"),  # Friday -> Monday
        ("0 0 * * 7", "2026-01-01 00:00:00", "2026-01-04 00:00:00"),  # 7 is Sunday
        ("0 0 * JAN,Jul SUN", "2026-01-31 00:00:00", "2026-07-05 00:00:00"),
        ("59 23 31 12 *", "2026-12-31 23:59:00", "2027-12-31 23:59:00"),
        ("@hourly", "2026-01-01 10:00:00", "2026-01-01 11:00:00"),
        ("@daily", "2026-01-01 10:00:00", "2026-01-02 00:00:00"),
        ("@weekly", "2026-01-01 10:00:00", "2026-01-04 00:00:00"),
        ("@monthly", "2026-01-01 10:00:00", "2026-02-01 00:00:00"),
        ("@yearly", "2026-01-01 10:00:00", "2027-01-01 00:00:00"),
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert parse_cron(expression).next_after(at(after)) == at(expected)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Vixie cron: the 13th of the month OR any Friday.
    schedule = parse_cron("0 0 13 * fri")
    fires, moment = [], at("2026-02-01 00:00:00")
    for _ in range(4):
        moment = schedule.next_after(moment)
        fires.append(moment.date().isoformat())
    assert fires == ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27"]


def test_a_starred_day_field_means_both_must_match() -> None:
    # `*/2` in day of month starts with `*`: days 1,3,5,... AND Mondays.
    schedule = parse_cron("0 0 */2 * mon")
    assert schedule.next_after(at("2026-01-01 00:00:00")) == at("2026-01-05 00:00:00")
    assert schedule.next_after(at("2026-01-05 00:00:00")) == at("2026-01-19 00:00:00")


def test_other_timezones_are_converted_to_utc() -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    moment = datetime.datetime(2026, 1, 1, 4, 30, tzinfo=plus_two)  # 02:30 UTC
    assert parse_cron("0 3 * * *").next_after(moment) == at("2026-01-01 03:00:00")


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * foo *", "month"),
        ("* * * * 8", "day of week"),
        ("*/0 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
        ("1,,2 * * * *", "minute"),
        ("0 0 30 feb *", "day of month"),
    ],
)
def test_errors_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}:"):
        parse_cron(expression)


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * *", "", "@often"])
def test_wrong_shape_is_refused(expression: str) -> None:
    with pytest.raises(ConfigError, match="invalid schedule"):
        parse_cron(expression)


def test_due_runs_catches_up_once() -> None:
    daily = parse_cron("0 3 * * *")
    last = at("2026-01-01 03:00:00")
    assert due_runs(daily, last, at("2026-01-02 02:59:00")) == 0
    assert due_runs(daily, last, at("2026-01-02 03:00:00")) == 1
    assert due_runs(daily, last, at("2026-01-05 12:00:00")) == 1  # three missed, caught up once
    assert missed_runs(daily, last, at("2026-01-05 12:00:00")) == 4
    assert due_runs(daily, None, at("2026-01-05 12:00:00")) == 0
