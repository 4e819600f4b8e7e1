"""The journal of unfinished work, and the project lock beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docker_persist.core.operations import Operation, Target
from docker_persist.host.journal import LOCK_TOKEN_ENV, Journal, ProjectBusyError, Record

HOST = "unix:///var/run/docker.sock"


def journal_at(tmp_path: Path, environ: dict[str, str] | None = None) -> Journal:
    return Journal.for_project({"XDG_STATE_HOME": str(tmp_path), **(environ or {})}, HOST, "shop")


def test_journal_round_trip_and_removal(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    assert journal.read() == Record()
    journal.add_to("stopped", "abc")
    journal.add_to("stopped", "abc")
    journal.add_to("stopped", "def")
    operation = Operation("restore", "s1", "shop", "file:///s", targets=[Target("data", "shop_data", "data")])
    journal.set_operation(operation)
    read = journal.read()
    assert read.stopped == ["abc", "def"]
    assert read.operation == operation
    assert operation.pid == os.getpid() and operation.started
    assert oct(os.stat(journal.path).st_mode & 0o777) == "0o600"
    journal.remove_from("stopped", "abc")
    journal.remove_from("stopped", "def")
    journal.set_operation(None)
    # Nothing left to undo: the file is gone.
    assert not os.path.exists(journal.path)


def test_journals_are_per_engine_and_project(tmp_path: Path) -> None:
    environ = {"XDG_STATE_HOME": str(tmp_path)}
    paths = {
        Journal.for_project(environ, host, project).path
        for host in ("unix:///var/run/docker.sock", "tcp://10.0.0.1:2376")
        for project in ("a", "b")
    }
    assert len(paths) == 4
    assert all(p.startswith(str(tmp_path / "docker-persist" / "journal")) for p in paths)


def test_unreadable_journal_is_empty(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j.json"))
    Path(journal.path).write_text("{not json")
    assert journal.read() == Record()


def test_a_version_1_restore_record_is_read_as_a_restore_left_part_way(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j.json"))
    old = {"stopped": ["c1"], "restore": {"snapshot": "base", "volumes": ["shop_data"], "services": ["app"],
                                          "guarded": ["shop_data"], "undo": "u1"}}  # fmt: skip
    Path(journal.path).write_text(json.dumps(old))
    record = journal.read()
    assert record.stopped == ["c1"]
    assert record.operation is not None
    assert record.operation.snapshot == "base" and record.operation.undo == "u1"
    assert record.operation.running == ["app"]
    (target,) = record.operation.targets
    assert (target.volume, target.status, target.before, target.guarded) == ("shop_data", "replacing", "data", True)


def test_the_lock_is_reentrant_and_names_its_holder(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    with journal.hold("backup"), journal.hold("backup"):
        holder = json.loads(Path(journal.lock_path).read_text())
        assert holder["pid"] == os.getpid() and holder["operation"] == "backup"
    assert Path(journal.lock_path).read_text() == ""


HOLD = """
import sys, time
from docker_persist.host.journal import Journal
journal = Journal.for_project({"XDG_STATE_HOME": sys.argv[1]}, sys.argv[2], "shop")
with journal.hold("restore"):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_elsewhere(tmp_path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), HOST], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_another_holder_makes_the_lock_busy_naming_it(tmp_path: Path) -> None:
    process = hold_elsewhere(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(ProjectBusyError) as caught, journal_at(tmp_path).hold("backup", timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
        assert f"pid {process.pid}" in str(caught.value) and "`restore`" in str(caught.value)
        assert "project 'shop'" in str(caught.value)
    finally:
        process.kill()
        process.wait()


def test_a_holder_killed_with_9_holds_nothing(tmp_path: Path) -> None:
    process = hold_elsewhere(tmp_path)
    process.kill()
    process.wait()
    with journal_at(tmp_path).hold("backup"):
        pass


def test_a_child_shares_its_parent_s_hold_only_with_the_token(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    child = """
import sys
from docker_persist.host.journal import Journal
import os
journal = Journal.for_project(os.environ, sys.argv[1], "shop")
try:
    with journal.hold("down", timeout=0):
        print("inherited" if journal.inherited() else "own")
except Exception as error:
    print(type(error).__name__)
"""

    def run_child(environ: dict[str, str]) -> str:
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), **environ}
        done = subprocess.run([sys.executable, "-c", child, HOST], capture_output=True, text=True, env=env)
        return done.stdout.strip() or done.stderr

    with journal.hold("down"):
        given = journal.child_environ({})
        assert LOCK_TOKEN_ENV in given
        assert run_child(given) == "inherited"
        assert run_child({}) == "ProjectBusyError"
        forged = {LOCK_TOKEN_ENV: given[LOCK_TOKEN_ENV][:-4] + "0000"}
        assert run_child(forged) == "ProjectBusyError"
    # A token from a hold that ended opens nothing: the next holder's token differs.
    assert run_child(given) == "own"
