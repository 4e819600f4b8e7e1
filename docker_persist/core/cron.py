"""Cron expressions: a pure 5-field parser and the next fire time, in UTC.

Fields are minute, hour, day of month, month and day of week, with `*`, lists, ranges,
steps (`*/15`, `1-30/5`, `5/15`), month and day names (`jan`, `mon-fri`) and the
aliases @hourly, @daily, @weekly, @monthly and @yearly. Day of month and day of week
follow Vixie cron: when both are restricted (neither starts with `*`), a day matches if
either does; otherwise both must.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from docker_persist.errors import ConfigError

UTC = datetime.timezone.utc

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most each month can have
_SEARCH_YEARS = 8  # a leap day can be 8 years away (2096 -> 2104)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the value of the first name


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. Times are UTC."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # 1-31
    months: frozenset[int]  # 1-12
    weekdays: frozenset[int]  # 0-6, Sunday is 0
    days_starred: bool  # the day-of-month field starts with `*`
    weekdays_starred: bool

    def matches_day(self, day: datetime.date) -> bool:
        """Return True if the schedule fires on this date (at some time of day)."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.days_starred or self.weekdays_starred:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def matches(self, moment: datetime.datetime) -> bool:
        """Return True if the schedule fires at this minute."""
        utc = _as_utc(moment)
        return utc.minute in self.minutes and utc.hour in self.hours and self.matches_day(utc.date())

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        """Return the first fire time strictly after `moment`, in UTC (a naive moment is taken as UTC)."""
        start = _as_utc(moment).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        day = start.date()
        first_day = True
        for _ in range(366 * _SEARCH_YEARS):
            if self.matches_day(day):
                after = (start.hour, start.minute) if first_day else (0, 0)
                found = self._first_time_from(after)
                if found is not None:
                    return datetime.datetime(day.year, day.month, day.day, found[0], found[1], tzinfo=UTC)
            day += datetime.timedelta(days=1)
            first_day = False
        raise ConfigError(f"invalid schedule {self.text!r}: it never fires")  # parse_cron refuses most such

    def _first_time_from(self, after: tuple[int, int]) -> tuple[int, int] | None:
        for hour in sorted(h for h in self.hours if h >= after[0]):
            floor = after[1] if hour == after[0] else 0
            minute = min((m for m in self.minutes if m >= floor), default=None)
            if minute is not None:
                return hour, minute
        return None


def _as_utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_cron(text: str) -> CronSchedule:
    """Return the schedule for a 5-field cron expression or an @alias.

    Raise ConfigError naming the field at fault.
    """
    expression = ALIASES.get(text.strip().lower(), text.strip()) if text.strip().startswith("@") else text.strip()
    if expression.startswith("@"):
        raise ConfigError(f"invalid schedule {text!r}: unknown alias; use one of {', '.join(ALIASES)}")
    parts = expression.split()
    if len(parts) != len(_FIELDS):
        raise ConfigError(
            f"invalid schedule {text!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}"
        )
    values = [_parse_field(part, field, text) for part, field in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(v % 7 for v in values[4])  # 7 is Sunday too
    schedule = CronSchedule(
        text=text.strip(),
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        days_starred=parts[2].startswith("*"),
        weekdays_starred=parts[4].startswith("*"),
    )
    if schedule.weekdays_starred and not any(day <= _DAYS_IN_MONTH[month - 1] for month in schedule.months
                                             for day in schedule.days):  # fmt: skip
        raise ConfigError(f"invalid schedule {text!r}: day of month: no month in the schedule has such a day")
    return schedule


def _parse_field(part: str, field: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        values |= _parse_item(item, field, text)
    return frozenset(values)


def _parse_item(item: str, field: _Field, text: str) -> set[int]:
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"invalid schedule {text!r}: {field.name}: {problem}")

    if not item:
        raise fail("empty list item")
    span, _, step_text = item.partition("/")
    step = 1
    if step_text or "/" in item:
        if not step_text.isdigit() or int(step_text) == 0:
            raise fail(f"invalid step {step_text!r} in {item!r}")
        step = int(step_text)
    if span == "*":
        low, high = field.low, field.high
    elif "-" in span:
        first, _, last = span.partition("-")
        low, high = _value(first, field, fail), _value(last, field, fail)
        if low > high:
            raise fail(f"range {span!r} runs backwards")
    else:
        low = _value(span, field, fail)
        high = field.high if step_text else low  # `5/15` means from 5 to the end, every 15
    if field.name == "day of week" and span == "*":
        high = 6  # 7 is Sunday again: `*/2` must not give Sunday twice in a row
    return set(range(low, high + 1, step))


def _value(token: str, field: _Field, fail: Callable[[str], ConfigError]) -> int:
    if token.isdigit():
        value = int(token)
    elif token.lower() in field.names:
        value = field.names.index(token.lower()) + field.name_base
    else:
        expected = f"a number {field.low}-{field.high}" + (
            f" or a name ({field.names[0]}, {field.names[1]}, ...)" if field.names else ""
        )
        raise fail(f"{token!r} is not {expected}")
    if not field.low <= value <= field.high:
        raise fail(f"{value} is out of range {field.low}-{field.high}")
    return value


def due_runs(schedule: CronSchedule, last_run: datetime.datetime | None, now: datetime.datetime) -> int:
    """Return 1 if at least one fire time passed since `last_run` (up to and including `now`), else 0.

    Missed runs after a sleep or a reboot are caught up once, not once per missed fire time.
    With no last run, nothing is due: the first run waits for the next fire time.
    """
    if last_run is None:
        return 0
    return 1 if schedule.next_after(last_run) <= _as_utc(now) else 0


def missed_runs(schedule: CronSchedule, last_run: datetime.datetime, now: datetime.datetime, limit: int = 1000) -> int:
    """Return how many fire times passed since `last_run`, counting up to `limit` (for the log, not to run)."""
    count, moment = 0, last_run
    while count < limit:
        moment = schedule.next_after(moment)
        if moment > _as_utc(now):
            break
        count += 1
    return count
