"""`docker persist check` and `plan` through the real CLI, against live projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.conftest import ROOT, ComposeProject, DockerCLI

LIVE_RISKS = """
name: {project}
services:
  db:
    image: docker-persist-test/postgres:busybox
    network_mode: none
    command: ["sh", "-c", "echo 15 > /var/lib/postgresql/data/PG_VERSION; exec sleep 3600"]
    healthcheck: {test: ["CMD", "test", "-f", "/var/lib/postgresql/data/PG_VERSION"], interval: 1s}
  app:
    image: docker-persist-test/busybox
    network_mode: none
    # 12 MB of data in the writable layer; healthy once it is all written.
    command: ["sh", "-c", "mkdir /srv && head -c 12582912 /dev/urandom > /srv/blob && touch /done; exec sleep 3600"]
    healthcheck: {test: ["CMD", "test", "-f", "/done"], interval: 1s}
    volumes:
      - app_data:/data
volumes:
  app_data:
    x-persist: {protect: true}
"""


def findings_of(done_stdout: str) -> dict[str, list[dict[str, str]]]:
    by_rule: dict[str, list[dict[str, str]]] = {}
    for finding in json.loads(done_stdout)["findings"]:
        by_rule.setdefault(finding["rule"], []).append(finding)
    return by_rule


def test_check_finds_the_live_risks(project: ComposeProject) -> None:
    project.write(LIVE_RISKS)
    project.compose("up", "-d", "--wait")
    done = project.persist("check", "--format", "json")
    assert done.returncode == 1, done.stderr
    found = findings_of(done.stdout)
    # The database look-alike's data dir is on the anonymous volume its image declares.
    assert any(f["service"] == "db" and f["path"] == "/var/lib/postgresql/data" for f in found["DP001"])
    # The same anonymous volume is orphaned by down + up.
    assert any(f["service"] == "db" for f in found["DP004"])
    # 12 MB of random data in app's writable layer, under /srv.
    assert any(f["service"] == "app" and "/srv" in f["message"] for f in found["DP003"])
    # app_data is protected, but nothing guards it yet.
    assert [f["volume"] for f in found["DP015"]] == ["app_data"]


def test_check_is_quiet_about_what_is_fine(project: ComposeProject) -> None:
    project.write("""
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    command: ["sleep", "3600"]
    volumes:
      - app_data:/data
volumes:
  app_data:
    x-persist: {protect: false}
""")
    project.compose("up", "-d", "--wait")
    done = project.persist("check", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    rules = set(findings_of(done.stdout))
    assert not rules & {"DP001", "DP002", "DP003", "DP004", "DP015"}, rules


def test_check_pretty_output_names_service_and_path(project: ComposeProject) -> None:
    project.write(LIVE_RISKS)
    project.compose("up", "-d", "--wait")
    done = project.persist("check")
    assert done.returncode == 1
    assert "DP001" in done.stdout and "/var/lib/postgresql/data" in done.stdout and "'db'" in done.stdout
    assert "fix:" in done.stdout


def test_check_sarif(project: ComposeProject) -> None:
    project.write(LIVE_RISKS)
    project.compose("up", "-d", "--wait")
    done = project.persist("check", "--format", "sarif")
    sarif = json.loads(done.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert run["tool"]["driver"]["name"] == "docker-persist"
    result = next(r for r in run["results"] if r["ruleId"] == "DP001")
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "compose.yaml"
    line = project.file.read_text().splitlines()[location["region"]["startLine"] - 1]
    assert line.strip() == "db:"


def test_check_a_database_without_a_volume_fails(project: ComposeProject) -> None:
    project.write("""
name: {project}
services:
  db:
    image: postgres:16
    environment: {POSTGRES_PASSWORD: example}
""")
    done = project.persist("check", "--format", "json")
    assert done.returncode == 1, done.stderr
    finding = findings_of(done.stdout)["DP001"][0]
    assert finding["service"] == "db"
    assert finding["path"] == "/var/lib/postgresql/data"


@pytest.mark.parametrize(
    "example", sorted((ROOT / "compose-extensions" / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_have_no_error_findings(docker: DockerCLI, example: Path, unique: str) -> None:
    done = docker.run("persist", "check", "--format", "json", "-f", str(example), "-p", unique)
    assert done.returncode == 0, done.stdout + done.stderr
    errors = [f for f in json.loads(done.stdout)["findings"] if f["severity"] == "error"]
    assert errors == []


def test_malformed_x_persist_is_exit_2_with_the_path(project: ComposeProject) -> None:
    project.write("""
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    volumes: [data:/data]
volumes:
  data:
    x-persist:
      max_age: 3 days
x-persist:
  kep: {daily: 7}
""")
    done = project.persist("check")
    assert done.returncode == 2
    assert "At 'volumes.data.x-persist.max_age': expected a duration such as 26h or 7d" in done.stderr
    assert "At 'x-persist': unknown key 'kep'; did you mean 'keep'?" in done.stderr
    # Nothing was touched: the project's volume was never created.
    assert project.docker.run("volume", "inspect", f"{project.name}_data").returncode != 0


def test_compose_rejection_is_exit_2_with_composes_message(project: ComposeProject) -> None:
    project.write("services:\n  app:\n    image: [not, a, string]\n")
    done = project.persist("check")
    assert done.returncode == 2
    assert "docker compose rejected the project" in done.stderr
    assert "image" in done.stderr


def test_no_compose_file_is_exit_2(docker: DockerCLI, tmp_path: Path) -> None:
    done = docker.run("persist", "check", "--project-directory", str(tmp_path))
    assert done.returncode == 2
    assert "no Compose file here" in done.stderr and "point at the file with -f" in done.stderr


def test_plan_down_lists_the_loss_set_with_sizes(project: ComposeProject) -> None:
    project.write(LIVE_RISKS)
    project.compose("up", "-d", "--wait")
    done = project.persist("plan", "down", "-v", "--format", "json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    kinds = {(loss["kind"], loss["key"] or loss["service"]) for loss in plan["losses"]}
    assert ("named-volume", "app_data") in kinds
    assert ("anonymous-volume", "db") in kinds
    assert ("container-layer", "app") in kinds
    layer = next(loss for loss in plan["losses"] if loss["kind"] == "container-layer")
    assert layer["size"] >= 12 * 1024 * 1024
    assert all(loss["action"] == "backup" for loss in plan["losses"])
    # Without -v the named volume survives; the anonymous one is still orphaned.
    plain = json.loads(project.persist("plan", "down", "--format", "json").stdout)
    assert {loss["kind"] for loss in plain["losses"]} == {"anonymous-volume", "container-layer"}
    text = project.persist("plan", "down", "-v").stdout
    assert "Would be lost:" in text and "app_data" in text


def test_plan_up_before_the_first_up(project: ComposeProject) -> None:
    project.write(LIVE_RISKS)
    done = project.persist("plan", "up", "--format", "json")
    assert done.returncode == 0, done.stderr
    steps = [(s["action"], s["key"]) for s in json.loads(done.stdout)["steps"]]
    assert steps == [("create", "app_data"), ("protect", "app_data")]
