"""What child processes inherit."""

from __future__ import annotations

import threading
from pathlib import Path

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
