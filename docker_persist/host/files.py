"""Small files docker-persist writes for itself: written whole or not at all."""

from __future__ import annotations

import contextlib
import os


def write_atomically(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` in one step: a temp file in the same folder, fsync'd, then renamed.

    A reader sees the old content or the new, never half of it (node_exporter's textfile
    collector reads `*.prom` files, and the temp name does not end in `.prom`). Missing parent
    folders are created mode 0700. `durable` also fsyncs the folder, so the rename survives a
    power cut. Raise OSError if the folder is not writable; the temp file is then removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if durable:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
