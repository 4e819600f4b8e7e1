"""Test helpers shared by the unit and engine tiers."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def fake_compose_environ(folder: Path, compose_config: str) -> dict[str, str]:
    """Return an environment of its own under `folder`: an empty Docker config whose Compose plugin
    answers `config` with `compose_config`, and the cache and state there too."""
    config = folder / "docker"
    (config / "cli-plugins").mkdir(parents=True)
    (folder / "compose.yaml").write_text("# the fake Compose plugin prints the project\n")
    (folder / "config.yaml").write_text(compose_config)
    compose = config / "cli-plugins" / "docker-compose"
    compose.write_text(f"#!/bin/sh\ncat {folder / 'config.yaml'}\n")
    compose.chmod(0o755)
    return {
        "HOME": str(folder),
        "DOCKER_CONFIG": str(config),
        "XDG_CACHE_HOME": str(folder / "cache"),
        "XDG_STATE_HOME": str(folder / "state"),
        "COMPOSE_FILE": str(folder / "compose.yaml"),
        "PATH": "/usr/bin:/bin",
    }
