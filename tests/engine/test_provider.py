"""The Compose provider: a plain `docker compose down -v` backs up first, and refuses when told to."""

from __future__ import annotations

import json
import subprocess
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


def in_folder(docker: DockerCLI, project: ComposeProject, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS` as in a new shell in the project folder: no -f, no COMPOSE_FILE exported."""
    env = {k: v for k, v in docker.env.items() if not k.startswith("COMPOSE_")}
    env["DOCKER_PERSIST_STORE"] = str(project.store)
    return subprocess.run(["docker", *args], cwd=project.directory, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_init_override_is_named_in_env_so_a_plain_compose_in_a_new_shell_guards_down_v(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(UNANNOTATED)
    original = project.file.read_text()
    refused = project.persist("init")  # no terminal, no --yes: nothing is written
    assert refused.returncode == 1 and "pass --yes" in refused.stderr, refused.stderr
    assert sorted(p.name for p in project.directory.iterdir()) == ["compose.yaml"]
    done = project.persist("init", "--override")
    assert done.returncode == 0, done.stderr
    assert project.file.read_text() == original, "the user's own file is left untouched"
    assert (project.directory / ".env").read_text().endswith("\nCOMPOSE_FILE=compose.yaml:compose.persist.yaml\n")
    again = project.persist("init", "--override")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr

    config = in_folder(docker, project, "compose", "config")
    assert config.returncode == 0, config.stderr
    assert "provider:" in config.stdout and "x-persist: {}" in config.stdout and "dump: auto" in config.stdout
    up = in_folder(docker, project, "compose", "up", "-d")
    assert up.returncode == 0, up.stdout + up.stderr
    down = in_folder(docker, project, "compose", "down", "-v")
    assert down.returncode == 0, down.stdout + down.stderr
    listed = in_folder(docker, project, "persist", "snapshots", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [s["reason"] for s in json.loads(listed.stdout)["snapshots"]] == ["pre-down"]


def test_init_yes_puts_x_persist_in_the_compose_file_so_up_guards_in_a_new_shell(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(UNANNOTATED)
    done = project.persist("init", "--yes")
    assert done.returncode == 0, done.stderr
    assert "  db_data: {}\n" not in project.file.read_text() and "    x-persist: {}\n" in project.file.read_text()
    assert sorted(p.name for p in project.directory.iterdir()) == ["compose.yaml"]
    checked = in_folder(docker, project, "persist", "check", "--format", "json")
    assert "DP021" not in checked.stdout, checked.stdout  # db_data is covered by x-persist now
    up = in_folder(docker, project, "persist", "up", "-d")
    assert up.returncode == 0, up.stdout + up.stderr
    volume = f"{project.name}_db_data"
    guards = docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.volume={volume}").stdout.split()
    assert len(guards) == 1, "up protects the volume x-persist marks precious"
