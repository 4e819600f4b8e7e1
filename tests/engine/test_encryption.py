"""Encryption at rest (x-persist.encrypt) through the real CLI, with keys from the real `age-keygen`.

The snapshot part must be age ciphertext that the standard `age` CLI decrypts by hand into the
same content; without the key, or with another one, restore and verify must refuse before
they touch anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import automatic
from tests.engine.test_snapshots import (
    DESTROY_SCRIPT,
    FILL_SCRIPT,
    LIST_SCRIPT,
    ONE_VOLUME,
    busybox,
    snapshot_listing,
)

MARKER = "plain-text-marker-0f9c2e"

ENCRYPTED = (
    ONE_VOLUME
    + """
x-persist:
  encrypt:
    recipients_file: ./backup-recipients.txt
"""
)


def host_listing(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Return, per path (as `find .` prints it), the mode, uid, gid and sha256 or link target."""
    rows = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        relative = "." if path == root else "./" + str(path.relative_to(root))
        if path.is_symlink():
            what = "-> " + os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = ""
        rows[relative] = (format(info.st_mode & 0o7777, "o"), info.st_uid, info.st_gid, what)
    return rows


def volume_rows(docker: DockerCLI, volume: str) -> dict[str, tuple[str, int, int, str]]:
    rows = {}
    for line in busybox(docker, volume, LIST_SCRIPT, read_only=True).splitlines():
        _, _, _, mode, uid, gid, _, _, target, digest, path = line.split("|", 10)
        rows[path] = (mode, int(uid), int(gid), f"-> {target}" if target else digest)
    return rows


def test_encrypted_snapshots_restore_with_the_key_and_by_hand_with_age(
    project: ComposeProject, docker: DockerCLI, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    identity, stranger = keys
    project.write(ENCRYPTED)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, FILL_SCRIPT + f"\necho {MARKER} > /d/marker.txt")
    before = snapshot_listing(docker, volume)
    rows = volume_rows(docker, volume)

    done = project.persist("backup", "--name", "locked")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = project.store / project.name / "locked"
    assert sorted(p.name for p in folder.iterdir()) == ["data.index.zst.age", "data.tar.zst.age", "manifest.json"]
    part = (folder / "data.tar.zst.age").read_bytes()
    assert part.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert MARKER.encode() not in part and b"owned/deep" not in part
    text = (folder / "manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["format"] == 3 and manifest["volumes"][0]["encryption"] == "age"
    # What would confirm a guess at the content is sealed: digests, counts, sizes, the root, the source.
    for sealed in ('"content_digest"', '"bytes"', '"files"', '"entries"', '"root"', '"driver_opts"', volume):
        assert sealed not in text, sealed

    # Listing needs no key.
    listed = project.persist("snapshots", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["name"], r["encrypted"]) for r in json.loads(listed.stdout)["snapshots"]] == [("locked", True)]

    # No key, or a stranger's: refused before anything is touched, and nothing recorded.
    busybox(docker, volume, DESTROY_SCRIPT)
    destroyed = snapshot_listing(docker, volume)
    for extra, message in (
        ((), "snapshot 'locked' is encrypted: give the identity"),
        (("--identity", str(stranger)), "none of the identities given can decrypt it"),
        (("--identity", str(project.directory / "nope.txt")), "cannot read the identity file"),
    ):
        for command in (("restore", "locked", "--yes"), ("verify", "locked")):
            done = project.persist(*command, *extra)
            assert done.returncode == 2, (command, extra, done.stdout, done.stderr)
            assert message in done.stderr, (command, extra, done.stderr)
            assert "AGE-SECRET-KEY" not in done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == destroyed
    assert json.loads((folder / "manifest.json").read_text())["verifications"] == []
    assert sorted(p.name for p in (project.store / project.name).iterdir() if p.name != ".lock") == ["locked"]

    # With the key (from the environment here): restored exactly; the undo snapshot is encrypted too.
    done = project.persist("restore", "locked", "--yes", env={"DOCKER_PERSIST_IDENTITY": str(identity)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot_listing(docker, volume) == before
    undo = [p for p in (project.store / project.name).iterdir() if automatic(p.name, "pre-restore")]
    encrypted = sorted(p.name for p in undo[0].iterdir() if p.suffix == ".age")
    assert len(undo) == 1 and encrypted == ["data.index.zst.age", "data.tar.zst.age"]

    done = project.persist("verify", "locked", "--identity", str(identity))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "locked: ok" in done.stdout
    recorded = json.loads((folder / "manifest.json").read_text())["verifications"]
    assert [(v["ok"], v["detail"]) for v in recorded] == [(True, "")], "a drill's detail may quote content"

    # By hand, with the standard tools only: age -d | zstd -d | tar -x gives the same tree.
    out = tmp_path / "by-hand"
    out.mkdir()
    pipeline = (
        f"age -d -i '{identity}' '{folder / 'data.tar.zst.age'}' | zstd -d -q | tar --numeric-owner -xpf - -C '{out}'"
    )
    subprocess.run(["sh", "-ec", pipeline], check=True, capture_output=True)
    assert (out / "marker.txt").read_text() == MARKER + "\n"
    assert host_listing(out) == rows


def test_up_restores_an_encrypted_snapshot_only_with_the_key(
    project: ComposeProject, docker: DockerCLI, keys: tuple[Path, Path]
) -> None:
    identity, _ = keys
    project.write(ENCRYPTED.replace("    x-persist: {}", "    x-persist:\n      restore: latest"))
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, f"echo {MARKER} > /d/marker.txt")
    done = project.persist("backup", "--name", "first")
    assert done.returncode == 0, done.stdout + done.stderr
    project.compose("down", "-v", "-t", "0")
    assert docker.run("volume", "inspect", volume).returncode != 0

    done = project.persist("up", "-d")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "snapshot 'first' is encrypted: give the identity" in done.stderr
    assert docker.run("volume", "inspect", volume).returncode != 0  # nothing was created

    done = project.persist("up", "-d", "--identity", str(identity))
    assert done.returncode == 0, done.stdout + done.stderr
    assert busybox(docker, volume, "cat /d/marker.txt", read_only=True) == MARKER + "\n"


def test_the_snapshot_before_down_is_encrypted_too(
    project: ComposeProject, docker: DockerCLI, keys: tuple[Path, Path]
) -> None:
    identity, _ = keys
    project.write(ENCRYPTED)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    busybox(docker, volume, f"echo {MARKER} > /d/marker.txt")

    done = project.persist("down", "-v", "-t", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert docker.run("volume", "inspect", volume).returncode != 0
    [snapshot] = [p for p in (project.store / project.name).iterdir() if automatic(p.name, "pre-down")]
    part = (snapshot / "data.tar.zst.age").read_bytes()
    assert part.startswith(b"age-encryption.org/v1\n") and MARKER.encode() not in part

    done = project.persist("restore", snapshot.name, "--yes", "--identity", str(identity))
    assert done.returncode == 0, done.stdout + done.stderr
    assert busybox(docker, volume, "cat /d/marker.txt", read_only=True) == MARKER + "\n"
