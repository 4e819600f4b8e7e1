"""The scheduler loop with a fake clock and fake actions: no engine, no waiting."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from docker_persist.actions.schedule import read_state, write_state
from docker_persist.config.model import Project, ProjectPolicy, Volume, VolumePolicy
from docker_persist.core.cron import parse_cron
from docker_persist.core.scheduler import (
    Actions,
    BackupDone,
    Clock,
    ScheduleGroup,
    Scheduler,
    ScheduleState,
    dump_state,
    load_state,
    plan_groups,
)
from docker_persist.errors import ConfigError, PersistError
from docker_persist.store import StoreLockedError

UTC = datetime.timezone.utc
START = datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


class FakeClock:
    """Time moves only when the scheduler sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.time = START
        self.slept: list[float] = []

    def now(self) -> datetime.datetime:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += datetime.timedelta(seconds=seconds)


class FakeStore:
    """Backups become names in a list; retention keeps the newest `keep`; the lock can be held."""

    def __init__(self, keep: int = 2) -> None:
        self.snapshots: list[str] = []
        self.keep = keep
        self.locked = False
        self.verified: list[str] = []
        self.fail_next = False
        self.work_seconds = 0.0

    def backup(self, keys: tuple[str, ...]) -> BackupDone:
        if self.locked:
            raise StoreLockedError("project p is locked by another docker-persist process")
        if self.fail_next:
            self.fail_next = False
            raise PersistError("volume 'p_db' does not exist")
        name = f"snap-{len(self.snapshots) + 1}-{'+'.join(keys)}"
        self.snapshots.append(name)
        return BackupDone(name, self.work_seconds)

    def forget(self) -> int:
        removed = max(0, len(self.snapshots) - self.keep)
        del self.snapshots[:removed]
        return removed

    def verify(self, name: str) -> bool:
        self.verified.append(name)
        return True


def make_scheduler(store: FakeStore, clock: FakeClock, verify_every: int = 0) -> tuple[Scheduler, list[str]]:
    logged: list[str] = []
    groups = [ScheduleGroup(parse_cron("* * * * *"), ("db",))]
    actions = Actions(backup=store.backup, forget=store.forget, verify=store.verify)
    clock_ = Clock(now=clock.now, sleep=clock.sleep)
    return Scheduler(groups, actions, clock_, ScheduleState(), logged.append, verify_every=verify_every), logged


def test_two_scheduled_backups_then_retention_and_verify() -> None:
    store, clock = FakeStore(keep=2), FakeClock()
    scheduler, _ = make_scheduler(store, clock, verify_every=2)
    scheduler.run_forever(lambda: scheduler.state.backups >= 3)
    assert store.snapshots == ["snap-2-db", "snap-3-db"]  # three taken, retention kept two
    assert store.verified == ["snap-2-db"]  # every second backup
    assert scheduler.state.durations == {"db": 0.0}
    # It slept until each fire time (a minute apart), not in a busy loop.
    assert clock.time == datetime.datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert all(0 < s <= 60 for s in clock.slept)


def test_first_start_waits_for_the_next_fire_time() -> None:
    store, clock = FakeStore(), FakeClock()
    scheduler, _ = make_scheduler(store, clock)
    assert scheduler.run_due() == []
    assert store.snapshots == []
    assert scheduler.seconds_to_next() == 30


def test_missed_runs_after_a_three_day_sleep_are_caught_up_once() -> None:
    store, clock = FakeStore(keep=100), FakeClock()
    scheduler, logged = make_scheduler(store, clock)
    scheduler.groups = [ScheduleGroup(parse_cron("0 3 * * *"), ("db",))]
    scheduler.state.last_runs["0 3 * * *"] = datetime.datetime(2026, 1, 1, 3, tzinfo=UTC)
    clock.time = datetime.datetime(2026, 1, 4, 9, tzinfo=UTC)  # the machine slept through three
    assert len(scheduler.run_due()) == 1
    assert scheduler.run_due() == []
    assert store.snapshots == ["snap-1-db"]
    assert any("3 runs" in line and "catching up once" in line for line in logged)
    assert scheduler.seconds_to_next() == 60  # at most a minute: a long sleep is cut to notice clock jumps


def test_a_held_lock_skips_the_run_and_counts_it() -> None:
    store, clock = FakeStore(), FakeClock()
    scheduler, logged = make_scheduler(store, clock)
    scheduler.run_due()  # first start
    store.locked = True
    clock.time += datetime.timedelta(minutes=1)
    (result,) = scheduler.run_due()
    assert result.skipped and store.snapshots == []
    assert scheduler.state.skipped == 1 and scheduler.state.failures == {}
    assert "another operation holds the project" in logged[-1]
    store.locked = False
    clock.time += datetime.timedelta(minutes=1)
    (result,) = scheduler.run_due()  # not queued: the next fire time runs normally, once
    assert result.snapshot == "snap-1-db"


def test_the_duration_is_the_backup_s_own_work_not_the_wall_clock() -> None:
    store, clock = FakeStore(), FakeClock()
    scheduler, _ = make_scheduler(store, clock)
    scheduler.run_due()
    clock.time += datetime.timedelta(minutes=5)  # however long the loop slept or waited
    store.work_seconds = 2.25
    scheduler.run_due()
    assert scheduler.state.durations == {"db": 2.25}


def test_missing_guards_are_put_back_on_every_run() -> None:
    store, clock = FakeStore(), FakeClock()
    put_back = [["the guard of p_db was missing or stopped: put back"], []]
    logged: list[str] = []
    groups = [ScheduleGroup(parse_cron("* * * * *"), ("db",))]
    actions = Actions(backup=store.backup, forget=store.forget, verify=store.verify, guard=lambda: put_back.pop(0))
    scheduler = Scheduler(groups, actions, Clock(clock.now, clock.sleep), ScheduleState(), logged.append)
    scheduler.run_all()
    assert "the guard of p_db was missing or stopped: put back" in logged
    scheduler.run_all()
    assert logged.count("the guard of p_db was missing or stopped: put back") == 1


def test_a_failure_is_counted_and_the_loop_goes_on() -> None:
    store, clock = FakeStore(), FakeClock()
    scheduler, logged = make_scheduler(store, clock)
    store.fail_next = True
    scheduler.run_forever(lambda: len(store.snapshots) >= 1)
    assert scheduler.state.failures == {"db": 1}
    assert any("failed: volume 'p_db' does not exist" in line for line in logged)


def test_once_runs_every_group_now() -> None:
    store, clock = FakeStore(), FakeClock()
    scheduler, _ = make_scheduler(store, clock)
    scheduler.groups.append(ScheduleGroup(parse_cron("@daily"), ("files", "cache")))
    results = scheduler.run_all()
    assert [r.snapshot for r in results] == ["snap-1-db", "snap-2-files+cache"]
    assert set(scheduler.state.last_runs) == {"* * * * *", "@daily"}


def volume(key: str, schedule: str | None = None, precious: bool = True) -> Volume:
    return Volume(key=key, name=f"p_{key}", policy=VolumePolicy(schedule=schedule) if precious else None)


def test_volumes_are_grouped_by_schedule() -> None:
    volumes = {"db": volume("db"), "files": volume("files", "0  4 * * *"), "logs": volume("logs"),
               "tmp": volume("tmp", precious=False)}  # fmt: skip
    project = Project("p", "/w", (), volumes, ProjectPolicy(schedule="0 3 * * *"))
    groups = plan_groups(project)
    assert [(g.schedule.text, g.volume_keys) for g in groups] == [("0 3 * * *", ("db", "logs")),
                                                                   ("0 4 * * *", ("files",))]  # fmt: skip


def test_no_schedule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"x-persist\.schedule"):
        plan_groups(Project("p", "/w", (), {"db": volume("db")}))


def test_state_round_trips_and_bad_state_starts_afresh(tmp_path: Path) -> None:
    state = ScheduleState(last_runs={"@daily": START}, backups=3, failures={"db": 1}, durations={"db": 2.5}, skipped=1)
    assert load_state(dump_state(state)) == state
    path = tmp_path / "schedule" / "p.json"
    write_state(str(path), state)
    assert read_state(str(path)) == state
    assert read_state(str(tmp_path / "missing.json")) == ScheduleState()
    assert load_state("{not json") == ScheduleState()


# --- the installed systemd unit ---------------------------------------------------------------

AWKWARD_FOLDERS = ["plain", "with space", "dollar $HOME and $$", "quotes \"double\" and 'single'", "percent 100%",
                   "back\\slash"]  # fmt: skip


@pytest.mark.parametrize("folder", AWKWARD_FOLDERS)
def test_the_unit_is_one_systemd_accepts_for_any_project_path(tmp_path: Path, folder: str) -> None:
    import shutil
    import subprocess
    import sys

    from docker_persist.cli.commands.schedule import render_unit

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    working = tmp_path / folder
    working.mkdir()
    project = Project("shop", str(working), (), {})
    argv = [sys.executable, "persist", "schedule", "-f", str(working / "compose.yaml"), "-p", "shop",
            "--store", "s3://bucket/50%/$x"]  # fmt: skip
    unit = tmp_path / "docker-persist-shop.service"
    unit.write_text(render_unit(project, argv, str(working), str(tmp_path / "cfg dir" / "shop.env")))
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    # What systemd will run, and where: systemd's own reading of the unit, not ours.
    text = unit.read_text()
    assert "EnvironmentFile=-" in text
    assert "AWS_SECRET_ACCESS_KEY=" not in text.replace("AWS_SECRET_ACCESS_KEY, ...", "")


def test_a_path_with_a_line_break_is_refused() -> None:
    from docker_persist.cli.commands.schedule import render_unit

    with pytest.raises(ConfigError, match="line break"):
        render_unit(Project("p", "/a\nb", (), {}), ["/usr/bin/docker"], "/a\nb", "/etc/x.env")


def test_a_word_with_a_line_break_is_refused() -> None:
    from docker_persist.cli.commands.schedule import systemd_quote

    with pytest.raises(ConfigError, match="line break"):
        systemd_quote("s3://bucket\nExecStartPre=/bin/evil")
