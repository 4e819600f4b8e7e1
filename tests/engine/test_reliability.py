"""The reliability matrix (the README's Guarantees), through the real CLI against a real engine.

Each test builds a Compose project whose `data` volume is marked with x-persist, fills it
through the running service, and then breaks something on purpose: a kill -9 mid-backup or
mid-restore, a full store disk, a flipped byte, two backups at once, bad input, a tampered
archive, a service that cannot start again. Volumes are compared by a content listing
computed here from the volume's mountpoint (the engine is local and we are root).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from docker_persist.core.archive import TarDigester
from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import (
    BIG_MB,
    automatic,
    change,
    cmdline,
    compose_file,
    descendants,
    file_size,
    fill,
    helpers_left,
    kill_plugin,
    listing,
    mountpoint,
    service_state,
    sha256_file,
    snapshot_names,
    staging_left,
    start_persist,
    store_tree,
    volume_name,
    wait_for,
)

# --- 1. kill -9 during a backup ----------------------------------------------------------------------


# The local fast path (GNU tar on the mountpoint) and the engine's archive API (helper containers).
PATHS = {"fast-path": {"DOCKER_PERSIST_FAST_PATH": "1"}, "archive-api": {"DOCKER_PERSIST_FAST_PATH": "0"}}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_kill_during_backup_leaves_no_trace(docker: DockerCLI, project: ComposeProject, path: str) -> None:
    project.write(compose_file(consistency="stop"))
    project.compose("up", "-d", "--wait")
    fill(project, BIG_MB)
    project_store = project.store / project.name
    process = start_persist(project, "backup", "--name", "k", env=PATHS[path])
    try:

        def growing_part() -> bool:
            for staging in project_store.glob(".staging-k-*"):
                part = staging / "data.tar.zst"
                first = file_size(part)
                if first > (4 << 20):
                    time.sleep(0.05)
                    return file_size(part) > first
            return False

        wait_for(growing_part, 120, "a growing part in a .staging-k-* folder", process)
        kill_plugin(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    # A killed process cannot start the stopped service again: it stays stopped (exited).
    container, running, _ = service_state(docker, project)
    assert container and not running, "the kill was expected while `consistency: stop` held the service"

    assert "k" not in snapshot_names(project)
    # What kill -9 cannot clean up, the next run must: the staging folder, and on the API
    # path the helper container (the fast path has none; its tar dies with the pipe).
    assert staging_left(project_store)
    assert bool(helpers_left(docker, project)) == (path == "archive-api")

    # No stale lock: the next backup of the same name runs at once and succeeds.
    started = time.monotonic()
    again = project.persist("backup", "--name", "k", env=PATHS[path])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "lock" not in again.stderr
    assert time.monotonic() - started < 120
    assert snapshot_names(project) == ["k"]
    assert helpers_left(docker, project) == []
    assert staging_left(project_store) == []

    # The killed run had written the stopped container to its journal: the next run brought it back.
    assert "an interrupted run left container" in again.stderr
    assert service_state(docker, project)[1], "the next backup should start the service the killed run stopped"

    verified = project.persist("verify", "k")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_sigterm_during_backup_undoes_the_stop(docker: DockerCLI, project: ComposeProject) -> None:
    """Unlike kill -9, SIGTERM unwinds: the stopped service is started again and nothing is left."""
    project.write(compose_file(consistency="stop"))
    project.compose("up", "-d", "--wait")
    fill(project, BIG_MB)
    project_store = project.store / project.name
    process = start_persist(project, "backup", "--name", "t")
    try:
        wait_for(lambda: any(file_size(p / "data.tar.zst") > (4 << 20) for p in project_store.glob(".staging-t-*")),
                 120, "a part in a .staging-t-* folder", process)  # fmt: skip
        assert not service_state(docker, project)[1]
        plugin = [pid for pid in descendants(process.pid) if "docker-persist" in cmdline(pid)]
        assert plugin
        os.kill(plugin[0], signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            kill_plugin(process)
    assert process.returncode == 130, stderr
    assert "Interrupted" in stderr
    assert service_state(docker, project)[1], "SIGTERM must start the stopped service again"
    assert snapshot_names(project) == []
    assert staging_left(project_store) == []
    assert helpers_left(docker, project) == []


# --- 2. kill -9 during a restore ---------------------------------------------------------------------


def test_kill_during_restore_keeps_the_undo_snapshot(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, BIG_MB)
    volume = volume_name(project)
    base = listing(docker, volume)
    done = project.persist("backup", "--name", "base")
    assert done.returncode == 0, done.stderr
    change(project)
    project.compose("exec", "-T", "app", "sh", "-c", "echo only-in-changed > /data/changed-marker")
    changed = listing(docker, volume)
    assert changed != base
    project_store = project.store / project.name
    scratch = f"{project.name}_undocheck"

    process = start_persist(project, "restore", "base", "--yes")
    try:

        def undo_published() -> bool:
            return any((p / "manifest.json").is_file() for p in project_store.glob("*-pre-restore*"))

        wait_for(undo_published, 120, "the undo snapshot to be published", process)

        def mid_extraction() -> bool:
            try:
                data = mountpoint(docker, volume)
            except AssertionError:
                return False  # between the volume's removal and its re-creation
            if (data / "changed-marker").exists():
                return False  # the old volume is still there
            size = file_size(data / "big")
            return 0 < size < BIG_MB << 20

        wait_for(mid_extraction, 120, "the extraction of big to be under way", process)
        kill_plugin(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    try:
        names = snapshot_names(project)
        undo = [n for n in names if automatic(n, "pre-restore")]
        assert len(undo) == 1, names
        # A backup now would snapshot half a restore: it is refused until the restore is finished.
        refused = project.persist("backup", "--name", "half")
        assert refused.returncode == 1
        assert "was interrupted" in refused.stderr and "half" not in snapshot_names(project)

        # Rerunning the interrupted restore finishes it: no second undo snapshot of the
        # half-restored volume, and the service it stopped runs again.
        rerun = project.persist("restore", "base", "--yes")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert listing(docker, volume) == base
        assert [n for n in snapshot_names(project) if automatic(n, "pre-restore")] == undo
        assert helpers_left(docker, project) == []
        assert staging_left(project_store) == []
        assert service_state(docker, project)[1], "the rerun should start the service the killed restore stopped"

        # The undo snapshot holds the changed data: restore it aside and compare.
        aside = project.persist("restore", undo[0], "--to", scratch, "--yes")
        assert aside.returncode == 0, aside.stdout + aside.stderr
        assert listing(docker, scratch) == changed
    finally:
        docker.run("volume", "rm", "-f", scratch)


# --- 3. a full store disk ----------------------------------------------------------------------------


def test_full_store_disk_fails_clearly_and_leaves_nothing(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    project.write(compose_file(consistency="stop"))
    project.compose("up", "-d", "--wait")
    fill(project, 20)
    small = tmp_path / "smallstore"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        env = {"DOCKER_PERSIST_STORE": str(small)}
        done = project.persist("backup", "--name", "full", env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "space" in done.stderr.lower(), done.stderr
        assert "Traceback" not in done.stderr
        assert snapshot_names(project, env=env) == []
        assert staging_left(small / project.name) == []
        files = [entry for entry in store_tree(small).values() if entry[0] == "file"]
        assert sum(int(str(entry[2])) for entry in files) < 4096, store_tree(small)
        assert helpers_left(docker, project) == []
        assert service_state(docker, project)[1], "the service stopped for the backup did not come back"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# --- 4. a corrupt archive ----------------------------------------------------------------------------


@pytest.mark.parametrize(("compression", "suffix"), [("zstd", ".tar.zst"), ("gzip", ".tar.gz"), ("none", ".tar")])
def test_flipped_byte_is_caught_by_verify_and_restore(
    docker: DockerCLI, project: ComposeProject, compression: str, suffix: str
) -> None:
    # zstd and gzip carry their own checksums; a plain tar is caught by the manifest's sha256 alone.
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 8)
    done = project.persist("backup", "--name", "good", "--compression", compression)
    assert done.returncode == 0, done.stderr
    archive = project.store / project.name / "good" / f"data{suffix}"
    with archive.open("r+b") as stream:
        stream.seek(archive.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, os.SEEK_CUR)
        stream.write(bytes([byte[0] ^ 0xFF]))
    change(project)
    before = listing(docker, volume_name(project))
    state = service_state(docker, project)

    verified = project.persist("verify", "good")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert f"data{suffix}" in verified.stdout + verified.stderr

    restored = project.persist("restore", "good", "--yes")
    assert restored.returncode != 0, restored.stdout + restored.stderr
    assert f"data{suffix}" in restored.stderr
    assert listing(docker, volume_name(project)) == before
    # Refused before anything was touched: the service was not stopped and no undo snapshot was taken.
    assert service_state(docker, project) == state
    assert snapshot_names(project) == ["good"]


# --- 5. two backups at once --------------------------------------------------------------------------


def test_concurrent_backups_wait_or_fail_clearly(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 200)
    first = start_persist(project, "backup", "--name", "c1")
    second = start_persist(project, "backup", "--name", "c2")
    outcomes = {}
    for name, process in (("c1", first), ("c2", second)):
        try:
            out, err = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        outcomes[name] = (process.returncode, out, err)
    succeeded = [name for name, (code, _, _) in outcomes.items() if code == 0]
    assert succeeded, outcomes
    for name, (code, out, err) in outcomes.items():
        if code != 0:
            assert code == 1, (name, code, out, err)
            assert "lock" in err, err
    names = snapshot_names(project)
    assert sorted(names) == sorted(succeeded), (names, outcomes)
    assert staging_left(project.store / project.name) == []
    assert helpers_left(docker, project) == []
    verified = project.persist("verify", "--all", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    results = json.loads(verified.stdout)["results"]
    assert sorted(r["name"] for r in results) == sorted(names) and all(r["ok"] for r in results), results


# --- 6. bad input touches nothing --------------------------------------------------------------------


def test_bad_input_touches_nothing(docker: DockerCLI, project: ComposeProject) -> None:
    good = compose_file()
    project.write(good)
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    done = project.persist("backup", "--name", "before-upgrade")
    assert done.returncode == 0, done.stderr
    change(project)
    volume = volume_name(project)
    volume_before, store_before = listing(docker, volume), store_tree(project.store)
    state = service_state(docker, project)

    def unchanged() -> None:
        assert listing(docker, volume) == volume_before
        assert store_tree(project.store) == store_before
        assert service_state(docker, project) == state
        assert helpers_left(docker, project) == []

    # Malformed x-persist: exit 2, with the path of the bad value.
    project.write(good.replace("x-persist: {}", "x-persist: {protect: maybe}"))
    for args in (("backup", "--name", "x"), ("restore", "before-upgrade", "--yes")):
        done = project.persist(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "volumes.data.x-persist.protect" in done.stderr, done.stderr
        unchanged()
    project.write(good)

    # Unknown names: not found, with a suggestion when one is close.
    done = project.persist("restore", "nope", "--yes")
    assert done.returncode != 0 and "nope" in done.stderr, done.stderr
    assert "did you mean" not in done.stderr
    done = project.persist("restore", "before-upgrad", "--yes")
    assert done.returncode != 0
    assert "did you mean 'before-upgrade'" in done.stderr, done.stderr
    unchanged()

    # Names that could leave the store, or hide in it.
    for bad in ("../x", "a/b", ".hidden", "/abs", ".."):
        for args in (("backup", "--name", bad), ("restore", bad, "--yes")):
            done = project.persist(*args)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert "invalid snapshot name" in done.stderr, done.stderr
    unchanged()
    assert not (project.store / "x").exists() and not (project.store.parent / "x").exists()


# --- 7. a tampered archive ---------------------------------------------------------------------------


def tar_entry(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", target: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), target
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_700_000_000
    return info, data


TAMPERED = {
    "dotdot": ([tar_entry("../escape", data=b"pwned\n")], "'../escape'"),
    # A symlink to /etc is data, restored as a link; writing through it is what is refused.
    "through-an-absolute-symlink": (
        [tar_entry("evil", tarfile.SYMTYPE, target="/etc"), tar_entry("evil/passwd", data=b"root::0:0::/:/bin/sh\n")],
        "'evil/passwd'",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_archive_is_refused_before_touching_the_volume(
    docker: DockerCLI, project: ComposeProject, case: str
) -> None:
    bad_entries, named = TAMPERED[case]
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    done = project.persist("backup", "--name", "good")
    assert done.returncode == 0, done.stderr
    change(project)
    volume = volume_name(project)
    before = listing(docker, volume)
    state = service_state(docker, project)
    passwd = sha256_file(Path("/etc/passwd"))

    # A well-formed tar, rooted like ours, whose bad entries only the structural checks can see.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in [tar_entry(".", tarfile.DIRTYPE), tar_entry("ok.txt", data=b"fine\n"), *bad_entries]:
            archive.addfile(info, io.BytesIO(data) if data else None)
    tar_bytes = raw.getvalue()
    digester = TarDigester(check_safety=False)
    digester.feed(tar_bytes)
    summary = digester.finish()
    compressed = zstandard.ZstdCompressor().compress(tar_bytes)
    snapshot = project.store / project.name / "good"
    (snapshot / "data.tar.zst").write_bytes(compressed)
    manifest_path = snapshot / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    record = manifest["volumes"][0]
    record.update(
        archive_sha256=hashlib.sha256(compressed).hexdigest(),
        archive_bytes=len(compressed),
        content_digest=summary.digest,
        bytes=summary.bytes,
        files=summary.files,
        directories=summary.directories,
        symlinks=summary.symlinks,
        entries=summary.entries,
    )
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    restored = project.persist("restore", "good", "--yes")
    assert restored.returncode != 0, restored.stdout + restored.stderr
    assert "unsafe" in restored.stderr and named in restored.stderr, restored.stderr
    assert listing(docker, volume) == before
    assert service_state(docker, project) == state
    assert snapshot_names(project) == ["good"]  # refused before the undo snapshot
    assert not (mountpoint(docker, volume).parent / "escape").exists()
    assert sha256_file(Path("/etc/passwd")) == passwd

    verified = project.persist("verify", "good")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert named in verified.stdout + verified.stderr

    # Into a volume that does not exist yet there is no separate check pass: the extraction
    # checks each entry before tar or the engine sees it. Refused all the same, on both paths,
    # and the half-filled new volume is taken away.
    for path, env in PATHS.items():
        fresh = f"{project.name}_fresh_{path.replace('-', '_')}"
        elsewhere = project.persist("restore", "good", "--to", fresh, "--yes", env=env)
        assert elsewhere.returncode != 0, elsewhere.stdout + elsewhere.stderr
        assert "unsafe" in elsewhere.stderr and named in elsewhere.stderr, elsewhere.stderr
        assert "stopped part-way" not in elsewhere.stderr
        assert docker.run("volume", "inspect", fresh).returncode != 0, f"{fresh} was left behind"
        assert sha256_file(Path("/etc/passwd")) == passwd


# --- 8. a service that does not come back after `consistency: stop` ----------------------------------

# The pre hook removes the source of a bind mount (created with create_host_path: false), which the
# container still runs with; once stopped, the engine refuses to start it again:
# 'invalid mount config for type "bind": bind source path does not exist'.
UNRESTARTABLE = """      - type: bind
        source: ./hostdir
        target: /host
      - type: bind
        source: ./hostdir/sub
        target: /sub
        bind: {create_host_path: false}
"""


def test_service_that_does_not_come_back_is_reported(docker: DockerCLI, project: ComposeProject) -> None:
    (project.directory / "hostdir" / "sub").mkdir(parents=True)
    text = compose_file(consistency="stop", extra_service=UNRESTARTABLE)
    project.write(text.replace("consistency: stop", 'consistency: stop\n      pre: ["rmdir /host/sub"]'))
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    done = project.persist("backup", "--name", "s")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'app' did not come back" in done.stderr, done.stderr
    assert not (project.directory / "hostdir" / "sub").exists()
    assert not service_state(docker, project)[1]
    assert helpers_left(docker, project) == []
    assert staging_left(project.store / project.name) == []
