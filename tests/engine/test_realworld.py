"""`docker persist check` on real-world Compose files (tests/fixtures/realworld), through the real CLI.

What fires on each file is compared with a reviewed table: a rule that starts or stops firing on a
real stack shows up in the diff of expected.json. Static: nothing is created or started.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import DockerCLI

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "realworld"
EXPECTED = FIXTURES / "expected.json"
SAMPLES = sorted(p.parent for p in FIXTURES.glob("*/*/compose.yaml"))


def check(docker: DockerCLI, folder: Path) -> dict[str, Any]:
    done = docker.run(
        "persist", "check", "--static", "--severity", "info", "--format", "json", "-f", str(folder / "compose.yaml")
    )
    if done.returncode == 2:
        return {"exit": 2, "rejected": done.stderr.strip().splitlines()[-1]}
    assert done.returncode in (0, 1), done.stderr
    document = json.loads(done.stdout)
    findings = [
        [f["rule"], f["severity"], f.get("service"), f.get("volume"), f.get("path")] for f in document["findings"]
    ]
    return {"exit": done.returncode, "findings": findings}


def test_check_on_real_world_compose_files(docker: DockerCLI, tmp_path: Path) -> None:
    assert len(SAMPLES) >= 30
    actual = {}
    for sample in SAMPLES:
        folder = tmp_path / sample.name
        shutil.copytree(sample, folder)
        actual[f"{sample.parent.name}/{sample.name}"] = check(docker, folder)
    if os.environ.get("UPDATE_REALWORLD"):
        EXPECTED.write_text(json.dumps(actual, indent=1) + "\n")
    expected = json.loads(EXPECTED.read_text())
    for name in sorted(set(actual) | set(expected)):
        assert actual.get(name) == expected.get(name), f"{name}: UPDATE_REALWORLD=1 rewrites the table"
    # The stacks a user report named: each keeps a database on a volume nothing backs up.
    for name in ("gitea-postgres", "nextcloud-postgres", "spring-postgres", "nginx-flask-mysql"):
        errors = [f for f in actual[f"awesome-compose/{name}"]["findings"] if f[:2] == ["DP021", "error"]]
        assert errors, name


@pytest.mark.parametrize("sample", ["gitea-postgres"])
def test_the_fix_check_gives_silences_it(docker: DockerCLI, tmp_path: Path, sample: str) -> None:
    folder = tmp_path / sample
    shutil.copytree(FIXTURES / "awesome-compose" / sample, folder)
    compose = folder / "compose.yaml"
    compose.write_text(compose.read_text().replace("  db_data:\n", "  db_data:\n    x-persist: {}\n"))
    rules = [f[:4] for f in check(docker, folder)["findings"]]
    assert ["DP021", "error", "db", "db_data"] not in rules
    assert ["DP005", "warning", "db", "db_data"] in rules or any(r[0] == "DP005" for r in rules)
