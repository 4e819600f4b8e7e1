"""Who holds a lock: enough about this process and this machine to prove later that it is dead.

A lock holder is judged dead only when that can be proven: it ran on this very machine, in this
very boot, in our PID namespace (a container has its own, where pids repeat), and its pid now
belongs to no process, or to one that started at another time (pids are reused). A hostname and a
pid alone prove nothing: two machines (or containers) can share a hostname.
"""

from __future__ import annotations

import os
import socket


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """Return when process `pid` started (clock ticks since boot, from /proc), or "" if there is none."""
    text = _read(f"/proc/{pid}/stat")
    try:
        return text.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return ""


def holder_identity() -> dict[str, object]:
    """Return what identifies this process: host name, boot, PID namespace, pid and start time."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pidns": _pid_namespace(),
        "pid": pid,
        "start": process_start(pid),
    }


def is_provably_dead(holder: dict[str, object]) -> bool:
    """Return True if the process `holder` (see holder_identity) ran here and is gone."""
    pid = holder.get("pid")
    here = holder_identity()
    if not isinstance(pid, int) or pid <= 0 or pid == here["pid"]:
        return False
    if not holder.get("boot") or not holder.get("pidns"):
        return False  # an older holder that did not say where it ran: only its age can tell
    if any(holder.get(key) != here[key] for key in ("host", "boot", "pidns")):
        return False
    start = process_start(pid)
    return not start or start != holder.get("start")
