"""What an unlucky or careless user does, through the real CLI, Compose and engine: each test is a way
docker-persist once lost data, left a service down, or blocked every later backup, and must not again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import (
    automatic,
    change,
    cmdline,
    compose_file,
    descendants,
    fill,
    kill_plugin,
    listing,
    mountpoint,
    service_state,
    snapshot_names,
    start_persist,
    volume_name,
    wait_for,
)
from tests.engine.test_crashes import CRASH, KILLED, assert_nothing_left, running_guards
from tests.engine.test_provider import WITH_PROVIDER, compose


def up(project: ComposeProject, text: str | None = None) -> None:
    project.write(text or compose_file())
    project.compose("up", "-d", "--wait")


def test_an_undo_snapshot_that_does_not_fit_takes_the_restore_back(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    up(project)
    fill(project, 1)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    try:
        env = {"DOCKER_PERSIST_STORE": str(small)}
        assert project.persist("backup", "--name", "base", env=env).returncode == 0
        project.compose("exec", "-T", "app", "sh", "-c", "dd if=/dev/urandom of=/data/new bs=1M count=3 2>/dev/null")
        changed = listing(docker, volume_name(project))
        done = project.persist("restore", "base", "--yes", env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "space" in done.stderr and "nothing was changed" in done.stderr, done.stderr
        assert listing(docker, volume_name(project)) == changed, "the newest data must still be there"
        assert service_state(docker, project)[1], "the service stopped for the restore must run again"
        assert_nothing_left(docker, project)
        assert project.persist("backup", "--name", "later", env={"DOCKER_PERSIST_STORE": str(tmp_path / "big")})\
            .returncode == 0, "nothing may block the next backup"  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_restore_refused_into_a_new_volume_blocks_nothing(docker: DockerCLI, project: ComposeProject) -> None:
    up(project)
    fill(project, 2)
    assert project.persist("backup", "--name", "trunc").returncode == 0
    archive = project.store / project.name / "trunc" / "data.tar.zst"
    os.truncate(archive, archive.stat().st_size // 2)
    fresh = f"{project.name}_fresh"
    done = project.persist("restore", "trunc", "--volume", "data", "--to", fresh, "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert docker.run("volume", "inspect", fresh).returncode != 0
    assert project.persist("backup", "--name", "after").returncode == 0
    assert project.persist("down").returncode == 0
    assert_nothing_left(docker, project)


def test_a_service_started_by_hand_after_a_killed_backup_blocks_nothing(
    docker: DockerCLI, project: ComposeProject
) -> None:
    up(project, compose_file(consistency="stop"))
    fill(project, 1)
    done = project.persist("backup", "--name", "k", env={CRASH: "backup:quiesced"})
    assert done.returncode == KILLED
    project.compose("start", "app")  # the user brings it back by hand; the journal still says "stopped"
    again = project.persist("backup", "--name", "k2")
    assert again.returncode == 0, again.stderr
    assert service_state(docker, project)[1]


def test_nothing_starts_on_a_half_restored_volume(docker: DockerCLI, project: ComposeProject) -> None:
    up(project)
    fill(project, 2)
    assert project.persist("backup", "--name", "base").returncode == 0
    change(project)
    assert project.persist("restore", "base", "--yes", env={CRASH: "restore:extracting"}).returncode == KILLED
    started = project.persist("up", "-d")
    assert started.returncode == 1, started.stdout + started.stderr
    assert "holds part of snapshot 'base'" in started.stderr
    assert not service_state(docker, project)[1]
    check = project.persist("check", "--format", "json")
    assert check.returncode == 1
    assert "DP018" in {f["rule"] for f in json.loads(check.stdout)["findings"]}
    finished = project.persist("restore", "base", "--yes")
    assert finished.returncode == 0, finished.stderr
    assert service_state(docker, project)[1]


def test_the_project_lock_holds_whatever_the_store(docker: DockerCLI, project: ComposeProject, tmp_path: Path) -> None:
    """A restore from one store while a backup to another reads the same volume: the second waits, then
    fails naming the first, and the volume is never read half replaced."""
    slow = compose_file().replace("x-persist:\n      consistency: none", 'x-persist:\n      pre: ["sleep 10"]')
    up(project, slow)
    fill(project, 2)
    other = {"DOCKER_PERSIST_STORE": str(tmp_path / "other")}
    assert project.persist("backup", "--name", "base", "--no-quiesce", env=other).returncode == 0
    before = listing(docker, volume_name(project))
    process = start_persist(project, "backup", "--name", "slow")  # its pre hook holds the project 10 s
    try:
        folder = docker.state / "docker-persist" / "journal"
        wait_for(lambda: any("backup" in p.read_text() for p in folder.glob(f"*-{project.name}.lock")), 60,
                 "the backup to hold the project", process)  # fmt: skip
        busy = project.persist("restore", "base", "--yes", env=other)
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert "another docker-persist operation holds project" in busy.stderr and "`backup`" in busy.stderr
        assert "interrupted" not in busy.stderr
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            kill_plugin(process)
    assert listing(docker, volume_name(project)) == before
    assert snapshot_names(project) == ["slow"]


def test_compose_command_lines_are_read_as_compose_reads_them(docker: DockerCLI, project: ComposeProject) -> None:
    """The provider learns -v from its parent's command line: combined flags, =false, Docker's own flags."""
    project.write(WITH_PROVIDER)
    volume = f"{project.name}_app_data"
    base = ["--project-directory", str(project.directory), "-f", str(project.file), "-p", project.name]
    env = {"DOCKER_PERSIST_STORE": str(project.store)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return docker.run(*argv, env=env)

    for line in (["compose", *base, "down", "--volumes=false"], ["--log-level", "info", "compose", *base, "down"]):
        assert compose(project, "up", "-d", "--wait")[0] == 0
        done = run(*line)
        assert done.returncode == 0, done.stdout + done.stderr
        assert docker.run("volume", "inspect", volume).returncode == 0, f"{line} is not destructive"
        assert running_guards(docker, volume), f"{line} must not release the guard"
        assert not any(automatic(n, "pre-down") for n in snapshot_names(project)), line
    assert compose(project, "up", "-d", "--wait")[0] == 0
    done = run("compose", *base, "down", "-vt0")  # -v -t 0
    assert done.returncode == 0, done.stdout + done.stderr
    assert docker.run("volume", "inspect", volume).returncode != 0
    assert [n for n in snapshot_names(project) if automatic(n, "pre-down")], "-vt0 is destructive: backed up first"


def test_the_wrapper_and_the_provider_take_one_snapshot_between_them(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(WITH_PROVIDER)
    assert compose(project, "up", "-d", "--wait")[0] == 0
    done = project.persist("down", "-vt0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len([n for n in snapshot_names(project) if automatic(n, "pre-down")]) == 1
    assert docker.run("volume", "inspect", f"{project.name}_app_data").returncode != 0


def test_a_typo_in_a_compose_flag_touches_nothing(docker: DockerCLI, project: ComposeProject) -> None:
    up(project, compose_file(consistency="stop"))
    fill(project, 1)
    before = service_state(docker, project)
    done = project.persist("down", "-v", "--dryrun")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown flag: --dryrun" in done.stderr
    assert service_state(docker, project) == before, "the service must not even have been stopped"
    assert snapshot_names(project) == []
    assert project.persist("up", "-d", "--wiat").returncode == 2


def test_sigterm_during_a_restore_brings_the_service_back(docker: DockerCLI, project: ComposeProject) -> None:
    up(project)
    fill(project, 200)
    assert project.persist("backup", "--name", "base").returncode == 0
    change(project)
    changed = listing(docker, volume_name(project))
    process = start_persist(project, "restore", "base", "--yes")
    try:
        wait_for(lambda: not service_state(docker, project)[1], 60, "the restore to stop the service", process)
        plugin = [pid for pid in descendants(process.pid) if "docker-persist" in cmdline(pid)]
        os.kill(plugin[0], signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            kill_plugin(process)
    assert process.returncode == 130, err
    assert "Interrupted" in err
    if service_state(docker, project)[1]:
        assert listing(docker, volume_name(project)) == changed  # taken back before anything was replaced
        assert_nothing_left(docker, project)
    else:  # interrupted while replacing: the restore is finished by running it again
        assert "restore base" in err
        assert project.persist("restore", "base", "--yes").returncode == 0
        assert service_state(docker, project)[1]


def test_the_first_error_is_the_one_shown(docker: DockerCLI, project: ComposeProject, tmp_path: Path) -> None:
    text = compose_file(consistency="stop").replace("consistency: stop", 'consistency: stop\n      post: ["exit 3"]')
    up(project, text)
    fill(project, 8)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        done = project.persist("backup", env={"DOCKER_PERSIST_STORE": str(small)})
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
    assert done.returncode == 1, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("Error:") and "space" in first, done.stderr
    assert "post hook" in done.stderr  # reported too, after it
    assert service_state(docker, project)[1]


LONG = "x" * 110


def test_volumes_with_long_names_each_get_their_guard(docker: DockerCLI, project: ComposeProject) -> None:
    text = f"""
name: {{project}}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - va:/a
      - vb:/b
volumes:
  va:
    name: {{project}}-{LONG}-a
    x-persist: {{}}
  vb:
    name: {{project}}-{LONG}-b
    x-persist: {{}}
"""
    project.write(text)
    done = project.persist("up", "-d", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    for suffix in ("a", "b"):
        assert running_guards(docker, f"{project.name}-{LONG}-{suffix}")


def test_guards_survive_the_prune_commands(docker: DockerCLI, project: ComposeProject) -> None:
    up(project)
    fill(project, 1)
    volume = volume_name(project)
    assert project.persist("protect").returncode == 0
    project.compose("down")  # the service's container is gone: only the guard uses the volume
    before = listing(docker, volume)
    # Each prune is scoped to this project (a label filter), so that the test never removes the containers or
    # volumes of whoever runs it; the guard and the volume are still what each prune may remove.
    ours = f"label=io.docker-persist.project={project.name}"  # the guard
    compose = f"label=com.docker.compose.project={project.name}"  # the volume
    for command in (
        ["container", "prune", "-f", "--filter", ours],
        ["volume", "prune", "-f", "--filter", compose],
        ["system", "prune", "-f", "--volumes", "--filter", compose],
        ["container", "prune", "-f", "--filter", "label=io.docker-persist.role=guard", "--filter", ours],
    ):
        done = docker.run(*command)
        assert done.returncode == 0, done.stderr
        assert docker.run("volume", "inspect", volume).returncode == 0, f"docker {' '.join(command)} removed it"
    assert listing(docker, volume) == before
    assert running_guards(docker, volume)


def test_one_scheduler_per_project_and_busy_runs_are_skipped(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    text = compose_file() + '\nx-persist:\n  schedule: "0 3 * * *"\n'
    up(project, text)
    fill(project, 300)
    first = start_persist(project, "schedule")
    try:
        wait_for(lambda: bool(list((docker.state / "docker-persist" / "schedule").glob("*.lock"))), 60,
                 "the first scheduler to start", first)  # fmt: skip
        time.sleep(0.5)
        second = project.persist("schedule", "--once")
        assert second.returncode == 1, second.stdout + second.stderr
        assert "another docker-persist operation holds the scheduler" in second.stderr
    finally:
        for pid in descendants(first.pid):  # the plugin, not the docker CLI in front of it
            if "docker-persist" in cmdline(pid):
                os.kill(pid, signal.SIGTERM)
        first.communicate(timeout=60)
    backup = start_persist(project, "backup", "--name", "manual")
    try:
        lock = docker.state / "docker-persist" / "journal"
        wait_for(lambda: any("backup" in p.read_text() for p in lock.glob(f"*-{project.name}.lock")), 60,
                 "the manual backup to hold the project", backup)  # fmt: skip
        plugin = [pid for pid in descendants(backup.pid) if "docker-persist" in cmdline(pid)]
        for pid in plugin:  # held still, so that the backup cannot finish before the scheduler looks
            os.kill(pid, signal.SIGSTOP)
        skipped = project.persist("schedule", "--once")
        assert skipped.returncode == 1 and "skipped" in skipped.stderr, skipped.stderr
    finally:
        for pid in descendants(backup.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        backup.communicate(timeout=300)
    assert backup.returncode == 0
    assert snapshot_names(project) == ["manual"]


def test_the_engine_tests_keep_out_of_the_real_home(docker: DockerCLI, project: ComposeProject) -> None:
    up(project)
    assert project.persist("backup").returncode == 0
    assert str(docker.state).startswith(str(docker.config.parent))
    assert list((docker.state / "docker-persist").iterdir())
    assert mountpoint(docker, volume_name(project)).exists()
