"""The real `main`, with injected streams: help, errors, exit codes, and `version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docker_persist import __version__
from docker_persist.plugin import METADATA_JSON
from tests.fakeengine import FakeEngine
from tests.helpers import run_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """An environment with an empty Docker config and cache, so nothing leaks in from the machine."""
    (tmp_path / "docker").mkdir()
    return {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_metadata_is_the_plugin_protocol() -> None:
    metadata = json.loads(METADATA_JSON)
    assert metadata["SchemaVersion"] == "0.1.0"
    assert metadata["Version"] == __version__
    assert {"Vendor", "ShortDescription", "URL"} <= set(metadata)


def test_metadata_path_imports_neither_docker_nor_yaml() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from docker_persist.plugin import run\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert run(['docker-cli-plugin-metadata']) == 0\n"
        "import json; json.loads(out.getvalue())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'yaml', 'requests'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_version_path_imports_neither_docker_nor_yaml(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tests.helpers import run_main\n"
        f"result = run_main(['version'], {{'HOME': {str(tmp_path)!r}, 'DOCKER_HOST': 'unix:///nonexistent.sock'}})\n"
        "assert result.exit_code == 1, result\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'yaml', 'requests'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"], ["persist", "--help"], ["help"]])
def test_root_help(args: list[str], environ: dict[str, str]) -> None:
    result = run_main(args, environ)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage:  docker persist [OPTIONS] COMMAND\n")
    assert "\nCommands:\n  backup     Take a snapshot" in result.stdout
    assert "\n  check      Audit the project" in result.stdout
    assert "\n  version    Show the docker-persist" in result.stdout
    assert "Run 'docker persist COMMAND --help' for more information on a command." in result.stdout


def test_version_flag(environ: dict[str, str]) -> None:
    assert run_main(["--version"], environ) == (0, f"docker-persist version {__version__}\n", "")


def test_subcommand_help_is_in_docker_style(environ: dict[str, str]) -> None:
    result = run_main(["persist", "version", "--help"], environ)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:4] == [
        "Usage:  docker persist version [OPTIONS]",
        "",
        "Show the docker-persist, Docker engine and Compose versions",
        "",
    ]
    assert "      --format string   Format the output" in result.stdout
    assert "  -h, --help            Print usage" in result.stdout


def test_unknown_command_suggests(environ: dict[str, str]) -> None:
    result = run_main(["versoin"], environ)
    assert result.exit_code == 2
    assert "unknown command: docker persist versoin" in result.stderr
    assert "Did you mean this?\n\tversion" in result.stderr
    assert result.stderr.endswith("See 'docker persist --help'.\n")


def test_unknown_flag(environ: dict[str, str]) -> None:
    result = run_main(["version", "--bogus"], environ)
    assert result.exit_code == 2
    assert result.stderr == "unknown flag: --bogus\nSee 'docker persist version --help'.\n"


def test_bad_format(environ: dict[str, str]) -> None:
    result = run_main(["version", "--format", "yaml"], environ)
    assert result.exit_code == 2
    assert 'invalid --format "yaml"' in result.stderr


def test_bad_global_flag_is_usage_error(environ: dict[str, str]) -> None:
    assert run_main(["-c", "x", "-H", "unix:///y", "persist", "version"], environ).exit_code == 2


def test_bad_context_is_exit_2(environ: dict[str, str]) -> None:
    result = run_main(["--context", "nope", "persist", "version"], environ)
    assert result.exit_code == 2
    assert result.stderr == 'Error: context "nope" does not exist; `docker context ls` lists the contexts\n'


def test_version_against_a_fake_engine(tmp_path: Path, environ: dict[str, str]) -> None:
    with FakeEngine("fake-1.2.3", unix_path=str(tmp_path / "fake.sock")) as engine:
        result = run_main(["-H", engine.host, "persist", "version", "--format", "json"], environ)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["Engine"]["Version"] == "fake-1.2.3"
    assert report["Context"] == {"Name": "default", "Host": engine.host, "ChosenBy": "--host"}
    assert report["Plugin"]["Version"] == __version__
    assert engine.requests == ["GET /version HTTP/1.1"]


def test_version_reads_a_chunked_answer_over_tcp(environ: dict[str, str]) -> None:
    with FakeEngine("chunky-9", chunked=True) as engine:
        result = run_main(["version"], {**environ, "DOCKER_HOST": engine.host})
    assert result.exit_code == 0, result.stderr
    assert " Version:      chunky-9\n" in result.stdout
    assert f" Context:      default ({engine.host})\n" in result.stdout


def test_version_with_no_engine_fails_clearly(tmp_path: Path, environ: dict[str, str]) -> None:
    missing = tmp_path / "missing.sock"
    result = run_main(["version", "--format", "json"], {**environ, "DOCKER_HOST": f"unix://{missing}"})
    assert result.exit_code == 1
    assert json.loads(result.stdout)["Engine"]["Error"].startswith(
        f"cannot connect to the Docker engine at unix://{missing}"
    )
    assert "Is the docker daemon running?" in result.stderr


def test_version_reports_compose_from_the_plugin_dir(tmp_path: Path, environ: dict[str, str]) -> None:
    plugins = Path(environ["DOCKER_CONFIG"]) / "cli-plugins"
    plugins.mkdir()
    counter = tmp_path / "runs"
    compose = plugins / "docker-compose"
    compose.write_text(f'#!/bin/sh\necho run >> {counter}\n[ "$1 $2" = "version --short" ] && echo v2.99.1\n')
    compose.chmod(0o755)
    with FakeEngine("e", unix_path=str(tmp_path / "e.sock")) as engine:
        env = {**environ, "DOCKER_HOST": engine.host}
        first = json.loads(run_main(["version", "--format", "json"], env).stdout)
        second = json.loads(run_main(["version", "--format", "json"], env).stdout)
        assert first["Compose"] == second["Compose"] == {"Version": "2.99.1", "Path": str(compose)}
        assert counter.read_text() == "run\n", "the second answer should come from the cache"
        # A replaced binary is asked again.
        compose.write_text(compose.read_text().replace("2.99.1", "2.99.2") + "\n")
        os.utime(compose, ns=(1, 1))
        third = json.loads(run_main(["version", "--format", "json"], env).stdout)
    assert third["Compose"]["Version"] == "2.99.2"


def test_project_flags_before_and_after_the_command() -> None:
    from docker_persist.config.project import ComposeOptions
    from docker_persist.core.composeargs import split_project_flags

    options, rest = split_project_flags(["-f", "a.yml", "--file=b.yml", "-p", "shop", "--profile", "x", "check", "-v"])
    assert options == ComposeOptions(files=("a.yml", "b.yml"), project_name="shop", profiles=("x",))
    assert rest == ["check", "-v"]
    later = ComposeOptions(files=("c.yml",), project_name="other", env_files=(".env.prod",))
    assert options.merged(later).to_argv() == [
        "-f", "a.yml", "-f", "b.yml", "-f", "c.yml", "-p", "other", "--profile", "x", "--env-file", ".env.prod",
    ]  # fmt: skip
