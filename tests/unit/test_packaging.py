"""Packaging: the lock file, what the bundle leaves out, plugin/install.sh, and `install-plugin`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from docker_persist.errors import ConfigError
from docker_persist.host.pluginlink import link_plugin, plugin_dir
from tests.helpers import run_main

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "build" / "requirements.lock"
SPEC = ROOT / "build" / "docker-persist.spec"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_dependency_is_pinned_with_hashes_in_the_lock() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    wanted = []
    for key in ("requires", "dependencies", "dev"):  # the lists of the build, the runtime and the dev tools
        block = re.search(rf"^{key} = \[(.*?)\]", pyproject, re.MULTILINE | re.DOTALL)
        assert block is not None, key
        wanted += re.findall(r'^\s*"([^"]+)"', block.group(1), re.MULTILINE) or re.findall(r'"([^"]+)"', block.group(1))
    assert len(wanted) > 10
    text = LOCK.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.MULTILINE))
    pinned = {normalized(name) for name in pins}
    for requirement in wanted:
        name = normalized(re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0])
        assert name in pinned, f"{name} is in pyproject.toml but not in build/requirements.lock: run build/lock.sh"
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == len(pins) and all("--hash=sha256:" in block for block in blocks)
    assert "file://" not in text and " @ " not in text, "every line must be hash-checkable"


def test_the_venv_installs_from_the_lock_only() -> None:
    script = (ROOT / "build" / "venv.sh").read_text()
    assert "--require-hashes" in script and "--no-deps" in script and "--no-build-isolation" in script


def test_the_bundle_runs_the_code_the_tests_run() -> None:
    spec = SPEC.read_text()
    assert not re.search(r"^\s*optimize\s*=", spec, re.MULTILINE), "optimize strips asserts"


def test_what_the_bundle_leaves_out_is_never_imported() -> None:
    """The spec excludes minio's admin client (pycryptodome, argon2) and zstandard's cffi backend."""
    spec = SPEC.read_text()
    start = spec.index("excludes=")
    excluded = set(re.findall(r'"([A-Za-z0-9_.]+)"', spec[start : spec.index("]", start)]))
    assert {"Crypto", "argon2", "cffi", "zstandard.backend_cffi", "minio.minioadmin"} <= excluded
    code = (
        "import sys\n"
        "from docker_persist.store.s3 import S3Location, _make_client\n"
        "client = _make_client(S3Location('b', '', 'http://127.0.0.1:9', 'us-east-1', True), None)\n"
        "from minio.error import S3Error\n"
        "import zstandard\n"
        "assert zstandard.backend == 'cext', zstandard.backend\n"
        f"excluded = {sorted(excluded)!r}\n"
        "loaded = sorted(m for m in sys.modules if any(m == e or m.startswith(e + '.') for e in excluded)\n"
        "                and getattr(sys.modules[m], '__file__', None))  # the stub of minio.minioadmin has none\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- plugin/install.sh -------------------------------------------------------------------------


def fake_bundle(folder: Path, version: str = "9.9.9") -> Path:
    """A folder shaped like the onedir bundle, whose binary answers --version."""
    (folder / "_internal").mkdir(parents=True)
    binary = folder / "docker-persist"
    binary.write_text(f"#!/bin/sh\necho 'docker-persist version {version}'\n")
    binary.chmod(0o755)
    return folder


def install(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "DOCKER_PERSIST_PREFIX": str(tmp_path / "prefix"),
    }
    return subprocess.run(
        [str(ROOT / "plugin" / "install.sh"), *args], env=env, capture_output=True, text=True, check=False
    )


def test_install_sh_installs_replaces_and_uninstalls_only_its_own(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "bundle")
    prefix, link = tmp_path / "prefix", tmp_path / "docker" / "cli-plugins" / "docker-persist"
    (prefix / "mine").mkdir(parents=True)
    (prefix / "mine" / "precious").write_text("not docker-persist's")
    done = install(tmp_path, "--bundle", str(bundle))
    assert done.returncode == 0, done.stderr
    assert os.readlink(link) == str(prefix / "9.9.9" / "docker-persist")
    assert (prefix / "9.9.9" / ".docker-persist-bundle").is_file()
    assert install(tmp_path, "--bundle", str(bundle)).returncode == 0  # again: replaces its own

    done = install(tmp_path, "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not link.is_symlink() and not (prefix / "9.9.9").exists()
    assert (prefix / "mine" / "precious").read_text() == "not docker-persist's"


def test_install_sh_never_replaces_a_folder_it_did_not_make(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "bundle")
    (tmp_path / "prefix" / "9.9.9").mkdir(parents=True)
    (tmp_path / "prefix" / "9.9.9" / "notes").write_text("mine")
    done = install(tmp_path, "--bundle", str(bundle))
    assert done.returncode == 1 and "is not a docker-persist bundle; left alone" in done.stderr
    assert (tmp_path / "prefix" / "9.9.9" / "notes").read_text() == "mine"
    assert install(tmp_path, "--uninstall").returncode == 0
    assert (tmp_path / "prefix" / "9.9.9" / "notes").read_text() == "mine"


# --- docker-persist install-plugin ----------------------------------------------------------------


def test_link_plugin_links_and_relinks_but_replaces_nothing_foreign(tmp_path: Path) -> None:
    program = tmp_path / "bin" / "docker-persist"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    folder = tmp_path / "cli-plugins"
    link, replaced = link_plugin(str(program), str(folder))
    assert (link, replaced) == (str(folder / "docker-persist"), "")
    assert os.readlink(link) == str(program)
    other = tmp_path / "other" / "docker-persist"  # another docker-persist (an older install): replaced
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    assert link_plugin(str(other), str(folder)) == (link, str(program))
    os.unlink(link)
    os.symlink("/usr/bin/true", link)  # not docker-persist
    with pytest.raises(ConfigError, match="which is not docker-persist: pass --force"):
        link_plugin(str(program), str(folder))
    assert link_plugin(str(program), str(folder), force=True) == (link, "/usr/bin/true")
    os.unlink(link)
    Path(link).write_text("a file")
    with pytest.raises(ConfigError, match="is not a link"):
        link_plugin(str(program), str(folder))
    assert Path(link).read_text() == "a file"


def test_plugin_dir_is_the_docker_config_s_or_the_system_s() -> None:
    assert plugin_dir("/home/u/.docker", False) == "/home/u/.docker/cli-plugins"
    assert plugin_dir("/home/u/.docker", True) == "/usr/local/lib/docker/cli-plugins"


def test_install_plugin_command_links_this_program(tmp_path: Path) -> None:
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    program = bindir / "docker-persist"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    environ = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "dc"), "PATH": str(bindir)}
    result = run_main(["install-plugin"], environ)
    assert result.exit_code == 0, result
    # The script beside this Python wins (the venv pip installed into), else the one on PATH.
    beside = Path(sys.executable).parent / "docker-persist"
    expected = beside if beside.is_file() else program
    assert os.readlink(tmp_path / "dc" / "cli-plugins" / "docker-persist") == str(expected)
    assert "Try: docker persist version" in result.stdout
    assert "install-plugin" not in run_main(["--help"], environ).stdout  # run as docker-persist, not docker persist
