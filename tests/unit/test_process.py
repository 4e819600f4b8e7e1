"""What child processes inherit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_persist.errors import PersistError
from docker_persist.host.process import child_environ, tar_create, tar_extract


def test_plugin_variables_are_not_inherited() -> None:
    environ = {"PATH": "/bin", "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND": "docker", "DOCKER_HOST": "unix:///x"}
    assert child_environ(environ) == {"PATH": "/bin", "DOCKER_HOST": "unix:///x"}


def test_bundle_library_path_is_restored() -> None:
    frozen = {"LD_LIBRARY_PATH": "/bundle/_internal:/opt/lib", "LD_LIBRARY_PATH_ORIG": "/opt/lib",
              "_PYI_ARCHIVE_FILE": "/bundle/docker-persist", "HOME": "/h"}  # fmt: skip
    assert child_environ(frozen) == {"LD_LIBRARY_PATH": "/opt/lib", "HOME": "/h"}
    frozen_without_original = {"LD_LIBRARY_PATH": "/bundle/_internal", "_PYI_ARCHIVE_FILE": "/b"}
    assert child_environ(frozen_without_original) == {}


def test_unfrozen_library_path_is_kept() -> None:
    assert child_environ({"LD_LIBRARY_PATH": "/opt/lib"}) == {"LD_LIBRARY_PATH": "/opt/lib"}


def test_a_tar_that_writes_much_to_stderr_does_not_deadlock(tmp_path: Path) -> None:
    """tar writing more than a pipe holds to stderr while it reads stdin (e.g. "File name too long" for
    thousands of entries) must not block both processes."""
    fake = tmp_path / "tar"
    fake.write_text('#!/bin/sh\nhead -c 300000 /dev/zero | tr "\\\\0" x >&2\ncat >/dev/null\nexit 2\n')
    fake.chmod(0o755)
    outcome: list[BaseException | None] = []

    def extract() -> None:
        try:
            tar_extract(str(fake), str(tmp_path), iter([b"y" * (1 << 20)] * 4), {"PATH": "/usr/bin:/bin"})
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=extract, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "tar_extract deadlocked on tar's stderr"
    (error,) = outcome
    assert isinstance(error, PersistError) and "exit 2" in str(error)
    assert str(error).endswith("x" * 100)  # the end of what tar said is kept


def test_tar_create_drains_stderr_too(tmp_path: Path) -> None:
    fake = tmp_path / "tar"
    fake.write_text('#!/bin/sh\nhead -c 300000 /dev/zero | tr "\\\\0" x >&2\nprintf data\nexit 3\n')
    fake.chmod(0o755)
    chunks = []
    with pytest.raises(PersistError, match="exit 3"):
        chunks.extend(tar_create(str(fake), str(tmp_path), {"PATH": "/usr/bin:/bin"}))
    assert b"".join(chunks) == b"data"


def test_widen_pipe_gives_a_pipe_a_mebibyte() -> None:
    """tar's pipes: 64 KiB filled up while our reading thread waited for the GIL, stalling tar."""
    import fcntl
    import os

    from docker_persist.host.process import PIPE_SIZE, widen_pipe

    read, write = os.pipe()
    try:
        widen_pipe(write)
        assert fcntl.fcntl(write, fcntl.F_GETPIPE_SZ) == PIPE_SIZE == 1 << 20
    finally:
        os.close(read)
        os.close(write)
    with open(os.devnull, "rb") as not_a_pipe:
        widen_pipe(not_a_pipe.fileno())  # best effort: what is not a pipe changes nothing and raises nothing


def test_removal_behind_removes_the_names_given_and_nothing_else(tmp_path: Path) -> None:
    import os

    from docker_persist.host.process import RemovalBehind

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_bytes(b"k")
    folder = tmp_path / "v"
    folder.mkdir()
    names = [b"a", b"-rf", b"new\nline", b"latin-\xe9", b"escape", b"b"]
    for name in names[:4]:
        (folder / os.fsdecode(name) / "deep").mkdir(parents=True)
        (folder / os.fsdecode(name) / "deep" / "file").write_bytes(b"x")
    (folder / "escape").symlink_to(outside)  # removed as a link: what it points to stays
    (folder / "b").write_bytes(b"b")
    (folder / "c").write_bytes(b"c")
    with RemovalBehind(str(folder), os.environ) as behind:
        behind.passed([names[0]])
        behind.passed(names[1:])
        behind.passed([b"..", b".", b"", b"c/..", b"/"])  # never a path of more than one name
    behind.passed([b"c"])  # after close: nothing runs
    # The second call may have come while the first rm ran: what it queued is left, never waited for.
    left = sorted(os.listdir(os.fsencode(folder)))
    assert b"c" in left and b"a" not in left
    assert set(left) <= {b"c", *names[1:]}
    assert (outside / "kept").read_bytes() == b"k"


def test_removal_behind_takes_every_name_when_each_rm_is_done_first(tmp_path: Path) -> None:
    import os

    from docker_persist.host.process import RemovalBehind

    folder = tmp_path / "v"
    folder.mkdir()
    for index in range(30):
        (folder / f"n{index}").mkdir()
    behind = RemovalBehind(str(folder), os.environ)
    for index in range(29):
        behind.passed([f"n{index}".encode()])
        behind.wait()  # for the rm just started
    assert os.listdir(folder) == ["n29"]


def test_removal_behind_says_whether_an_rm_may_still_run(tmp_path: Path) -> None:
    import os

    from docker_persist.host.process import RemovalBehind

    folder = tmp_path / "v"
    (folder / "a").mkdir(parents=True)
    behind = RemovalBehind(str(folder), os.environ)
    assert not behind.removing
    behind.passed([b"a"])
    assert behind.removing
    behind.wait()
    assert not behind.removing and os.listdir(folder) == []


def test_a_read_back_that_removes_behind_reads_what_a_plain_one_does(tmp_path: Path) -> None:
    """volume_read_digest with RemovalBehind (verify's read-back of its scratch volume): the same summary as
    a read of an identical copy, and all the read has gone past is gone (rm runs beside the read)."""
    import contextlib
    import os
    import shutil

    from docker_persist.actions.catalog import volume_read_digest
    from docker_persist.host.process import RemovalBehind, find_gnu_tar

    tar = find_gnu_tar()
    if tar is None:
        pytest.skip("no GNU tar")

    class FolderEngine:
        @contextlib.contextmanager
        def volume_archive(self, volume: str, project: str) -> Iterator[Iterator[bytes]]:
            chunks = tar_create(str(tar), volume, os.environ)
            try:
                yield chunks
            finally:
                chunks.close()

    source = tmp_path / "source"
    for top in range(40):
        (source / f"d{top}").mkdir(parents=True)
        for file in range(200):
            (source / f"d{top}" / f"f{file}").write_bytes(os.urandom(3000))
    copy = tmp_path / "copy"
    shutil.copytree(source, copy, symlinks=True)
    engine: Any = FolderEngine()
    plain = volume_read_digest(engine, "p", str(copy))
    with RemovalBehind(str(source), os.environ) as behind:
        removing = volume_read_digest(engine, "p", str(source), behind)
    assert removing == plain and plain.files == 8000
    left = set(os.listdir(source))
    assert left < set(os.listdir(copy))  # the first name passed started an rm, and close() waited for it
    assert all(len(os.listdir(source / name)) == 200 for name in left)  # no folder half removed


def test_removal_behind_stops_after_an_rm_that_failed(tmp_path: Path) -> None:
    """An rm that cannot do it (BusyBox's has no --one-file-system) is not run again for every chunk read."""
    from docker_persist.host.process import RemovalBehind

    fake = tmp_path / "bin" / "rm"
    fake.parent.mkdir()
    runs = tmp_path / "runs"
    fake.write_text(f'#!/bin/sh\necho run >> "{runs}"\nexit 1\n')
    fake.chmod(0o755)
    folder = tmp_path / "v"
    folder.mkdir()
    behind = RemovalBehind(str(folder), {"PATH": str(fake.parent)})
    for index in range(5):
        behind.passed([f"n{index}".encode()])
        behind.wait()
    assert runs.read_text() == "run\n"


def test_removal_behind_gives_each_rm_a_bounded_argument_list(tmp_path: Path) -> None:
    """Thousands of long top-level names passed at once (a flat folder) go to several rm runs, none with more
    than ARGUMENT_BYTES of arguments, and together they remove them all."""
    import os

    from docker_persist.host.process import RemovalBehind

    folder = tmp_path / "v"
    folder.mkdir()
    names = [f"{index:05d}-{'n' * 200}".encode() for index in range(1500)]  # ~300 KB of names
    for name in names:
        (folder / os.fsdecode(name)).write_bytes(b"")
    behind = RemovalBehind(str(folder), os.environ)
    runs = 0
    behind.passed(names)
    while True:
        behind.wait()
        runs += 1
        if not os.listdir(folder):
            break
        assert runs < 10, "rm runs that remove nothing"
        behind.passed([])
    assert runs >= 3


class _Folders:
    """An engine whose volumes are folders under one directory: what move_checked asks of it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host_path(self, volume: str, writable: bool = False) -> str | None:
        path = self.root / volume
        return str(path) if path.is_dir() else None


def _checked(scratch: str) -> Any:
    from docker_persist.actions.catalog import CheckedPart
    from docker_persist.core.archive import ArchiveSummary

    return CheckedPart(scratch, ArchiveSummary("", "", 0, 0, 0, 0, 0, 0, None))


def test_move_checked_moves_every_entry_as_it_was_and_gives_the_root(tmp_path: Path) -> None:
    """A restore moves the files its check restored (a folder part, in a scratch volume) into the emptied volume:
    every top-level entry, its mtime as it was (a directory's too), links and modes kept; the root gets the
    snapshot's mode and owner."""
    import os

    from docker_persist.actions.catalog import move_checked
    from docker_persist.core.manifest import RootEntry

    scratch, volume = tmp_path / "scratch", tmp_path / "volume"
    (scratch / "dir" / "deep").mkdir(parents=True)
    (scratch / "dir" / "deep" / "file").write_bytes(b"data")
    (scratch / "dir" / "hard").write_bytes(b"shared")
    os.link(scratch / "dir" / "hard", scratch / "hard-too")
    (scratch / "link").symlink_to("dir/deep/file")
    (scratch / "odd \n\xe9".encode("latin-1").decode("utf-8", "surrogateescape")).write_bytes(b"odd")
    (scratch / "dir" / "deep" / "file").chmod(0o640)
    for index, name in enumerate(sorted(os.listdir(scratch))):
        os.utime(scratch / name, ns=(1_000_000_000 + index, 1_500_000_000_123_456_789 + index), follow_symlinks=False)
    expected = {
        name: (status.st_mtime_ns, status.st_mode, status.st_ino)
        for name in os.listdir(os.fsencode(scratch))
        for status in [os.lstat(os.path.join(os.fsencode(scratch), name))]
    }
    volume.mkdir(mode=0o755)
    uid, gid = os.getuid(), os.getgid()
    assert move_checked(_Folders(tmp_path), _checked("scratch"), "volume", RootEntry(0o2770, uid, gid), "x") is True
    assert os.listdir(scratch) == []
    moved = {
        name: (status.st_mtime_ns, status.st_mode, status.st_ino)
        for name in os.listdir(os.fsencode(volume))
        for status in [os.lstat(os.path.join(os.fsencode(volume), name))]
    }
    assert moved == expected
    assert (volume / "dir" / "deep" / "file").read_bytes() == b"data"
    assert os.stat(volume / "hard-too").st_nlink == 2
    assert os.readlink(volume / "link") == "dir/deep/file"
    root = os.stat(volume)
    assert (root.st_mode & 0o7777, root.st_uid, root.st_gid) == (0o2770, uid, gid)


def test_move_checked_moves_nothing_where_it_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No folder for either volume, or another mount of the file system (EXDEV at the first rename): False, and
    nothing moved, so the restore has restic restore the part as usual. A rename that fails after some moved
    leaves a half-filled volume: that is an error, for the journal to finish."""
    import errno
    import os

    from docker_persist.actions.catalog import move_checked
    from docker_persist.core.manifest import RootEntry
    from docker_persist.errors import PersistError

    scratch, volume = tmp_path / "scratch", tmp_path / "volume"
    scratch.mkdir()
    for name in ("a", "b", "c"):
        (scratch / name).write_bytes(name.encode())
    root = RootEntry(0o755, os.getuid(), os.getgid())
    engine = _Folders(tmp_path)
    assert move_checked(engine, _checked("scratch"), "volume", root, "x") is False  # no folder for the volume
    volume.mkdir()
    assert move_checked(engine, _checked("gone"), "volume", root, "x") is False

    real_rename, calls = os.rename, []

    def rename(old: bytes, new: bytes) -> None:
        calls.append(old)
        if len(calls) == 1 or len(calls) == 3:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(old, new)

    monkeypatch.setattr(os, "rename", rename)
    assert move_checked(engine, _checked("scratch"), "volume", root, "x") is False
    assert sorted(os.listdir(scratch)) == ["a", "b", "c"] and os.listdir(volume) == []
    with pytest.raises(PersistError, match="cannot move the checked files of 'scratch' into 'volume'"):
        move_checked(engine, _checked("scratch"), "volume", root, "x")
    assert len(os.listdir(scratch)) == 2 and len(os.listdir(volume)) == 1
