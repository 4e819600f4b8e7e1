"""`docker persist init`: x-persist where Compose reads it in every shell, the user's file kept as it was.

These run the real `main` and the real `docker compose config` (it needs no engine) in a project
folder of their own; the text edits, the volume rules and the dotenv edits are also tested alone.
"""

from __future__ import annotations

import difflib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from docker_persist.cli.environment import Environment
from docker_persist.cli.main import main
from docker_persist.config.editing import (
    Annotation,
    CannotEditError,
    insert_keys,
    parse_dotenv,
    quote_dotenv,
    resolve_compose_files,
    set_dotenv,
)
from docker_persist.config.project import ComposeOptions
from docker_persist.host.dockerconfig import GlobalOptions, find_cli_plugin, find_config_dir, load_docker_config
from tests.helpers import Result, run_main


def _compose_plugin() -> str | None:
    return find_cli_plugin(load_docker_config(find_config_dir(GlobalOptions(), os.environ)), "compose")


COMPOSE = _compose_plugin()


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """An environment of its own (no COMPOSE_FILE from the machine), with the real Compose plugin in it."""
    if COMPOSE is None:
        message = "docker compose (v2) is not installed; run tests/bed/testbed"
        if os.environ.get("CI"):
            pytest.fail(f"init tests cannot run under CI: {message}", pytrace=False)
        pytest.skip(message)
    plugins = tmp_path / "docker" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(COMPOSE)
    return {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project folder, the current folder while the test runs."""
    folder = tmp_path / "shop"
    folder.mkdir()
    monkeypatch.chdir(folder)
    yield folder


SHOP = """\
# The shop: a database, the web app and a worker.
name: shop
services:
  db:
    image: postgres:16   # pinned: 17 changes the data path
    environment:
      POSTGRES_PASSWORD: "example"
    volumes:
        - db_data:/var/lib/postgresql/data

  # the web app, behind nginx
  web:
    image: 'nginx:1.27'
    volumes:
      - type: volume
        source: nginx_cache
        target: /var/cache/nginx
      - uploads:/srv/uploads
      - logs:/var/log/nginx
    depends_on: [db]
  worker:
    image: python:3.12
    command: ["python", "-m", "worker"]
    volumes:
      - pip-cache:/root/.cache/pip
      - spool:/tmp

volumes:
  db_data:        # the orders
  nginx_cache:
  uploads:
  logs:
  pip-cache:
  spool:
# end of file
"""

# Exactly the lines `init` adds to SHOP, after the line they follow.
SHOP_ADDED = {
    "        - db_data:/var/lib/postgresql/data": "    x-persist: {dump: auto}",
    "  db_data:        # the orders": "    x-persist: {}",
    "  nginx_cache:": "    x-persist: false  # docker persist init: named like a cache; {} would back it up",
    "  uploads:": "    x-persist: {}",
    "  pip-cache:": "    x-persist: false  # docker persist init: named like a cache; {} would back it up",
    "  spool:": "    x-persist: false  # docker persist init: mounted at /tmp, a cache; {} would back it up",
}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_on_terminal(args: list[str], environ: dict[str, str], answers: str) -> Result:
    """Run the real `main` as on a terminal, answering its questions with `answers`."""
    stdout, stderr = io.StringIO(), _Terminal()
    code = main(args, Environment(stdin=_Terminal(answers), stdout=stdout, stderr=stderr, environ=environ))
    return Result(int(code), stdout.getvalue(), stderr.getvalue())


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def compose_config(folder: Path, environ: dict[str, str]) -> Any:
    """What a plain `docker compose config` reads in `folder`, in a shell with no COMPOSE_FILE."""
    assert COMPOSE is not None
    done = subprocess.run([COMPOSE, "config"], cwd=folder, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


# --- editing the user's own Compose file ---------------------------------------------------------


def test_init_yes_adds_exactly_the_keys_and_keeps_comments_order_and_mode(
    project: Path, environ: dict[str, str]
) -> None:
    compose = project / "compose.yaml"
    compose.write_text(SHOP)
    compose.chmod(0o640)
    result = run_main(["init", "--yes"], environ)
    assert result.exit_code == 0, result.stderr
    after = compose.read_text()
    # Only lines added: every line of the file is still there, in order, byte for byte.
    opcodes = difflib.SequenceMatcher(a=SHOP.splitlines(), b=after.splitlines(), autojunk=False).get_opcodes()
    assert {tag for tag, *_ in opcodes} == {"equal", "insert"}, opcodes
    lines = after.splitlines()
    added = {lines[i - 1]: lines[i] for i in range(1, len(lines)) if lines[i] not in SHOP.splitlines()}
    assert added == SHOP_ADDED
    # And those lines hold exactly the keys: the document is the old one plus x-persist.
    expected = yaml.safe_load(SHOP)
    expected["services"]["db"]["x-persist"] = {"dump": "auto"}
    for key, value in {"db_data": {}, "uploads": {}, "nginx_cache": False, "pip-cache": False}.items():
        expected["volumes"][key] = {"x-persist": value}
    expected["volumes"]["spool"] = {"x-persist": False}
    assert yaml.safe_load(after) == expected
    assert compose.stat().st_mode & 0o777 == 0o640
    assert sorted(listing(project)) == ["compose.yaml"], "no override, no .env, no temp file"
    assert "Wrote compose.yaml: x-persist for 5 volumes and 1 service." in result.stdout
    assert "docker persist check" in result.stdout and "docker persist init --override" in result.stdout
    # Compose itself reads the keys in a new shell: nothing to export.
    config = compose_config(project, environ)
    assert config["volumes"]["db_data"]["x-persist"] == {}
    assert config["volumes"]["nginx_cache"]["x-persist"] is False


def test_init_shows_the_diff_and_dry_run_writes_nothing(project: Path, environ: dict[str, str]) -> None:
    (project / "compose.yaml").write_text(SHOP)
    before = listing(project)
    result = run_main(["init", "--dry-run"], environ)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("--- compose.yaml\n+++ compose.yaml\n@@ ")
    assert "\n+    x-persist: {dump: auto}\n" in result.stdout
    assert "\n   uploads:\n+    x-persist: {}\n" in result.stdout
    assert "volume db_data: precious (postgres database files at /var/lib/postgresql/data in db)" in result.stdout
    assert "volume logs: left without x-persist" in result.stdout
    assert "Dry run: nothing was written." in result.stderr
    assert listing(project) == before


def test_without_a_terminal_or_yes_nothing_is_written_and_it_says_pass_yes(
    project: Path, environ: dict[str, str]
) -> None:
    (project / "compose.yaml").write_text(SHOP)
    before = listing(project)
    result = run_main(["init"], environ)
    assert result.exit_code == 1
    assert "+    x-persist: {}" in result.stdout, "the diff is shown all the same"
    assert result.stderr.startswith(
        "Error: there is no terminal to ask on, so nothing was written: pass --yes to write these changes to "
        "compose.yaml, or --dry-run to only show them"
    )
    assert "[y/N]" not in result.stderr
    assert listing(project) == before


def test_on_a_terminal_init_asks_and_writes_on_yes(project: Path, environ: dict[str, str]) -> None:
    (project / "compose.yaml").write_text(SHOP)
    result = run_on_terminal(["init"], environ, "y\n")
    assert result.exit_code == 0, result.stderr
    assert "Write these changes to compose.yaml? [y/N]" in result.stderr
    assert "x-persist: {dump: auto}" in (project / "compose.yaml").read_text()
    assert sorted(listing(project)) == ["compose.yaml"]


def test_declining_the_edit_offers_the_override_and_no_writes_nothing(project: Path, environ: dict[str, str]) -> None:
    (project / "compose.yaml").write_text(SHOP)
    before = listing(project)
    result = run_on_terminal(["init"], environ, "n\nn\n")
    assert result.exit_code == 1
    assert "compose.yaml was not changed." in result.stderr
    assert "write compose.persist.yaml and COMPOSE_FILE in .env instead? [y/N]" in result.stderr
    assert "Nothing was written." in result.stderr
    assert listing(project) == before


def test_declining_the_edit_then_taking_the_override(project: Path, environ: dict[str, str]) -> None:
    (project / "compose.yaml").write_text(SHOP)
    result = run_on_terminal(["init"], environ, "n\ny\n")
    assert result.exit_code == 0, result.stderr
    assert (project / "compose.yaml").read_text() == SHOP
    assert parse_dotenv((project / ".env").read_text())["COMPOSE_FILE"] == "compose.yaml:compose.persist.yaml"


def test_a_second_init_changes_nothing_and_says_so(project: Path, environ: dict[str, str]) -> None:
    compose = project / "compose.yaml"
    compose.write_text(SHOP)
    assert run_main(["init", "--yes"], environ).exit_code == 0
    written, stamp = compose.read_bytes(), compose.stat().st_mtime_ns
    again = run_main(["init", "--yes"], environ)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.startswith("No changes: compose.yaml has x-persist for every volume init can decide on.\n")
    assert "volume logs: left without x-persist" in again.stdout, "what is left to decide is said again"
    assert "---" not in again.stdout
    assert compose.read_bytes() == written and compose.stat().st_mtime_ns == stamp
    assert sorted(listing(project)) == ["compose.yaml"]


def test_init_writes_through_a_symlinked_compose_file(project: Path, environ: dict[str, str]) -> None:
    real = project / "stacks" / "shop.yaml"
    real.parent.mkdir()
    real.write_text(SHOP)
    (project / "compose.yaml").symlink_to(real)
    assert run_main(["init", "--yes"], environ).exit_code == 0
    assert (project / "compose.yaml").is_symlink()
    assert "x-persist: {dump: auto}" in real.read_text()


# --- the override and COMPOSE_FILE in .env -------------------------------------------------------

DOTENV = 'POSTGRES_PASSWORD=example\n# the token, quoted\nexport TOKEN="a b # c"\n\nTAG=1.27'  # no final newline


def test_override_writes_the_override_and_compose_file_in_env_keeping_its_lines(
    project: Path, environ: dict[str, str]
) -> None:
    (project / "compose.yaml").write_text(SHOP)
    (project / ".env").write_text(DOTENV)
    result = run_main(["init", "--override"], environ)
    assert result.exit_code == 0, result.stderr
    assert (project / "compose.yaml").read_text() == SHOP, "the user's own file is left as it was"
    env = (project / ".env").read_text()
    assert env.startswith(DOTENV + "\n# docker persist init: "), "every line kept, one comment and one line added"
    assert env.endswith("\nCOMPOSE_FILE=compose.yaml:compose.persist.yaml\n")
    assert parse_dotenv(env) == {"POSTGRES_PASSWORD": "example", "TOKEN": "a b # c", "TAG": "1.27",
                                 "COMPOSE_FILE": "compose.yaml:compose.persist.yaml"}  # fmt: skip
    override = yaml.safe_load((project / "compose.persist.yaml").read_text())
    assert override["services"]["persist"] == {"provider": {"type": "persist"}}
    assert override["services"]["db"] == {"depends_on": ["persist"], "x-persist": {"dump": "auto"}}
    assert override["volumes"]["db_data"] == {"x-persist": {}}
    assert override["volumes"]["nginx_cache"] == {"x-persist": False}
    assert "logs" not in override["volumes"]
    assert "Wrote compose.persist.yaml: the docker-persist Compose provider" in result.stdout
    assert "Updated .env: COMPOSE_FILE=compose.yaml:compose.persist.yaml" in result.stdout
    # A new shell, with nothing exported: Compose reads the override through .env.
    config = compose_config(project, environ)
    assert config["services"]["persist"]["provider"] == {"type": "persist"}
    assert config["volumes"]["db_data"]["x-persist"] == {}
    # The second run: nothing to change, and it says so.
    stamps = {p.name: p.stat().st_mtime_ns for p in project.iterdir()}
    again = run_main(["init", "--override"], environ)
    assert again.exit_code == 0, again.stderr
    assert "No changes: compose.persist.yaml and COMPOSE_FILE in .env are up to date." in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in project.iterdir()} == stamps
    # Plain `init` goes on with the override the project uses, and changes nothing either.
    plain = run_main(["init"], environ)
    assert plain.exit_code == 0 and "No changes" in plain.stdout, plain
    assert (project / "compose.yaml").read_text() == SHOP


def test_override_creates_env_when_there_is_none(project: Path, environ: dict[str, str]) -> None:
    (project / "compose.yaml").write_text(SHOP)
    result = run_main(["init", "--override"], environ)
    assert result.exit_code == 0, result.stderr
    assert "Created .env: COMPOSE_FILE=compose.yaml:compose.persist.yaml" in result.stdout
    assert parse_dotenv((project / ".env").read_text()) == {"COMPOSE_FILE": "compose.yaml:compose.persist.yaml"}


def test_a_different_compose_file_in_env_is_shown_and_not_replaced_without_yes(
    project: Path, environ: dict[str, str]
) -> None:
    (project / "compose.yaml").write_text(SHOP)
    env = "A=1\nCOMPOSE_FILE=compose.yaml\nB=2\n"
    (project / ".env").write_text(env)
    before = listing(project)
    refused = run_main(["init", "--override"], environ)
    assert refused.exit_code == 1
    assert "-COMPOSE_FILE=compose.yaml\n+COMPOSE_FILE=compose.yaml:compose.persist.yaml\n" in refused.stdout
    assert ".env sets COMPOSE_FILE=compose.yaml already" in refused.stderr and "pass --yes" in refused.stderr
    assert listing(project) == before
    done = run_main(["init", "--override", "--yes"], environ)
    assert done.exit_code == 0, done.stderr
    assert (project / ".env").read_text() == "A=1\nCOMPOSE_FILE=compose.yaml:compose.persist.yaml\nB=2\n"


def test_two_compose_files_get_the_override_in_compose_file_order_with_the_separator(
    project: Path, environ: dict[str, str]
) -> None:
    (project / "compose.yaml").write_text(SHOP)
    (project / "compose.override.yaml").write_text("services:\n  web:\n    environment: {DEBUG: '1'}\n")
    (project / ".env").write_text("COMPOSE_PATH_SEPARATOR=;\n")
    result = run_main(["init"], environ)
    assert result.exit_code == 0, result.stderr
    assert "the project has 2 Compose files (compose.yaml, compose.override.yaml)" in result.stderr
    assert (project / "compose.yaml").read_text() == SHOP
    value = parse_dotenv((project / ".env").read_text())["COMPOSE_FILE"]
    assert value == "compose.yaml;compose.override.yaml;compose.persist.yaml"
    config = compose_config(project, environ)
    assert config["services"]["web"]["environment"] == {"DEBUG": "1"}
    assert config["volumes"]["uploads"]["x-persist"] == {}


def test_a_file_init_cannot_edit_gets_the_override(project: Path, environ: dict[str, str]) -> None:
    common = "x-common: &volume {labels: {team: shop}}\n"
    text = common + SHOP.replace("name: shop\n", "name: shop\n").replace("  uploads:\n", "  uploads: *volume\n")
    (project / "compose.yaml").write_text(text)
    result = run_main(["init"], environ)
    assert result.exit_code == 0, result.stderr
    assert "compose.yaml is left as it is: volumes.uploads is a YAML anchor or alias" in result.stderr
    assert (project / "compose.yaml").read_text() == text
    assert (project / "compose.persist.yaml").exists()


# --- which volumes are precious -----------------------------------------------------------------

CACHES = """\
name: caches
services:
  app:
    image: ghcr.io/acme/app:1
    volumes:
      - app_data:/srv/data
      - build:/app/node_modules
      - home:/root/.cache
  cache:
    image: redis:7
    command: ["redis-server", "--save", "", "--appendonly", "no"]
    volumes:
      - sessions:/data
  queue:
    image: redis:7
    volumes:
      - queue_data:/data
  memcached:
    image: memcached:1.6
    volumes:
      - mem:/var/lib/memcached
volumes:
  app_data:
  build:
  home:
  sessions:
  queue_data:
  mem:
"""


def test_cache_volumes_are_disposable_and_data_is_precious(project: Path, environ: dict[str, str]) -> None:
    (project / "compose.yaml").write_text(CACHES)
    result = run_main(["init", "--yes"], environ)
    assert result.exit_code == 0, result.stderr
    volumes = yaml.safe_load((project / "compose.yaml").read_text())["volumes"]
    marks = {key: value["x-persist"] for key, value in volumes.items()}
    assert marks == {"app_data": {}, "build": False, "home": False, "sessions": False, "queue_data": {}, "mem": False}
    assert "volume sessions: disposable, x-persist: false (cache runs redis with persistence off" in result.stdout
    assert "volume mem: disposable, x-persist: false (memcached runs memcached" in result.stdout
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    assert services["queue"]["x-persist"] == {"consistency": "stop"}
    assert "x-persist" not in services["cache"], "a Redis that keeps nothing needs no stop"


def test_what_is_annotated_already_is_left_alone(project: Path, environ: dict[str, str]) -> None:
    text = SHOP.replace(
        "      - uploads:/srv/uploads\n",
        "      - type: volume\n        source: uploads\n        target: /srv/uploads\n        x-persist: false\n",
    ).replace("  db_data:        # the orders\n", "  db_data:        # the orders\n    x-persist: {restore: latest}\n")
    (project / "compose.yaml").write_text(text)
    result = run_main(["init", "--dry-run"], environ)
    assert result.exit_code == 0, result.stderr
    assert "volume uploads:" not in result.stdout and "volume db_data:" not in result.stdout
    assert "   uploads:\n+" not in result.stdout and "# the orders\n+" not in result.stdout
    assert "+    x-persist: {dump: auto}" in result.stdout, "db's own service still gets its dump"


# --- the pieces alone ----------------------------------------------------------------------------


def test_insert_keys_handles_null_empty_flow_and_crlf() -> None:
    text = "services:\r\n  a: {image: x, volumes: ['v:/v']}\r\nvolumes:\r\n  v: {}   # kept\r\n  w: ~\r\n"
    annotations = [Annotation("services", "a", {"consistency": "stop"}), Annotation("volumes", "v", {}),
                   Annotation("volumes", "w", False, "why")]  # fmt: skip
    assert insert_keys(text, annotations) == (
        "services:\r\n  a: {image: x, volumes: ['v:/v'], x-persist: {consistency: stop}}\r\nvolumes:\r\n"
        "  v:    # kept\r\n    x-persist: {}\r\n  w:\r\n    x-persist: false  # why\r\n"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("services: {}\n---\nvolumes: {}\n", "is not one YAML mapping"),
        ("services: {}\nvolumes:\n  other:\n", "volumes.v is not defined in the Compose file"),
        ("x: &v {driver: local}\nservices: {}\nvolumes:\n  v: *v\n", "volumes.v is a YAML anchor or alias"),
        ("services: {}\nvolumes:\n  v:\n    x-persist: ${X}\n", "volumes.v has an x-persist key already"),
        # A block scalar that keeps its final blank lines ends after them: the check of the result catches it.
        ("volumes:\n  v:\n    labels:\n      note: |+\n        hi\n\nservices: {}\n", "would change more of"),
    ],
)
def test_insert_keys_refuses_what_it_cannot_edit_alone(text: str, reason: str) -> None:
    with pytest.raises(CannotEditError, match=reason):
        insert_keys(text, [Annotation("volumes", "v", {})])


def test_set_dotenv_rewrites_the_line_that_wins_in_place() -> None:
    text = "COMPOSE_FILE=old.yaml\nexport COMPOSE_FILE='a.yaml'   # mine\r\nZ=1"
    new, old = set_dotenv(text, "COMPOSE_FILE", "a b.yaml:c.yaml", "comment")
    assert old == "a.yaml"
    assert new == "COMPOSE_FILE=old.yaml\nexport COMPOSE_FILE='a b.yaml:c.yaml'\r\nZ=1"
    assert parse_dotenv(new)["COMPOSE_FILE"] == "a b.yaml:c.yaml"


@pytest.mark.parametrize(
    "value", ["compose.yaml:x.yaml", "my stack.yaml", "a#b.yaml", "it's.yaml", "$HOME.yaml", "it's \\$HOME\"x.yaml"]
)
def test_quote_dotenv_reads_back_as_itself(value: str) -> None:
    assert parse_dotenv(f"K={quote_dotenv(value)}\n") == {"K": value}


def test_compose_files_are_found_as_compose_finds_them(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "compose.yml").write_text("services: {}\n")
    (tmp_path / "compose.override.yaml").write_text("services: {}\n")
    found = resolve_compose_files(ComposeOptions(), {}, str(tmp_path / "sub"))
    assert found.files == (str(tmp_path / "compose.yml"), str(tmp_path / "compose.override.yaml"))
    assert (found.working_dir, found.env_file, found.source) == (str(tmp_path), str(tmp_path / ".env"), "default")
    (tmp_path / ".env").write_text("COMPOSE_FILE=compose.yml|extra.yaml\nCOMPOSE_PATH_SEPARATOR=|\n")
    from_env = resolve_compose_files(ComposeOptions(), {}, str(tmp_path))
    assert from_env.files == (str(tmp_path / "compose.yml"), str(tmp_path / "extra.yaml"))
    assert from_env.source == f"COMPOSE_FILE in {tmp_path / '.env'}"
    shell = resolve_compose_files(ComposeOptions(), {"COMPOSE_FILE": "a.yaml"}, str(tmp_path))
    assert (shell.files, shell.source) == ((str(tmp_path / "a.yaml"),), "COMPOSE_FILE")
    given = resolve_compose_files(ComposeOptions(files=("x/c.yaml",)), {"COMPOSE_FILE": "a.yaml"}, str(tmp_path))
    assert (given.files, given.working_dir, given.source) == (
        (str(tmp_path / "x" / "c.yaml"),),
        str(tmp_path / "x"),
        "-f",
    )
