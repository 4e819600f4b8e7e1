"""Who is told what: the alert state machine, routing, messages and their state file, with no network."""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path

import pytest

from docker_persist.actions.alerts import Notifier, alerts_path, read_alerts
from docker_persist.config.model import NotifyTarget, Project, ProjectPolicy, Volume, VolumePolicy, build_notify
from docker_persist.core.alerts import (
    PROJECT_WIDE,
    AlertState,
    Event,
    Outcome,
    Staleness,
    apply_outcome,
    apply_staleness,
    dump_alerts,
    first_line,
    load_alerts,
    render_message,
    route,
)

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
MAIL = NotifyTarget("mailto://ops@example.com")
HOOK = NotifyTarget("json://127.0.0.1:9/hook", ("failure", "success", "stale", "recovered"))


def kinds(events: list[Event]) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.kind, e.volumes) for e in events]


# --- the state machine ---------------------------------------------------------------------


def test_a_failure_is_told_once_then_not_again_until_it_recovers() -> None:
    state = AlertState()
    failed = Outcome("backup", ("db", "files"), False, error="cannot write /store: Permission denied\nmore")
    assert kinds(apply_outcome(state, failed, T0)) == [("failure", ("db", "files"))]
    for minutes in range(1, 5):  # every retry fails: nobody is told again
        assert apply_outcome(state, failed, T0 + datetime.timedelta(minutes=minutes)) == []
    assert state.failing[("db", "backup")].since == T0
    assert state.failing[("db", "backup")].error == "cannot write /store: Permission denied"
    events = apply_outcome(state, Outcome("backup", ("db", "files"), True, snapshot="s2"), T0)
    assert kinds(events) == [("recovered", ("db", "files"))]
    assert events[0].snapshot == "s2"
    assert state.failing == {}
    assert state.last_failure["db"].error == "cannot write /store: Permission denied"  # status still shows it
    assert kinds(apply_outcome(state, Outcome("backup", ("db",), True), T0)) == [("success", ("db",))]


def test_only_the_volumes_that_change_are_named() -> None:
    state = AlertState()
    apply_outcome(state, Outcome("backup", ("db",), False, error="boom"), T0)
    events = apply_outcome(state, Outcome("backup", ("db", "files"), False, error="boom"), T0)
    assert kinds(events) == [("failure", ("files",))]
    events = apply_outcome(state, Outcome("backup", ("db", "files", "cache"), True), T0)
    assert kinds(events) == [("recovered", ("db", "files")), ("success", ("cache",))]


def test_operations_fail_and_recover_apart() -> None:
    state = AlertState()
    apply_outcome(state, Outcome("verify", ("db",), False, error="digest differs"), T0)
    # A good backup is no recovery of a failed drill.
    assert kinds(apply_outcome(state, Outcome("backup", ("db",), True), T0)) == [("success", ("db",))]
    assert ("db", "verify") in state.failing
    assert kinds(apply_outcome(state, Outcome("verify", ("db",), True), T0)) == [("recovered", ("db",))]


def test_a_failure_naming_no_volume_is_project_wide_and_a_volume_success_ends_it() -> None:
    state = AlertState()
    events = apply_outcome(state, Outcome("backup", (), False, error="store unreachable"), T0)
    assert kinds(events) == [("failure", ())]
    assert (PROJECT_WIDE, "backup") in state.failing
    assert apply_outcome(state, Outcome("backup", (), False, error="store unreachable"), T0) == []
    events = apply_outcome(state, Outcome("backup", ("db",), True), T0)
    assert kinds(events) == [("recovered", ("db",))]
    assert state.failing == {}


def test_a_mended_problem_is_told_each_time_and_leaves_no_failing_state() -> None:
    state = AlertState()
    outcome = Outcome("guard", ("db",), False, error="the guard of p_db was missing: put back", mended=True)
    assert kinds(apply_outcome(state, outcome, T0)) == [("failure", ("db",))]
    assert kinds(apply_outcome(state, outcome, T0)) == [("failure", ("db",))]
    assert state.failing == {}
    assert state.last_operation["db"] == "guard"


def test_a_failure_without_text_still_says_what_failed() -> None:
    events = apply_outcome(AlertState(), Outcome("copy", ("db",), False, error="\n \n"), T0)
    assert events[0].detail == "copy failed"


def test_first_line_is_cut() -> None:
    assert first_line("\n  a  \nb") == "a"
    assert first_line(None) == ""
    long = first_line("x" * 1000)
    assert len(long) == 400 and long.endswith("...")


def test_every_sequence_of_outcomes_tells_each_change_exactly_once() -> None:
    """Exhaustive over short runs: the failure/recovered messages alternate, starting with a failure."""
    for run in itertools.product([True, False], repeat=6):
        state = AlertState()
        told = []
        for ok in run:
            for event in apply_outcome(state, Outcome("backup", ("db",), ok, error="e"), T0):
                if event.kind != "success":
                    told.append(event.kind)
        changes = []
        failing = False
        for ok in run:
            if not ok and not failing:
                changes.append("failure")
            if ok and failing:
                changes.append("recovered")
            failing = not ok
        assert told == changes, run


def test_staleness_is_told_when_it_starts_and_when_it_ends() -> None:
    state = AlertState()
    old = Staleness("db", "max_age", True, "newest snapshot is 3d old (max_age 26h)")
    fine = Staleness("files", "max_age", False, "newest snapshot is 1h old (max_age 26h)")
    events = apply_staleness(state, [old, fine])
    assert kinds(events) == [("stale", ("db",))]
    assert "3d old" in events[0].detail
    assert apply_staleness(state, [old, fine]) == []  # every tick: once only
    events = apply_staleness(state, [Staleness("db", "max_age", False, "1min old"), fine])
    assert kinds(events) == [("recovered", ("db",))]
    assert state.stale == {}


def test_the_two_limits_are_apart() -> None:
    state = AlertState()
    apply_staleness(state, [Staleness("db", "max_age", True, "old")])
    events = apply_staleness(
        state, [Staleness("db", "max_age", True, "old"), Staleness("db", "verify_max_age", True, "no drill")]
    )
    assert kinds(events) == [("stale", ("db",))]
    assert events[0].detail == "db: no drill"


# --- routing ---------------------------------------------------------------------------------


def test_a_target_hears_only_the_kinds_it_listens_for() -> None:
    events = [Event("failure", "backup", ("db",)), Event("success", "backup", ("db",))]
    deliveries = route(events, lambda volume: (MAIL, HOOK), (MAIL, HOOK))
    assert [(t.url, e.kind) for t, e in deliveries] == [(MAIL.url, "failure"), (HOOK.url, "failure"),
                                                        (HOOK.url, "success")]  # fmt: skip


def test_a_volume_s_own_targets_replace_the_project_s_and_one_event_goes_once_to_a_target() -> None:
    own = {"db": (HOOK,), "files": (MAIL, HOOK), "cache": ()}
    deliveries = route([Event("failure", "backup", ("db", "files", "cache"))], own.__getitem__, (MAIL,))
    assert [(t.url, e.volumes) for t, e in deliveries] == [(HOOK.url, ("db", "files")), (MAIL.url, ("files",))]


def test_an_event_with_no_volume_goes_to_the_project_s_targets() -> None:
    deliveries = route([Event("failure", "backup", ())], lambda volume: (), (MAIL,))
    assert [(t.url, e.volumes) for t, e in deliveries] == [(MAIL.url, ())]


def test_the_message_says_what_where_which_and_how_to_see_more() -> None:
    title, body = render_message(
        Event("failure", "backup", ("db", "files"), "2026-11-30T0300Z-scheduled", "cannot write: No space left"),
        "shop",
        "host1",
        "docker persist status -p shop",
    )
    assert title == "docker-persist: backup of shop failed"
    assert body.splitlines() == [
        "Project: shop",
        "Host: host1",
        "Volumes: db, files",
        "Snapshot: 2026-11-30T0300Z-scheduled",
        "Error: cannot write: No space left",
        "More: docker persist status -p shop",
    ]


# --- the model ---------------------------------------------------------------------------------


def test_notify_entries_become_targets() -> None:
    assert build_notify(None) is None
    assert build_notify([]) == ()
    assert build_notify(
        ["ntfy://h/t", {"url": "json://h/x", "on": "stale"}, {"url": "mailto://a", "on": ["recovered", "failure"]}]
    ) == (
        NotifyTarget("ntfy://h/t", ("failure",)),
        NotifyTarget("json://h/x", ("stale",)),
        NotifyTarget("mailto://a", ("failure", "recovered")),
    )


def test_a_volume_s_notify_overrides_the_project_s() -> None:
    project = Project(
        "p",
        "/w",
        (),
        {
            "db": Volume("db", "p_db", policy=VolumePolicy(notify=(HOOK,))),
            "quiet": Volume("quiet", "p_quiet", policy=VolumePolicy(notify=())),
            "files": Volume("files", "p_files", policy=VolumePolicy()),
        },
        ProjectPolicy(notify=(MAIL,)),
    )
    assert project.notify_targets("db") == (HOOK,)
    assert project.notify_targets("quiet") == ()
    assert project.notify_targets("files") == (MAIL,)
    assert project.notify_targets("gone") == (MAIL,)


# --- the state file ------------------------------------------------------------------------------


def test_the_state_round_trips_and_junk_reads_as_empty() -> None:
    state = AlertState()
    apply_outcome(state, Outcome("backup", ("db",), False, snapshot="s1", error="boom"), T0)
    apply_staleness(state, [Staleness("db", "max_age", True, "old")])
    state.notify_failures = 3
    again = load_alerts(dump_alerts(state))
    assert again == state
    for junk in ("", "[]", "{", '{"failing": [{"volume": 1}], "notify_failures": -2, "last_failure": []}'):
        assert load_alerts(junk) == AlertState()


# --- the notifier with a recording sender ------------------------------------------------------


class RecordingSender:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.pings: list[tuple[str, str, str]] = []
        self.refuse = refuse or set()

    def send(self, urls: list[str], title: str, body: str, kind: str) -> dict[str, str | None]:
        result: dict[str, str | None] = {}
        for url in urls:
            self.sent.append((url, title, body))
            result[url] = "connection refused" if url in self.refuse else None
        return result

    def ping(self, base: str, phase: str, body: str = "") -> str | None:
        self.pings.append((base, phase, body))
        return "timed out" if base in self.refuse else None

    def masked(self, url: str) -> str:
        return url.split("://", maxsplit=1)[0] + "://***"


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}


def project_with(notify: tuple[NotifyTarget, ...], ping: str | None = None) -> Project:
    volumes = {"db": Volume("db", "p_db", policy=VolumePolicy())}
    return Project("p", "/w", (), volumes, ProjectPolicy(notify=notify, ping=ping))


def test_the_notifier_keeps_state_across_runs_and_sends_one_message_per_change(environ: dict[str, str]) -> None:
    sender, log = RecordingSender(), []
    project = project_with((MAIL, HOOK))
    for _ in range(3):  # three separate runs, each a new Notifier: the state is in the file
        Notifier(project, "unix:///var/run/docker.sock", environ, log.append, sender).record(
            Outcome("backup", ("db",), False, error="disk full")
        )
    assert [(url, title) for url, title, _ in sender.sent] == [
        (MAIL.url, "docker-persist: backup of p failed"),
        (HOOK.url, "docker-persist: backup of p failed"),
    ]
    assert "Error: disk full" in sender.sent[0][2]
    Notifier(project, "unix:///var/run/docker.sock", environ, log.append, sender).record(
        Outcome("backup", ("db",), True, "s9")
    )
    assert [title for _, title, _ in sender.sent[2:]] == ["docker-persist: p recovered"]  # MAIL: failure only
    assert log == []


def test_an_undeliverable_message_is_logged_masked_and_counted(environ: dict[str, str]) -> None:
    sender, log = RecordingSender(refuse={HOOK.url}), []
    notifier = Notifier(project_with((HOOK,)), "unix:///x", environ, log.append, sender)
    notifier.record(Outcome("backup", ("db",), False, error="boom"))
    assert log == ["could not deliver the message 'docker-persist: backup of p failed' to json://***: "
                   "connection refused"]  # fmt: skip
    assert read_alerts(alerts_path(environ, "unix:///x", "p")).notify_failures == 1


def test_pings_go_to_the_url_and_failures_are_counted(environ: dict[str, str]) -> None:
    sender, log = RecordingSender(refuse={"https://hc/down"}), []
    Notifier(project_with((), ping="https://hc/uuid"), "unix:///x", environ, log.append, sender).ping("fail", "boom")
    assert sender.pings == [("https://hc/uuid", "fail", "boom")]
    Notifier(project_with((), ping=None), "unix:///x", environ, log.append, sender).ping("start")
    assert len(sender.pings) == 1  # no ping URL: nothing
    Notifier(project_with((), ping="https://hc/down"), "unix:///x", environ, log.append, sender).ping("start")
    assert log == ["could not deliver the start ping to https://***: timed out"]
    assert read_alerts(alerts_path(environ, "unix:///x", "p")).notify_failures == 1


def test_an_unwritable_state_sends_nothing_rather_than_repeating_forever(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the folder should be")
    sender, log = RecordingSender(), []
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    Notifier(project_with((MAIL,)), "unix:///x", environ, log.append, sender).record(
        Outcome("backup", ("db",), False, error="boom")
    )
    assert sender.sent == []
    assert len(log) == 1 and log[0].startswith("cannot keep the alert state in ")


def test_the_state_is_per_engine(environ: dict[str, str]) -> None:
    assert alerts_path(environ, "unix:///a", "p") != alerts_path(environ, "tcp://b:2375", "p")


def test_a_project_wide_recovery_is_told_once() -> None:
    state = AlertState()
    apply_outcome(state, Outcome("forget", (), False, error="store unreachable"), T0)
    assert kinds(apply_outcome(state, Outcome("forget", (), True), T0)) == [("recovered", ())]


def test_a_state_file_of_the_wrong_shape_reads_as_empty() -> None:
    for text in ('{"failing": 1}', '{"stale": "x"}', '{"failing": [1, "a"], "last_failure": {"db": 3}}'):
        assert load_alerts(text) == AlertState()
