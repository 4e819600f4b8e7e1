"""The Compose provider: `docker-persist compose [--project-name=P] metadata|up|down [--opt=v...] SERVICE`.

Compose (2.36+) runs it for a service with `provider: {type: persist}` that the annotated
services depend on: `up` after Compose created the volumes and before the dependants
start; `down` after the dependants' containers are removed and before the volumes are.
It answers with JSON lines on stdout (`info`, `error`, `debug`; never `setenv` on
`down`, which crashes Compose 2.40.3). Exit 1 after an `error` makes Compose stop, so
`docker compose down -v` keeps the volumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import NamedTuple, TextIO

from docker_persist.config.project import ComposeOptions
from docker_persist.core.composeargs import ComposeCommand, parse_compose_command, project_options

METADATA = {
    "description": "docker-persist: restore and guard x-persist volumes on up; back them up before down",
    "up": {"parameters": []},
    "down": {"parameters": []},
}


class Invocation(NamedTuple):
    """How the user ran Compose, read from the parent process when the system lets us."""

    cwd: str | None
    command: ComposeCommand

    @property
    def options(self) -> ComposeOptions:
        """The project flags the user gave Compose."""
        return project_options(self.command.compose)


def read_parent_invocation(pid: int | None = None) -> Invocation | None:
    """Return the parent Compose's working dir and command line from /proc, or None where unreadable."""
    parent = pid if pid is not None else os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            argv = [a.decode(errors="surrogateescape") for a in handle.read().split(b"\0") if a]
        cwd = os.readlink(f"/proc/{parent}/cwd")
    except OSError:
        return None
    if not argv:
        return None
    return Invocation(cwd, parse_compose_command(argv))


def removes_volumes(invocation: Invocation | None) -> bool | None:
    """Return whether the parent `down` removes volumes: True or False, or None when it cannot be told
    (no /proc, a flag this version does not know): the down then backs up as if -v were given, and
    releases no guard."""
    if invocation is None:
        return None
    return invocation.command.removes_volumes()


class Messages:
    """The JSON-lines channel to Compose."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def send(self, kind: str, message: str) -> None:
        self.stream.write(json.dumps({"type": kind, "message": message}) + "\n")
        self.stream.flush()

    def info(self, message: str) -> None:
        self.send("info", message)


def split_provider_args(args: Sequence[str]) -> tuple[str | None, str | None, dict[str, str], str | None]:
    """Return (project name, command, options, service) from the provider's arguments.

    Accepts `--project-name=P` and, as Compose before 2.40 passed it, `--project-name P`.
    """
    project = command = service = None
    options: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--project-name"):
            if "=" in arg:
                project = arg.partition("=")[2]
            elif index + 1 < len(args):
                index += 1
                project = args[index]
        elif arg.startswith("--") and command is not None:
            key, _, value = arg[2:].partition("=")
            options[key] = value
        elif command is None:
            command = arg
        else:
            service = arg
        index += 1
    return project, command, options, service
