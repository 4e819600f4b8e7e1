"""The restic store's rules that need no repository: finding restic, the password, messages, tags, times."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path
from typing import Any

import pytest

from docker_persist.errors import ConfigError
from docker_persist.store import open_store
from docker_persist.store.restic import (
    Restic,
    ResticLockedError,
    _manifest_tags,
    _when,
    find_restic,
    masked,
)


def fake_restic(tmp_path: Path, version_line: str, code: int = 0) -> str:
    path = tmp_path / "restic"
    path.write_text(f"#!/bin/sh\necho '{version_line}'\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def environ(tmp_path: Path, binary: str, **more: str) -> dict[str, str]:
    return {"PATH": "/nonexistent", "HOME": str(tmp_path), "DOCKER_PERSIST_RESTIC": binary, **more}


def test_a_missing_restic_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not on PATH: install it .*apt install restic"):
        find_restic({"PATH": str(tmp_path)})


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        (
            "restic 0.13.1 compiled with go1.18 on linux/amd64",
            0,
            r"restic 0\.13\.1 \(.*\) is too old: .*0\.14 or newer",
        ),
        ("not restic at all", 0, "does not answer `version` like restic"),
        ("restic 0.16.0 compiled", 3, "does not answer `version` like restic"),
    ],
)
def test_an_old_or_foreign_restic_is_refused_naming_what_was_found(
    tmp_path: Path, line: str, code: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        find_restic(environ(tmp_path, fake_restic(tmp_path, line, code)))


def test_restic_0_14_and_newer_are_taken(tmp_path: Path) -> None:
    for version in ("0.14.0", "0.17.3", "1.0.0"):
        folder = tmp_path / version
        folder.mkdir()
        binary = fake_restic(folder, f"restic {version} compiled with go1.22 on linux/amd64")
        assert find_restic(environ(folder, binary)) == binary


def test_a_repository_needs_a_password_from_somewhere(tmp_path: Path) -> None:
    binary = fake_restic(tmp_path, "restic 0.14.0 compiled")
    with pytest.raises(ConfigError, match=r"needs its password: set RESTIC_PASSWORD_FILE.*store_password_file"):
        Restic("/srv/repo", environ(tmp_path, binary))
    by_file = Restic("/srv/repo", environ(tmp_path, binary), password_file="/run/secrets/restic")
    assert by_file.env["RESTIC_PASSWORD_FILE"] == "/run/secrets/restic"
    assert by_file.env["RESTIC_REPOSITORY"] == "/srv/repo"
    # The environment's own password wins over x-persist's file, as flags and variables win elsewhere.
    by_env = Restic("/srv/repo", environ(tmp_path, binary, RESTIC_PASSWORD_COMMAND="pass show x"), "/f")
    assert "RESTIC_PASSWORD_FILE" not in by_env.env


def test_open_store_takes_restic_urls_and_refuses_an_empty_repository(tmp_path: Path) -> None:
    binary = fake_restic(tmp_path, "restic 0.14.0 compiled")
    store = open_store("restic:sftp:u@h:/srv/r", environ(tmp_path, binary, RESTIC_PASSWORD="x"))
    assert store.url == "restic:sftp:u@h:/srv/r"
    assert store.deduplicates
    with pytest.raises(ConfigError, match="give a restic repository"):
        open_store("restic:", environ(tmp_path, binary, RESTIC_PASSWORD="x"))


def test_credentials_in_a_repository_string_are_masked() -> None:
    assert masked("rest:https://user:s3cret@host:8000/repo") == "rest:https://user:***@host:8000/repo"
    assert masked("s3:http://127.0.0.1:8333/bucket") == "s3:http://127.0.0.1:8333/bucket"
    assert masked("/srv/restic") == "/srv/restic"


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        ("Fatal: wrong password or no key found\n", "wrong password for restic repository /r"),
        (
            "Fatal: unable to open config file: stat /r/config: no such file or directory\n"
            "Is there a repository at the following location?\n/r\n",
            "there is no restic repository /r; create one with `docker persist store init restic:/r`",
        ),
        ("Fatal: connection refused\n", "restic failed on restic repository /r: Fatal: connection refused"),
    ],
)
def test_restic_failures_say_what_to_do(tmp_path: Path, stderr: str, said: str) -> None:
    restic = Restic("/r", environ(tmp_path, fake_restic(tmp_path, "restic 0.14.0 x"), RESTIC_PASSWORD="p"))
    error = restic.error("listing", 1, stderr)
    assert said in str(error)
    assert str(error).startswith("listing: ")


def test_a_locked_repository_is_a_busy_error(tmp_path: Path) -> None:
    restic = Restic("/r", environ(tmp_path, fake_restic(tmp_path, "restic 0.14.0 x"), RESTIC_PASSWORD="p"))
    error = restic.error("forget", 1, "unable to create lock in backend: repository is already locked by PID 7\n")
    assert isinstance(error, ResticLockedError)


def test_restic_times_compare_across_offsets_and_precisions() -> None:
    utc = _when("2026-11-30T22:39:05.220365914Z")
    assert utc == datetime.datetime(2026, 11, 30, 22, 39, 5, 220365, tzinfo=datetime.timezone.utc)
    assert _when("2026-11-30T23:39:05.5+01:00") > utc
    assert _when("2026-11-30T22:39:05Z") < utc
    assert _when("garbage").year == 1


def test_a_manifest_tags_its_reason_and_pin_and_any_bytes_tag_nothing() -> None:
    assert _manifest_tags(b'{"reason": "pre-down", "pinned": true}') == ("reason=pre-down", "pinned")
    assert _manifest_tags(b'{"reason": "manual"}') == ("reason=manual",)
    assert _manifest_tags(b'{"reason": "a,b"}') == ()  # a comma would split restic's tag list
    assert _manifest_tags(b"\x00\xff not JSON") == ()
    assert _manifest_tags(b"[1, 2]") == ()


def encrypted_project() -> Any:
    from docker_persist.config.model import build_project

    document = {"name": "shop", "services": {}, "x-persist": {"encrypt": {"recipients_file": "keys.txt"},
                                                             "store_password_file": "secrets/restic"}}  # fmt: skip
    return build_project(document, "/srv/shop")


def test_age_on_a_restic_store_is_refused_by_backup_and_reported_by_check() -> None:
    from docker_persist.actions.backup import part_format
    from docker_persist.cli.commands.check import encrypt_problem
    from docker_persist.store.memory import MemoryStore

    project = encrypted_project()
    assert project.policy.store_password_file == "/srv/shop/secrets/restic"  # under the project folder
    store = MemoryStore()
    store.deduplicates = True  # as a restic store says
    with pytest.raises(ConfigError, match=r"x-persist\.encrypt cannot be used with memory://test: a restic"):
        part_format(project, store)
    problem = encrypt_problem(project, "restic:/srv/restic")
    assert problem is not None and "always encrypted with its password" in problem


def test_a_deduplicating_store_gets_plain_tar_whatever_x_persist_compression_says() -> None:
    from docker_persist.actions.backup import part_format
    from docker_persist.config.model import build_project
    from docker_persist.store.memory import MemoryStore

    project = build_project({"name": "shop", "services": {}, "x-persist": {"compression": "gzip"}}, "/srv/shop")
    store = MemoryStore()
    assert part_format(project, store).filename("data") == "data.tar.gz"
    store.deduplicates = True
    assert part_format(project, store, "zstd").filename("data") == "data.tar"


def test_store_init_and_check_are_for_restic_stores_only(tmp_path: Path) -> None:
    from tests.helpers import run_main

    env = {"HOME": str(tmp_path), "PATH": "/nonexistent"}
    result = run_main(["store", "init", "/var/backups/dp"], env)
    assert result.exit_code == 2
    assert "'/var/backups/dp' is not a restic store" in result.stderr
    result = run_main(["store", "check"], env)
    assert result.exit_code == 2
    assert "name the store: docker persist store check restic:REPOSITORY" in result.stderr
    result = run_main(["store", "init", "restic:/srv/r", "--read-data-subset", "10%"], env)
    assert result.exit_code == 2
    assert "--read-data-subset goes with `store check`" in result.stderr
    result = run_main(["store", "init", "restic:/srv/r"], env)  # no restic on PATH
    assert result.exit_code == 2
    assert "restic stores need the restic program, which is not on PATH" in result.stderr


class _FolderEngine:
    """Just what tree_source asks of an engine: where a volume's folder is, and who uses it."""

    def __init__(self, folder: str | None, states: tuple[str, ...] = ()) -> None:
        self.folder, self.states = folder, states

    def host_path(self, volume: str, writable: bool = False) -> str | None:
        return self.folder

    def containers_using_volume(self, name: str) -> list[Any]:
        from docker_persist.engine import ContainerSummary

        return [ContainerSummary(f"c{i}", f"c{i}", {}, state) for i, state in enumerate(self.states)]


class _TreePending:
    def start_tree(self, filename: str, directory: str, root: tuple[int, int, int]) -> None: ...


@pytest.mark.parametrize(
    ("folder", "states", "kind", "pending", "chosen"),
    [
        ("/v/_data", (), "volume", _TreePending(), True),
        ("/v/_data", ("exited", "created", "paused"), "volume", _TreePending(), True),
        ("/v/_data", (), "anonymous-volume", _TreePending(), True),
        ("/v/_data", ("exited", "running"), "volume", _TreePending(), False),  # live: one tar stream
        ("/v/_data", ("restarting",), "volume", _TreePending(), False),
        (None, (), "volume", _TreePending(), False),  # remote engine, another driver, fast path off
        ("/v/_data", (), "bind", _TreePending(), False),  # a running service may write the host folder
        ("/v/_data", (), "volume", object(), False),  # a store that cannot back up a folder
    ],
)
def test_a_volume_is_a_folder_part_only_when_restic_can_read_it_idle_on_this_machine(
    folder: str | None, states: tuple[str, ...], kind: str, pending: Any, chosen: bool
) -> None:
    from docker_persist.actions.backup import tree_source
    from docker_persist.config.model import Volume

    got = tree_source(_FolderEngine(folder, states), Volume(key="data", name="p_data"), pending, kind)  # type: ignore[arg-type]
    assert got == (folder if chosen else None)


def test_a_folder_part_has_its_index_beside_it() -> None:
    from docker_persist.actions.backup import index_filename

    assert index_filename("data.tree") == "data.index.zst"
    assert index_filename("data.tar") == "data.index.zst"
    assert index_filename("data.tar.zst.age") == "data.index.zst.age"


SAME = {"files_new": 0, "files_changed": 0, "dirs_new": 0, "dirs_changed": 0, "data_added": 0, "snapshot_id": "ab"}


@pytest.mark.parametrize(
    ("summary", "unchanged"),
    [
        (SAME, True),
        ({**SAME, "files_new": 1}, False),
        ({**SAME, "files_changed": 2}, False),  # content, or only a mode, owner or time
        ({**SAME, "dirs_new": 1}, False),
        ({**SAME, "dirs_changed": 1}, False),
        ({**SAME, "data_added": 1241}, False),  # a file removed at the top: restic counts it only here
        ({k: v for k, v in SAME.items() if k != "data_added"}, False),  # a summary restic did not finish
        ({**SAME, "files_new": "0"}, False),
        ({}, False),
    ],
)
def test_a_folder_is_unchanged_only_if_restic_found_nothing_new_and_added_nothing(
    summary: dict[str, Any], unchanged: bool
) -> None:
    from docker_persist.actions.backup import unchanged_tree

    assert unchanged_tree(summary) is unchanged


class _IndexStore:
    def __init__(self, kept: bytes | None, stored: bytes | Exception) -> None:
        self.kept, self.stored = kept, stored

    def kept_index(self, project: str, part: str, sha256: str) -> bytes | None:
        return self.kept

    def open_part(self, project: str, name: str, filename: str) -> Any:
        import io

        from docker_persist.store import StoreError

        if isinstance(self.stored, Exception):
            raise StoreError(f"cannot read {filename}: {self.stored}")
        return io.BytesIO(self.stored)


@pytest.mark.parametrize(
    ("kept", "stored", "used"),
    [
        (b"INDEX", b"other", b"INDEX"),  # kept on this machine
        (None, b"INDEX", b"INDEX"),  # read from the store
        (None, b"INDEX-damaged", None),  # not the manifest's: read the volume again
        (None, OSError("gone"), None),  # unreadable: read the volume again, never fail the backup
    ],
)
def test_an_unchanged_folder_takes_its_last_index_only_if_it_is_the_manifest_s(
    kept: bytes | None, stored: bytes | Exception, used: bytes | None
) -> None:
    import dataclasses
    import hashlib
    import types

    from docker_persist.actions.backup import parent_index
    from docker_persist.core.manifest import IndexRecord
    from tests.unit.test_metrics import record

    index = IndexRecord("data.index.zst", hashlib.sha256(b"INDEX").hexdigest(), 5)
    volume = dataclasses.replace(record("data", 10), index=index)
    pending = types.SimpleNamespace(store=_IndexStore(kept, stored), project="p")
    assert parent_index(pending, "last", volume) == used  # type: ignore[arg-type]


def test_a_restic_no_longer_wanted_is_stopped_with_sigint_and_killed_only_if_it_stays(tmp_path: Path) -> None:
    """restic 0.14 removes its repository lock on SIGINT, and leaves it on SIGTERM or SIGKILL: stop() asks with
    SIGINT, and kills only a process that is still there after the grace period."""
    import subprocess
    import sys
    import time

    from docker_persist.store.restic import stop

    said = tmp_path / "said"
    polite = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGINT, lambda *_: (open({str(said)!r}, 'w').write('unlocked'), sys.exit(130)))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE)  # fmt: skip
    assert polite.stdout is not None and polite.stdout.readline() == b"ready\n"
    stop(polite)
    assert polite.returncode == 130 and said.read_text() == "unlocked"

    stubborn = subprocess.Popen([sys.executable, "-c", (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE)  # fmt: skip
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    started = time.monotonic()
    stop(stubborn, grace=0.5)
    assert stubborn.returncode == -9 and time.monotonic() - started < 10
    stop(stubborn)  # one already ended: nothing to do
