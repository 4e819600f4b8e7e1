"""Engine guards through the real CLI: what `protect` keeps safe from the engine's own removal commands."""

from __future__ import annotations

import json

from tests.engine.conftest import ComposeProject, DockerCLI

PROJECT = """
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sh", "-c", "echo precious > /data/notes.txt; exec sleep 3600"]
    volumes:
      - data:/data
volumes:
  data:
    x-persist: {protect: true}
"""


def notes(docker: DockerCLI, volume: str) -> str:
    done = docker.run("run", "--rm", "--network", "none", "-v", f"{volume}:/d", "docker-persist-test/busybox",
                      "cat", "/d/notes.txt")  # fmt: skip
    return done.stdout.strip()


def guards(docker: DockerCLI, volume: str) -> list[str]:
    done = docker.run("ps", "-aq", "--filter", "label=io.docker-persist.role=guard",
                      "--filter", f"label=io.docker-persist.volume={volume}", check=True)  # fmt: skip
    return done.stdout.split()


def test_a_guard_survives_every_removal_command(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(PROJECT)
    project.compose("up", "-d", "--wait")
    volume = f"{project.name}_data"
    done = project.persist("protect", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"volume": volume, "key": "data", "changed": True}]
    assert len(guards(docker, volume)) == 1
    again = project.persist("protect", "data")
    assert again.returncode == 0 and "already protected" in again.stdout

    # docker rm -f -v of the service container, then docker volume rm and prune: the volume stays.
    container = project.compose("ps", "-q", "app").stdout.split()[0]
    docker.run("rm", "-f", "-v", container, check=True)
    removed = docker.run("volume", "rm", volume)
    assert removed.returncode != 0 and "in use" in removed.stderr
    # Scoped to the project's volumes, so that the test never prunes anything of whoever runs it (before API
    # 1.42, a plain prune removes every unused volume, named ones too): the volume is still one prune may remove.
    scope = f"label=com.docker.compose.project={project.name}"
    docker.run("volume", "prune", "-f", "--filter", scope, check=True)
    docker.run("volume", "prune", "-f", "--filter", "all=1", "--filter", scope)  # API >= 1.42; older ones refuse
    # A plain `docker compose down -v` cannot remove it either.
    project.compose("up", "-d", "--wait")
    down = project.compose("down", "-v", check=False)
    assert "in use" in (down.stdout + down.stderr)
    assert notes(docker, volume) == "precious"
    # `docker persist check` sees the guard: no DP015.
    project.compose("up", "-d", "--wait")
    findings = json.loads(project.persist("check", "--format", "json").stdout)["findings"]
    assert "DP015" not in {f["rule"] for f in findings}
    # Guards are not the user's containers: compose does not list them.
    assert len(project.compose("ps", "-aq").stdout.split()) == 1

    # unprotect: the volume can be removed again.
    released = project.persist("unprotect", "data")
    assert released.returncode == 0 and "unprotected" in released.stdout
    assert guards(docker, volume) == []
    project.compose("down", "-v")
    assert docker.run("volume", "inspect", volume).returncode != 0


def test_protect_an_unknown_volume_is_a_clear_error(project: ComposeProject) -> None:
    project.write(PROJECT)
    done = project.persist("protect", "nope")
    assert done.returncode == 2
    assert "volume 'nope' does not exist" in done.stderr


RESTORING = PROJECT.replace("x-persist: {protect: true}", "x-persist: {protect: true, restore: latest}").replace(
    "echo precious > /data/notes.txt;", "[ -f /data/notes.txt ] || echo fresh > /data/notes.txt;"
)


def test_up_creates_restores_and_protects_then_runs_compose(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(RESTORING)
    volume = f"{project.name}_data"
    # First life: data, a snapshot of it, then everything removed.
    first = project.persist("up", "-d", "--wait")
    assert first.returncode == 0, first.stderr
    assert notes(docker, volume) == "fresh"
    assert len(guards(docker, volume)) == 1
    project.compose("exec", "-T", "app", "sh", "-c", "echo from-the-snapshot > /data/notes.txt")
    assert project.persist("backup", "--name", "life1").returncode == 0
    assert project.persist("unprotect").returncode == 0
    project.compose("down", "-v")
    assert docker.run("volume", "inspect", volume).returncode != 0

    # Second life: up re-creates the volume, restores the latest snapshot into it, protects it.
    second = project.persist("up", "-d", "--wait")
    assert second.returncode == 0, second.stderr
    assert "restore" in second.stderr and "life1" in second.stderr + second.stdout
    assert notes(docker, volume) == "from-the-snapshot"
    assert len(guards(docker, volume)) == 1
    assert "was not created by Docker Compose" not in second.stdout + second.stderr
    labels = json.loads(docker.run("volume", "inspect", volume, check=True).stdout)[0]["Labels"]
    assert labels["com.docker.compose.project"] == project.name and labels["com.docker.compose.volume"] == "data"

    # Idempotent: a volume that holds data is never restored into again.
    project.compose("exec", "-T", "app", "sh", "-c", "echo newer > /data/notes.txt")
    third = project.persist("up", "-d", "--wait")
    assert third.returncode == 0, third.stderr
    assert "restore" not in third.stderr
    assert notes(docker, volume) == "newer"
    plan = json.loads(project.persist("plan", "up", "--format", "json").stdout)
    assert plan["steps"] == []
