"""Endpoint resolution, against config dirs written by the real Docker CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from docker_persist.cli.globalflags import split_global_flags
from docker_persist.errors import ConfigError
from docker_persist.host.dockerconfig import (
    DEFAULT_UNIX_HOST,
    Endpoint,
    GlobalOptions,
    TLSMaterial,
    context_dir_key,
    find_cli_plugin,
    find_config_dir,
    load_docker_config,
    normalize_host,
    resolve_endpoint,
)

FIXTURE = Path(__file__).parent / "fixtures" / "dockerconfig"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A writable copy of the fixture config dir (currentContext: plain-tcp)."""
    target = tmp_path / "docker"
    shutil.copytree(FIXTURE, target)
    return target


def resolve(argv: list[str], environ: dict[str, str], config_dir: Path) -> Endpoint:
    options, _ = split_global_flags([*argv, "persist", "version"])
    environ = {"HOME": "/nonexistent", "DOCKER_CONFIG": str(config_dir), **environ}
    return resolve_endpoint(options, environ, load_docker_config(find_config_dir(options, environ)))


def test_context_folder_is_sha256_of_the_name() -> None:
    assert (FIXTURE / "contexts" / "meta" / context_dir_key("remote-tls") / "meta.json").is_file()


# The order is --context, -H, DOCKER_HOST, DOCKER_CONTEXT, config.json's currentContext, default.
@pytest.mark.parametrize(
    ("argv", "environ", "context", "host", "source"),
    [
        (["--context", "local-socket"], {"DOCKER_HOST": "tcp://9.9.9.9:1", "DOCKER_CONTEXT": "skip-verify"},
         "local-socket", "unix:///run/alt/docker.sock", "--context"),
        (["-H", "unix:///h.sock"], {"DOCKER_HOST": "tcp://9.9.9.9:1", "DOCKER_CONTEXT": "skip-verify"},
         "default", "unix:///h.sock", "--host"),
        ([], {"DOCKER_HOST": "tcp://9.9.9.9:1", "DOCKER_CONTEXT": "skip-verify"},
         "default", "tcp://9.9.9.9:1", "DOCKER_HOST"),
        ([], {"DOCKER_CONTEXT": "local-socket"}, "local-socket", "unix:///run/alt/docker.sock", "DOCKER_CONTEXT"),
        ([], {}, "plain-tcp", "tcp://10.9.9.9:2375", "config.json"),
        (["--context", "default"], {}, "default", DEFAULT_UNIX_HOST, "--context"),
        ([], {"DOCKER_CONTEXT": "default"}, "default", DEFAULT_UNIX_HOST, "DOCKER_CONTEXT"),
    ],
)  # fmt: skip
def test_resolution_order(
    argv: list[str], environ: dict[str, str], context: str, host: str, source: str, config_dir: Path
) -> None:
    endpoint = resolve(argv, environ, config_dir)
    assert (endpoint.context, endpoint.host, endpoint.source) == (context, host, source)


def test_default_when_nothing_is_configured(tmp_path: Path) -> None:
    endpoint = resolve([], {}, tmp_path)
    assert endpoint == Endpoint("default", DEFAULT_UNIX_HOST, None, "default")


def test_tls_context_reads_the_stored_material(config_dir: Path) -> None:
    endpoint = resolve(["--context", "remote-tls"], {}, config_dir)
    tls_dir = config_dir / "contexts" / "tls" / context_dir_key("remote-tls") / "docker"
    assert endpoint.host == "tcp://10.1.2.3:2376"
    assert endpoint.tls == TLSMaterial(
        ca_cert=str(tls_dir / "ca.pem"), cert=str(tls_dir / "cert.pem"), key=str(tls_dir / "key.pem"), verify=True
    )
    assert (tls_dir / "key.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_skip_tls_verify_context(config_dir: Path) -> None:
    endpoint = resolve(["-c", "skip-verify"], {}, config_dir)
    assert endpoint.tls == TLSMaterial(None, None, None, verify=False)


def test_plain_context_has_no_tls(config_dir: Path) -> None:
    assert resolve(["-c", "plain-tcp"], {}, config_dir).tls is None


def test_default_context_tls_from_flags(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    endpoint = resolve(["--tlsverify", "-H", "tcp://engine.example:2376"], {}, tmp_path)
    assert endpoint.tls == TLSMaterial(
        str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), verify=True
    )


def test_default_context_tls_from_environment(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_text("x")
    endpoint = resolve([], {"DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)},
                       tmp_path)  # fmt: skip
    # Files that do not exist are left out, as the Docker CLI does for cert.pem and key.pem.
    assert endpoint.tls == TLSMaterial(str(certs / "ca.pem"), None, None, verify=True)


def test_tls_without_verify(tmp_path: Path) -> None:
    endpoint = resolve(["--tls", "-H", "tcp://e"], {}, tmp_path)
    assert endpoint.host == "tcp://e:2376"
    assert endpoint.tls is not None and endpoint.tls.verify is False


def test_tls_flags_do_not_touch_a_named_context(config_dir: Path) -> None:
    endpoint = resolve(["--tlsverify", "-c", "plain-tcp"], {}, config_dir)
    assert endpoint.tls is None


def test_unknown_context_is_a_configuration_error(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match='context "nope" does not exist'):
        resolve(["--context", "nope"], {}, config_dir)
    with pytest.raises(ConfigError, match=r"chosen by DOCKER_CONTEXT"):
        resolve([], {"DOCKER_CONTEXT": "nope"}, config_dir)


def test_current_context_that_no_longer_exists(config_dir: Path) -> None:
    (config_dir / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    with pytest.raises(ConfigError, match=r'context "gone" does not exist \(chosen by config.json\)'):
        resolve([], {}, config_dir)


@pytest.mark.parametrize("name", ["../escape", "a/b", "-x", ""])
def test_invalid_context_names(name: str, config_dir: Path) -> None:
    with pytest.raises(ConfigError):
        resolve([], {"DOCKER_CONTEXT": name or "."}, config_dir)


def test_broken_config_json(config_dir: Path) -> None:
    (config_dir / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read Docker config"):
        resolve([], {}, config_dir)


def test_broken_context_meta(config_dir: Path) -> None:
    meta = config_dir / "contexts" / "meta" / context_dir_key("plain-tcp") / "meta.json"
    meta.write_text(json.dumps({"Name": "plain-tcp", "Endpoints": {}}))
    with pytest.raises(ConfigError, match="has no docker endpoint"):
        resolve([], {}, config_dir)


def test_config_dir_order(tmp_path: Path) -> None:
    assert find_config_dir(GlobalOptions(config="/flag"), {"DOCKER_CONFIG": "/env", "HOME": "/h"}) == "/flag"
    assert find_config_dir(GlobalOptions(), {"DOCKER_CONFIG": "/env", "HOME": "/h"}) == "/env"
    assert find_config_dir(GlobalOptions(), {"HOME": "/h"}) == "/h/.docker"


@pytest.mark.parametrize(
    ("given", "tls", "expected"),
    [
        ("", False, DEFAULT_UNIX_HOST),
        ("", True, "tcp://localhost:2376"),
        ("unix://", False, DEFAULT_UNIX_HOST),
        ("unix:///run/x.sock", False, "unix:///run/x.sock"),
        ("tcp://1.2.3.4", False, "tcp://1.2.3.4:2375"),
        ("tcp://1.2.3.4", True, "tcp://1.2.3.4:2376"),
        ("1.2.3.4:99", False, "tcp://1.2.3.4:99"),
        ("tcp://:99", False, "tcp://localhost:99"),
        ("tcp://[::1]:99", False, "tcp://[::1]:99"),
        ("ssh://me@host", False, "ssh://me@host"),
    ],
)
def test_normalize_host(given: str, tls: bool, expected: str) -> None:
    assert normalize_host(given, tls) == expected


@pytest.mark.parametrize("bad", ["tcp://h:port", "ftp://h", "tcp://h:99999"])
def test_normalize_host_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid Docker host"):
        normalize_host(bad, False)


def test_find_cli_plugin_prefers_the_config_dir(tmp_path: Path) -> None:
    user = tmp_path / "cfg" / "cli-plugins"
    extra = tmp_path / "extra"
    user.mkdir(parents=True)
    extra.mkdir()
    for directory in (user, extra):
        plugin = directory / "docker-thing"
        plugin.write_text("#!/bin/sh\n")
        plugin.chmod(0o755)
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra)]}))
    config = load_docker_config(str(tmp_path / "cfg"))
    assert find_cli_plugin(config, "thing") == str(user / "docker-thing")
    os.unlink(user / "docker-thing")
    assert find_cli_plugin(config, "thing") == str(extra / "docker-thing")
    assert find_cli_plugin(config, "absent") is None
