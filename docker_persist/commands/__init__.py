"""The command registry: an explicit dict, which PyInstaller can follow."""

from __future__ import annotations

from docker_persist.commands import version
from docker_persist.commands.base import Command

COMMANDS: dict[str, Command] = {command.name: command for command in (version.COMMAND,)}
