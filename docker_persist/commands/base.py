"""What a subcommand is: its help text, its flags, and the function that runs it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple

from docker_persist.context import Context
from docker_persist.errors import UsageError
from docker_persist.helpformat import ROOT, DockerArgumentParser

FORMATS = ("pretty", "json")


class Command(NamedTuple):
    """A subcommand. `run` returns the exit code; it raises PersistError to fail."""

    name: str
    summary: str
    add_arguments: Callable[[DockerArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int]
    usage: str = "[OPTIONS]"

    def make_parser(self) -> DockerArgumentParser:
        """Return the parser for this subcommand, with Docker-style help."""
        parser = DockerArgumentParser(f"{ROOT} {self.name}", self.summary, self.usage)
        self.add_arguments(parser)
        return parser


def add_format_flag(parser: DockerArgumentParser) -> None:
    """Add `--format pretty|json`, for commands whose output is data."""
    parser.add_argument(
        "--format", default="pretty", metavar="string", help='Format the output: "pretty" or "json" (default "pretty")'
    )


def check_format(args: argparse.Namespace, command: str) -> str:
    """Return the validated `--format` value. Raise UsageError for an unknown one."""
    value: str = args.format
    if value not in FORMATS:
        raise UsageError(f'invalid --format "{value}": expected "pretty" or "json"', command=f"{ROOT} {command}")
    return value
