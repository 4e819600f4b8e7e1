"""Retention, pins, `latest`, durations and damaged snapshots, through the real CLI: nothing a user would
want back is forgotten, picked by mistake, or made unreachable by one bad manifest."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import automatic, change, compose_file, fill, listing, snapshot_names, volume_name

TWO_VOLUMES = """
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - va:/va
      - vb:/vb
x-persist:
  keep: {last: 2}
volumes:
  va:
    x-persist: {}
  vb:
    x-persist: {}
"""


def ok(done: object) -> None:
    assert getattr(done, "returncode", None) == 0, f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"


def test_retention_is_per_volume(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(TWO_VOLUMES)
    project.compose("up", "-d", "--wait")
    ok(project.persist("backup", "--name", "full"))
    ok(project.persist("backup", "va", "--name", "va1"))
    ok(project.persist("backup", "va", "--name", "va2"))
    ok(project.persist("backup", "va", "--name", "va3"))
    assert sorted(snapshot_names(project)) == ["full", "va2", "va3"]  # full holds vb's only copy
    check = json.loads(project.persist("check", "--format", "json").stdout)
    assert not [f for f in check["findings"] if f["rule"] == "DP005"], "every volume still has a snapshot"


def test_automatic_snapshots_do_not_push_out_a_pinned_or_a_manual_one(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(compose_file() + "x-persist:\n  keep: {last: 1}\n")
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    ok(project.persist("backup", "--name", "before-upgrade", "--pin"))
    ok(project.persist("backup", "--name", "monday"))
    for _ in range(2):  # two restores: two automatic undo snapshots
        change(project)
        ok(project.persist("restore", "monday", "--yes"))
    ok(project.persist("backup", "--name", "tuesday"))
    names = snapshot_names(project)
    assert "before-upgrade" in names, "a pinned snapshot is never forgotten by a policy"
    assert "tuesday" in names and "monday" not in names
    reasons = [r["reason"] for r in json.loads(project.persist("snapshots", "--format", "json").stdout)["snapshots"]]
    assert reasons.count("pre-restore") == 1  # automatic ones have their own slots
    refused = project.persist("forget", "before-upgrade")
    assert refused.returncode == 1 and "unpin it first" in refused.stderr
    ok(project.persist("unpin", "before-upgrade"))
    ok(project.persist("forget", "before-upgrade"))
    assert "before-upgrade" not in snapshot_names(project)


def test_latest_is_never_an_undo_snapshot(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file().replace("x-persist: {}", "x-persist: {restore: latest}"))
    assert project.persist("up", "-d", "--wait").returncode == 0
    fill(project, 1)
    volume = volume_name(project)
    ok(project.persist("backup", "--name", "good"))
    good = listing(docker, volume)
    project.compose("exec", "-T", "app", "sh", "-c", "echo dropped table > /data/broken")
    ok(project.persist("restore", "good", "--yes"))  # the undo snapshot holds the broken data, and is newest
    verified = project.persist("verify", "--format", "json")
    assert [r["name"] for r in json.loads(verified.stdout)["results"]] == ["good"]
    ok(project.persist("down", "-v"))  # a pre-down snapshot of the good data: latest again
    names = snapshot_names(project)
    undo = [n for n in names if automatic(n, "pre-restore")]
    ok(project.persist("forget", *[n for n in names if automatic(n, "pre-down")]))
    ok(project.persist("up", "-d", "--wait"))
    assert {k: v for k, v in listing(docker, volume).items() if k != "."} == {
        k: v for k, v in good.items() if k != "."
    }, f"up restored {undo} instead of 'good'"


def test_one_duration_grammar_checked_before_any_work(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file() + "x-persist:\n  keep: {within: 6m}\n")
    project.compose("up", "-d", "--wait")
    for args in (("check",), ("backup", "--name", "x")):
        done = project.persist(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "x-persist.keep.within" in done.stderr
    assert not (project.store / project.name).exists() or not any((project.store / project.name).iterdir())
    project.write(compose_file() + "x-persist:\n  keep: {within: 1w}\n  max_age: 6mo\n")
    ok(project.persist("check"))
    done = project.persist("backup", "--name", "x")
    ok(done)
    assert "Snapshot x" in done.stdout
    wrong = project.persist("forget", "--keep-within", "1y6m", "--dry-run")
    assert wrong.returncode == 2 and "'m' is ambiguous" in wrong.stderr, wrong.stderr
    ok(project.persist("forget", "--keep-within", "1y6mo", "--dry-run"))


def test_a_named_restore_that_does_not_exist_stops_up_before_anything_is_created(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(compose_file().replace("x-persist: {}", "x-persist: {restore: lastest}"))
    done = project.persist("up", "-d")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'lastest'" in done.stderr and "nothing was created" in done.stderr
    assert docker.run("volume", "inspect", volume_name(project)).returncode != 0
    assert project.compose("ps", "-aq").stdout.strip() == ""


def test_a_damaged_manifest_is_reported_not_fatal(docker: DockerCLI, project: ComposeProject, tmp_path: Path) -> None:
    project.write(compose_file() + "x-persist:\n  keep: {last: 2}\n")
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    for name in ("a", "b", "c"):
        ok(project.persist("backup", "--name", name))
    (project.store / project.name / "b" / "manifest.json").write_text("{ this is not json")
    listed = project.persist("snapshots", "--format", "json")
    ok(listed)
    rows = json.loads(listed.stdout)["snapshots"]
    assert [r["name"] for r in rows if "damaged" not in r] == ["c"]  # keep last 2 forgot a at c's backup
    assert [r["name"] for r in rows if "damaged" in r] == ["b"]
    check = json.loads(project.persist("check", "--format", "json").stdout)
    assert "DP019" in {f["rule"] for f in check["findings"]}
    backup = project.persist("backup", "--name", "d")  # published; retention goes on past b, and says so
    assert backup.returncode == 1 and "Snapshot d" in backup.stdout and "damaged" in backup.stderr
    assert sorted(snapshot_names(project)) == ["b", "c", "d"]  # b left alone, reported
    copied = project.persist("copy", "--all", "--to", str(tmp_path / "offsite"))
    assert copied.returncode == 1 and "Copied c" in copied.stdout and "Copied d" in copied.stdout
    ok(project.persist("forget", "b"))
    listed = json.loads(project.persist("snapshots", "--format", "json").stdout)["snapshots"]
    assert [r["name"] for r in listed] == ["c", "d"]
