"""Test helpers shared by the unit and engine tiers."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from docker_persist.cli.environment import Environment
from docker_persist.cli.main import main


class Result(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


def run_main(args: Sequence[str], environ: Mapping[str, str] | None = None) -> Result:
    """Run the real `main` with captured streams and the given environment."""
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(), stdout=stdout, stderr=stderr, environ=dict(environ or {}))
    code = main(list(args), env)
    return Result(int(code), stdout.getvalue(), stderr.getvalue())
