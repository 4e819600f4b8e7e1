"""The Compose provider: a plain `docker compose down -v` backs up first, and refuses when told to."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI

WITH_PROVIDER = """
name: {project}
services:
  persist:
    provider:
      type: persist
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    depends_on: [persist]
    command: ["sh", "-c", "[ -f /data/notes.txt ] || echo first-life > /data/notes.txt; exec sleep 3600"]
    volumes:
      - app_data:/data
volumes:
  app_data:
    x-persist: {protect: true, restore: latest}
"""


def notes(docker: DockerCLI, volume: str) -> str:
    done = docker.run(
        "run", "--rm", "--network", "none", "-v", f"{volume}:/d", "docker-persist-test/busybox", "cat", "/d/notes.txt"
    )
    return done.stdout.strip()


def compose_env(project: ComposeProject, **extra: str) -> dict[str, str]:
    return {"DOCKER_PERSIST_STORE": str(project.store), **extra}


def compose(project: ComposeProject, *args: str, **env: str) -> tuple[int, str]:
    done = project.docker.run(
        "compose",
        "--project-directory",
        str(project.directory),
        "-f",
        str(project.file),
        "-p",
        project.name,
        *args,
        env=compose_env(project, **env),
    )
    return done.returncode, done.stdout + done.stderr


def test_metadata(docker: DockerCLI) -> None:
    done = docker.run("persist", "compose", "metadata", check=True)
    metadata = json.loads(done.stdout)
    assert {"description", "up", "down"} <= set(metadata)


def test_plain_compose_down_v_backs_up_then_up_restores(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(WITH_PROVIDER)
    volume = f"{project.name}_app_data"
    code, output = compose(project, "up", "-d", "--wait")
    assert code == 0, output
    guards = docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.volume={volume}").stdout.split()
    assert len(guards) == 1, "provider up should protect the volume"
    docker.run(
        "exec",
        project.compose("ps", "-q", "app").stdout.strip(),
        "sh",
        "-c",
        "echo precious > /data/notes.txt",
        check=True,
    )

    code, output = compose(project, "down", "-v")
    assert code == 0, output
    snapshots = json.loads(project.persist("snapshots", "--format", "json").stdout)["snapshots"]
    assert [s["reason"] for s in snapshots] == ["pre-down"], snapshots
    assert docker.run("volume", "inspect", volume).returncode != 0, "down -v removes the volume once it is saved"

    code, output = compose(project, "up", "-d", "--wait")
    assert code == 0, output
    assert notes(docker, volume) == "precious"


def test_on_down_refuse_makes_compose_keep_the_volume(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(WITH_PROVIDER.replace("volumes:\n  app_data:", "x-persist: {on_down: refuse}\nvolumes:\n  app_data:"))
    volume = f"{project.name}_app_data"
    assert compose(project, "up", "-d", "--wait")[0] == 0
    code, output = compose(project, "down", "-v")
    assert code == 1, output
    assert "on_down is refuse" in output
    assert notes(docker, volume) == "first-life"


def test_a_failed_backup_makes_compose_keep_the_volume(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    project.write(WITH_PROVIDER)
    volume = f"{project.name}_app_data"
    assert compose(project, "up", "-d", "--wait")[0] == 0
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    code, output = compose(project, "down", "-v", DOCKER_PERSIST_STORE=str(blocker / "store"))
    assert code == 1, output
    assert notes(docker, volume) == "first-life"
    guards = docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.volume={volume}").stdout.split()
    assert len(guards) == 1, "the guard stays when the backup failed"


UNANNOTATED = """
name: {project}
services:
  db:
    image: docker-persist-test/postgres:busybox
    network_mode: none
    init: true
    command: ["sh", "-c", "echo 15 > /var/lib/postgresql/data/PG_VERSION; exec sleep 3600"]
    volumes:
      - db_data:/var/lib/postgresql/data
volumes:
  db_data: {}
"""


def test_init_writes_an_override_that_guards_a_plain_down_v(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(UNANNOTATED)
    original = project.file.read_text()
    done = project.persist("init")
    assert done.returncode == 0, done.stderr
    override = project.directory / "compose.persist.yaml"
    assert override.exists() and "docker compose -f compose.yaml -f compose.persist.yaml up -d" in done.stdout
    assert project.file.read_text() == original, "the user's own file is left untouched"
    again = project.persist("init")
    assert again.returncode == 1 and "--force" in again.stderr

    files = ["-f", str(project.file), "-f", str(override)]
    base = ["compose", "--project-directory", str(project.directory), *files, "-p", project.name]
    env = {"DOCKER_PERSIST_STORE": str(project.store)}
    config = docker.run(*base, "config", env=env, check=True).stdout
    assert "provider:" in config and "x-persist: {}" in config and "consistency: stop" in config
    docker.run(*base, "up", "-d", env=env, check=True)
    down = docker.run(*base, "down", "-v", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    snapshots = json.loads(docker.run("persist", "snapshots", "--format", "json", *files, "-p", project.name,
                                      env=env, check=True).stdout)["snapshots"]  # fmt: skip
    assert [s["reason"] for s in snapshots] == ["pre-down"]
