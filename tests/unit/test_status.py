"""The one-screen status: how each volume is judged, with no engine and no store."""

from __future__ import annotations

import datetime

import pytest

from docker_persist.config.model import Project, ProjectPolicy, Volume, VolumePolicy
from docker_persist.core.alerts import AlertState, Outcome, apply_outcome
from docker_persist.core.state import SnapshotInfo
from docker_persist.core.status import format_age, project_staleness, volume_status
from docker_persist.units import Duration

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
H = datetime.timedelta(hours=1)


def snap(name: str, hours_ago: float, volumes: tuple[str, ...] = ("db",), verified: bool | None = None) -> SnapshotInfo:
    created = NOW - hours_ago * H
    return SnapshotInfo(name, created, volumes, created + 0.1 * H if verified is not None else None, verified)


PROJECT = Project(
    "p",
    "/w",
    (),
    {
        "db": Volume("db", "p_db", policy=VolumePolicy(max_age=Duration(hours=26))),
        "files": Volume("files", "p_files", policy=VolumePolicy()),
    },
    ProjectPolicy(verify_max_age=Duration(days=7)),
)


def test_fresh_and_drilled_is_green() -> None:
    status = volume_status("p", "db", [snap("a", 2, verified=True)], NOW, project=PROJECT, guard=True)
    assert (status.stale, status.unverified, status.colour) == (False, False, "green")
    assert status.newest is not None and status.newest.name == "a"
    assert status.verified is not None and status.verified.name == "a"


def test_no_drill_is_yellow_and_an_old_snapshot_is_red() -> None:
    assert volume_status("p", "db", [snap("a", 2)], NOW, project=PROJECT).colour == "yellow"
    old = volume_status("p", "db", [snap("a", 30, verified=True)], NOW, project=PROJECT)
    assert (old.stale, old.colour) == (True, "red")
    assert volume_status("p", "db", [], NOW, project=PROJECT).colour == "red"


def test_the_limits_come_from_the_project_else_the_defaults() -> None:
    status = volume_status("p", "db", [], NOW, project=PROJECT)
    assert (str(status.max_age), str(status.verify_max_age)) == ("26h", "7d")
    unknown = volume_status("p", "db", [snap("a", 30, verified=True)], NOW)  # no Compose file: 7d, 30d
    assert (str(unknown.max_age), str(unknown.verify_max_age), unknown.colour) == ("7d", "30d", "green")


def test_a_failed_drill_of_the_newest_a_missing_guard_and_a_failing_operation_are_red() -> None:
    assert volume_status("p", "db", [snap("a", 1, verified=False)], NOW, project=PROJECT).verify_failed
    assert volume_status("p", "db", [snap("a", 1, verified=False)], NOW, project=PROJECT).colour == "red"
    fresh = [snap("a", 1, verified=True)]
    assert volume_status("p", "db", fresh, NOW, project=PROJECT, guard=False).colour == "red"
    assert volume_status("p", "db", fresh, NOW, project=PROJECT, guard=None).colour == "green"
    alerts = AlertState()
    apply_outcome(alerts, Outcome("backup", ("db",), False, error="disk full"), NOW)
    failing = volume_status("p", "db", fresh, NOW, project=PROJECT, alerts=alerts)
    assert (failing.failing, failing.colour) == (("backup",), "red")
    assert failing.last_failure is not None and failing.last_failure.error == "disk full"
    assert volume_status("p", "files", fresh, NOW, project=PROJECT, alerts=alerts).failing == ()


def test_an_older_passing_drill_counts_and_damaged_snapshots_do_not() -> None:
    snapshots = [snap("old", 50, verified=True), snap("new", 1), SnapshotInfo("bad", NOW, ("db",), damaged="x")]
    status = volume_status("p", "db", snapshots, NOW, project=PROJECT)
    assert status.newest is not None and status.newest.name == "new"
    assert status.verified is not None and status.verified.name == "old"
    assert not status.unverified  # 2 days < 7d


def test_staleness_facts_name_each_limit() -> None:
    facts = project_staleness(PROJECT, [snap("a", 30, ("db",))], NOW)
    by = {(f.volume, f.limit): f for f in facts}
    assert set(by) == {("db", "max_age"), ("db", "verify_max_age"), ("files", "max_age"), ("files", "verify_max_age")}
    assert by[("db", "max_age")].stale and "1d 6h old (max_age 26h)" in by[("db", "max_age")].detail
    assert by[("files", "max_age")].detail == "no snapshot holds it (max_age 7d)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1min"), (3600, "1h"), (3660, "1h 1min"), (86400, "1d"), (90000, "1d 1h"),
     (-5, "0s")],
)  # fmt: skip
def test_format_age(seconds: int, text: str) -> None:
    assert format_age(datetime.timedelta(seconds=seconds)) == text
