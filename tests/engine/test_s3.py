"""The S3 store through the real CLI, against a real S3 server: SeaweedFS's gateway on loopback.

The `seaweed` fixture (conftest.py) runs `weed server -s3` for the session; each test makes its own
bucket with the minio client. The gateway accepts only the test credentials (an -s3.config
identity), so wrong credentials are refused as by a real S3 service; no credential ever shows up
in any output.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from tests.bed.seaweed import ACCESS_KEY, CREDENTIALS, SECRET_KEY
from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import automatic, wait_for
from tests.engine.test_snapshots import DESTROY_SCRIPT, FILL_SCRIPT, ONE_VOLUME, busybox, snapshot_listing


class S3Project:
    """A Compose project whose store is a fresh bucket on the SeaweedFS gateway."""

    def __init__(self, project: ComposeProject, endpoint: str) -> None:
        self.project = project
        self.endpoint = endpoint
        self.bucket = project.name  # dptest-xxxxxxxx: a valid bucket name
        self.client = Minio(
            urllib.parse.urlsplit(endpoint).netloc,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            region="us-east-1",
        )
        self.client.make_bucket(self.bucket)
        self.url = self.store_url(self.bucket)
        self.prefix = f"backups/{project.name}/"

    def store_url(self, bucket: str, endpoint: str | None = None) -> str:
        return f"s3://{bucket}/backups?endpoint={endpoint or self.endpoint}&region=us-east-1&path_style=true"

    def env(self, url: str | None = None, credentials: dict[str, str] | None = None) -> dict[str, str]:
        return {"DOCKER_PERSIST_STORE": url or self.url, **(CREDENTIALS if credentials is None else credentials)}

    def persist(
        self, *args: str, url: str | None = None, credentials: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = self.project.persist(*args, env=self.env(url, credentials))
        secrets = [ACCESS_KEY, SECRET_KEY, *(credentials or {}).values()]
        for secret in secrets:
            assert secret not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
        return done

    def names(self) -> list[str]:
        done = self.persist("snapshots", "--format", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        return [row["name"] for row in json.loads(done.stdout)["snapshots"]]

    def object_keys(self) -> list[str]:
        """Every object key under the project's prefix, relative to it."""
        objects = self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True)
        return sorted((o.object_name or "")[len(self.prefix) :] for o in objects)

    def uploads(self) -> list[str]:
        """The keys of the multipart uploads in progress under the project's prefix."""
        result = self.client._list_multipart_uploads(self.bucket, prefix=self.prefix)
        return sorted(u.object_name or "" for u in result.uploads)


@pytest.fixture
def s3(project: ComposeProject, seaweed: str) -> Iterator[S3Project]:
    yield S3Project(project, seaweed)


def test_backup_snapshots_restore_verify_and_forget_on_s3(
    s3: S3Project, project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    busybox(docker, volume, "dd if=/dev/urandom of=/d/big.bin bs=1M count=40 2>/dev/null")  # > one 16 MiB part
    before, mtimes = snapshot_listing(docker, volume)

    for name in ("first", "second"):
        done = s3.persist("backup", "--name", name)
        assert done.returncode == 0, done.stdout + done.stderr
    assert s3.names() == ["first", "second"]
    assert s3.object_keys() == [
        "first/data.index.zst",
        "first/data.tar.zst",
        "first/manifest.json",
        "second/data.index.zst",
        "second/data.tar.zst",
        "second/manifest.json",
    ]
    assert s3.uploads() == []
    manifest = s3.client.get_object(s3.bucket, f"{s3.prefix}first/manifest.json").read().decode()
    assert ACCESS_KEY not in manifest and SECRET_KEY not in manifest
    assert json.loads(manifest)["volumes"][0]["archive_bytes"] > 40 << 20

    busybox(docker, volume, DESTROY_SCRIPT)
    done = s3.persist("restore", "first", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == (before, mtimes)

    done = s3.persist("verify", "second")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "second: ok" in done.stdout, done.stdout
    listed = json.loads(s3.persist("snapshots", "--format", "json").stdout)["snapshots"]
    verified = {row["name"]: bool(row["verified"]) for row in listed}
    undo = [name for name in verified if automatic(name, "pre-restore")]  # restore's undo snapshot
    assert len(undo) == 1, verified
    assert verified == {"first": False, "second": True, undo[0]: False}

    done = s3.persist("restore", "frist", "--yes")
    assert done.returncode != 0
    assert "did you mean 'first'?" in done.stderr, done.stderr

    done = s3.persist("forget", "--keep-last", "1")  # the undo snapshot counts apart from the others
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(s3.names()) == sorted(["second", undo[0]])
    # The oldest is gone with its parts, and the lock object is released.
    assert [k for k in s3.object_keys() if not k.startswith(undo[0] + "/")] == [
        "second/data.index.zst",
        "second/data.tar.zst",
        "second/manifest.json",
    ]


def plugin_children(parent: int) -> list[int]:
    """Return the pids of the processes whose parent is `parent` (the docker CLI runs the plugin as a child)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def test_a_backup_killed_mid_upload_leaves_no_snapshot_and_the_next_one_succeeds(
    s3: S3Project, project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, "dd if=/dev/urandom of=/d/random.bin bs=1M count=100 2>/dev/null")
    command = ["docker", "persist", "backup", "--name", "killed", "-f", str(project.file), "-p", project.name]
    process = subprocess.Popen(
        command, env={**docker.env, **s3.env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # A multipart upload is under way: kill the plugin in the middle of it.
        wait_for(lambda: bool(s3.uploads()), 120, "a multipart upload", process)
        plugins = plugin_children(process.pid)
        assert plugins, "the docker CLI has no plugin child"
        for pid in plugins:
            os.kill(pid, signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0

    # Invisible: no snapshot, no manifest, whatever parts and uploads the killed run left.
    assert s3.names() == []
    assert not [k for k in s3.object_keys() if k.endswith("manifest.json")], s3.object_keys()
    assert s3.uploads() or [k for k in s3.object_keys() if k.startswith("killed/")], "the kill came too late to test"

    # The killed run's lock (its process is gone) does not block, and its leftovers are cleaned up.
    project.compose("up", "-d", "--wait")  # the service may have been stopped for consistency
    done = s3.persist("backup", "--name", "after")
    assert done.returncode == 0, done.stdout + done.stderr
    assert s3.names() == ["after"]
    assert s3.object_keys() == ["after/data.index.zst", "after/data.tar.zst", "after/manifest.json"]
    assert s3.uploads() == []
    done = s3.persist("verify", "after")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_missing_bucket_or_an_unreachable_endpoint_is_a_clear_error(
    s3: S3Project, project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    busybox(docker, f"{project.name}_data", "echo data > /d/file")
    missing = f"{project.name}-missing"

    done = s3.persist("backup", "--name", "nope", url=s3.store_url(missing))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the bucket '{missing}' does not exist" in done.stderr, done.stderr
    assert f"mb s3://{missing}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not s3.client.bucket_exists(missing)  # nothing partial: not even the bucket

    done = s3.persist("snapshots", url=s3.store_url(missing))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "does not exist" in done.stderr, done.stderr

    done = s3.persist("backup", "--name", "nope", url=s3.store_url(s3.bucket, endpoint="http://127.0.0.1:1"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot reach the S3 endpoint http://127.0.0.1:1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    done = s3.persist("backup", "--name", "nope", url=f"s3://{ACCESS_KEY}:{SECRET_KEY}@{s3.bucket}/x")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "must not carry credentials" in done.stderr, done.stderr

    assert s3.object_keys() == [] and s3.uploads() == []


def test_wrong_or_missing_credentials_are_a_clear_error_with_nothing_partial(
    s3: S3Project, project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    done = s3.persist("backup", "--name", "good")
    assert done.returncode == 0, done.stdout + done.stderr
    keys = s3.object_keys()
    wrong_secret = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789"}
    unknown_key = {"AWS_ACCESS_KEY_ID": "AKIDNOBODYATALL0000", "AWS_SECRET_ACCESS_KEY": "another-wrong-secret"}
    isolated = {"AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/creds"}

    for credentials in (wrong_secret, unknown_key, isolated):  # the last: none at all, so anonymous
        done = s3.persist("backup", "--name", "bad", credentials=credentials)
        assert done.returncode == 1, (credentials, done.stdout, done.stderr)
        assert "access denied by" in done.stderr and "check the credentials" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert s3.object_keys() == keys and s3.uploads() == []  # nothing partial, not even a lock

    before = snapshot_listing(docker, volume)
    busybox(docker, volume, "echo changed > /d/changed")
    changed = snapshot_listing(docker, volume)
    for args in (("snapshots",), ("verify", "good"), ("restore", "good", "--yes"), ("forget", "--keep-last", "0")):
        done = s3.persist(*args, credentials=wrong_secret)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "access denied by" in done.stderr, (args, done.stderr)
    assert snapshot_listing(docker, volume) == changed  # the failed restore touched nothing
    assert s3.object_keys() == keys and s3.names() == ["good"]
    done = s3.persist("restore", "good", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before


def test_a_fresh_lock_of_another_host_is_respected(s3: S3Project, project: ComposeProject, docker: DockerCLI) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    busybox(docker, f"{project.name}_data", "echo data > /d/file")
    holder = b'{"host": "elsewhere", "pid": 4242, "since": "2026-01-01T00:00:00Z", "token": "theirs"}\n'
    s3.client.put_object(s3.bucket, f"{s3.prefix}.lock", io.BytesIO(holder), len(holder))

    done = s3.persist("backup", "--name", "blocked")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "holds the lock (pid 4242 on elsewhere" in done.stderr, done.stderr
    assert s3.object_keys() == [".lock"]  # nothing written, and their lock left alone

    s3.client.remove_object(s3.bucket, f"{s3.prefix}.lock")
    done = s3.persist("backup", "--name", "free")
    assert done.returncode == 0, done.stdout + done.stderr
    assert s3.object_keys() == ["free/data.index.zst", "free/data.tar.zst", "free/manifest.json"]


def test_copy_between_the_local_store_and_s3(s3: S3Project, project: ComposeProject, docker: DockerCLI) -> None:
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT)
    before = snapshot_listing(docker, volume)
    local = str(project.directory.parent / "local-store")
    done = s3.persist("backup", "--name", "here", url=local)
    assert done.returncode == 0, done.stdout + done.stderr

    # Local to S3: an off-site copy, byte for byte (same sha256 in the same manifest).
    done = s3.persist("copy", "here", "--to", s3.url, url=local)
    assert done.returncode == 0, done.stdout + done.stderr
    assert s3.names() == ["here"]
    local_manifest = Path(local, project.name, "here", "manifest.json").read_bytes()
    assert s3.client.get_object(s3.bucket, f"{s3.prefix}here/manifest.json").read() == local_manifest
    again = s3.persist("copy", "here", "--to", s3.url, url=local)
    assert again.returncode == 1 and "already has snapshot 'here'" in again.stderr
    nothing = s3.persist("copy", "--all", "--to", s3.url, url=local)
    assert nothing.returncode == 0 and "already has every snapshot" in nothing.stdout

    # S3 back to a fresh local store, then restore from that copy.
    elsewhere = str(project.directory.parent / "elsewhere")
    done = s3.persist("copy", "--all", "--to", elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    busybox(docker, volume, DESTROY_SCRIPT)
    done = s3.persist("restore", "here", "--yes", url=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before


def test_an_encrypted_snapshot_goes_off_site_as_ciphertext_and_restores_from_s3_with_the_key(
    s3: S3Project, project: ComposeProject, docker: DockerCLI, keys: tuple[Path, Path]
) -> None:
    from tests.engine.test_encryption import ENCRYPTED, MARKER

    identity, _ = keys
    project.write(ENCRYPTED)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT + f"\necho {MARKER} > /d/marker.txt")
    before = snapshot_listing(docker, volume)
    local = str(project.directory.parent / "local-store")
    done = s3.persist("backup", "--name", "sealed", url=local)
    assert done.returncode == 0, done.stdout + done.stderr

    # copy needs no key, and what lands in the bucket is the same ciphertext.
    done = s3.persist("copy", "sealed", "--to", s3.url, url=local)
    assert done.returncode == 0, done.stdout + done.stderr
    assert s3.object_keys() == ["sealed/data.index.zst.age", "sealed/data.tar.zst.age", "sealed/manifest.json"]
    stored = s3.client.get_object(s3.bucket, f"{s3.prefix}sealed/data.tar.zst.age").read()
    assert stored == Path(local, project.name, "sealed", "data.tar.zst.age").read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n") and MARKER.encode() not in stored

    busybox(docker, volume, DESTROY_SCRIPT)
    done = s3.persist("restore", "sealed", "--yes")
    assert done.returncode == 2 and "is encrypted: give the identity" in done.stderr, done.stderr
    done = s3.persist("restore", "sealed", "--yes", "--identity", str(identity))
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before
    done = s3.persist("verify", "sealed", "--identity", str(identity))
    assert done.returncode == 0 and "sealed: ok" in done.stdout, done.stdout + done.stderr


def weed_pids(endpoint: str) -> list[int]:
    """Return the pids of the SeaweedFS server behind `endpoint`."""
    port = urllib.parse.urlsplit(endpoint).port
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"weed") and f"-s3.port={port}".encode() in argv:
                pids.append(int(entry))
    return pids


def test_a_hung_s3_server_fails_the_backup_in_bounded_time_and_the_service_comes_back(
    s3: S3Project, project: ComposeProject, docker: DockerCLI
) -> None:
    project.write(ONE_VOLUME.replace("command:", "x-persist: {consistency: stop}\n    command:"))
    project.compose("up", "-d", "--wait")
    busybox(docker, f"{project.name}_data", "dd if=/dev/urandom of=/d/big bs=1M count=200 2>/dev/null")
    pids = weed_pids(s3.endpoint)
    assert pids, "cannot find the SeaweedFS server to hang"
    env = {**s3.env(), "DOCKER_PERSIST_S3_TIMEOUT": "3"}
    env = {**project.docker.env, **env}
    command = ["docker", "persist", "backup", "--name", "hung", "-f", str(project.file), "-p", project.name]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        # Hang the server once the upload is under way (a fixed delay raced a backup that finished sooner).
        wait_for(lambda: bool(s3.uploads()), 120, "a multipart upload", process)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        _, err = process.communicate(timeout=240)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        if process.poll() is None:
            process.kill()
            process.communicate()
    took = time.monotonic() - started
    assert process.returncode == 1, err
    assert took < 120, f"a hung server held the backup {took:.0f} s"
    ids = project.compose("ps", "-q", "app").stdout.split()
    running = docker.run("inspect", "-f", "{{.State.Running}}", ids[0], check=True).stdout.strip()
    assert running == "true", "the service stopped for the backup must run again"
    time.sleep(1)
    assert "hung" not in s3.names()
    done = s3.persist("backup", "--name", "after")
    assert done.returncode == 0, done.stdout + done.stderr


LOCK_HOLDER = """
import os, sys, time
from docker_persist.store import open_store
store = open_store(sys.argv[1], os.environ)
with store.lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_lock_held_from_another_pid_namespace_is_not_taken_over(
    s3: S3Project, project: ComposeProject, docker: DockerCLI, tmp_path: Path
) -> None:
    """Two hosts with the same name (here: a second PID namespace, where pids repeat): a pid that is
    dead here proves nothing about a holder there."""
    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    busybox(docker, f"{project.name}_data", "echo data > /d/file")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, **s3.env(), "PYTHONPATH": str(repo)}
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", str(repo / ".venv" / "bin" / "python"), "-c", LOCK_HOLDER,
         s3.url, project.name],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = json.loads(s3.client.get_object(s3.bucket, f"{s3.prefix}.lock").read())
        assert lock["pid"] <= 3, "the holder should be (almost) pid 1 of its own namespace"
        own_state = {"XDG_STATE_HOME": str(tmp_path / "second-state")}  # a second host's project lock
        done = project.persist("backup", "--name", "second", env={**s3.env(), **own_state})
        assert done.returncode == 1, done.stdout + done.stderr
        assert "holds the lock" in done.stderr
        assert "second" not in s3.names()
    finally:
        holder.kill()
        holder.wait()


def test_a_fresh_lock_from_this_host_name_in_another_pid_namespace_is_respected(
    s3: S3Project, project: ComposeProject, docker: DockerCLI
) -> None:
    """The holder says it ran here (host name, boot) but in another PID namespace, with a pid dead in
    ours: that proves nothing, so its lock stands, and none of its parts is touched."""
    import socket

    project.write(ONE_VOLUME)
    project.compose("up", "-d", "--wait")
    busybox(docker, f"{project.name}_data", "echo data > /d/file")
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    dead = 4_000_000  # above pid_max: no process here has it
    holder = {"host": socket.gethostname(), "boot": boot, "pidns": "1", "pid": dead, "start": "1",
              "since": "2026-01-01T00:00:00Z", "heartbeat": time.time(), "token": "theirs"}  # fmt: skip
    body = json.dumps(holder).encode()
    s3.client.put_object(s3.bucket, f"{s3.prefix}.lock", io.BytesIO(body), len(body))
    part = b"a part of a backup that is still running"
    s3.client.put_object(s3.bucket, f"{s3.prefix}theirs/data.tar.zst", io.BytesIO(part), len(part))
    done = s3.persist("backup", "--name", "mine")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"pid {dead}" in done.stderr
    assert s3.object_keys() == [".lock", "theirs/data.tar.zst"]
