"""The foreground scheduler: backup on schedule, then retention, then a verify every N backups.

The loop touches nothing itself: the clock (`now`, `sleep`) and the actions (backup, forget,
verify) are injected, so unit tests drive it with a fake clock and fake actions. The command
wires in the real ones. A failure is counted and logged and the loop goes on; a run that finds
the project lock held is skipped and counted, never queued; missed runs after a sleep or a
reboot are caught up once.

The state (the last run of each schedule, the counters) is data here; actions/schedule.py keeps
it in a file.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

from docker_persist.config.model import Project
from docker_persist.core.cron import CronSchedule, due_runs, missed_runs, parse_cron
from docker_persist.errors import BusyError, ConfigError, PersistError

MAX_SLEEP = 60.0  # wake at least this often, to notice a clock jump (suspend) and a stop request

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class ScheduleGroup:
    """The volumes that share one schedule: they are backed up together, into one snapshot."""

    schedule: CronSchedule
    volume_keys: tuple[str, ...]


def plan_groups(project: Project) -> list[ScheduleGroup]:
    """Return the project's schedules with their volumes: a volume's own schedule, else the project's.

    Raise ConfigError if no precious volume has a schedule, or a schedule is not valid cron.
    """
    by_text: dict[str, list[str]] = {}
    for volume in project.precious_volumes():
        text = (volume.policy.schedule if volume.policy else None) or project.policy.schedule
        if text:
            by_text.setdefault(" ".join(text.split()), []).append(volume.key)
    if not by_text:
        raise ConfigError(
            f"project {project.name!r} has no schedule: set x-persist.schedule (a cron expression such as "
            "'0 3 * * *') at the top level of the Compose file, or on a precious volume"
        )
    return [ScheduleGroup(parse_cron(text), tuple(keys)) for text, keys in by_text.items()]


@dataclasses.dataclass
class ScheduleState:
    """What the scheduler remembers between runs and restarts."""

    last_runs: dict[str, datetime.datetime] = dataclasses.field(default_factory=dict)  # schedule text -> time
    backups: int = 0  # successful scheduled backups, for --verify-every
    failures: dict[str, int] = dataclasses.field(default_factory=dict)  # volume key -> count
    durations: dict[str, float] = dataclasses.field(default_factory=dict)  # volume key -> seconds, last backup
    skipped: int = 0  # runs skipped because the project lock was held


def dump_state(state: ScheduleState) -> str:
    """Return the JSON text of the state."""
    document = {
        "last_runs": {k: _format_time(v) for k, v in sorted(state.last_runs.items())},
        "backups": state.backups,
        "failures": dict(sorted(state.failures.items())),
        "durations": dict(sorted(state.durations.items())),
        "skipped": state.skipped,
    }
    return json.dumps(document, indent=2) + "\n"


def load_state(text: str) -> ScheduleState:
    """Return the state from its JSON text; what cannot be read starts afresh (it is only counters)."""
    try:
        document: Any = json.loads(text)
    except ValueError:
        return ScheduleState()
    if not isinstance(document, dict):
        return ScheduleState()

    def mapping(key: str) -> Mapping[str, Any]:
        value = document.get(key)
        return value if isinstance(value, dict) else {}

    last_runs = {}
    for key, value in mapping("last_runs").items():
        try:
            last_runs[str(key)] = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
    return ScheduleState(
        last_runs=last_runs,
        backups=_count(document.get("backups")),
        failures={str(k): _count(v) for k, v in mapping("failures").items()},
        durations={str(k): float(v) for k, v in mapping("durations").items() if isinstance(v, (int, float))},
        skipped=_count(document.get("skipped")),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _format_time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Clock:
    """Where the scheduler gets the time and how it waits: injected, so tests need not wait."""

    now: Callable[[], datetime.datetime]
    sleep: Callable[[float], None]


@dataclasses.dataclass(frozen=True)
class BackupDone:
    """A scheduled backup's snapshot, and the seconds its work took (waiting for nothing: a busy project
    is skipped)."""

    name: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Actions:
    """What a run does. Each raises PersistError to fail; `backup` raises BusyError if the project is busy."""

    backup: Callable[[tuple[str, ...]], BackupDone]  # volume keys -> the new snapshot
    forget: Callable[[], int]  # apply the project's retention; return how many snapshots were removed
    verify: Callable[[str], bool]  # drill the named snapshot; return whether it passed
    # put back the guards that are missing or stopped; return a line for each one put back
    guard: Callable[[], list[str]] = dataclasses.field(default=lambda: [])
    # look at the volumes' ages between runs (stale notifications); called after every pass of the loop
    watch: Callable[[], None] = dataclasses.field(default=lambda: None)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one run of one schedule did."""

    snapshot: str | None = None
    skipped: bool = False
    failed: bool = False


class Scheduler:
    """Runs the groups when their schedules fall due; `on_change` is called with the state after each change."""

    def __init__(
        self,
        groups: list[ScheduleGroup],
        actions: Actions,
        clock: Clock,
        state: ScheduleState,
        log: Log,
        verify_every: int = 0,
        on_change: Callable[[ScheduleState], None] = lambda state: None,
    ) -> None:
        self.groups = groups
        self.actions = actions
        self.clock = clock
        self.state = state
        self.log = log
        self.verify_every = verify_every
        self.on_change = on_change

    def run_group(self, group: ScheduleGroup) -> RunResult:
        """Back up one group, then apply retention, then verify if it is the Nth backup. Never raises PersistError."""
        volumes = ", ".join(group.volume_keys)
        try:
            for line in self.actions.guard():
                self.log(line)
        except (PersistError, OSError) as error:
            self.log(f"checking the guards failed: {error}")
        try:
            done = self.actions.backup(group.volume_keys)
        except BusyError as error:
            self.state.skipped += 1
            self.log(f"skipped the scheduled backup of {volumes}: another operation holds the project ({error})")
            return RunResult(skipped=True)
        except (PersistError, OSError) as error:
            self._fail(group, f"scheduled backup of {volumes} failed: {error}")
            return RunResult(failed=True)
        name, seconds = done.name, max(0.0, done.seconds)
        for key in group.volume_keys:
            self.state.durations[key] = round(seconds, 3)
        self.state.backups += 1
        self.log(f"snapshot {name} of {volumes} ({seconds:.1f} s)")
        failed = False
        try:
            removed = self.actions.forget()
            if removed:
                self.log(f"retention removed {removed} snapshot(s)")
        except (PersistError, OSError) as error:
            failed = True
            self._fail(group, f"retention after snapshot {name} failed: {error}")
        if self.verify_every > 0 and self.state.backups % self.verify_every == 0:
            try:
                ok = self.actions.verify(name)
                self.log(f"verify of {name}: {'ok' if ok else 'FAILED'}")
                if not ok:
                    failed = True
                    self._fail(group, f"verify of snapshot {name} failed")
            except (PersistError, OSError) as error:
                failed = True
                self._fail(group, f"verify of snapshot {name} failed: {error}")
        return RunResult(snapshot=name, failed=failed)

    def _fail(self, group: ScheduleGroup, message: str) -> None:
        for key in group.volume_keys:
            self.state.failures[key] = self.state.failures.get(key, 0) + 1
        self.log(message)

    def run_all(self) -> list[RunResult]:
        """Run every group now, whatever its schedule (`--once`); record the runs."""
        now = self.clock.now()
        results = []
        for group in self.groups:
            results.append(self.run_group(group))
            self.state.last_runs[group.schedule.text] = now
            self.on_change(self.state)
        try:
            self.actions.watch()
        except (PersistError, OSError) as error:
            self.log(f"checking the age of the snapshots failed: {error}")
        return results

    def run_due(self) -> list[RunResult]:
        """Run each group whose schedule fired since its last run, once however many fire times passed."""
        results = []
        for group in self.groups:
            now = self.clock.now()
            last = self.state.last_runs.get(group.schedule.text)
            if last is None:
                # First start: wait for the next fire time rather than backing up at once.
                self.state.last_runs[group.schedule.text] = now
                self.on_change(self.state)
                continue
            if due_runs(group.schedule, last, now):
                missed = missed_runs(group.schedule, last, now)
                if missed > 1:
                    self.log(f"{missed} runs of {group.schedule.text!r} were missed since {_format_time(last)}: "
                             "catching up once")  # fmt: skip
                results.append(self.run_group(group))
                self.state.last_runs[group.schedule.text] = now
                self.on_change(self.state)
        return results

    def seconds_to_next(self) -> float:
        """Return how long to sleep before the next fire time (at most MAX_SLEEP)."""
        now = self.clock.now()
        upcoming = [g.schedule.next_after(self.state.last_runs.get(g.schedule.text, now)) for g in self.groups]
        wait = (min(upcoming) - now).total_seconds() if upcoming else MAX_SLEEP
        return min(MAX_SLEEP, max(0.0, wait))

    def run_forever(self, should_stop: Callable[[], bool]) -> None:
        """Loop until `should_stop()`: run what is due, then sleep. It is checked between runs, never during one."""
        while not should_stop():
            self.run_due()
            try:
                self.actions.watch()
            except (PersistError, OSError) as error:
                self.log(f"checking the age of the snapshots failed: {error}")
            if should_stop():
                break
            self.clock.sleep(self.seconds_to_next())
