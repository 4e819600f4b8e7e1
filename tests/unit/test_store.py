"""The local snapshot store: layout, modes, atomic publish, the lock, and clear errors.

Pure: a temporary folder, no engine. The lock tests run a second Python process, since a
flock only conflicts between processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_persist.errors import ConfigError, ExitStatus, SnapshotNotFoundError
from docker_persist.store import (
    STORE_BACKENDS,
    LocalStore,
    SnapshotExistsError,
    Store,
    StoreError,
    StoreLockedError,
    default_store_path,
    not_found,
    open_store,
)

REPO = Path(__file__).resolve().parents[2]
MANIFEST = b'{"format": 1}\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> LocalStore:
    return LocalStore(str(root))


def publish(store: Store, name: str, parts: dict[str, bytes] | None = None, project: str = "shop") -> None:
    with store.lock(project):
        pending = store.begin(project, name)
        for filename, data in (parts or {"db.tar.zst": b"archive " + name.encode()}).items():
            with pending.open_part(filename) as part:
                part.write(data)
        pending.publish(MANIFEST)


def entries(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start `python -c code args` with this checkout importable; it prints a line when ready."""
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=environ)


@contextlib.contextmanager
def running(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = python(code, *args)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


HOLD_LOCK = """
import sys, time
from docker_persist.store import LocalStore
with LocalStore(sys.argv[1]).lock("shop"):
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
"""

KILLED_BACKUP = """
import sys, time
from docker_persist.store import LocalStore
store = LocalStore(sys.argv[1])
with store.lock("shop"):
    pending = store.begin("shop", "s1")
    part = pending.open_part("db.tar.zst")
    part.write(b"x" * 100000)
    part.flush()
    print("ready", flush=True)
    time.sleep(60)
"""


# --- round trip and layout -----------------------------------------------------------------


def test_publish_then_read_back(store: LocalStore, root: Path) -> None:
    publish(store, "s1", {"db.tar.zst": b"one", "cache.tar": b"two" * 1_000_000})
    assert store.list_snapshots("shop") == ["s1"]
    assert store.list_projects() == ["shop"]
    assert store.read_manifest("shop", "s1") == MANIFEST
    with store.open_part("shop", "s1", "cache.tar") as part:
        assert part.read() == b"two" * 1_000_000
    assert entries(root / "shop") == [".lock", "s1"]
    assert entries(root / "shop" / "s1") == ["cache.tar", "db.tar.zst", "manifest.json"]


def test_lists_are_sorted_and_show_published_snapshots_only(store: LocalStore, root: Path) -> None:
    for name in ["b", "A", "a.2", "a"]:
        publish(store, name)
    publish(store, "x", project="other")
    (root / "shop" / "no-manifest").mkdir()
    (root / "shop" / ".hidden").mkdir()
    (root / "Bad Project").mkdir()
    (root / "empty").mkdir()
    assert store.list_snapshots("shop") == ["A", "a", "a.2", "b"]
    assert store.list_projects() == ["other", "shop"]
    assert store.list_snapshots("none") == []


def test_an_absent_store_reads_as_empty_and_is_not_created(store: LocalStore, root: Path) -> None:
    assert store.list_projects() == []
    assert store.list_snapshots("shop") == []
    with pytest.raises(SnapshotNotFoundError):
        store.read_manifest("shop", "s1")
    assert not root.exists()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_folders_are_0700_and_files_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "deep" / "store"
    store = LocalStore(str(root))
    previous = os.umask(umask)
    try:
        with store.lock("shop"):
            pending = store.begin("shop", "s1")
            with pending.open_part("db.tar.zst") as part:
                part.write(b"data")
            [staging] = [e for e in entries(root / "shop") if e.startswith(".staging-")]
            assert mode(root / "shop" / staging) == 0o700
            pending.publish(MANIFEST)
            store.replace_manifest("shop", "s1", MANIFEST + b" ")
    finally:
        os.umask(previous)
    for folder in (tmp_path / "deep", root, root / "shop", root / "shop" / "s1"):
        assert mode(folder) == 0o700, folder
    for file in (root / "shop" / ".lock", root / "shop" / "s1" / "db.tar.zst", root / "shop" / "s1" / "manifest.json"):
        assert mode(file) == 0o600, file


def test_an_existing_root_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    publish(LocalStore(str(tmp_path)), "s1")
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "shop") == 0o700


# --- atomic publish ------------------------------------------------------------------------


def test_a_snapshot_is_invisible_until_published(store: LocalStore) -> None:
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        with pending.open_part("db.tar.zst") as part:
            part.write(b"data")
        assert store.list_snapshots("shop") == []
        assert store.list_projects() == []
        with pytest.raises(SnapshotNotFoundError):
            store.read_manifest("shop", "s1")
        with pytest.raises(SnapshotNotFoundError):
            store.open_part("shop", "s1", "db.tar.zst")
        pending.publish(MANIFEST)
        pending.abort()  # after publish: nothing to do
    assert store.list_snapshots("shop") == ["s1"]


def test_an_aborted_snapshot_leaves_nothing(store: LocalStore, root: Path) -> None:
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        part = pending.open_part("db.tar.zst")
        part.write(b"unflushed")  # still open and buffered
        with pending.open_part("other.tar") as other:
            other.write(b"x")
        pending.abort()
        pending.abort()
        assert part.closed
        with pytest.raises(ValueError, match="aborted already"):
            pending.open_part("late.tar")
        with pytest.raises(ValueError, match="aborted already"):
            pending.publish(MANIFEST)
    assert entries(root / "shop") == [".lock"]
    assert store.list_snapshots("shop") == []


def test_parts_left_open_are_flushed_by_publish(store: LocalStore) -> None:
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        part = pending.open_part("db.tar.zst")
        part.write(b"buffered")
        pending.publish(MANIFEST)
    assert part.closed
    with store.open_part("shop", "s1", "db.tar.zst") as stream:
        assert stream.read() == b"buffered"


def test_a_part_is_opened_once(store: LocalStore) -> None:
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        pending.open_part("db.tar.zst").close()
        with pytest.raises(ValueError, match="opened already"):
            pending.open_part("db.tar.zst")
        pending.abort()


def test_begin_refuses_a_taken_name(store: LocalStore, root: Path) -> None:
    publish(store, "s1")
    with store.lock("shop"), pytest.raises(SnapshotExistsError, match="'s1' already exists in project 'shop'"):
        store.begin("shop", "s1")
    assert entries(root / "shop") == [".lock", "s1"]


def test_publish_refuses_a_name_taken_meanwhile_and_keeps_the_first(store: LocalStore, root: Path) -> None:
    with store.lock("shop"):
        second = store.begin("shop", "s1")  # a second begin of s1 in this store is refused: see tests/conformance.py
        with second.open_part("db.tar.zst") as part:
            part.write(b"second")
        first = root / "shop" / "s1"  # meanwhile, someone copies a snapshot s1 in by hand
        first.mkdir()
        (first / "db.tar.zst").write_bytes(b"first")
        (first / "manifest.json").write_bytes(MANIFEST)
        with pytest.raises(SnapshotExistsError) as raised:
            second.publish(b"other manifest")
    assert raised.value.exit_status == ExitStatus.FAILED
    assert entries(root / "shop") == [".lock", "s1"]
    assert store.read_manifest("shop", "s1") == MANIFEST
    with store.open_part("shop", "s1", "db.tar.zst") as stream:
        assert stream.read() == b"first"


def test_begin_needs_the_lock(store: LocalStore, root: Path) -> None:
    with pytest.raises(RuntimeError, match="needs the lock"):
        store.begin("shop", "s1")
    assert not root.exists()


def test_a_killed_backup_leaves_no_snapshot_and_is_cleaned_by_the_next_begin(store: LocalStore, root: Path) -> None:
    publish(store, "old")
    with running(KILLED_BACKUP, str(root)) as process:
        process.send_signal(signal.SIGKILL)
        process.wait()
    [staging] = [e for e in entries(root / "shop") if e.startswith(".staging-s1-")]
    assert store.list_snapshots("shop") == ["old"]
    with pytest.raises(SnapshotNotFoundError):
        store.read_manifest("shop", "s1")
    (root / "shop" / ".trash-gone-1-abcd").mkdir()
    (root / "shop" / ".trash-gone-1-abcd" / "x.tar").write_bytes(b"x")
    (root / "shop" / ".staging-old-1-abcd.manifest").write_bytes(b"{")
    with store.lock("shop", timeout=0):
        pending = store.begin("shop", "s1")
        assert staging not in entries(root / "shop")
        assert [e for e in entries(root / "shop") if e.startswith(".trash-")] == []
        assert ".staging-old-1-abcd.manifest" not in entries(root / "shop")
        with pending.open_part("db.tar.zst") as part:
            part.write(b"new")
        pending.publish(MANIFEST)
    assert entries(root / "shop") == [".lock", "old", "s1"]


def test_begin_spares_the_staging_of_a_live_pending_snapshot(store: LocalStore) -> None:
    with store.lock("shop"):
        first = store.begin("shop", "a")
        with first.open_part("db.tar.zst") as part:
            part.write(b"a")
        second = store.begin("shop", "b")
        second.abort()
        first.publish(MANIFEST)
    assert store.list_snapshots("shop") == ["a"]


# --- the lock ------------------------------------------------------------------------------


def test_a_held_lock_times_out_naming_the_holder(store: LocalStore, root: Path) -> None:
    with running(HOLD_LOCK, str(root), "60") as holder:
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as raised, store.lock("shop", timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
        message = str(raised.value)
        assert message.startswith(
            f"another docker-persist operation on project 'shop' holds the lock (pid {holder.pid}, since "
        )
        assert message.endswith("); try again when it finishes")
        assert raised.value.exit_status == ExitStatus.FAILED
        with pytest.raises(StoreLockedError), store.lock("shop"):  # timeout 0: one try
            pass
        with store.lock("other", timeout=0):  # other projects are free
            pass


def test_a_lock_held_by_a_killed_process_is_free(store: LocalStore, root: Path) -> None:
    with running(HOLD_LOCK, str(root), "60") as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with store.lock("shop", timeout=0):
        assert store.list_snapshots("shop") == []


def test_a_waiter_gets_the_lock_when_the_holder_finishes(store: LocalStore, root: Path) -> None:
    with running(HOLD_LOCK, str(root), "0.5"), store.lock("shop", timeout=30):
        pass


def test_the_lock_is_reentrant_within_a_store_and_released_after(store: LocalStore, root: Path) -> None:
    with store.lock("shop"):
        with store.lock("shop"):
            pass
        publish(store, "s1")  # locks again inside
    assert (root / "shop" / ".lock").read_bytes() == b""  # the holder line goes with the lock
    with running(HOLD_LOCK, str(root), "0"):
        pass


def test_the_lock_file_names_its_holder(store: LocalStore, root: Path) -> None:
    with store.lock("shop"):
        pid, since = (root / "shop" / ".lock").read_text().split()
    assert int(pid) == os.getpid()
    assert since.endswith("Z")


# --- replace_manifest and delete -----------------------------------------------------------


def test_replace_manifest(store: LocalStore, root: Path) -> None:
    publish(store, "s1")
    with store.lock("shop"):
        store.replace_manifest("shop", "s1", b'{"verified": true}\n')
    assert store.read_manifest("shop", "s1") == b'{"verified": true}\n'
    assert entries(root / "shop") == [".lock", "s1"]
    assert entries(root / "shop" / "s1") == ["db.tar.zst", "manifest.json"]
    with pytest.raises(SnapshotNotFoundError, match="no snapshot named 's2'"):
        store.replace_manifest("shop", "s2", b"{}")
    assert entries(root / "shop") == [".lock", "s1"]


def test_delete(store: LocalStore, root: Path) -> None:
    publish(store, "snap-1")
    publish(store, "snap-2")
    with store.lock("shop"):
        store.delete("shop", "snap-1")
    assert store.list_snapshots("shop") == ["snap-2"]
    assert entries(root / "shop") == [".lock", "snap-2"]
    with pytest.raises(SnapshotNotFoundError, match="did you mean 'snap-2'"):
        store.delete("shop", "snap-1")


def test_delete_leaves_folders_that_are_not_snapshots(store: LocalStore, root: Path) -> None:
    (root / "shop" / "stray").mkdir(parents=True)
    with pytest.raises(SnapshotNotFoundError):
        store.delete("shop", "stray")
    assert (root / "shop" / "stray").is_dir()


def test_a_missing_part_is_a_damaged_snapshot(store: LocalStore) -> None:
    publish(store, "s1")
    with pytest.raises(StoreError, match=r"has no file 'gone\.tar'.*incomplete or damaged"):
        store.open_part("shop", "s1", "gone.tar")


# --- names and not found -------------------------------------------------------------------


def test_not_found_suggests_the_closest_names() -> None:
    error = not_found("shop", "nightly-2026-11-25", ["nightly-2026-11-26", "nightly-2026-10-01", "weekly"])
    assert str(error) == (
        "no snapshot named 'nightly-2026-11-25' in project 'shop'; "
        "did you mean 'nightly-2026-11-26' or 'nightly-2026-10-01'?"
    )
    assert error.exit_status == ExitStatus.FAILED
    assert "`docker persist snapshots` lists" in str(not_found("shop", "zzz", ["alpha"]))
    assert "has no snapshots yet" in str(not_found("shop", "s1", []))


def test_reading_a_missing_snapshot_suggests_names(store: LocalStore) -> None:
    publish(store, "before-upgrade")
    with pytest.raises(SnapshotNotFoundError, match="did you mean 'before-upgrade'"):
        store.read_manifest("shop", "before-upgrad")


BAD_PROJECTS = ["", "../x", "a/b", ".x", "Shop", "-x", "with space", "nul\0"]
BAD_NAMES = ["", "../x", "a/b", ".x", "..", "x" * 129, "nul\0"]


@pytest.mark.parametrize("project", BAD_PROJECTS)
def test_invalid_project_names_are_refused_before_touching_disk(store: LocalStore, root: Path, project: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.lock(project).__enter__(),
        lambda: store.list_snapshots(project),
        lambda: store.read_manifest(project, "s1"),
        lambda: store.open_part(project, "s1", "db.tar.zst"),
        lambda: store.begin(project, "s1"),
        lambda: store.replace_manifest(project, "s1", MANIFEST),
        lambda: store.delete(project, "s1"),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="invalid project name"):
            call()
    assert not root.exists()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_snapshot_names_are_refused_before_touching_disk(store: LocalStore, root: Path, name: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.read_manifest("shop", name),
        lambda: store.open_part("shop", name, "db.tar.zst"),
        lambda: store.begin("shop", name),
        lambda: store.replace_manifest("shop", name, MANIFEST),
        lambda: store.delete("shop", name),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="invalid snapshot name"):
            call()
    assert not root.exists()


@pytest.mark.parametrize("filename", ["../x", "a/b", "..", ".", "", "manifest.json", "/etc/passwd"])
def test_invalid_part_names_are_refused(store: LocalStore, root: Path, filename: str) -> None:
    publish(store, "s1")
    with pytest.raises(StoreError, match="invalid file name"):
        store.open_part("shop", "s1", filename)
    with store.lock("shop"):
        pending = store.begin("shop", "s2")
        with pytest.raises(StoreError, match="invalid file name"):
            pending.open_part(filename)
        pending.publish(MANIFEST)
    assert entries(root / "shop" / "s2") == ["manifest.json"]
    assert entries(root / "shop") == [".lock", "s1", "s2"]


# --- a full disk ---------------------------------------------------------------------------


class FullDisk:
    """os.write fails with ENOSPC for files under `root` while `full` is set, as on a full disk."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root)
        self.full = False
        self._write = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: bytes) -> int:
        if self.full and os.readlink(f"/proc/self/fd/{fd}").startswith(self.root):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._write(fd, data)


@pytest.fixture
def disk(root: Path, monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(root, monkeypatch)


def assert_disk_full(error: StoreError, root: Path) -> None:
    assert str(error).startswith(f"no space left on the store's disk ({root}): ")
    assert "docker persist forget" in str(error)
    assert error.exit_status == ExitStatus.FAILED


def test_a_full_disk_while_streaming_a_part(store: LocalStore, root: Path, disk: FullDisk) -> None:
    publish(store, "old")
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        part = pending.open_part("db.tar.zst")
        part.write(b"fits")
        disk.full = True
        with pytest.raises(StoreError) as raised:
            part.write(b"x" * (4 << 20))
        pending.abort()
    assert_disk_full(raised.value, root)
    assert "writing db.tar.zst of snapshot 's1' of project 'shop'" in str(raised.value)
    assert entries(root / "shop") == [".lock", "old"]


@pytest.mark.parametrize("stage", ["buffered part", "manifest"])
def test_a_full_disk_during_publish_publishes_nothing(
    store: LocalStore, root: Path, disk: FullDisk, stage: str
) -> None:
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        part = pending.open_part("db.tar.zst")
        part.write(b"small, still in the buffer")
        if stage == "manifest":
            part.close()
        disk.full = True
        with pytest.raises(StoreError) as raised:
            pending.publish(MANIFEST)
        pending.abort()
    assert_disk_full(raised.value, root)
    assert entries(root / "shop") == [".lock"]
    assert store.list_snapshots("shop") == []
    disk.full = False
    publish(store, "s1")  # the next run is not tripped by anything
    assert store.list_snapshots("shop") == ["s1"]


def test_a_full_disk_keeps_the_old_manifest(store: LocalStore, root: Path, disk: FullDisk) -> None:
    publish(store, "s1")
    disk.full = True
    with store.lock("shop"), pytest.raises(StoreError) as raised:
        store.replace_manifest("shop", "s1", b"new")
    assert_disk_full(raised.value, root)
    assert store.read_manifest("shop", "s1") == MANIFEST
    assert entries(root / "shop") == [".lock", "s1"]


def test_a_full_disk_does_not_block_the_lock(store: LocalStore, root: Path, disk: FullDisk) -> None:
    publish(store, "s1")
    disk.full = True
    with store.lock("shop"):  # forget needs it to free space
        store.delete("shop", "s1")
    assert store.list_snapshots("shop") == []


def test_other_os_errors_become_store_errors(store: LocalStore, root: Path) -> None:
    root.write_bytes(b"not a folder")
    with pytest.raises(StoreError, match=r"creating a store folder failed: Not a directory \("):
        store.lock("shop").__enter__()


# --- open_store ----------------------------------------------------------------------------


def local_root(store: Store) -> str:
    assert isinstance(store, LocalStore)
    return str(store.root)


def test_default_store_path() -> None:
    assert default_store_path({"HOME": "/home/u"}) == "/home/u/.local/share/docker-persist/snapshots"
    assert default_store_path({"HOME": "/home/u", "XDG_DATA_HOME": "/data"}) == "/data/docker-persist/snapshots"
    relative = {"HOME": "/home/u", "XDG_DATA_HOME": "data"}  # the XDG spec says to ignore it
    assert default_store_path(relative) == "/home/u/.local/share/docker-persist/snapshots"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (None, "/home/u/.local/share/docker-persist/snapshots"),
        ("/var/backups/dp", "/var/backups/dp"),
        ("/var/backups/dp/", "/var/backups/dp"),
        ("file:///var/backups/dp", "/var/backups/dp"),
        ("FILE://localhost/var/backups/dp", "/var/backups/dp"),
        ("file:///var/my%20backups", "/var/my backups"),
        ("~/backups", "/home/u/backups"),
        ("~", "/home/u"),
    ],
)
def test_open_store_gives_local_stores(url: str | None, path: str) -> None:
    store = open_store(url, {"HOME": "/home/u"})
    assert local_root(store) == path
    assert store.url == Path(path).as_uri()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/x?colour=blue", "unknown option 'colour'"),
        ("ftp://host/x", "unknown scheme 'ftp'; a store is a local path, restic:REPOSITORY or one of file://, s3://"),
        ("relative/path", "the path must be absolute"),
        ("./x", "the path must be absolute"),
        ("~other/x", "the path must be absolute"),
        ("file://host/x", "takes no host"),
        ("file:///x?y=1", "no '?' or '#'"),
        ("/x\0y", "NUL"),
        ("", "give a path"),
    ],
)
def test_open_store_refuses_other_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")) as raised:
        open_store(url, {"HOME": "/home/u"})
    assert raised.value.exit_status == ExitStatus.USAGE


def test_backends_are_an_explicit_registry() -> None:
    assert sorted(STORE_BACKENDS) == ["file", "s3"]


# --- publish checks what the store holds ----------------------------------------------------------


@pytest.mark.parametrize("change", ["removed", "replaced", "truncated"])
def test_a_part_changed_behind_the_writer_s_back_is_never_published(store: LocalStore, root: Path, change: str) -> None:
    with store.lock("shop"):
        pending = store.begin("shop", "s1")
        with pending.open_part("db.tar.zst") as part:
            part.write(b"x" * 5000)
        (staging,) = root.glob("shop/.staging-s1-*")
        path = staging / "db.tar.zst"
        if change == "removed":
            path.unlink()
        elif change == "replaced":
            path.unlink()
            path.write_bytes(b"x" * 5000)  # the same bytes, but not the file this run wrote
        else:
            os.truncate(path, 100)
        with pytest.raises(StoreError, match="not what this backup wrote"):
            pending.publish(MANIFEST)
    assert store.list_snapshots("shop") == []
    assert entries(root / "shop") == [".lock"]


def test_a_killed_forget_s_trash_is_removed_by_the_next_lock(store: LocalStore, root: Path) -> None:
    publish(store, "s1")
    trash = root / "shop" / ".trash-s1-999-abcd"
    (root / "shop" / "s1").rename(trash)  # what a forget killed between its rename and its rmtree leaves
    with store.lock("shop"):
        assert not trash.exists()
    assert entries(root / "shop") == [".lock"]
