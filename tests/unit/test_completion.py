"""Shell completion: the scripts `completion bash|zsh|fish` prints, and the `__complete` protocol they and the
Docker CLI use."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from docker_persist.actions import catalog
from docker_persist.actions.catalog import Catalog, Damaged
from docker_persist.cli.commands import COMMANDS
from docker_persist.core.manifest import Manifest
from tests.helpers import fake_compose_environ, run_main

ROOT = Path(__file__).resolve().parents[2]

COMPOSE_CONFIG = """\
name: shop
services:
  db:
    image: postgres:16
    volumes:
      - type: volume
        source: db_data
        target: /var/lib/postgresql/data
  web:
    image: nginx
volumes:
  db_data:
    name: shop_db_data
    x-persist: {}
  cache:
    name: shop_cache
"""

LISTED = [e.name for e in COMMANDS.values() if e.listed]


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """An empty Docker config whose Compose plugin answers `config` with COMPOSE_CONFIG."""
    return fake_compose_environ(tmp_path, COMPOSE_CONFIG)


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every store hold snapshots `first` and `second` and a damaged `broken`; record the projects asked."""
    asked: list[str] = []
    created = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)

    def read_catalog(store: Any, project: str) -> Catalog:
        asked.append(project)
        manifests = tuple(
            Manifest(name=n, project=project, created=created, tool_version="0", reason="manual", volumes=())
            for n in ("first", "second")
        )
        return Catalog(manifests, (Damaged("broken", "unreadable manifest"),))

    monkeypatch.setattr(catalog, "read_catalog", read_catalog)
    return asked


def complete(args: list[str], environ: dict[str, str]) -> list[str]:
    result = run_main(["__complete", *args], environ)
    assert result.exit_code == 0
    assert result.stderr == ""
    return result.stdout.splitlines()


# --- the __complete protocol ---------------------------------------------------------------------


def test_commands_complete_with_their_summaries(environ: dict[str, str]) -> None:
    assert complete(["persist", "ba"], environ) == ["backup\tTake a snapshot of the project's volumes", ":4"]
    # Docker's bash completion passes the words after `docker persist` to __completeNoDesc.
    assert run_main(["__completeNoDesc", "re"], environ) == (0, "restore\nrecover\n:4\n", "")
    everything = [line.split("\t")[0] for line in complete(["persist", ""], environ)]
    assert everything == [*LISTED, "help", ":4"]
    assert "compose" not in everything and "install-plugin" not in everything and "__complete" not in everything


def test_flags_and_their_values(environ: dict[str, str]) -> None:
    assert complete(["persist", "backup", "--na"], environ) == [
        "--name\tSnapshot name (default: <UTC time>-manual)",
        ":4",
    ]
    assert complete(["persist", "backup", "--format", ""], environ) == ["pretty", "json", ":4"]
    assert complete(["persist", "check", "--format="], environ) == [
        "--format=pretty",
        "--format=json",
        "--format=sarif",
        ":4",
    ]
    assert complete(["persist", "backup", "--compression", "z"], environ) == ["zstd", ":4"]
    assert complete(["persist", "schedule", "--install", ""], environ) == ["systemd", "cron", ":4"]
    assert complete(["persist", "backup", "--file", ""], environ) == [":0"]  # the shell's own: files
    assert complete(["persist", "backup", "--store", ""], environ) == [":16"]  # folders
    assert complete(["persist", "restore", "--to", ""], environ) == [":4"]  # a new volume's name: nothing to offer
    assert complete(["persist", "--log-level", "w"], environ) == ["warn", ":4"]
    assert "--context\tName of the context to use to connect to the daemon" in complete(["persist", "--con"], environ)


def test_arguments_by_command(environ: dict[str, str]) -> None:
    assert complete(["persist", "plan", ""], environ) == ["up", "down", ":4"]
    assert complete(["persist", "plan", "up", ""], environ) == [":4"]  # plan takes one
    assert complete(["persist", "completion", "z"], environ) == ["zsh", ":4"]
    assert complete(["persist", "help", "unp"], environ) == ["unpin\tLet retention policies forget snapshots again",
                                                           "unprotect\tRemove the guards of volumes", ":4"]  # fmt: skip
    assert complete(["persist", "version", ""], environ) == [":4"]


def test_up_and_down_offer_the_compose_flags_they_pass_on(environ: dict[str, str]) -> None:
    assert complete(["persist", "up", "--det"], environ) == ["--detach\tdocker compose up --detach", ":4"]
    assert complete(["persist", "up", "--dry"], environ) == [
        "--dry-run\tPrint the plan; change nothing, run nothing",
        ":4",
    ]
    assert complete(["persist", "down", "-v"], environ) == ["-v\tdocker compose down --volumes", ":4"]
    assert complete(["persist", "up", "-d", "w"], environ) == ["web\tnginx", ":4"]  # up's services
    assert complete(["persist", "up", "--timeout", ""], environ) == [":4"]


def test_volume_and_service_names_come_from_the_project(environ: dict[str, str]) -> None:
    assert complete(["persist", "backup", ""], environ) == ["db_data\tshop_db_data", "cache\tshop_cache", ":4"]
    assert complete(["persist", "protect", "db_data", "c"], environ) == ["cache\tshop_cache", ":4"]
    assert complete(["persist", "restore", "--volume", ""], environ) == [
        "db_data\tshop_db_data",
        "cache\tshop_cache",
        ":4",
    ]
    assert complete(["persist", "backup", "--service", ""], environ) == ["db\tpostgres:16", "web\tnginx", ":4"]
    # The project flags before the command and after it are the command's.
    other = Path(environ["HOME"]) / "other.yaml"
    other.write_text(COMPOSE_CONFIG.replace("db_data", "other_data"))
    compose = Path(environ["DOCKER_CONFIG"]) / "cli-plugins" / "docker-compose"
    compose.write_text(
        f'#!/bin/sh\ncase "$*" in *other.yaml*) cat {other};; *) cat {environ["HOME"]}/config.yaml;; esac\n'
    )
    assert complete(["persist", "-f", str(other), "protect", "o"], environ) == ["other_data\tshop_other_data", ":4"]
    assert complete(["persist", "protect", "--file", str(other), "o"], environ) == ["other_data\tshop_other_data", ":4"]


def test_snapshot_names_come_from_the_store(environ: dict[str, str], snapshots: list[str]) -> None:
    assert complete(["persist", "restore", ""], environ) == [
        "first\t2026-11-30T12:00:00Z manual",
        "second\t2026-11-30T12:00:00Z manual",
        "broken\tdamaged",
        ":4",
    ]
    assert snapshots == ["shop"]
    assert complete(["persist", "restore", "first", ""], environ) == [":4"]  # restore takes one snapshot
    assert complete(["persist", "forget", "first", "s"], environ) == ["second\t2026-11-30T12:00:00Z manual", ":4"]
    assert run_main(["__completeNoDesc", "pin", "f"], environ) == (0, "first\n:4\n", "")
    complete(["persist", "restore", "--from-project", "billing", ""], environ)
    assert snapshots[-1] == "billing"


def test_a_failure_offers_nothing_and_says_nothing(environ: dict[str, str], tmp_path: Path) -> None:
    (Path(environ["DOCKER_CONFIG"]) / "cli-plugins" / "docker-compose").write_text(
        "#!/bin/sh\necho broken >&2\nexit 1\n"
    )
    assert run_main(["__complete", "persist", "restore", ""], environ) == (0, ":4\n", "")
    assert run_main(["__complete", "persist", "backup", ""], environ) == (0, ":4\n", "")
    assert run_main(["__complete", "persist", "nope", ""], environ) == (0, ":4\n", "")
    assert run_main(["__completeNoDesc"], environ) == (0, "".join(f"{n}\n" for n in [*LISTED, "help"]) + ":4\n", "")


# --- the scripts --------------------------------------------------------------------------------


def script(shell: str, environ: dict[str, str]) -> str:
    result = run_main(["completion", shell], environ)
    assert result.exit_code == 0 and result.stderr == ""
    return result.stdout


def backup_flags() -> list[str]:
    entry = COMMANDS["backup"]
    parser = entry.load().make_parser(entry.name, entry.summary)
    return [o for action in parser._actions for o in action.option_strings]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_name_every_listed_command_and_the_flags_of_backup(shell: str, environ: dict[str, str]) -> None:
    text = script(shell, environ)
    for name in [*LISTED, "help"]:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
    for flag in backup_flags():
        fish = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"  # complete -c ... -s f -l file
        spelled = fish if shell == "fish" else flag
        assert re.search(rf"(?<![\w-]){re.escape(spelled)}(?![\w-])", text), flag
    flags = {"--name", "--service", "--compression", "--no-quiesce", "--pin", "--store", "--format", "--file", "-f"}
    assert flags <= set(backup_flags())
    for hidden in ("install-plugin", "__completeNoDesc persist"):
        assert hidden not in text


def test_the_bash_script_lists_commands_and_flags_where_bash_reads_them(environ: dict[str, str]) -> None:
    text = script("bash", environ)
    commands = re.search(r"compgen -W '([^']*)' -- \"\$cur\"\)\n        fi\n        return 0", text)
    assert commands is not None
    assert commands.group(1).split() == [*LISTED, "help"]
    backup = re.search(r"^        backup\) flags='([^']*)' ;;$", text, re.MULTILINE)
    assert backup is not None and backup.group(1).split() == backup_flags()


def test_the_help_says_how_to_load_the_script(environ: dict[str, str]) -> None:
    text = run_main(["completion", "--help"], environ).stdout
    assert text.startswith("Usage:  docker persist completion bash|zsh|fish\n")
    for line in (
        "source <(docker-persist completion bash)",
        "docker-persist completion fish | source",
        'docker-persist completion zsh > "${fpath[1]}/_docker-persist"',
        "docker-persist __complete",
    ):
        assert line in text


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_shell_accepts_the_script(shell: str, environ: dict[str, str], tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / f"completion.{shell}"
    path.write_text(script(shell, environ))
    done = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def program(tmp_path: Path) -> Path:
    """A `docker-persist` on PATH that runs this checkout."""
    folder = tmp_path / "bin"
    folder.mkdir()
    path = folder / "docker-persist"
    path.write_text(f'#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m docker_persist "$@"\n')
    path.chmod(0o755)
    return folder


def test_bash_completes_through_the_script(environ: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "completion.bash"
    path.write_text(script("bash", environ))
    probe = (
        f"source {path}\n"
        't() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _docker_persist; echo "${COMPREPLY[*]}"; }\n'
        "t docker-persist ba\n"
        "t docker-persist backup --na\n"
        "t docker-persist backup ''\n"
        "t docker-persist -p shop backup --format ''\n"
        "t docker-persist help comp\n"
        "complete -p docker-persist\n"
    )
    env = {**environ, "PATH": f"{program(tmp_path)}:/usr/bin:/bin"}
    done = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "backup",
        "--name",
        "db_data cache",
        "pretty json",
        "completion",
        "complete -F _docker_persist docker-persist",
    ]


def test_fish_completes_through_the_script(environ: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    path = tmp_path / "completion.fish"
    path.write_text(script("fish", environ))
    probe = (
        f"source {path}\n"
        "complete -C 'docker-persist ba'\n"
        "complete -C 'docker-persist backup --format '\n"
        "complete -C 'docker-persist protect '\n"
    )
    env = {**environ, "PATH": f"{program(tmp_path)}:/usr/bin:/bin"}
    done = subprocess.run(["fish", "--no-config", "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert lines == ["backup", "json", "pretty", "cache", "db_data"]
