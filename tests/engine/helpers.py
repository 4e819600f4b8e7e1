"""What the engine tests share: a one-service project with a precious `data` volume, its data, and how
to look at it independently of docker-persist (a listing computed from the volume's mountpoint: the
engine is local and the tests run as root), at the store, and at the processes under test."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI

BIG_MB = 300  # random, so that compression cannot shrink the timing windows
HELPER_LABEL = "io.docker-persist.role=helper"

Listing = dict[str, tuple[object, ...]]


def compose_file(consistency: str = "none", extra_service: str = "") -> str:
    """A one-service project; `data` is precious. `extra_service` is YAML indented by 4."""
    return f"""
name: {{project}}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - data:/data
{extra_service}    x-persist:
      consistency: {consistency}
volumes:
  data:
    x-persist: {{}}
"""


def fill(project: ComposeProject, big_mb: int) -> None:
    """Write a tree with owners, modes, a symlink, an empty dir and `big_mb` MB of random data into /data."""
    script = f"""set -e
mkdir -p /data/dir/empty
echo hello > /data/dir/small
chown 1000:2000 /data/dir/small
chmod 0640 /data/dir/small
chmod 2775 /data/dir
ln -sf dir/small /data/link
dd if=/dev/urandom of=/data/big bs=1048576 count={big_mb} 2>/dev/null
sync
"""
    project.compose("exec", "-T", "app", "sh", "-c", script)


def change(project: ComposeProject) -> None:
    """Change the data after a backup: edit a file, add one, remove one, rewrite the start of big."""
    script = """set -e
echo changed >> /data/dir/small
echo new > /data/added
rm -f /data/link
dd if=/dev/urandom of=/data/big bs=1048576 count=1 conv=notrunc 2>/dev/null
sync
"""
    project.compose("exec", "-T", "app", "sh", "-c", script)


def volume_name(project: ComposeProject) -> str:
    return f"{project.name}_data"


def mountpoint(docker: DockerCLI, volume: str) -> Path:
    done = docker.run("volume", "inspect", "-f", "{{.Mountpoint}}", volume, check=True)
    return Path(done.stdout.strip())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def listing(docker: DockerCLI, volume: str) -> Listing:
    """Return path -> (type, mode, uid, gid, size, sha256 or link target) for every entry, the root included."""
    root = mountpoint(docker, volume)
    result: Listing = {}

    def visit(path: Path, relative: str) -> None:
        info = path.lstat()
        mode, owner = stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)
        if stat.S_ISDIR(info.st_mode):
            result[relative] = ("dir", oct(mode), *owner, 0, "")
            for child in sorted(os.listdir(path)):
                visit(path / child, child if relative == "." else f"{relative}/{child}")
        elif stat.S_ISLNK(info.st_mode):
            result[relative] = ("symlink", 0, *owner, 0, os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            result[relative] = ("file", oct(mode), *owner, info.st_size, sha256_file(path))
        else:
            result[relative] = ("other", oct(mode), *owner, 0, "")

    visit(root, ".")
    return result


def store_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Return every entry under the store: relative path -> (kind, mode, size, sha256)."""
    tree: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return tree
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(dirpath, name)
            tree[str(path.relative_to(root))] = ("dir", oct(stat.S_IMODE(path.lstat().st_mode)))
        for name in filenames:
            path = Path(dirpath, name)
            tree[str(path.relative_to(root))] = ("file", oct(stat.S_IMODE(path.lstat().st_mode)),
                                                 path.stat().st_size, sha256_file(path))  # fmt: skip
    return tree


def staging_left(project_store: Path) -> list[str]:
    if not project_store.exists():
        return []
    return sorted(e for e in os.listdir(project_store) if e.startswith((".staging-", ".trash-")))


def snapshot_names(project: ComposeProject, env: dict[str, str] | None = None) -> list[str]:
    done = project.persist("snapshots", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return [row["name"] for row in json.loads(done.stdout)["snapshots"]]


def helpers_left(docker: DockerCLI, project: ComposeProject) -> list[str]:
    done = docker.run("ps", "-aq", "--filter", f"label={HELPER_LABEL}",
                      "--filter", f"label=io.docker-persist.project={project.name}", check=True)  # fmt: skip
    return done.stdout.split()


def service_state(docker: DockerCLI, project: ComposeProject) -> tuple[str, bool, str]:
    """Return (container id, running, started at) of the app service's container, or ("", False, "")."""
    ids = project.compose("ps", "-a", "-q", "app").stdout.split()
    if not ids:
        return ("", False, "")
    done = docker.run("inspect", "-f", "{{.Id}} {{.State.Running}} {{.State.StartedAt}}", ids[0], check=True)
    container, running, started = done.stdout.split()
    return (container, running == "true", started)


def start_persist(project: ComposeProject, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `docker persist ARGS` in the background with this test's store."""
    env = {**project.docker.env, "DOCKER_PERSIST_STORE": str(project.store), **(env or {})}
    command = ["docker", "persist", *args, "-f", str(project.file), "-p", project.name]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def descendants(pid: int) -> list[int]:
    """Return the pids of every descendant of `pid`, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        parent = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path("/proc", str(pid), "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_plugin(process: subprocess.Popen[str]) -> tuple[str, str]:
    """kill -9 the docker-persist plugin process (a child of the docker CLI), its children, then the CLI."""
    tree = descendants(process.pid)
    plugin = [pid for pid in tree if "docker-persist" in cmdline(pid)]
    assert plugin, f"no docker-persist process under the docker CLI (pid {process.pid}): {tree}"
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.kill()
    stdout, stderr = process.communicate(timeout=30)
    return stdout, stderr


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the command ended (exit {process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def automatic(name: str, reason: str) -> bool:
    """Return True for a snapshot name docker-persist made for `reason` ("pre-restore"): the UTC time, the
    reason, and a number when two were made in the same second (`2026-11-30T153253Z-pre-restore-2`)."""
    return re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d{{6}}Z-{re.escape(reason)}(-\d+)?", name) is not None


def scratch_volumes(docker: DockerCLI) -> list[str]:
    """Return the scratch volumes docker-persist made (drills, checks) that are still there."""
    return docker.run("volume", "ls", "-q", "--filter", "label=io.docker-persist.role=scratch").stdout.split()
