"""Snapshots through the real CLI: backup, restore, verify and forget against a real engine.

Every check of a volume's content uses a listing computed here, independently of docker-persist's
own digest: a BusyBox container walks the volume and prints, per path, its type, mode, owner,
size, link target, hard-link group and sha256.
"""

from __future__ import annotations

import json
import os
import shlex
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.engine.conftest import ComposeProject, DockerCLI

BUSYBOX = "docker-persist-test/busybox"

ONE_VOLUME = """
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - data:/data
volumes:
  data:
    x-persist: {}
"""

# Walk the volume mounted at /d. One line per path, the path last so that it may hold anything but
# a newline: inode|links|type|mode|uid|gid|size|mtime|symlink target|sha256|path.
LIST_SCRIPT = r"""
cd /d || exit 1
find . | sort | while IFS= read -r p; do
  meta=$(stat -c '%i|%h|%F|%a|%u|%g|%s|%Y' "$p") || exit 1
  target=; sum=
  if [ -L "$p" ]; then target=$(readlink "$p")
  elif [ -f "$p" ]; then sum=$(sha256sum < "$p" | cut -d' ' -f1) || exit 1
  fi
  printf '%s|%s|%s|%s\n' "$meta" "$target" "$sum" "$p"
done
"""

# Everything the snapshot format promises to keep. Ownership is set
# before modes, because chown clears the set-id bits.
FILL_SCRIPT = r"""
set -e
cd /d
mkdir -p owned/deep shared sticky empty/nested 'dir with space'
echo 'by 999' > owned/a.txt
echo 'by 70' > owned/deep/b.txt
chown -R 999:999 owned
chown 70:70 owned/deep owned/deep/b.txt
chmod 0600 owned/deep/b.txt
echo 'group file' > shared/g.txt
chown 999:70 shared shared/g.txt
chmod 2775 shared
chmod 1777 sticky
printf '#!/bin/sh\necho hi\n' > tool.sh && chmod 0755 tool.sh
echo setid > setid && chown 999:70 setid && chmod 4750 setid
ln -s owned/a.txt rel-link
ln -s ../shared/g.txt 'dir with space/up-link'
ln -s does/not/exist dangling
echo 'linked content' > hard1
ln hard1 hard2
ln hard1 'dir with space/hard3'
echo 'non-ascii name' > 'naïve café.txt'
: > zero
mkfifo pipe
dd if=/dev/urandom of=random.bin bs=4096 count=64 2>/dev/null
dd if=/dev/zero of=sparse bs=1 count=0 seek=32M 2>/dev/null
printf 'the end of a sparse file' >> sparse
touch -d '2001-02-03 04:05:06' old.txt
touch -d '2011-12-13 14:15:16' hard1 random.bin owned/deep empty/nested
chown 999:70 .
chmod 0700 .
"""

BIG_FILE_SCRIPT = "dd if=/dev/urandom of=/d/big.bin bs=1M count=200 2>/dev/null"

DESTROY_SCRIPT = r"""
cd /d
echo garbage > owned/a.txt
echo garbage > hard1
dd if=/dev/zero of=big.bin bs=1M count=1 2>/dev/null
rm -rf shared sticky empty 'dir with space' sparse pipe zero
echo new > new-file
chmod 0755 .
chown 0:0 .
"""


# --- helpers ---------------------------------------------------------------------------------------


def busybox(docker: DockerCLI, volume: str, script: str, read_only: bool = False) -> str:
    """Run a BusyBox shell script with `volume` at /d; return its stdout."""
    mount = f"{volume}:/d" + (":ro" if read_only else "")
    done = docker.run("run", "--rm", "--network", "none", "-v", mount, BUSYBOX, "sh", "-c", script, check=True)
    return done.stdout


def snapshot_listing(docker: DockerCLI, volume: str) -> tuple[list[str], dict[str, int]]:
    """Return the volume's content as lines to compare, and the mtimes of its files and directories.

    The root's mtime is left out: it is the volume's mount point. Inode numbers are replaced
    by hard-link groups (the group's first path).
    """
    rows = []
    for line in busybox(docker, volume, LIST_SCRIPT, read_only=True).splitlines():
        inode, links, kind, mode, uid, gid, size, mtime, target, digest, path = line.split("|", 10)
        rows.append((path, inode, links, kind, mode, uid, gid, size, mtime, target, digest))
    assert rows and rows[0][0] == ".", rows[:3]
    groups: dict[str, list[str]] = {}
    for path, inode, _, kind, *_ in rows:
        if kind != "directory":
            groups.setdefault(inode, []).append(path)
    lines, mtimes = [], {}
    for path, inode, nlink, kind, mode, uid, gid, nbytes, mtime, target, digest in sorted(rows):
        # A directory's size and link count come from the file system, not from the content.
        links, size = ("-", "-") if kind == "directory" else (nlink, nbytes)
        members = groups.get(inode, [path])
        group = min(members) if len(members) > 1 else "-"
        lines.append(f"{path}\t{kind}\t{mode}\t{uid}:{gid}\tsize={size}\tlinks={links}\tgroup={group}\t"
                     f"target={target}\tsha256={digest}")  # fmt: skip
        if kind.startswith("regular") or (kind == "directory" and path != "."):
            mtimes[path] = int(mtime)
    return lines, mtimes


def mountpoint(docker: DockerCLI, volume: str) -> Path:
    return Path(docker.run("volume", "inspect", "-f", "{{.Mountpoint}}", volume, check=True).stdout.strip())


def volume_labels(docker: DockerCLI, volume: str) -> dict[str, str]:
    done = docker.run("volume", "inspect", "-f", "{{json .Labels}}", volume, check=True)
    return json.loads(done.stdout) or {}


def container_state(docker: DockerCLI, container: str) -> dict[str, object]:
    state: dict[str, object] = json.loads(docker.run("inspect", "-f", "{{json .State}}", container, check=True).stdout)
    return state


def service_container(project: ComposeProject, service: str) -> str:
    ids = project.compose("ps", "-q", service).stdout.split()
    assert len(ids) == 1, ids
    return ids[0]


def snapshot_names(project: ComposeProject) -> list[str]:
    done = project.persist("snapshots", "--format", "json")
    assert done.returncode == 0, done.stderr
    return [row["name"] for row in json.loads(done.stdout)["snapshots"]]


def backup(project: ComposeProject, *args: str, env: dict[str, str] | None = None) -> None:
    done = project.persist("backup", *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def store_tree(project: ComposeProject) -> list[str]:
    """Every path under the test's store, hidden ones included, for 'nothing was touched' checks."""
    if not project.store.exists():
        return []
    return sorted(str(p.relative_to(project.store)) for p in project.store.rglob("*"))


def remove_volume(docker: DockerCLI, volume: str) -> None:
    docker.run("volume", "rm", "-f", volume)


# Linux's VFS capability (struct vfs_cap_data, revision 2): cap_net_bind_service, effective.
# The engine's archive API carries only `security.capability` among the xattrs (moby's pkg/archive
# reads no other), so that is the one a round trip through the API can keep.
CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)


# --- 1. fidelity -----------------------------------------------------------------------------------


# Both ways data moves: the local fast path (GNU tar on the volume's mountpoint, the
# default on an engine host) and the engine's archive API (the only way to a remote engine).
PATHS = {"fast-path": {"DOCKER_PERSIST_FAST_PATH": "1"}, "archive-api": {"DOCKER_PERSIST_FAST_PATH": "0"}}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_backup_and_restore_keep_everything(project: ComposeProject, docker: DockerCLI, path: str) -> None:
    env = PATHS[path]
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    busybox(docker, volume, BIG_FILE_SCRIPT)
    # No BusyBox applet sets xattrs; we run as root on the engine host, so set one through the mountpoint.
    capable = mountpoint(docker, volume) / "tool.sh"
    os.setxattr(capable, "security.capability", CAPABILITY)
    labels = volume_labels(docker, volume)
    assert labels.get("com.docker.compose.project") == project.name, labels
    before, mtimes = snapshot_listing(docker, volume)
    assert any(line.startswith(".\tdirectory\t700\t999:70") for line in before), before[0]
    assert len(before) > 25

    backup(project, "--name", "fid", env=env)
    # The other path gives the very same content digest.
    other = "archive-api" if path == "fast-path" else "fast-path"
    backup(project, "--name", "fid-other", env=PATHS[other])
    digests = {
        name: json.loads((project.store / project.name / name / "manifest.json").read_text())["volumes"][0][
            "content_digest"
        ]
        for name in ("fid", "fid-other")
    }
    assert digests["fid"] == digests["fid-other"], digests
    snapshot = project.store / project.name / "fid"
    assert sorted(p.name for p in snapshot.iterdir()) == ["data.index.zst", "data.tar.zst", "manifest.json"]
    for stored in [snapshot, *snapshot.iterdir()]:
        assert stored.stat().st_mode & 0o777 == (0o700 if stored.is_dir() else 0o600), stored

    busybox(docker, volume, DESTROY_SCRIPT)
    assert snapshot_listing(docker, volume)[0] != before
    done = project.persist("restore", "fid", "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Started again: app" in done.stdout, done.stdout

    after, restored_mtimes = snapshot_listing(docker, volume)
    assert after == before
    assert restored_mtimes == mtimes
    assert mtimes["./old.txt"] == 981173106  # 2001-02-03T04:05:06Z: not the backup's time
    assert mtimes["./hard1"] == mtimes["./owned/deep"] == mtimes["./empty/nested"] == 1323785716
    assert os.getxattr(mountpoint(docker, volume) / "tool.sh", "security.capability") == CAPABILITY
    # Compose still owns the volume: same labels, and no "not created by Docker Compose" warning.
    assert volume_labels(docker, volume) == labels
    up = project.compose("up", "-d", "--wait")
    assert "already exists but was not created by Docker Compose" not in up.stdout + up.stderr
    assert container_state(docker, service_container(project, "app"))["Running"] is True


# --- 2. verify and restore catch a flipped byte -----------------------------------------------------


def test_a_flipped_byte_is_caught_by_verify_and_by_restore(project: ComposeProject, docker: DockerCLI) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, "cd /d && dd if=/dev/urandom of=blob bs=64k count=16 2>/dev/null && echo v1 > note")
    backup(project, "--name", "clean")
    backup(project, "--name", "flipped")
    archive = project.store / project.name / "flipped" / "data.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x10
    archive.write_bytes(bytes(data))
    # What a restore would overwrite: differs from both snapshots.
    busybox(docker, volume, "echo v2 > /d/note && rm /d/blob")
    live, _ = snapshot_listing(docker, volume)
    app = service_container(project, "app")

    done = project.persist("verify", "flipped")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "flipped: FAILED" in done.stdout, done.stdout
    assert "data.tar.zst" in done.stdout + done.stderr

    done = project.persist("restore", "flipped", "--yes")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "data.tar.zst" in done.stderr, done.stderr
    # Refused before anything was touched: same content, same running container, no undo snapshot.
    assert snapshot_listing(docker, volume)[0] == live
    assert service_container(project, "app") == app
    assert container_state(docker, app)["Running"] is True
    assert snapshot_names(project) == ["clean", "flipped"]

    done = project.persist("verify", "clean")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clean: ok" in done.stdout
    listed = json.loads(project.persist("snapshots", "--format", "json").stdout)["snapshots"]
    verified = {row["name"]: row["verified"] for row in listed}
    assert verified["clean"]["ok"] is True
    assert verified["flipped"]["ok"] is False


# --- 3. restorable by hand --------------------------------------------------------------------------

# What the README quotes: restore a snapshot with zstd, GNU tar and plain docker, as root on the
# engine's host. The archive is rooted at the volume's root ("./" included), so tar also gives the
# volume's root its mode and owner back; --numeric-owner keeps uids and gids as numbers, whatever
# /etc/passwd on the host says; --xattrs-include='*' lets tar set security.* attributes too.
BY_HAND = """\
docker volume create {volume}
zstd -d < {archive} \\
  | tar -x --numeric-owner --same-owner --same-permissions --xattrs --xattrs-include='*' \\
        -C "$(docker volume inspect -f '{{{{.Mountpoint}}}}' {volume})"
"""

# Without access to the engine's host (a remote engine), a container with a tar does the extracting:
# a Debian image's GNU tar (everything but xattrs comes back, sparse files as sparse files), or
# BusyBox's (everything but xattrs and directory mtimes, and but sparse files: it does not read
# GNU tar's sparse format, and leaves GNUSparseFile.<pid>/NAME holding the map and the data).
BY_HAND_REMOTE = """\
docker volume create {volume}
zstd -d < {archive} \\
  | docker run -i --rm --network none --user 0 --entrypoint tar -v {volume}:/d {image} -x -C /d
"""
GNU_TAR_IMAGE = "docker-persist-test/postgres:15"  # debootstrapped Debian: GNU tar


def run_by_hand(docker: DockerCLI, commands: str) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], capture_output=True, text=True,
                          env=docker.env, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"{commands}\n{done.stdout}\n{done.stderr}"


def test_a_snapshot_restores_by_hand_with_zstd_and_tar(project: ComposeProject, docker: DockerCLI) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    os.setxattr(mountpoint(docker, volume) / "tool.sh", "security.capability", CAPABILITY)
    original, mtimes = snapshot_listing(docker, volume)
    backup(project, "--name", "by-hand")
    archive = shlex.quote(str(project.store / project.name / "by-hand" / "data.tar.zst"))
    host, remote, busy = (f"{project.name}-by-hand{suffix}" for suffix in ("", "-remote", "-busybox"))
    try:
        run_by_hand(docker, BY_HAND.format(volume=host, archive=archive))
        assert snapshot_listing(docker, host) == (original, mtimes)
        assert os.getxattr(mountpoint(docker, host) / "tool.sh", "security.capability") == CAPABILITY

        run_by_hand(docker, BY_HAND_REMOTE.format(volume=remote, archive=archive, image=GNU_TAR_IMAGE))
        assert snapshot_listing(docker, remote) == (original, mtimes)

        run_by_hand(docker, BY_HAND_REMOTE.format(volume=busy, archive=archive, image="docker-persist-test/busybox"))
        listing, busy_mtimes = snapshot_listing(docker, busy)
        sparse = [line for line in original if line.startswith("./sparse\t")]
        assert sparse, "FILL_SCRIPT makes a sparse file"
        assert [line for line in listing if "GNUSparseFile." not in line] == [line for line in original
                                                                           if line not in sparse]  # fmt: skip
        directories = {line.split("\t")[0] for line in original if line.split("\t")[1] == "directory"}
        assert {p: t for p, t in busy_mtimes.items() if p not in directories and "GNUSparseFile." not in p} == {
            p: t for p, t in mtimes.items() if p not in directories and p != "./sparse"
        }
    finally:
        remove_volume(docker, host)
        remove_volume(docker, remote)
        remove_volume(docker, busy)


# --- 4. restore --to, and names that do not resolve --------------------------------------------------


def test_restore_to_another_volume_and_bad_names(project: ComposeProject, docker: DockerCLI) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, "cd /d && mkdir sub && echo one > sub/note && chown -R 70:70 sub && chmod 0750 .")
    snapped, _ = snapshot_listing(docker, volume)
    backup(project, "--name", "base")
    busybox(docker, volume, "echo two > /d/sub/note && touch /d/added")
    changed, _ = snapshot_listing(docker, volume)
    app = service_container(project, "app")
    other = f"{project.name}-other"
    try:
        done = project.persist("restore", "base", "--to", other, "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert snapshot_listing(docker, other)[0] == snapped
        # The original and its service are untouched; the new volume does not claim to be the project's.
        assert snapshot_listing(docker, volume)[0] == changed
        assert service_container(project, "app") == app
        assert "com.docker.compose.project" not in volume_labels(docker, other)
    finally:
        remove_volume(docker, other)
    before = store_tree(project)

    done = project.persist("restore", "base", "--volume", "unknown", "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'unknown'" in done.stderr and "it holds: data" in done.stderr, done.stderr

    for command in (("restore", "bsae", "--yes"), ("verify", "bsae")):
        done = project.persist(*command)
        assert done.returncode != 0, done.stdout + done.stderr
        assert "no snapshot named 'bsae'" in done.stderr and "did you mean 'base'?" in done.stderr, done.stderr

    for name in ("../x", "a/b", "../../etc", "/abs"):
        for command in (("restore", name, "--yes"), ("verify", name), ("backup", "--name", name)):
            done = project.persist(*command)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert f"invalid snapshot name {name!r}" in done.stderr, done.stderr

    assert store_tree(project) == before
    assert not (project.store / "x").exists() and not (project.store / project.name / "a").exists()
    assert snapshot_listing(docker, volume)[0] == changed
    assert service_container(project, "app") == app


def test_restore_checks_the_name_before_asking_for_confirmation(project: ComposeProject, docker: DockerCLI) -> None:
    """Without --yes and without a terminal, a bad or unknown name is still reported as such."""
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    backup(project, "--name", "base")
    for name in ("../x", "a/b"):
        done = project.persist("restore", name)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"invalid snapshot name {name!r}" in done.stderr, done.stderr
    done = project.persist("restore", "bsae")
    assert done.returncode != 0
    assert "did you mean 'base'?" in done.stderr, done.stderr


# --- 5. consistency and hooks ------------------------------------------------------------------------

QUIESCED = """
name: {project}
services:
  stopper:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - stopped:/data
    x-persist:
      consistency: stop
      pre: ["echo dumped-by-the-pre-hook > /data/dump.sql"]
      post: ["touch /data/post-hook-ran"]
  pauser:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - paused:/data
    x-persist:
      consistency: pause
volumes:
  stopped:
    x-persist: {}
  paused:
    x-persist: {}
"""


def events(docker: DockerCLI, container: str, since: int) -> list[str]:
    done = docker.run("events", "--since", str(since), "--until", str(int(time.time()) + 1),
                      "--filter", f"container={container}", "--format", "{{.Action}}", check=True)  # fmt: skip
    return done.stdout.split()


def test_consistency_stop_and_pause_come_back_and_the_pre_hook_is_in_the_snapshot(
    project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(QUIESCED)
    project.compose("up", "-d", "--wait")
    stopper, pauser = service_container(project, "stopper"), service_container(project, "pauser")
    started = container_state(docker, stopper)["StartedAt"]
    since = int(time.time()) - 1

    backup(project, "--name", "quiet")

    for container in (stopper, pauser):
        state = container_state(docker, container)
        assert (state["Running"], state["Paused"], state["Status"]) == (True, False, "running"), state
    assert service_container(project, "stopper") == stopper and service_container(project, "pauser") == pauser
    assert container_state(docker, stopper)["StartedAt"] != started  # it really was stopped and started
    assert {"pause", "unpause"} <= set(events(docker, pauser, since))
    assert {"stop", "start"} <= set(events(docker, stopper, since))
    # The post hook ran, after the snapshot was taken.
    busybox(docker, f"{project.name}_stopped", "test -f /d/post-hook-ran", read_only=True)

    other = f"{project.name}-dump"
    try:
        done = project.persist("restore", "quiet", "--volume", "stopped", "--to", other, "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert busybox(docker, other, "cat /d/dump.sql", read_only=True) == "dumped-by-the-pre-hook\n"
        assert "./post-hook-ran" not in "\n".join(snapshot_listing(docker, other)[0])
    finally:
        remove_volume(docker, other)


def test_a_failing_pre_hook_fails_the_backup_and_publishes_nothing(project: ComposeProject, docker: DockerCLI) -> None:
    project.write(
        QUIESCED.replace(
            'pre: ["echo dumped-by-the-pre-hook > /data/dump.sql"]',
            'pre: ["echo the dump failed >&2; exit 1"]',
        )
    )
    project.compose("up", "-d", "--wait")
    stopper = service_container(project, "stopper")

    done = project.persist("backup", "--name", "broken")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pre hook of service 'stopper' exited 1" in done.stderr, done.stderr
    assert "the dump failed" in done.stderr

    assert snapshot_names(project) == []
    leftovers = [p.name for p in (project.store / project.name).iterdir() if p.name != ".lock"]
    assert leftovers == []
    assert service_container(project, "stopper") == stopper
    assert container_state(docker, stopper)["Running"] is True
    busybox(docker, f"{project.name}_stopped", "test -f /d/post-hook-ran", read_only=True)
    # Nothing stale stays behind: the next backup, with the hook fixed, works.
    project.write(QUIESCED)
    backup(project, "--name", "fixed")
    assert snapshot_names(project) == ["fixed"]


# --- 6. forget -----------------------------------------------------------------------------------------


def test_forget_keeps_the_newest_and_refuses_an_empty_policy(project: ComposeProject, docker: DockerCLI) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    names = [f"snap-{n}" for n in range(1, 5)]  # created in this order; equal times sort by name
    for name in names:
        busybox(docker, f"{project.name}_data", f"echo {name} > /d/which")
        backup(project, "--name", name)
    assert snapshot_names(project) == names

    done = project.persist("forget", "--keep-last", "2", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "would remove snap-1" in done.stdout and "would remove snap-2" in done.stdout, done.stdout
    assert "2 kept, 2 would remove" in done.stdout
    assert snapshot_names(project) == names

    for refused in ((), ("--keep-last", "0")):
        done = project.persist("forget", *refused)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "refusing to forget with" in done.stderr, done.stderr
        assert snapshot_names(project) == names

    done = project.persist("forget", "--keep-last", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_names(project) == ["snap-3", "snap-4"]
    assert sorted(p.name for p in (project.store / project.name).iterdir()) == [".lock", "snap-3", "snap-4"]
    # What is left is the newest content.
    other = f"{project.name}-newest"
    try:
        done = project.persist("restore", "snap-4", "--to", other, "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert busybox(docker, other, "cat /d/which", read_only=True) == "snap-4\n"
    finally:
        remove_volume(docker, other)
