"""The journal of interrupted work."""

from __future__ import annotations

import os
from pathlib import Path

from docker_persist.host.journal import Journal


def test_journal_round_trip_and_removal(tmp_path: Path) -> None:
    journal = Journal.for_project({"XDG_STATE_HOME": str(tmp_path)}, "unix:///var/run/docker.sock", "shop")
    assert journal.read() == {}
    journal.add_to("stopped", "abc")
    journal.add_to("stopped", "abc")
    journal.add_to("stopped", "def")
    journal.update(restore={"snapshot": "s1", "undo": None})
    assert journal.read() == {"stopped": ["abc", "def"], "restore": {"snapshot": "s1", "undo": None}}
    assert oct(os.stat(journal.path).st_mode & 0o777) == "0o600"
    journal.remove_from("stopped", "abc")
    journal.remove_from("stopped", "def")
    journal.update(restore=None)
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
    assert journal.read() == {}
