"""The snapshots table tells times as a person reads them: local time and how long ago (--utc for UTC)."""

from __future__ import annotations

import datetime

from docker_persist.cli.commands.snapshots import ago, when

UTC = datetime.timezone.utc


def test_ago_reads_like_a_person_would_say_it() -> None:
    cases = {30: "just now", 90: "1 min ago", 3 * 3600 + 5: "3 h ago", 47 * 3600: "47 h ago", 12 * 86400: "12 d ago"}
    for seconds, words in cases.items():
        assert ago(datetime.timedelta(seconds=seconds)) == words


def test_when_shows_utc_on_request_with_the_age() -> None:
    moment = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    now = moment + datetime.timedelta(hours=3)
    assert when(moment, now, utc=True) == "2026-11-30 12:00 UTC (3 h ago)"
    local = moment.astimezone()
    assert when(moment, now, utc=False) == f"{local:%Y-%m-%d %H:%M} (3 h ago)"
