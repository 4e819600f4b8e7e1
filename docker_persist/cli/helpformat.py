"""Argument parsing with Docker's help style and Docker's usage errors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from docker_persist.errors import UsageError

ROOT = "docker persist"


class DockerArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError and formats help as the Docker CLI does."""

    def __init__(self, command: str, summary: str, usage: str = "[OPTIONS]", epilog: str = "") -> None:
        super().__init__(prog=command, add_help=False, allow_abbrev=False)
        self.command = command
        self.summary = summary
        self.usage_tail = usage
        self.docker_epilog = epilog
        self.add_argument("-h", "--help", action="store_true", help="Print usage")

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            words = message.removeprefix("unrecognized arguments: ").split()
            flags = [w for w in words if w.startswith("-")]
            message = f"unknown flag: {flags[0]}" if flags else f'"{self.command}" accepts no argument {words[0]!r}'
        raise UsageError(message, command=self.command)

    def format_help(self) -> str:
        lines = [f"Usage:  {self.command} {self.usage_tail}".rstrip(), "", self.summary, ""]
        rows = [
            (_format_flag(a), a.help or "") for a in self._actions if a.option_strings and a.help != argparse.SUPPRESS
        ]
        if rows:
            lines.append("Options:")
            lines += _columns(rows)
            lines.append("")
        if self.docker_epilog:
            lines += [self.docker_epilog, ""]
        return "\n".join(lines)

    def parse_command_args(self, args: Sequence[str], passthrough: bool = False) -> argparse.Namespace:
        """Parse `args`; a `-h/--help` anywhere wins over every other error.

        With passthrough, arguments this parser does not know are kept in `.passthrough`
        (for `docker compose`) instead of being refused.
        """
        if "-h" in args or "--help" in args:
            namespace = argparse.Namespace(help=True)
            return namespace
        if passthrough:
            parsed, rest = self.parse_known_args(list(args))
            parsed.passthrough = rest
            return parsed
        return self.parse_args(list(args))


def _format_flag(action: argparse.Action) -> str:
    shorts = [o for o in action.option_strings if not o.startswith("--")]
    longs = [o for o in action.option_strings if o.startswith("--")]
    text = (f"{shorts[0]}, " if shorts else "    ") + (longs[0] if longs else "")
    if action.nargs != 0:
        text += f" {action.metavar or 'string'}"
    return text


def _columns(rows: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(left) for left, _ in rows)
    return [f"  {left.ljust(width)}   {right}".rstrip() for left, right in rows]


def format_command_list(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Return the "Commands:" block rows, aligned as the Docker CLI aligns them."""
    width = max(11, max(len(name) for name, _ in rows) + 1)
    return [f"  {name.ljust(width)}{summary}" for name, summary in rows]
