"""The crash matrix: kill -9 at every step of every operation, through the real CLI and engine, then run again.

A crash point (docker_persist/host/faults.py), armed with DOCKER_PERSIST_CRASH_AT, makes the plugin
kill itself with SIGKILL at one step; the docker CLI then exits 255. The next command must find the
data old or new by an independent listing (never half), the service running, the guard in place,
and nothing left behind: no helper, marker or scratch volume, no staging in the store, no journal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import (
    Listing,
    automatic,
    change,
    compose_file,
    fill,
    listing,
    scratch_volumes,
    service_state,
    snapshot_names,
    staging_left,
    volume_name,
)

CRASH = "DOCKER_PERSIST_CRASH_AT"
KILLED = 255  # the docker CLI's exit code when its plugin dies by a signal

RESTORE_POINTS = [
    "restore:planned",
    "restore:stopped",
    "restore:undo-taken",
    "restore:containers-removed",
    "restore:replacing",
    "restore:volume-created",
    "restore:extracting",
    "restore:volume-replaced",
    "restore:replaced",
]
DONE = {"restore:volume-replaced", "restore:replaced"}


def ours(docker: DockerCLI, project: ComposeProject, role: str) -> list[str]:
    done = docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.role={role}",
                      "--filter", f"label=io.docker-persist.project={project.name}", check=True)  # fmt: skip
    return done.stdout.split()


def running_guards(docker: DockerCLI, volume: str) -> list[str]:
    done = docker.run("ps", "-q", "--filter", "label=io.docker-persist.role=guard",
                      "--filter", f"label=io.docker-persist.volume={volume}", check=True)  # fmt: skip
    return done.stdout.split()


def journals(docker: DockerCLI, project: ComposeProject) -> list[str]:
    folder = docker.state / "docker-persist" / "journal"
    return sorted(p.name for p in folder.glob(f"*-{project.name}.json")) if folder.exists() else []


def assert_nothing_left(docker: DockerCLI, project: ComposeProject) -> None:
    assert ours(docker, project, "helper") == []
    assert ours(docker, project, "incomplete") == []
    assert journals(docker, project) == []
    assert staging_left(project.store / project.name) == []


def crashed(project: ComposeProject, point: str, *args: str) -> None:
    done = project.persist(*args, env={CRASH: point})
    assert done.returncode == KILLED, f"expected the crash at {point}: {done.returncode}\n{done.stdout}{done.stderr}"


def undo_snapshots(project: ComposeProject) -> list[str]:
    return [n for n in snapshot_names(project) if automatic(n, "pre-restore")]


@pytest.fixture
def changed_project(docker: DockerCLI, project: ComposeProject) -> tuple[ComposeProject, Listing, Listing]:
    """A guarded project with snapshot `base`, whose data then changed: (project, base listing, changed listing)."""
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 2)
    assert project.persist("protect").returncode == 0
    assert project.persist("backup", "--name", "base").returncode == 0
    base = listing(docker, volume_name(project))
    change(project)
    return project, base, listing(docker, volume_name(project))


@pytest.mark.parametrize("point", RESTORE_POINTS)
def test_a_restore_killed_at_each_step_is_finished_by_running_it_again(
    docker: DockerCLI, changed_project: tuple[ComposeProject, Listing, Listing], point: str
) -> None:
    project, base, changed = changed_project
    volume = volume_name(project)
    crashed(project, point, "restore", "base", "--yes")
    rerun = project.persist("restore", "base", "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert listing(docker, volume) == base
    assert service_state(docker, project)[1], "the service must run again"
    assert running_guards(docker, volume)
    assert_nothing_left(docker, project)
    undo = undo_snapshots(project)
    assert len(undo) == (2 if point in DONE else 1), undo
    aside = f"{project.name}_aside"
    try:
        restored = project.persist("restore", undo[0], "--volume", "data", "--to", aside, "--yes")
        assert restored.returncode == 0, restored.stderr
        assert {k: v for k, v in listing(docker, aside).items() if k != "."} == {
            k: v for k, v in changed.items() if k != "."
        }
    finally:
        docker.run("volume", "rm", "-f", aside)


@pytest.mark.parametrize("point", ["restore:planned", "restore:volume-created", "restore:extracting"])
def test_a_restore_to_a_new_volume_killed_at_each_step(
    docker: DockerCLI, changed_project: tuple[ComposeProject, Listing, Listing], point: str
) -> None:
    project, base, _ = changed_project
    fresh = f"{project.name}_fresh"
    try:
        crashed(project, point, "restore", "base", "--volume", "data", "--to", fresh, "--yes")
        # Nothing the user had was touched: every other command goes on, and takes back the half-filled volume.
        after = project.persist("backup", "--name", "after")
        assert after.returncode == 0, after.stderr
        assert docker.run("volume", "inspect", fresh).returncode != 0, "the half-filled new volume stayed"
        rerun = project.persist("restore", "base", "--volume", "data", "--to", fresh, "--yes")
        assert rerun.returncode == 0, rerun.stderr
        assert {k: v for k, v in listing(docker, fresh).items() if k != "."} == {
            k: v for k, v in base.items() if k != "."
        }
        assert_nothing_left(docker, project)
    finally:
        docker.run("volume", "rm", "-f", fresh)


@pytest.mark.parametrize("point", ["backup:quiesced", "backup:parts-written", "backup:published"])
def test_a_backup_killed_at_each_step(docker: DockerCLI, project: ComposeProject, point: str) -> None:
    project.write(compose_file(consistency="stop"))
    project.compose("up", "-d", "--wait")
    fill(project, 2)
    before = listing(docker, volume_name(project))
    crashed(project, point, "backup", "--name", "k")
    again = project.persist("backup", "--name", "k2")
    assert again.returncode == 0, again.stderr
    assert service_state(docker, project)[1]
    assert listing(docker, volume_name(project)) == before
    assert ("k" in snapshot_names(project)) is (point == "backup:published")
    assert_nothing_left(docker, project)


UP_RESTORE = compose_file().replace("x-persist: {}", "x-persist: {restore: latest}")


@pytest.mark.parametrize("point", ["up:extracting", "up:restored"])
def test_an_up_restore_killed_at_each_step_is_redone_by_the_next_up(
    docker: DockerCLI, project: ComposeProject, point: str
) -> None:
    project.write(UP_RESTORE)
    assert project.persist("up", "-d", "--wait").returncode == 0
    fill(project, 2)
    volume = volume_name(project)
    before = listing(docker, volume)
    down = project.persist("down", "-v")  # backs up first: the latest snapshot `up` restores from
    assert down.returncode == 0, down.stderr
    crashed(project, point, "up", "-d", "--wait")
    assert not service_state(docker, project)[1], "nothing started on a half-restored volume"
    again = project.persist("up", "-d", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {k: v for k, v in listing(docker, volume).items() if k != "."} == {
        k: v for k, v in before.items() if k != "."
    }
    assert service_state(docker, project)[1] and running_guards(docker, volume)
    assert_nothing_left(docker, project)


@pytest.mark.parametrize("point", ["down:backed-up", "down:guards-released"])
def test_a_down_killed_at_each_step_gets_its_guards_back(
    docker: DockerCLI, project: ComposeProject, point: str
) -> None:
    project.write(compose_file())
    assert project.persist("up", "-d", "--wait").returncode == 0
    fill(project, 2)
    volume = volume_name(project)
    before = listing(docker, volume)
    crashed(project, point, "down", "-v")
    assert listing(docker, volume) == before  # `docker compose down` never ran
    recovered = project.persist("recover")
    assert recovered.returncode == 0, recovered.stderr
    assert running_guards(docker, volume), "the guard released by the killed down must be back"
    assert any(automatic(n, "pre-down") for n in snapshot_names(project))
    assert project.persist("down", "-v").returncode == 0
    assert docker.run("volume", "inspect", volume).returncode != 0
    assert_nothing_left(docker, project)


def test_a_killed_verify_leaves_a_scratch_volume_the_next_command_removes(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 2)
    assert project.persist("backup", "--name", "v").returncode == 0
    before = set(scratch_volumes(docker))
    crashed(project, "verify:extracting", "verify", "v")
    assert set(scratch_volumes(docker)) - before, "the killed drill should have left its scratch volume"
    assert project.persist("backup", "--name", "next").returncode == 0
    assert set(scratch_volumes(docker)) - before == set()
    assert project.persist("verify", "v").returncode == 0
    assert_nothing_left(docker, project)


def test_a_verify_killed_while_rm_removes_behind_its_read_back(docker: DockerCLI, project: ComposeProject) -> None:
    """kill -9 just after verify started an rm beside its read-back of the scratch volume: the orphaned rm
    touches only that volume, the next command removes what is left of it, the data and the snapshot are
    untouched, and the snapshot still verifies."""
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 2)
    tops = "for d in a b c d e f; do mkdir -p /data/top-$d; echo $d > /data/top-$d/file; done; sync"
    project.compose("exec", "-T", "app", "sh", "-c", tops)  # top-level names for rm to remove behind the read
    assert project.persist("backup", "--name", "v").returncode == 0
    data = listing(docker, volume_name(project))
    before = set(scratch_volumes(docker))
    crashed(project, "read-back:removing", "verify", "v")
    assert set(scratch_volumes(docker)) - before, "the killed drill should have left its scratch volume"
    assert project.persist("backup", "--name", "next").returncode == 0
    assert set(scratch_volumes(docker)) - before == set()
    assert listing(docker, volume_name(project)) == data
    assert project.persist("verify", "v").returncode == 0
    assert_nothing_left(docker, project)


def test_a_killed_forget_leaves_trash_the_next_command_removes(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    for name in ("a", "b", "c"):
        assert project.persist("backup", "--name", name).returncode == 0
    crashed(project, "forget:trashed", "forget", "--keep-last", "1")
    store = project.store / project.name
    assert staging_left(store), "the killed forget should have left a .trash- folder"
    left = snapshot_names(project)
    assert len(left) == 2 and "c" in left  # one was already gone, whole
    done = project.persist("forget", "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    assert snapshot_names(project) == ["c"]
    assert staging_left(store) == []


def test_a_killed_copy_leaves_nothing_visible_and_the_next_one_succeeds(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    assert project.persist("backup", "--name", "c").returncode == 0
    target = tmp_path / "offsite"
    crashed(project, "copy:part-written", "copy", "c", "--to", str(target))
    listed = project.persist("snapshots", "--format", "json", env={"DOCKER_PERSIST_STORE": str(target)})
    assert json.loads(listed.stdout)["snapshots"] == []
    again = project.persist("copy", "--all", "--to", str(target))
    assert again.returncode == 0, again.stderr
    assert staging_left(target / project.name) == []
    verified = project.persist("verify", "c", env={"DOCKER_PERSIST_STORE": str(target)})
    assert verified.returncode == 0, verified.stdout + verified.stderr
