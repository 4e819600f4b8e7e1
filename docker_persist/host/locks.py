"""Locks that die with their holder: flock(2) on a file in docker-persist's state directory.

The kernel releases a flock when the last descriptor closes, so a holder killed with -9 leaves
nothing held. The file names its holder (pid, since, what it does, a token), which is what a
waiter's message shows, and what a child process checks to share its parent's hold.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

from docker_persist.errors import BusyError, PersistError

POLL_SECONDS = 0.1

# Holds in this process: lock path -> [fd, depth, token]. Re-entrant, so nested actions share one.
_HELD: dict[str, list[Any]] = {}


class FileLock:
    """An exclusive lock on a file; `busy` makes the error for a lock another process holds."""

    def __init__(self, path: str, busy: type[BusyError], what: str) -> None:
        self.path = path
        self.busy = busy
        self.what = what  # "project 'shop' on this engine", for messages

    @contextlib.contextmanager
    def hold(self, operation: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the lock for the block, waiting up to `timeout` seconds; re-entrant within the process.

        Raise `busy`, naming the holder, if another process still holds it.
        """
        held = _HELD.get(self.path)
        if held is not None:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            raise PersistError(f"cannot open the lock {self.path}: {error.strerror or error}") from error
        try:
            self._acquire(fd, timeout)
            token = secrets.token_hex(16)
            with contextlib.suppress(OSError):  # the holder's name only feeds a waiter's message
                os.ftruncate(fd, 0)
                body = {"pid": os.getpid(), "since": _now(), "operation": operation, "token": token}
                os.pwrite(fd, json.dumps(body).encode(), 0)
            _HELD[self.path] = [fd, 1, token]
            try:
                yield
            finally:
                del _HELD[self.path]
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def token(self) -> str | None:
        """Return the token of this process's hold, or None if it does not hold the lock."""
        held = _HELD.get(self.path)
        return str(held[2]) if held is not None else None

    def holder(self) -> dict[str, Any] | None:
        """Return what the lock file says of its holder, or None."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                holder = json.loads(handle.read() or "null")
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _acquire(self, fd: int, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise PersistError(f"cannot lock {self.path}: {error.strerror or error}") from error
                if time.monotonic() >= deadline:
                    raise self.busy(self._busy_message()) from None
                time.sleep(POLL_SECONDS)

    def _busy_message(self) -> str:
        holder = self.holder() or {}
        who = (
            f"`{holder.get('operation', '?')}`, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"
            if holder
            else "its process is still starting"
        )
        return f"another docker-persist operation holds {self.what} ({who}); try again when it finishes"


def is_ancestor(pid: object) -> bool:
    """Return True if `pid` is this process's parent, grandparent, ..."""
    if not isinstance(pid, int) or pid <= 1:
        return False
    current = os.getppid()
    for _ in range(64):
        if current == pid:
            return True
        if current <= 1:
            return False
        try:
            with open(f"/proc/{current}/stat", encoding="utf-8") as handle:
                current = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
