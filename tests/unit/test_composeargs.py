"""Compose's command line, read as pflag reads it: the table the provider and the wrappers rely on."""

from __future__ import annotations

import pytest

from docker_persist.config.project import ComposeOptions
from docker_persist.core.composeargs import (
    parse_compose_command,
    parse_subcommand,
    project_options,
    split_project_flags,
)
from docker_persist.errors import UsageError

PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"

# (argv of the Compose process as /proc shows it, does the down remove volumes: True, False or None = unknown)
DOWN_LINES = [
    ([PLUGIN, "compose", "down"], False),
    ([PLUGIN, "compose", "down", "-v"], True),
    ([PLUGIN, "compose", "down", "--volumes"], True),
    ([PLUGIN, "compose", "down", "--volumes=true"], True),
    ([PLUGIN, "compose", "down", "--volumes=false"], False),
    ([PLUGIN, "compose", "down", "--volumes=0"], False),
    ([PLUGIN, "compose", "down", "-v=false"], False),
    ([PLUGIN, "compose", "down", "-vt0"], True),  # -v -t 0
    ([PLUGIN, "compose", "down", "-tv"], False),  # -t v: a (bad) timeout, no -v
    ([PLUGIN, "compose", "down", "-t", "0", "-v"], True),
    ([PLUGIN, "compose", "down", "-t0", "--remove-orphans"], False),
    ([PLUGIN, "compose", "down", "--volume"], True),  # deprecated, normalized by Compose
    ([PLUGIN, "compose", "down", "-v", "--volumes=false"], False),  # the last one wins
    ([PLUGIN, "compose", "down", "db", "-v"], True),  # flags after arguments
    ([PLUGIN, "compose", "down", "--", "-v"], False),  # after --, -v is a service name
    ([PLUGIN, "compose", "down", "--rmi", "all", "-v"], True),
    ([PLUGIN, "compose", "down", "--rmi=local"], False),
    ([PLUGIN, "--log-level", "info", "compose", "down"], False),  # Docker's global flags before `compose`
    ([PLUGIN, "-l", "debug", "compose", "down", "-v"], True),
    ([PLUGIN, "--context", "compose", "compose", "down"], False),  # a context named "compose"
    ([PLUGIN, "-D", "-H", "unix:///x.sock", "compose", "down", "-v"], True),
    ([PLUGIN, "compose", "-p", "shop", "-f", "a.yml", "--ansi", "never", "down", "-v"], True),
    ([PLUGIN, "compose", "--project-name=shop", "--progress", "plain", "down"], False),
    ([PLUGIN, "compose", "--dry-run", "down", "-v"], True),
    ([PLUGIN, "compose", "--parallel", "2", "down", "-v"], True),
    ([PLUGIN, "down", "-v"], True),  # standalone docker-compose
    ([PLUGIN, "-p", "shop", "down"], False),
    ([PLUGIN, "compose", "down", "--dryrun"], None),  # unknown flag: cannot be read
    ([PLUGIN, "compose", "down", "-x"], None),
    ([PLUGIN, "compose", "down", "-t"], None),  # a flag without its value
    ([PLUGIN, "compose", "down", "--volumes=maybe"], None),
    ([PLUGIN, "compose", "--bogus", "down", "-v"], None),
    ([PLUGIN, "compose", "up", "-d"], None),  # not a down at all
    ([PLUGIN, "compose"], None),
]


@pytest.mark.parametrize(("argv", "removes"), DOWN_LINES, ids=[" ".join(a[1:]) for a, _ in DOWN_LINES])
def test_removes_volumes(argv: list[str], removes: bool | None) -> None:
    assert parse_compose_command(argv).removes_volumes() is removes


def test_the_project_flags_of_a_compose_line() -> None:
    command = parse_compose_command(
        [PLUGIN, "--context", "x", "compose", "-f", "a.yml", "--file=b.yml", "-pshop", "--workdir", "/srv",
         "--profile", "p1", "--env-file", ".env.prod", "down"]
    )  # fmt: skip
    assert command.docker.last("context") == "x"
    assert project_options(command.compose) == ComposeOptions(
        files=("a.yml", "b.yml"), project_name="shop", project_directory="/srv", profiles=("p1",),
        env_files=(".env.prod",),
    )  # fmt: skip


def test_up_flags_and_services() -> None:
    command = parse_subcommand("up", ["-d", "--wait", "--scale", "web=2", "web", "--timeout=5", "db", "--y"])
    assert command.flags.readable
    assert command.arguments == ["web", "db"]
    assert command.flags.values["scale"] == ["web=2"] and command.flags.last("timeout") == "5"
    assert command.flags.boolean("yes") is True and command.flags.boolean("detach") is True


def test_an_unknown_flag_is_named() -> None:
    command = parse_subcommand("down", ["-v", "--dryrun", "-q"])
    assert command.flags.unknown == ["--dryrun", "-q"]
    assert not command.readable and command.removes_volumes() is None


def test_split_project_flags_stops_at_the_first_other_word() -> None:
    options, rest = split_project_flags(["-f", "a.yml", "-pshop", "--profile=x", "check", "-f", "b.yml"])
    assert options == ComposeOptions(files=("a.yml",), project_name="shop", profiles=("x",))
    assert rest == ["check", "-f", "b.yml"]
    options, rest = split_project_flags(["--context", "x", "check"])
    assert options == ComposeOptions() and rest == ["--context", "x", "check"]
    with pytest.raises(UsageError, match="flag needs an argument"):
        split_project_flags(["-p"])
