"""`docker persist down`: what a down would destroy is backed up first, and restorable by name."""

from __future__ import annotations

import json

from tests.engine.conftest import ComposeProject, DockerCLI

STACK = """
name: {project}
services:
  db:
    image: docker-persist-test/postgres:busybox
    network_mode: none
    init: true
    command: ["sh", "-c", "echo 15 > /var/lib/postgresql/data/PG_VERSION && touch /ready; exec sleep 3600"]
    healthcheck: {test: ["CMD", "test", "-f", "/ready"], interval: 1s}
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command:
      - sh
      - -c
      - mkdir -p /srv && head -c 12582912 /dev/urandom > /srv/blob && echo kept > /data/notes.txt && touch /ready;
        exec sleep 3600
    healthcheck: {test: ["CMD", "test", "-f", "/ready"], interval: 1s}
    x-persist: {consistency: stop}
    volumes:
      - app_data:/data
volumes:
  app_data:
    x-persist: {protect: true, restore: latest}
"""


def sha256_in(docker: DockerCLI, volume: str, path: str) -> str:
    done = docker.run(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{volume}:/d",
        "docker-persist-test/busybox",
        "sha256sum",
        f"/d/{path}",
        check=True,
    )
    return done.stdout.split()[0]


def test_down_v_backs_up_named_anonymous_and_layer_data(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(STACK)
    up = project.persist("up", "-d", "--wait")
    assert up.returncode == 0, up.stderr
    blob = docker.run("exec", project.compose("ps", "-q", "app").stdout.strip(), "sha256sum", "/srv/blob").stdout
    blob_sha = blob.split()[0]
    plan = json.loads(project.persist("plan", "down", "-v", "--format", "json").stdout)
    planned = sorted((loss["kind"], loss["name"]) for loss in plan["losses"])
    assert {kind for kind, _ in planned} == {"named-volume", "anonymous-volume", "container-layer"}

    done = project.persist("down", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pre-down" in done.stderr and "restore with: docker persist restore" in done.stderr
    # Everything went: containers, the named volume (its guard was released), the anonymous one.
    assert project.compose("ps", "-aq").stdout.split() == []
    assert docker.run("volume", "inspect", f"{project.name}_app_data").returncode != 0

    snapshots = json.loads(project.persist("snapshots", "--format", "json").stdout)["snapshots"]
    assert len(snapshots) == 1 and snapshots[0]["reason"] == "pre-down"
    name = snapshots[0]["name"]
    manifest = json.loads((project.store / project.name / name / "manifest.json").read_text())
    kinds = {record["kind"]: record for record in manifest["volumes"]}
    # The plan and the actual down agree on the loss set.
    taken = sorted(({"volume": "named-volume"}.get(r["kind"], r["kind"]), r["source"]) for r in manifest["volumes"])
    assert taken == planned

    # The named volume comes back with `up` (restore: latest).
    again = project.persist("up", "-d", "--wait")
    assert again.returncode == 0, again.stderr
    notes = docker.run(
        "run",
        "--rm",
        "-v",
        f"{project.name}_app_data:/d",
        "docker-persist-test/busybox",
        "cat",
        "/d/notes.txt",
        check=True,
    )
    assert notes.stdout.strip() == "kept"

    # The anonymous volume and the writable layer are restorable by name, into a volume.
    anon, layer = kinds["anonymous-volume"]["key"], kinds["container-layer"]["key"]
    for key, target in ((anon, f"{project.name}_anon_back"), (layer, f"{project.name}_layer_back")):
        restored = project.persist("restore", name, "--volume", key, "--to", target, "--yes")
        assert restored.returncode == 0, restored.stdout + restored.stderr
    try:
        assert sha256_in(docker, f"{project.name}_layer_back", "srv/blob") == blob_sha
        pg = docker.run(
            "run",
            "--rm",
            "-v",
            f"{project.name}_anon_back:/d",
            "docker-persist-test/busybox",
            "cat",
            "/d/PG_VERSION",
            check=True,
        )
        assert pg.stdout.strip() == "15"
        # Without --to, such data has no volume of its own to go back to.
        refused = project.persist("restore", name, "--volume", layer, "--yes")
        assert refused.returncode == 2 and "--to" in refused.stderr
    finally:
        for volume in (f"{project.name}_anon_back", f"{project.name}_layer_back"):
            docker.run("volume", "rm", "-f", volume)


def test_on_down_refuse_changes_nothing(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(STACK.replace("volumes:\n  app_data:", "x-persist: {on_down: refuse}\nvolumes:\n  app_data:"))
    assert project.persist("up", "-d", "--wait").returncode == 0
    done = project.persist("down", "-v")
    assert done.returncode == 1
    assert "refusing `down -v`" in done.stderr and "app_data" in done.stderr
    assert len(project.compose("ps", "-q").stdout.split()) == 2
    assert docker.run("volume", "inspect", f"{project.name}_app_data").returncode == 0
    dry = project.persist("down", "-v", "--dry-run")
    assert dry.returncode == 0 and "REFUSE" in dry.stdout


def test_plain_down_keeps_named_volumes_and_backs_up_the_rest(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(STACK)
    assert project.persist("up", "-d", "--wait").returncode == 0
    done = project.persist("down")
    assert done.returncode == 0, done.stderr
    assert docker.run("volume", "inspect", f"{project.name}_app_data").returncode == 0
    snapshots = json.loads(project.persist("snapshots", "--format", "json").stdout)["snapshots"]
    name = snapshots[0]["name"]
    manifest = json.loads((project.store / project.name / name / "manifest.json").read_text())
    assert sorted(r["kind"] for r in manifest["volumes"]) == ["anonymous-volume", "container-layer"]
    # The guard of the kept volume is still there.
    guards = docker.run(
        "ps",
        "-aq",
        "--filter",
        "label=io.docker-persist.role=guard",
        "--filter",
        f"label=io.docker-persist.volume={project.name}_app_data",
    ).stdout.split()
    assert len(guards) == 1
