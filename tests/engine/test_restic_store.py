"""The store contract (tests/conformance.py) on a restic repository, with the real restic (Debian's).

Each test gets a fresh repository: a copy of one made once per session with `restic init` (which
spends seconds calibrating its key derivation). A second ResticStore on the same repository is the
rival; the two handles' flocks exclude each other as two processes' would.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_persist.errors import SnapshotNotFoundError
from docker_persist.store import Store, StoreError
from docker_persist.store.restic import ResticStore, open_restic_store

pytest.register_assert_rewrite("tests.conformance")
from tests.conformance import MANIFEST, PROJECT, StoreContract, data, publish, read_part, write_parts  # noqa: E402

PASSWORD = "correct horse battery staple"


def restic_environ(root: Path) -> dict[str, str]:
    """restic's environment for a test: its password, and caches and locks under `root` (never $HOME)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_STATE_HOME": str(root / "state"),
        "RESTIC_PASSWORD": PASSWORD,
    }


@pytest.fixture(scope="session")
def restic_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty restic repository, made once; tests copy it."""
    if shutil.which("restic") is None:
        pytest.fail("no restic on PATH: run tests/bed/testbed first (it installs Debian's restic)")
    root = tmp_path_factory.mktemp("restic-template")
    repository = root / "repo"
    subprocess.run(["restic", "init", "-q", "-r", str(repository)], env=restic_environ(root), check=True)
    return repository


@pytest.fixture
def restic_repository(restic_template: Path, tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    shutil.copytree(restic_template, repository)
    return repository


class TestResticStore(StoreContract):
    large_part_bytes = 3 * (1 << 20) + 12_345

    @pytest.fixture
    def store(self, restic_repository: Path, tmp_path: Path) -> Iterator[Store]:
        yield open_restic_store(f"restic:{restic_repository}", restic_environ(tmp_path))

    @pytest.fixture
    def rival(self, store: Store, restic_repository: Path, tmp_path: Path) -> Iterator[Store]:
        yield open_restic_store(f"restic:{restic_repository}", restic_environ(tmp_path))

    # Names are checked by the rules all stores share (tests/unit runs every bad name on the local store);
    # here a few of each, as every restic run costs half a second of key derivation.
    @pytest.mark.parametrize("name", ["../x", "a/b", "x" * 129])
    def test_an_invalid_snapshot_name_is_refused_before_anything_is_touched(self, store: Store, name: str) -> None:
        super().test_an_invalid_snapshot_name_is_refused_before_anything_is_touched(store, name)

    @pytest.mark.parametrize("filename", ["../x", "manifest.json", "with space"])
    def test_an_invalid_part_name_is_refused_before_anything_is_touched(self, store: Store, filename: str) -> None:
        super().test_an_invalid_part_name_is_refused_before_anything_is_touched(store, filename)

    @pytest.mark.parametrize("project", ["../x", "Shop", "x\n"])
    def test_an_invalid_project_name_is_refused_before_anything_is_touched(self, store: Store, project: str) -> None:
        super().test_an_invalid_project_name_is_refused_before_anything_is_touched(store, project)

    def contents(self, store: Store) -> list[str]:
        """The path of every restic snapshot in the repository, docker-persist's or not (a replaced manifest is
        a new restic snapshot at the same path: twice the path if the old one were left)."""
        assert isinstance(store, ResticStore)
        out = subprocess.run(["restic", "snapshots", "--json"], env=store.restic.env, capture_output=True, check=True)
        return sorted(s["paths"][0] for s in json.loads(out.stdout or b"[]") or [])

    def test_what_a_killed_run_left_is_never_visible_and_goes_with_the_next_lock(
        self, store: Store, rival: Store
    ) -> None:
        """As the contract's, but the killed run's restic dies with it (kill -9 of the process group), leaving
        its repository lock: a live restic would hold off `forget`, a dead one's lock is removed."""
        publish(store, "old")
        with store.lock(PROJECT):
            before = self.contents(store)
        with rival.lock(PROJECT):
            dead = rival.begin(PROJECT, "s1")
            write_parts(dead, {"dead.tar": b"a part of the killed run"})
            unfinished = dead.open_part("dead-large.tar")
            unfinished.write(data(self.large_part_bytes, 9))
        process = unfinished.process  # type: ignore[attr-defined]
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert store.list_snapshots(PROJECT) == ["old"]
        with pytest.raises(SnapshotNotFoundError):
            store.read_manifest(PROJECT, "s1")
        with store.lock(PROJECT):
            assert self.contents(store) == before  # taking the lock removed the leftovers
            pending = store.begin(PROJECT, "s1")
            write_parts(pending, {"db.tar.zst": b"the next run"})
            pending.publish(MANIFEST)
        assert read_part(store, "s1", "db.tar.zst") == b"the next run"
        with pytest.raises(StoreError):
            read_part(store, "s1", "dead.tar")
        subprocess.run(["restic", "check", "-q"], env=store.restic.env, check=True, capture_output=True)  # type: ignore[attr-defined]


def test_manifests_read_once_are_read_from_this_machine_s_cache(restic_repository: Path, tmp_path: Path) -> None:
    """A restic snapshot never changes: a manifest read before costs no `restic dump`, and a damaged cache
    file is read from the repository again. On the machine that wrote them, manifests are never dumped."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "restic-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec restic "$@"\n')
    wrapper.chmod(0o755)
    writing = {**restic_environ(tmp_path / "writer"), "DOCKER_PERSIST_RESTIC": str(wrapper)}
    environ = {**restic_environ(tmp_path), "DOCKER_PERSIST_RESTIC": str(wrapper)}  # another machine's cache
    writer = open_restic_store(f"restic:{restic_repository}", writing)
    manifests = {f"s{n}": f'{{"n": {n}}}'.encode() for n in range(3)}
    for name, manifest in manifests.items():
        publish(writer, name, {"db.tar": name.encode()}, manifest)

    def read_all(where: dict[str, str]) -> tuple[dict[str, bytes], list[str]]:
        log.write_text("")
        reader = open_restic_store(f"restic:{restic_repository}", where)  # a new command
        read = {name: reader.read_manifest(PROJECT, name) for name in reader.list_snapshots(PROJECT)}
        return read, log.read_text().split()

    assert read_all(writing) == (manifests, ["snapshots"])
    assert read_all(environ) == (manifests, ["snapshots", "dump", "dump", "dump"])
    assert read_all(environ) == (manifests, ["snapshots"])
    cached = sorted((tmp_path / "cache" / "docker-persist" / "restic").rglob("*.json"))
    assert len(cached) == 3
    cached[0].write_bytes(cached[0].read_bytes()[:-3] + b"XYZ")  # damaged
    assert read_all(environ) == (manifests, ["snapshots", "dump"])
    written = sorted((tmp_path / "writer" / "cache" / "docker-persist" / "restic").rglob("*-*.json"))
    assert len(written) == 3
    for path in written:  # a written manifest's key must match the listed snapshot's id and run both
        path.rename(path.with_name(f"00000000-{path.name.split('-', 1)[1]}"))
    for path in sorted((tmp_path / "writer" / "cache" / "docker-persist" / "restic").rglob("*.json")):
        if "-" not in path.name:
            path.unlink()
    assert read_all(writing) == (manifests, ["snapshots", "dump", "dump", "dump"])


def test_a_primed_part_is_the_part_written_and_one_never_opened_is_no_part(
    restic_repository: Path, tmp_path: Path
) -> None:
    """prime_part starts restic early: written, it is the part; opened and closed empty, an empty part; never
    opened, nothing at all, at publish as at abort, and no restic is left running."""
    store = open_restic_store(f"restic:{restic_repository}", restic_environ(tmp_path))
    with store.lock(PROJECT):
        pending = store.begin(PROJECT, "s1")
        for part in ("written.tar", "empty.tar", "unused.tar"):
            pending.prime_part(part)
        processes = [w.process for w in pending.primed.values()]
        wait_for_locks(restic_repository, 3)  # each has locked the repository: stopping it now must unlock it
        write_parts(pending, {"written.tar": b"primed bytes", "empty.tar": b""})
        pending.publish(MANIFEST)
        aborted = store.begin(PROJECT, "s2")
        aborted.prime_part("never.tar")
        processes.append(aborted.primed["never.tar"].process)
        wait_for_locks(restic_repository, 1)
        aborted.abort()
    assert all(p.poll() is not None for p in processes)
    assert list((restic_repository / "locks").iterdir()) == []  # no stale lock for `restic check` to trip on
    assert store.list_snapshots(PROJECT) == ["s1"]
    assert read_part(store, "s1", "written.tar") == b"primed bytes"
    assert read_part(store, "s1", "empty.tar") == b""
    with pytest.raises(StoreError):
        read_part(store, "s1", "unused.tar")
    listed = subprocess.run(["restic", "snapshots", "--json"], env=store.restic.env, capture_output=True, check=True)
    parts = sorted(s["paths"][0].rsplit("/", 1)[1] for s in json.loads(listed.stdout))
    assert parts == ["empty.tar", "manifest.json", "written.tar"]


def wait_for_locks(repository: Path, count: int) -> None:
    """Wait until the repository holds `count` restic locks (the runs just started have opened it), and a second
    more: restic writes its lock file, then reads the others', and only then knows it has a lock to remove when
    it is stopped (SIGINT in that window leaves the lock, stale, for `restic unlock`)."""
    deadline = time.monotonic() + 60
    while len(list((repository / "locks").iterdir())) < count:
        assert time.monotonic() < deadline, f"fewer than {count} restic locks after 60 s"
        time.sleep(0.05)
    time.sleep(1.0)


@pytest.mark.parametrize("manifest", [b'{"reason": "daily", "pinned": true}', b'{"reason": "manual"}'])
def test_a_primed_manifest_is_used_when_its_tags_fit_and_replaced_when_not(
    restic_repository: Path, tmp_path: Path, manifest: bytes
) -> None:
    store = open_restic_store(f"restic:{restic_repository}", restic_environ(tmp_path))
    with store.lock(PROJECT):
        pending = store.begin(PROJECT, "s1")
        pending.prime_manifest("daily", True)
        primed = pending.primed_manifest
        assert primed is not None
        wait_for_locks(restic_repository, 1)
        write_parts(pending, {"db.tar": b"bytes"})
        pending.publish(manifest)
    assert primed.process.poll() is not None
    assert list((restic_repository / "locks").iterdir()) == []
    subprocess.run(["restic", "check", "-q"], env=store.restic.env, capture_output=True, check=True)
    assert store.read_manifest(PROJECT, "s1") == manifest
    listed = subprocess.run(["restic", "snapshots", "--json"], env=store.restic.env, capture_output=True, check=True)
    tags = [set(s["tags"]) for s in json.loads(listed.stdout) if "part=manifest.json" in s["tags"]]
    expected = {"reason=daily", "pinned"} if b"daily" in manifest else {"reason=manual"}
    assert len(tags) == 1
    assert tags[0] & {"reason=daily", "reason=manual", "pinned"} == expected


def test_the_listing_read_before_the_lock_is_kept_only_if_no_run_here_wrote_since(
    restic_repository: Path, tmp_path: Path
) -> None:
    """A command that reads, then locks (restore, forget) lists once; but if another run on this machine wrote
    in between, or was killed holding the lock, the lock lists again and sees what it wrote."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "restic-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec restic "$@"\n')
    wrapper.chmod(0o755)
    environ = {**restic_environ(tmp_path), "DOCKER_PERSIST_RESTIC": str(wrapper)}
    publish(open_restic_store(f"restic:{restic_repository}", environ), "s1")

    def read_then_lock(other: Callable[[], None] | None = None) -> tuple[list[str], list[str]]:
        store = open_restic_store(f"restic:{restic_repository}", environ)  # a command
        assert "s1" in store.list_snapshots(PROJECT)
        if other is not None:
            other()
        log.write_text("")
        with store.lock(PROJECT):
            names = store.list_snapshots(PROJECT)
        return names, log.read_text().split()

    assert read_then_lock() == (["s1"], [])
    assert read_then_lock(lambda: publish(open_restic_store(f"restic:{restic_repository}", environ), "s2")) == (
        ["s1", "s2"],
        ["snapshots"],
    )

    def killed_holder() -> None:  # a holder killed before it let go leaves its pid in the lock file
        lock = next((tmp_path / "state").rglob("restic-*-*.lock"))
        lock.write_text("pid 999999999")

    names, calls = read_then_lock(killed_holder)
    assert names == ["s1", "s2"] and calls.count("snapshots") == 1 and "unlock" in calls
