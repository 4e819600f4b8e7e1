"""CLI conventions: `help CMD`, hidden commands, NO_COLOR, Docker-worded usage errors, protect's refusals,
and the message for an engine socket the user may not use."""

from __future__ import annotations

import argparse
import errno
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_persist.actions.protect import select_named_volumes
from docker_persist.cli.commands import COMMANDS
from docker_persist.cli.context import Context
from docker_persist.cli.environment import Environment
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.main import main
from docker_persist.cli.provider import METADATA
from docker_persist.config.model import build_project
from docker_persist.errors import ConfigError, UsageError
from docker_persist.host.dockerconfig import Endpoint, GlobalOptions
from tests.helpers import fake_compose_environ, run_main

# What `docker compose config` prints for the project the tests use.
COMPOSE_CONFIG = """\
name: shop
services:
  db:
    image: busybox
    volumes:
      - type: volume
        source: db_data
        target: /data
      - type: volume
        source: cache
        target: /cache
      - type: volume
        source: scratch
        target: /scratch
        x-persist: false
volumes:
  db_data:
    name: shop_db_data
    x-persist: {}
  cache:
    name: shop_cache
    x-persist: false
  scratch:
    name: shop_scratch
"""


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """An empty Docker config whose Compose plugin answers `config` with COMPOSE_CONFIG."""
    return fake_compose_environ(tmp_path, COMPOSE_CONFIG)


class FakeEngine:
    """Answers inspect_volume for the volumes it has; records every name it is asked about."""

    def __init__(self, volumes: set[str]) -> None:
        self.volumes = volumes
        self.asked: list[str] = []

    def inspect_volume(self, name: str) -> object | None:
        self.asked.append(name)
        return object() if name in self.volumes else None


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    fake = FakeEngine({"shop_db_data", "shop_cache", "elsewhere"})
    monkeypatch.setattr(Context, "engine", property(lambda self: fake))
    yield fake


# --- 1. help COMMAND --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["backup", "restore", "check", "completion", "compose", "install-plugin"])
def test_help_command_is_the_command_help(name: str, environ: dict[str, str]) -> None:
    result = run_main(["help", name], environ)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage:  docker persist {name}")
    assert result == run_main([name, "--help"], environ)
    assert run_main(["persist", "help", name], environ) == result


def test_help_of_an_unknown_command_is_a_usage_error(environ: dict[str, str]) -> None:
    assert run_main(["help", "nope"], environ) == (
        2,
        "",
        "unknown command: docker persist nope\nSee 'docker persist --help'.\n",
    )
    typo = run_main(["help", "backp"], environ)
    assert typo == (
        2,
        "",
        "unknown command: docker persist backp\n\nDid you mean this?\n\tbackup\nSee 'docker persist --help'.\n",
    )
    assert run_main(["help", "backup", "restore"], environ) == (
        2,
        "",
        "\"docker persist help\" accepts at most 1 argument.\nSee 'docker persist --help'.\n",
    )


def test_help_alone_is_the_root_help(environ: dict[str, str]) -> None:
    assert run_main(["help"], environ) == run_main(["--help"], environ)
    assert run_main(["help"], environ).exit_code == 0


# --- 2. the hidden compose command -------------------------------------------------------------------


def test_compose_and_install_plugin_are_not_listed_but_run(environ: dict[str, str]) -> None:
    text = run_main(["--help"], environ).stdout
    listed = [line.split()[0] for line in text.split("Commands:\n")[1].split("\n\n")[0].splitlines()]
    assert "compose" not in listed and "install-plugin" not in listed
    assert listed == [e.name for e in COMMANDS.values() if e.listed]
    assert "completion" in listed and "backup" in listed
    metadata = run_main(["compose", "metadata"], environ)
    assert metadata.exit_code == 0, metadata.stderr
    assert json.loads(metadata.stdout) == METADATA


def test_unknown_commands_suggest_only_listed_ones(environ: dict[str, str]) -> None:
    result = run_main(["install-plugins"], environ)
    assert result.exit_code == 2
    assert "Did you mean" not in result.stderr


# --- 3. NO_COLOR ------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal_env(environ: dict[str, str]) -> Environment:
    return Environment(stdin=io.StringIO(), stdout=Terminal(), stderr=Terminal(), environ=environ)


@pytest.mark.parametrize(
    ("extra", "colour"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"NO_COLOR": "0"}, False), ({"NO_COLOR": ""}, True),
     ({"TERM": "dumb"}, False), ({"TERM": "xterm-256color"}, True)],
)  # fmt: skip
def test_colour_follows_no_color_and_the_terminal(extra: dict[str, str], colour: bool) -> None:
    env = terminal_env(extra)
    assert env.colour is colour
    assert env.stdout_isatty is colour
    assert Environment(stdout=io.StringIO(), environ=extra).colour is False  # not a terminal: never


@pytest.mark.parametrize("no_color", [None, "1"])
def test_check_prints_no_escape_under_no_color(no_color: str | None, environ: dict[str, str]) -> None:
    env = terminal_env({**environ, "NO_COLOR": no_color} if no_color else environ)
    code = main(["check", "--static"], env)
    out = env.stdout.getvalue()  # type: ignore[attr-defined]
    assert code in (0, 1), env.stderr.getvalue()  # type: ignore[attr-defined]
    assert "finding" in out
    if no_color:
        assert "\x1b" not in out and "\x1b" not in env.stderr.getvalue()  # type: ignore[attr-defined]
    else:
        assert "\x1b[" in out


def test_no_progress_line_on_a_dumb_terminal() -> None:
    from docker_persist.cli.commands.base import make_progress

    assert make_progress(Context(terminal_env({}), GlobalOptions())).enabled is True
    assert make_progress(Context(terminal_env({"NO_COLOR": "1"}), GlobalOptions())).enabled is True
    assert make_progress(Context(terminal_env({"TERM": "dumb"}), GlobalOptions())).enabled is False


# --- 4. usage errors in the Docker CLI's words ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backup", "--name"], "flag needs an argument: --name"),
        (["backup", "--name", "x", "--store"], "flag needs an argument: --store"),
        (["restore", "-i"], "flag needs an argument: 'i' in -i"),
        (["restore", "snap", "-yi"], "flag needs an argument: 'i' in -yi"),
        (["snapshots", "--format"], "flag needs an argument: --format"),
        (["backup", "--bogus"], "unknown flag: --bogus"),
        (["backup", "--bogus=1"], "unknown flag: --bogus"),
        (["verify", "-x"], "unknown shorthand flag: 'x' in -x"),
        (["restore", "-yz"], "unknown shorthand flag: 'z' in -yz"),
        (["forget", "--keep-last", "x"], 'invalid argument "x" for "--keep-last" flag: expected an integer'),
        (["schedule", "--metrics-port", "9x"], 'invalid argument "9x" for "--metrics-port" flag: expected an integer'),
        (["check", "--static=maybe"], 'invalid argument "maybe" for "--static" flag: expected true or false'),
        (["restore", "--yes=maybe"], 'invalid argument "maybe" for "-y, --yes" flag: expected true or false'),
        (["version", "extra"], '"docker persist version" accepts no arguments.'),
        (["restore", "a", "b"], '"docker persist restore" requires at most 1 argument.'),
        (["plan", "up", "down"], '"docker persist plan" requires at most 1 argument.'),
        (["completion"], '"docker persist completion" requires exactly 1 argument: bash, zsh or fish.'),
        (["completion", "tcsh"], 'invalid argument "tcsh" for "docker persist completion": expected bash, zsh or fish'),
    ],
)
def test_usage_errors_are_worded_as_docker_words_them(args: list[str], message: str, environ: dict[str, str]) -> None:
    command = f"docker persist {args[0]}"
    assert run_main(args, environ) == (2, "", f"{message}\nSee '{command} --help'.\n")


def parser() -> DockerArgumentParser:
    parser = DockerArgumentParser("docker persist demo", "A demo")
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("-n", "--name", metavar="string")
    parser.add_argument("--mode", choices=["fast", "safe"])
    parser.add_argument("--count", type=int)
    parser.add_argument("--to", required=True)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true")
    group.add_argument("--latest", action="store_true")
    return parser


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "x", "-n"], "flag needs an argument: 'n' in -n"),
        (["--to", "x", "--name"], "flag needs an argument: --name"),
        (["--to", "x", "--mode", "slow"], 'invalid argument "slow" for "--mode" flag: expected one of "fast", "safe"'),
        (["--to", "x", "--count", "many"], 'invalid argument "many" for "--count" flag: expected an integer'),
        (["a"], 'required flag(s) "to" not set'),
        (["--to", "x", "--all", "--latest"],
         "if any flags in the group [latest all] are set none of the others can be; [latest all] were all set"),
        (["--to", "x", "--all=yes"], 'invalid argument "yes" for "--all" flag: expected true or false'),
    ],
)  # fmt: skip
def test_every_argparse_error_is_translated(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parser().parse_command_args(args)
    assert str(caught.value) == message
    assert caught.value.command == "docker persist demo"
    assert caught.value.exit_status == 2


def test_flags_go_between_arguments_and_booleans_take_true_or_false() -> None:
    parsed = parser().parse_command_args(["a", "--to", "x", "b", "--all=true", "--latest=false", "-nfoo"])
    assert parsed == argparse.Namespace(
        help=False, names=["a", "b"], name="foo", mode=None, count=None, to="x", all=True, latest=False
    )


# --- 5. protect: unknown and disposable volumes -----------------------------------------------------


def project() -> Any:
    import yaml

    return build_project(yaml.safe_load(COMPOSE_CONFIG), "/srv/shop")


def test_protect_names_resolve_to_project_volumes_or_engine_volumes() -> None:
    engine = FakeEngine({"shop_db_data", "elsewhere"})
    chosen = select_named_volumes(project(), ["db_data", "shop_db_data", "elsewhere"], "protect", engine.inspect_volume)
    assert chosen == [("db_data", "shop_db_data"), ("db_data", "shop_db_data"), ("elsewhere", "elsewhere")]


def test_protect_of_an_unknown_volume_lists_the_precious_ones() -> None:
    engine = FakeEngine(set())
    with pytest.raises(ConfigError) as caught:
        select_named_volumes(project(), ["db_data", "nope"], "protect", engine.inspect_volume)
    assert str(caught.value) == (
        "volume 'nope' does not exist: project 'shop' has no volume 'nope' and the engine has none by that name; "
        "the precious volumes are: db_data"
    )
    with pytest.raises(ConfigError, match=r"^volume 'shop_db_data' does not exist \(project volume 'db_data'\)"):
        select_named_volumes(project(), ["db_data"], "protect", engine.inspect_volume)


@pytest.mark.parametrize(
    ("name", "where"), [("cache", "volumes.cache"), ("scratch", "services.db.volumes, target /scratch")]
)
def test_protect_refuses_a_volume_declared_disposable(name: str, where: str) -> None:
    engine = FakeEngine({"shop_cache", "shop_scratch"})
    with pytest.raises(ConfigError) as caught:
        select_named_volumes(project(), [name], "protect", engine.inspect_volume)
    assert str(caught.value) == (
        f"volume {name!r} is declared disposable (`x-persist: false` at {where}), so it is not protected: "
        "a guard would keep what the project says may be thrown away. Remove that `x-persist: false` to protect it"
    )
    assert engine.asked == []
    # Taking a guard off is always allowed.
    assert select_named_volumes(project(), [name], "unprotect", engine.inspect_volume) == [(name, f"shop_{name}")]


def test_protect_command_refuses_disposable_and_unknown_volumes(environ: dict[str, str], engine: FakeEngine) -> None:
    disposable = run_main(["protect", "cache"], environ)
    assert disposable.exit_code == 2
    assert disposable.stderr.startswith(
        "Error: volume 'cache' is declared disposable (`x-persist: false` at volumes.cache)"
    )
    assert engine.asked == []
    unknown = run_main(["protect", "nope"], environ)
    assert unknown == (
        2,
        "",
        "Error: volume 'nope' does not exist: project 'shop' has no volume 'nope' and the engine has none by that "
        "name; the precious volumes are: db_data\n",
    )


# --- 7. an engine socket the user may not use ---------------------------------------------------------


@pytest.fixture
def denied_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real socket file, whose connect fails with EACCES as for a user outside the docker group."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if address == str(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield path
    server.close()


def test_permission_denied_on_the_socket_says_what_to_do(denied_socket: Path, environ: dict[str, str]) -> None:
    import grp
    import os
    import pwd

    result = run_main(["version"], {**environ, "DOCKER_HOST": f"unix://{denied_socket}"})
    assert result.exit_code == 1
    user = pwd.getpwuid(os.getuid()).pw_name
    owner = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    assert result.stderr == (
        "Error: permission denied while trying to connect to the Docker engine socket at "
        f'unix://{denied_socket} (context "default", chosen by DOCKER_HOST): user {user} is not allowed to use '
        f"{denied_socket} (owned by {owner}, mode rwxr-xr-x). Either:\n"
        "  - add yourself to the docker group: `sudo usermod -aG docker $USER`, then log out and back in "
        "(or run `newgrp docker`); mind that the docker group grants root-level access to this machine;\n"
        "  - or use an engine you may use: rootless Docker (https://docs.docker.com/engine/security/rootless/), "
        "or another context: `docker context ls`, then `docker context use NAME` (or --context NAME).\n"
    )
    assert "Is the docker daemon running?" not in result.stderr


def test_permission_denied_from_the_transport(denied_socket: Path) -> None:
    from docker_persist.engine.transport import HTTPTransport
    from docker_persist.errors import EngineError

    endpoint = Endpoint("default", f"unix://{denied_socket}", None, "default")
    with pytest.raises(EngineError) as caught:
        HTTPTransport(endpoint, 5.0, "1.41").request("GET", "/version", versioned=False)
    assert str(caught.value).startswith(
        f"permission denied while trying to connect to the Docker engine socket at unix://{denied_socket}: user "
    )
    assert "sudo usermod -aG docker $USER" in str(caught.value)
