"""restic repositories as snapshot stores, through the real CLI, with Debian's restic on real backends.

Backends, all on loopback: a local repository; S3 on the test bed's SeaweedFS; SFTP to an sshd the
test starts on 127.0.0.1 with a key it makes; rclone's `local` backend. On each: backup,
snapshots, restore by name (compared by an independent listing), verify, forget with a policy,
and copy native -> restic -> native. Then what goes wrong: a wrong password, a missing
repository, an unreachable backend, a repository locked by another restic, and kill -9 in the
middle of a backup. And a snapshot restored with the restic CLI and GNU tar alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from minio import Minio

from tests.bed.seaweed import ACCESS_KEY, CREDENTIALS, SECRET_KEY
from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import (
    automatic,
    cmdline,
    descendants,
    kill_plugin,
    scratch_volumes,
    start_persist,
    wait_for,
)
from tests.engine.test_snapshots import DESTROY_SCRIPT, FILL_SCRIPT, ONE_VOLUME, busybox, snapshot_listing

PASSWORD = "restic test password"


class Repository:
    """A restic repository a test uses as its project's store, and the restic CLI on it."""

    def __init__(self, project: ComposeProject, url: str, env: dict[str, str]) -> None:
        self.project = project
        self.url = url  # restic:REPOSITORY
        password = project.directory.parent / "restic-password"
        password.write_text(PASSWORD + "\n")
        self.env = {"RESTIC_PASSWORD_FILE": str(password), **env}

    def persist(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = self.project.persist(*args, env={"DOCKER_PERSIST_STORE": self.url, **self.env, **(env or {})})
        assert PASSWORD not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def store(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`docker persist store ARGS` (a command with no project)."""
        done = self.project.docker.run("persist", "store", *args, env={**self.env, **(env or {})})
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def restic(self, *args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        environ = {**self.project.docker.env, **self.env, "RESTIC_REPOSITORY": self.url.removeprefix("restic:")}
        done = subprocess.run(["restic", *args], env=environ, capture_output=True, timeout=300, **kwargs)  # type: ignore[call-overload]
        if check:
            assert done.returncode == 0, done.stderr.decode()
        return done  # type: ignore[no-any-return]

    def names(self) -> list[str]:
        done = self.persist("snapshots", "--format", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        return sorted(row["name"] for row in json.loads(done.stdout)["snapshots"])

    def restic_snapshots(self) -> list[dict[str, object]]:
        listed = json.loads(self.restic("snapshots", "--json").stdout or b"[]") or []
        return listed  # type: ignore[no-any-return]


def scenario(repo: Repository, project: ComposeProject, docker: DockerCLI) -> None:
    """Backup, snapshots, restore by name, verify, forget with a policy, copy native -> restic -> native."""
    done = repo.store("init", repo.url)
    assert done.returncode == 0, done.stdout + done.stderr
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    before = snapshot_listing(docker, volume)

    for name in ("first", "second"):
        done = repo.persist("backup", "--name", name)
        assert done.returncode == 0, done.stdout + done.stderr
    assert repo.names() == ["first", "second"]
    tags = {tuple(sorted(s["tags"])) for s in repo.restic_snapshots()}  # type: ignore[arg-type]
    for part in ("data.tar", "data.index.zst"):
        assert any(f"part={part}" in t and f"project={project.name}" and "snapshot=first" in t for t in tags), tags
    assert any("part=manifest.json" in t and "reason=manual" in t for t in tags), tags

    busybox(docker, volume, DESTROY_SCRIPT)
    done = repo.persist("restore", "first", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before

    done = repo.persist("verify", "second")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "second: ok" in done.stdout, done.stdout

    native = project.directory.parent / "native"
    done = repo.persist("copy", "second", "--to", str(native))
    assert done.returncode == 0, done.stdout + done.stderr
    back = project.directory.parent / "native-again"
    done = project.persist("copy", "second", "--to", repo.url, env={**repo.env, "DOCKER_PERSIST_STORE": str(native)})
    assert done.returncode == 1, done.stdout + done.stderr  # the restic store has it already
    assert "already has snapshot 'second'" in done.stderr, done.stderr
    done = project.persist("backup", "--name", "native-only", env={"DOCKER_PERSIST_STORE": str(native)})
    assert done.returncode == 0, done.stdout + done.stderr
    done = project.persist(
        "copy", "native-only", "--to", repo.url, env={**repo.env, "DOCKER_PERSIST_STORE": str(native)}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = repo.persist("copy", "native-only", "--to", str(back))
    assert done.returncode == 0, done.stdout + done.stderr
    busybox(docker, volume, DESTROY_SCRIPT)
    done = project.persist("restore", "native-only", "--yes", env={"DOCKER_PERSIST_STORE": str(back)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before

    names = repo.names()
    done = repo.persist("forget", "--keep-last", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = repo.names()
    # The newest, and the newest verified one (second), stay; the undo snapshot counts apart.
    assert [n for n in names if n not in kept] == ["first"], (names, kept)
    paths = {s["paths"][0] for s in repo.restic_snapshots()}  # type: ignore[index]
    assert not [p for p in paths if "/first/" in p], paths  # its parts went too
    assert len(paths) == 3 * len(kept), paths
    repo.restic("check")


@pytest.fixture
def local_repo(project: ComposeProject) -> Repository:
    return Repository(project, f"restic:{project.directory.parent / 'restic-repo'}", {})


def test_a_local_restic_repository_is_a_store_for_every_command(
    local_repo: Repository, project: ComposeProject, docker: DockerCLI
) -> None:
    scenario(local_repo, project, docker)


def filled(repo: Repository, project: ComposeProject, docker: DockerCLI) -> tuple[str, object]:
    """Make the repository, start ONE_VOLUME and fill its volume; return the volume and its listing."""
    assert repo.store("init", repo.url).returncode == 0
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    return volume, snapshot_listing(docker, volume)


@contextlib.contextmanager
def new_volume_folder(docker: DockerCLI, name: str) -> Iterator[str]:
    """A new volume for the block, removed after it; yield its folder on this machine."""
    docker.run("volume", "create", name, check=True)
    try:
        yield docker.run("volume", "inspect", "-f", "{{.Mountpoint}}", name, check=True).stdout.strip()
    finally:
        docker.run("volume", "rm", "-f", name)


def test_a_restic_snapshot_restores_with_the_restic_cli_and_tar_alone(
    local_repo: Repository, project: ComposeProject, docker: DockerCLI
) -> None:
    _, before = filled(local_repo, project, docker)
    assert local_repo.persist("backup", "--name", "by-hand").returncode == 0

    # What the README shows: find the snapshot by its tags, dump its tar, extract it with GNU tar.
    target = f"{project.name}_by-hand"
    with new_volume_folder(docker, target) as mountpoint:
        listed = json.loads(
            local_repo.restic("snapshots", "--json", "--tag", f"project={project.name},snapshot=by-hand").stdout
        )
        assert {s["paths"][0].rsplit("/", 1)[1] for s in listed} == {"data.tar", "data.index.zst", "manifest.json"}
        dump = subprocess.Popen(
            ["restic", "dump", "--tag", f"project={project.name},snapshot=by-hand,part=data.tar", "latest",
             f"/docker-persist/{project.name}/by-hand/data.tar"],
            env={**docker.env, **local_repo.env, "RESTIC_REPOSITORY": local_repo.url.removeprefix("restic:")},
            stdout=subprocess.PIPE,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "--numeric-owner", "--same-owner", "-p", "--xattrs", "-C", mountpoint],
                       stdin=dump.stdout, check=True)  # fmt: skip
        assert dump.wait() == 0
        assert snapshot_listing(docker, target) == before


def test_a_volume_no_container_runs_on_goes_file_by_file_and_restores_exactly(
    local_repo: Repository, project: ComposeProject, docker: DockerCLI
) -> None:
    """With its service stopped, a volume is backed up by restic itself (a folder part, `data.tree`): an unchanged
    second backup makes the same restic tree; restore, verify, copy to a native store and the restic CLI alone all
    give back the exact content."""
    volume, before = filled(local_repo, project, docker)
    project.compose("stop")
    for name in ("first", "second"):
        done = local_repo.persist("backup", "--name", name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "(by restic, file by file)" in done.stdout, done.stdout
    trees = {}
    for item in local_repo.restic_snapshots():
        tags = dict(str(t).partition("=")[::2] for t in item["tags"])  # type: ignore[attr-defined]
        if tags.get("part") == "data.tree":
            trees[tags["snapshot"]] = item
    assert sorted(trees) == ["first", "second"], trees
    assert trees["first"]["tree"] == trees["second"]["tree"]  # nothing changed: restic stored nothing new
    # What each takes in the repository is restic's to count (shared chunks): no size of ours is shown for it.
    listed = json.loads(local_repo.persist("snapshots", "--format", "json").stdout)["snapshots"]
    assert [(r["stored_bytes"], r["bytes"] > 32 << 20) for r in listed] == [(None, True), (None, True)], listed
    header, *rows = local_repo.persist("snapshots").stdout.splitlines()
    stored, reason = header.index("STORED"), header.index("REASON")
    assert [row[stored:reason].strip() for row in rows] == ["-", "-"], rows
    root = dict(str(t).partition("=")[::2] for t in trees["first"]["tags"])["root"]  # type: ignore[attr-defined]

    busybox(docker, volume, DESTROY_SCRIPT)
    runs = project.directory.parent / "restic-runs"
    wrapper = project.directory.parent / "restic-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {runs}\nexec restic "$@"\n')
    wrapper.chmod(0o755)
    done = local_repo.persist("restore", "first", "--yes", env={"DOCKER_PERSIST_RESTIC": str(wrapper)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before
    # restic restored the part once, for the check, into a scratch volume; those files were moved into the volume
    restores = [line for line in runs.read_text().splitlines() if line.startswith("restore ")]
    assert len(restores) == 1 and "/docker-persist-verify-" in restores[0], restores
    done = local_repo.persist("verify", "second")  # the unchanged one: its digest is the first's
    assert done.returncode == 0, done.stdout + done.stderr
    assert "second: ok" in done.stdout, done.stdout

    # A change at the top (a file removed: restic counts it only in what it adds) and one deeper.
    busybox(docker, volume, "rm /d/tool.sh && echo changed > /d/owned/a.txt")
    changed = snapshot_listing(docker, volume)
    assert local_repo.persist("backup", "--name", "third").returncode == 0
    busybox(docker, volume, DESTROY_SCRIPT)
    done = local_repo.persist("restore", "third", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == changed
    assert local_repo.persist("restore", "second", "--yes").returncode == 0
    assert snapshot_listing(docker, volume) == before

    native = project.directory.parent / "native"
    done = local_repo.persist("copy", "second", "--to", str(native))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (native / project.name / "second" / "data.tar").is_file()
    busybox(docker, volume, DESTROY_SCRIPT)
    done = project.persist("restore", "second", "--yes", env={"DOCKER_PERSIST_STORE": str(native)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before

    assert restored_by_hand(local_repo, docker, f"{project.name}_by-hand", str(trees["first"]["id"]), root) == before


def restored_by_hand(repo: Repository, docker: DockerCLI, target: str, snapshot_id: str, root: str) -> object:
    """What the README shows: restic restore into a new volume's folder, then the folder's mode and owner from
    the `root=` tag; return the volume's listing."""
    with new_volume_folder(docker, target) as mountpoint:
        repo.restic("restore", snapshot_id, "--target", mountpoint)
        mode, uid, gid = root.split("-")
        os.chown(mountpoint, int(uid), int(gid))
        os.chmod(mountpoint, int(mode, 8))
        return snapshot_listing(docker, target)


def test_restic_failures_are_clear_and_change_nothing(
    local_repo: Repository, project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    busybox(docker, f"{project.name}_data", "echo data > /d/file")

    done = local_repo.persist("backup", "--name", "nope")  # no repository: never made implicitly
    assert done.returncode == 1, done.stdout + done.stderr
    assert "there is no restic repository" in done.stderr and "docker persist store init" in done.stderr, done.stderr
    assert not Path(local_repo.url.removeprefix("restic:")).exists()

    assert local_repo.store("init", local_repo.url).returncode == 0
    done = local_repo.store("init", local_repo.url)
    assert done.returncode == 1, done.stdout + done.stderr  # an existing repository is not made again

    done = local_repo.persist("backup", "--name", "wrong", env={"RESTIC_PASSWORD_FILE": "", "RESTIC_PASSWORD": "bad"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "wrong password" in done.stderr, done.stderr
    assert "bad" not in done.stderr.replace("bad password", "")

    done = local_repo.persist("backup", "--name", "x", env={"DOCKER_PERSIST_RESTIC": "/nonexistent/restic"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot run restic (/nonexistent/restic)" in done.stderr and "apt install restic" in done.stderr

    port = free_port()
    unreachable = Repository(project, f"restic:sftp:nobody@127.0.0.1:{port}/repo", {})
    done = unreachable.persist("backup", "--name", "nope")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "restic failed on restic repository sftp:" in done.stderr, done.stderr

    # Another restic holds the repository (a backup of its own, its input held open): forget waits, then
    # says who holds it; the backup, which shares the lock, goes on.
    assert local_repo.persist("backup", "--name", "one").returncode == 0
    holder = subprocess.Popen(
        ["restic", "backup", "--stdin", "--stdin-filename", "other.bin"],
        env={**docker.env, **local_repo.env, "RESTIC_REPOSITORY": local_repo.url.removeprefix("restic:")},
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3)  # restic has taken its lock
        done = local_repo.persist("forget", "one", env={"DOCKER_PERSIST_RESTIC_LOCK_WAIT": "2"})
        assert done.returncode == 1, done.stdout + done.stderr
        assert "is locked by another restic" in done.stderr, done.stderr
        assert local_repo.names() == ["one"]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    done = local_repo.persist("forget", "one")
    assert done.returncode == 0, done.stdout + done.stderr
    assert local_repo.names() == []


@pytest.mark.parametrize("way", ["tar stream", "folder"])
def test_a_backup_killed_mid_stream_leaves_nothing_visible_and_the_repository_sound(
    local_repo: Repository, project: ComposeProject, docker: DockerCLI, way: str
) -> None:
    """kill -9 of the plugin, restic and the docker CLI while restic reads the volume (a live one as a tar
    stream; a stopped one as a folder): no snapshot appears, the next backup works and forgets what was left."""
    assert local_repo.store("init", local_repo.url).returncode == 0
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, "dd if=/dev/urandom of=/d/random.bin bs=1M count=300 2>/dev/null")
    if way == "folder":
        project.compose("stop")
    process = start_persist(project, "backup", "--name", "killed",
                            env={**local_repo.env, "DOCKER_PERSIST_STORE": local_repo.url})  # fmt: skip
    try:
        wait_for(lambda: restic_running(process.pid), 120, "restic reading the volume", process)
        time.sleep(1.0)
        kill_plugin(process)  # the plugin, restic and the docker CLI, with -9
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    assert local_repo.names() == []

    done = local_repo.persist("backup", "--name", "after")
    assert done.returncode == 0, done.stdout + done.stderr
    assert local_repo.names() == ["after"]
    tags = [dict(str(t).partition("=")[::2] for t in s["tags"]) for s in local_repo.restic_snapshots()]  # type: ignore[attr-defined]
    assert sorted(t["snapshot"] for t in tags) == ["after"] * 3, tags  # the killed run's parts are gone
    part = "data.tree" if way == "folder" else "data.tar"
    assert sorted(t["part"] for t in tags) == sorted([part, "data.index.zst", "manifest.json"]), tags
    local_repo.restic("check")
    assert local_repo.persist("verify", "after").returncode == 0


@pytest.mark.parametrize("phase", ["check", "move"])
def test_a_folder_restore_killed_midway_is_finished_by_running_it_again(
    local_repo: Repository, project: ComposeProject, docker: DockerCLI, phase: str
) -> None:
    """A restore over data restores a folder part once, into a scratch volume (the check, before anything is
    touched), then moves those files into the volume. kill -9 of the plugin, restic and the docker CLI in the
    check: the volume is as it was, and the next command removes the scratch volume. kill -9 while the files
    are moved: the volume is marked incomplete; running the restore again has restic restore the part straight
    into the volume, a kill -9 there leaves it marked too, and the next run finishes it exactly. Each way the
    undo snapshot holds what the volume held before, and the repository passes restic check."""
    volume, _ = filled(local_repo, project, docker)
    busybox(docker, volume, "dd if=/dev/urandom of=/d/random.bin bs=1M count=300 2>/dev/null")
    project.compose("stop")
    before = snapshot_listing(docker, volume)
    done = local_repo.persist("backup", "--name", "base")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(by restic, file by file)" in done.stdout, done.stdout
    busybox(docker, volume, "rm /d/random.bin && echo changed > /d/owned/a.txt")
    changed = snapshot_listing(docker, volume)
    folder = docker.run("volume", "inspect", "-f", "{{.Mountpoint}}", volume, check=True).stdout.strip()
    scratch = set(scratch_volumes(docker))
    env = {**local_repo.env, "DOCKER_PERSIST_STORE": local_repo.url}

    if phase == "check":
        killed_while_restic_restores(project, env, "/docker-persist-verify-")  # the scratch volume
        assert incomplete_markers(docker, volume) == []
        assert snapshot_listing(docker, volume) == changed  # nothing touched
        assert set(scratch_volumes(docker)) - scratch, "the killed check should have left its scratch volume"
    else:
        done = local_repo.persist("restore", "base", "--yes", env={"DOCKER_PERSIST_CRASH_AT": "restore:extracting"})
        assert done.returncode == 255, done.stdout + done.stderr  # the docker CLI's code for a killed plugin
        assert incomplete_markers(docker, volume), "the half-filled volume must be marked"
        done = local_repo.persist("check")
        assert done.returncode == 1 and "DP018" in done.stdout + done.stderr, done.stdout + done.stderr
        killed_while_restic_restores(project, env, folder)  # the run that finishes it restores straight into the volume
        assert incomplete_markers(docker, volume), "the half-restored volume must still be marked"

    done = local_repo.persist("restore", "base", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before
    assert incomplete_markers(docker, volume) == []
    assert set(scratch_volumes(docker)) == scratch
    undo = [n for n in local_repo.names() if automatic(n, "pre-restore")]
    assert len(undo) == 1, local_repo.names()
    aside = f"{project.name}_aside"
    try:
        done = local_repo.persist("restore", undo[0], "--volume", "data", "--to", aside, "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert snapshot_listing(docker, aside) == changed
    finally:
        docker.run("volume", "rm", "-f", aside)
    local_repo.restic("check")


def killed_while_restic_restores(project: ComposeProject, env: dict[str, str], into: str) -> None:
    """Start `restore base --yes`, and kill -9 the plugin, restic and the docker CLI once restic restores into a
    folder whose path holds `into`."""
    process = start_persist(project, "restore", "base", "--yes", env=env)
    try:
        wait_for(lambda: restic_running(process.pid, lambda line: " restore " in line and into in line), 120,
                 f"restic restoring into {into}", process)  # fmt: skip
        time.sleep(0.5)
        kill_plugin(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0


def incomplete_markers(docker: DockerCLI, volume: str) -> list[str]:
    done = docker.run("ps", "-aq", "--filter", "label=io.docker-persist.role=incomplete",
                      "--filter", f"label=io.docker-persist.volume={volume}", check=True)  # fmt: skip
    return done.stdout.split()


def restic_running(pid: int, args: Callable[[str], bool] = lambda _: True) -> bool:
    """Return True while a restic under `pid` runs with a command line `args` accepts."""
    for child in descendants(pid):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "restic" and args(cmdline(child)):
                return True
        except OSError:
            continue
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- other backends --------------------------------------------------------------------------------


def test_a_restic_repository_on_s3(project: ComposeProject, docker: DockerCLI, seaweed: str) -> None:
    bucket = f"dptest-{uuid.uuid4().hex[:12]}"
    host = seaweed.split("://", 1)[1]
    Minio(host, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1").make_bucket(bucket)
    env = {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}
    scenario(Repository(project, f"restic:s3:{seaweed}/{bucket}/restic", env), project, docker)


@pytest.fixture
def sshd(tmp_path: Path, docker: DockerCLI) -> Iterator[tuple[str, dict[str, str]]]:
    """An sshd on 127.0.0.1 that lets in one key the test makes; yields (ssh host alias, extra environment)."""
    binary = "/usr/sbin/sshd"
    if not os.path.exists(binary):
        pytest.fail("no /usr/sbin/sshd: run tests/bed/testbed first (it installs openssh-server)")
    folder = tmp_path / "sshd"
    folder.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "client")], check=True)
    shutil.copy(folder / "client.pub", folder / "authorized_keys")
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host'}\nPidFile {folder / 'pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\nPermitRootLogin prohibit-password\nUsePAM no\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    server = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    # A user's ~/.ssh/config names the host; ssh reads the passwd entry's home, not $HOME, so the test's
    # config is given by an `ssh` first on PATH, which restic runs.
    alias = f"dptest-sftp-{port}"
    (folder / "ssh_config").write_text(
        f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {folder / 'client'}\n"
        f"  StrictHostKeyChecking no\n  UserKnownHostsFile {folder / 'known_hosts'}\n  BatchMode yes\n"
    )
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {folder / "ssh_config"} "$@"\n')
    wrapper.chmod(0o755)
    path = f"{bin_dir}:{docker.env.get('PATH', os.defpath)}"
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield alias, {"PATH": path}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_restic_repository_over_sftp(
    project: ComposeProject, docker: DockerCLI, sshd: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    alias, env = sshd
    scenario(Repository(project, f"restic:sftp:{alias}:{tmp_path / 'sftp-repo'}", env), project, docker)


def test_a_restic_repository_through_rclone(project: ComposeProject, docker: DockerCLI, tmp_path: Path) -> None:
    if shutil.which("rclone") is None:
        pytest.fail("no rclone: run tests/bed/testbed first (it installs Debian's rclone)")
    env = {"RCLONE_CONFIG_DPLOCAL_TYPE": "local", "RCLONE_CONFIG": str(tmp_path / "rclone.conf")}
    scenario(Repository(project, f"restic:rclone:dplocal:{tmp_path / 'rclone-repo'}", env), project, docker)


def test_the_provider_backs_up_to_a_restic_store_named_in_x_persist(docker: DockerCLI, project: ComposeProject) -> None:
    """A plain `docker compose down -v` saves into the restic repository x-persist.store names, opened with
    x-persist.store_password_file (relative to the project folder); `up` restores from it."""
    from tests.engine.test_provider import WITH_PROVIDER, notes

    repository = project.directory.parent / "restic-x-persist"
    (project.directory / "restic-password").write_text(PASSWORD + "\n")
    project.write(
        WITH_PROVIDER.replace(
            "volumes:\n  app_data:",
            f"x-persist:\n  store: restic:{repository}\n  store_password_file: restic-password\nvolumes:\n  app_data:",
        )
    )
    environ = {**docker.env, "RESTIC_PASSWORD": PASSWORD}
    subprocess.run(["restic", "init", "-q", "-r", str(repository)], env=environ, check=True, capture_output=True)
    volume = f"{project.name}_app_data"
    compose = ["compose", "--project-directory", str(project.directory), "-f", str(project.file), "-p", project.name]
    done = docker.run(*compose, "up", "-d", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    app = project.compose("ps", "-q", "app").stdout.strip()
    docker.run("exec", app, "sh", "-c", "echo precious > /data/notes.txt", check=True)

    done = docker.run(*compose, "down", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert docker.run("volume", "inspect", volume).returncode != 0, "down -v removes the volume once it is saved"
    listed = subprocess.run(["restic", "-r", str(repository), "snapshots", "--json", "--tag", "part=manifest.json"],
                            env=environ, check=True, capture_output=True)  # fmt: skip
    tags = [s["tags"] for s in json.loads(listed.stdout)]
    assert len(tags) == 1 and "reason=pre-down" in tags[0] and f"project={project.name}" in tags[0], tags

    done = docker.run(*compose, "up", "-d", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert notes(docker, volume) == "precious"
