"""Render `check` findings: a human table, JSON, or SARIF 2.1.0 for code scanning."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from docker_persist import __version__
from docker_persist.core.findings import Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
INFORMATION_URI = "https://github.com/docker-persist/docker-persist"


def summarize(findings: Sequence[Finding]) -> dict[str, int]:
    """Return the count of findings per severity."""
    return {severity: sum(1 for f in findings if f.severity == severity) for severity in ("error", "warning", "info")}


def render_pretty(project: str, findings: Sequence[Finding], colour: bool = False) -> str:
    """Return the findings as a table a person reads, one finding and its fix per entry."""
    counts = summarize(findings)
    if not findings:
        return f"Project {project}: no findings.\n"
    paint = {"error": "\033[31m", "warning": "\033[33m", "info": "\033[36m"} if colour else {}
    reset = "\033[0m" if colour else ""
    width = max(len(f.severity) for f in findings)
    lines = [f"Project {project}:", ""]
    for finding in findings:
        severity = finding.severity.ljust(width)
        lines.append(f"{paint.get(finding.severity, '')}{severity}{reset}  {finding.rule}  {finding.message}")
        lines.append(f"{' ' * width}         fix: {finding.fix}")
    parts = [f"{n} {name}{'s' if n != 1 else ''}" for name, n in counts.items() if n]
    lines += ["", f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: {', '.join(parts)}", ""]
    return "\n".join(lines)


def render_json(project: str, findings: Sequence[Finding]) -> str:
    """Return the findings as a JSON document."""
    document = {"project": project, "summary": summarize(findings), "findings": [f.as_dict() for f in findings]}
    return json.dumps(document, indent=2) + "\n"


def _locate(finding: Finding, files: Sequence[str]) -> tuple[str, int] | None:
    """Return (file, line) of the service or volume a finding is about, best effort."""
    wanted = [name for name in (finding.service, finding.volume) if name]
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for name in wanted:
            pattern = re.compile(rf"^\s+{re.escape(name)}\s*:")
            for number, line in enumerate(lines, start=1):
                if pattern.match(line):
                    return path, number
    return (files[0], 1) if files and files[0] != "-" else None


def render_sarif(
    findings: Sequence[Finding], rules: Mapping[str, tuple[str, str]], files: Sequence[str], base: str
) -> str:
    """Return the findings as SARIF 2.1.0. `rules` maps a rule ID to (title, default severity)."""
    used = sorted({f.rule for f in findings} | set(rules))
    driver_rules = [
        {
            "id": rule_id,
            "name": rules.get(rule_id, (rule_id, "warning"))[0],
            "shortDescription": {"text": rules.get(rule_id, (rule_id, "warning"))[0]},
            "defaultConfiguration": {"level": SARIF_LEVEL[rules.get(rule_id, (rule_id, "warning"))[1]]},
        }
        for rule_id in used
    ]
    results: list[dict[str, Any]] = []
    for finding in findings:
        result: dict[str, Any] = {
            "ruleId": finding.rule,
            "ruleIndex": used.index(finding.rule),
            "level": SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.message}. Fix: {finding.fix}"},
        }
        location = _locate(finding, files)
        if location is not None:
            uri = os.path.relpath(location[0], base).replace(os.sep, "/")
            result["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": location[1]},
                    }
                }
            ]
        results.append(result)
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "docker-persist",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": driver_rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"
