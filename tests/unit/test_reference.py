"""The x-persist reference (compose-extensions/README.md) tells the truth about every default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from docker_persist.config.model import ProjectPolicy, ServicePolicy, VolumePolicy
from docker_persist.core.rules import SCHEDULED_MAX_AGE
from docker_persist.units import DEFAULT_MAX_AGE, DEFAULT_VERIFY_MAX_AGE

REFERENCE = Path(__file__).resolve().parents[2] / "compose-extensions" / "README.md"

# Keys whose model default is None and whose effective default the check rules apply.
APPLIED = {
    "max_age": f"`{DEFAULT_MAX_AGE}`, or `{SCHEDULED_MAX_AGE}` with a `schedule`",
    "verify_max_age": f"`{DEFAULT_VERIFY_MAX_AGE}`",
}


def documented(section: str) -> dict[str, str]:
    """Return key -> the Default column of the key table in the section titled `section`."""
    text = REFERENCE.read_text()
    start = text.index(f"\n## {section}\n")
    end = min(i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1), len(text)) if i > 0)
    rows = {}
    for line in text[start:end].splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]  # an escaped \| stays in its cell
        if len(cells) == 4 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[2]
    assert rows, section
    return rows


def as_documented(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple) and not value:
        return "`[]`"
    return f"`{value}`"


@pytest.mark.parametrize(
    ("section", "policy", "inherited"),
    [
        ("Project `x-persist`", ProjectPolicy(), ""),
        ("Service `x-persist`", ServicePolicy(), ""),
        ("Volume `x-persist`", VolumePolicy(), "the project's "),
    ],
)
def test_every_documented_default_is_the_model_s(section: str, policy: Any, inherited: str) -> None:
    rows = documented(section)
    fields = {f.name for f in dataclasses.fields(policy)}
    assert set(rows) == fields, f"{section}: documented {sorted(rows)}, the model has {sorted(fields)}"
    for key, default in rows.items():
        value = getattr(policy, key)
        if key == "store":
            assert value is None and "user's data directory" in default
        elif key in APPLIED:
            assert value is None
            expected = f"{inherited}`{key}` ({APPLIED[key]})" if inherited else APPLIED[key]
            assert default == expected, (section, key)
        elif inherited and key in ("schedule", "notify"):
            assert value is None and default.startswith("the project's")
        else:
            assert default == as_documented(value), (section, key, value)
