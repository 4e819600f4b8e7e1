"""Rendering findings: the human table, JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
from pathlib import Path

from docker_persist.cli.report import render_json, render_pretty, render_sarif, summarize
from docker_persist.core.findings import Finding

FINDINGS = [
    Finding("DP001", "error", "service 'db' (postgres): /var/lib/postgresql/data is on an anonymous volume",
            "mount a named volume there", service="db", path="/var/lib/postgresql/data"),
    Finding("DP015", "warning", "volume 'data' is protected but has no guard", "run docker persist up",
            volume="data"),
]  # fmt: skip


def test_summary() -> None:
    assert summarize(FINDINGS) == {"error": 1, "warning": 1, "info": 0}


def test_pretty() -> None:
    text = render_pretty("shop", FINDINGS)
    assert text.splitlines() == [
        "Project shop:",
        "",
        "error    DP001  service 'db' (postgres): /var/lib/postgresql/data is on an anonymous volume",
        "                fix: mount a named volume there",
        "warning  DP015  volume 'data' is protected but has no guard",
        "                fix: run docker persist up",
        "",
        "2 findings: 1 error, 1 warning",
    ]
    assert render_pretty("shop", []) == "Project shop: no findings.\n"
    assert "\033[31m" in render_pretty("shop", FINDINGS, colour=True)


def test_json() -> None:
    document = json.loads(render_json("shop", FINDINGS))
    assert document["project"] == "shop"
    assert document["summary"]["error"] == 1
    assert document["findings"][0] == {
        "rule": "DP001", "severity": "error", "message": FINDINGS[0].message, "fix": "mount a named volume there",
        "service": "db", "volume": None, "path": "/var/lib/postgresql/data",
    }  # fmt: skip


def test_sarif_points_at_the_service_line(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    image: x\n  db:\n    image: postgres\nvolumes:\n  data: {}\n")
    rules = {"DP001": ("Database data not on a named volume", "error"), "DP015": ("Guard missing", "warning")}
    sarif = json.loads(render_sarif(FINDINGS, rules, [str(compose)], str(tmp_path)))
    assert sarif["version"] == "2.1.0"
    driver = sarif["runs"][0]["tool"]["driver"]
    assert [r["id"] for r in driver["rules"]] == ["DP001", "DP015"]
    assert driver["rules"][0]["defaultConfiguration"] == {"level": "error"}
    first, second = sarif["runs"][0]["results"]
    assert first["ruleId"] == "DP001" and first["level"] == "error" and first["ruleIndex"] == 0
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "compose.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 4},
    }
    assert second["level"] == "warning"
    assert second["locations"][0]["physicalLocation"]["region"] == {"startLine": 7}
