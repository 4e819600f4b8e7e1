"""The built plugin, through the real Docker CLI, against the real engine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from docker_persist import __version__
from tests.engine.conftest import DockerCLI
from tests.fakeengine import FakeEngine


def persist_version(docker: DockerCLI, *global_flags: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = docker.run(*global_flags, "persist", "version", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_bundle_answers_the_metadata_call(bundle: Path) -> None:
    done = subprocess.run(
        [str(bundle / "docker-persist"), "docker-cli-plugin-metadata"], capture_output=True, text=True
    )
    assert done.returncode == 0
    metadata = json.loads(done.stdout)
    assert metadata["SchemaVersion"] == "0.1.0"
    assert metadata["Version"] == __version__


def test_docker_cli_finds_the_plugin(docker: DockerCLI, docker_config: Path) -> None:
    done = docker.run("info", "--format", "{{json .ClientInfo.Plugins}}", check=True)
    plugins = {p["Name"]: p for p in json.loads(done.stdout)}
    assert "persist" in plugins, plugins
    assert plugins["persist"]["Version"] == __version__
    assert plugins["persist"]["Path"] == str(docker_config / "cli-plugins" / "docker-persist")
    assert "Err" not in plugins["persist"]
    # The CLI marks plugin commands with '*' and lists broken plugins under "Invalid Plugins".
    helped = docker.run("--help", check=True).stdout
    assert "  persist*    Keep volume data safe" in helped
    assert "Invalid Plugins" not in helped


def test_version_through_the_docker_cli(docker: DockerCLI) -> None:
    engine = docker.run("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}", check=True).stdout.split()
    compose = docker.run("compose", "version", "--short", check=True).stdout.strip().removeprefix("v")
    report = persist_version(docker)
    plugin = report["Plugin"]
    assert plugin == {"Version": __version__, "Python": plugin["Python"], "Frozen": True, "TarReader": "c"}  # type: ignore[index]
    assert report["Engine"]["Version"] == engine[0]  # type: ignore[index]
    assert report["Engine"]["ApiVersion"] == engine[1]  # type: ignore[index]
    assert report["Compose"]["Version"] == compose  # type: ignore[index]


def test_pretty_version_and_help_through_the_docker_cli(docker: DockerCLI) -> None:
    done = docker.run("persist", "version", check=True)
    assert done.stdout.startswith(f"Plugin:\n Version:      {__version__}\n")
    assert "\nEngine:\n" in done.stdout and "\nCompose:\n" in done.stdout
    helped = docker.run("persist", "--help", check=True)
    assert helped.stdout.startswith("Usage:  docker persist [OPTIONS] COMMAND")


def test_context_flag_reaches_that_engine(docker: DockerCLI, contexts: list[str], unique: str, tmp_path: Path) -> None:
    with FakeEngine("fake-context-engine", unix_path=str(tmp_path / "fake.sock")) as fake:
        contexts.append(unique)
        docker.run("context", "create", unique, "--docker", f"host={fake.host}", check=True)
        report = persist_version(docker, "--context", unique)
        assert report["Engine"]["Version"] == "fake-context-engine"  # type: ignore[index]
        assert report["Context"] == {"Name": unique, "Host": fake.host, "ChosenBy": "--context"}
        # The same context through DOCKER_CONTEXT, and as the current context.
        report = persist_version(docker, env={"DOCKER_CONTEXT": unique})
        assert report["Engine"]["Version"] == "fake-context-engine"  # type: ignore[index]
        docker.run("context", "use", unique, check=True)
        try:
            report = persist_version(docker)
            assert report["Context"]["ChosenBy"] == "config.json"  # type: ignore[index]
            assert report["Engine"]["Version"] == "fake-context-engine"  # type: ignore[index]
            # -H wins over the current context, as it does for docker itself.
            real = persist_version(docker, "-H", "unix:///var/run/docker.sock")
            assert real["Engine"]["Version"] != "fake-context-engine"  # type: ignore[index]
        finally:
            docker.run("context", "use", "default", check=True)
    assert fake.requests, "the fake engine was never asked"


def test_host_flag_reaches_that_engine(docker: DockerCLI, tmp_path: Path) -> None:
    with FakeEngine("fake-host-engine", unix_path=str(tmp_path / "h.sock")) as fake:
        report = persist_version(docker, "-H", fake.host)
        assert report["Engine"]["Version"] == "fake-host-engine"  # type: ignore[index]
        assert report["Context"] == {"Name": "default", "Host": fake.host, "ChosenBy": "--host"}
        report = persist_version(docker, env={"DOCKER_HOST": fake.host})
        assert report["Engine"]["Version"] == "fake-host-engine"  # type: ignore[index]


def test_host_flag_with_the_real_socket(docker: DockerCLI) -> None:
    expected = docker.run("version", "--format", "{{.Server.Version}}", check=True).stdout.strip()
    report = persist_version(docker, "-H", "unix:///var/run/docker.sock")
    assert report["Engine"]["Version"] == expected  # type: ignore[index]


def test_bad_context_is_a_clear_error(docker: DockerCLI, unique: str) -> None:
    done = docker.run("--context", unique, "persist", "version")
    assert done.returncode == 2
    assert f'context "{unique}" does not exist' in done.stderr
    done = docker.run("persist", "version", env={"DOCKER_CONTEXT": unique})
    assert done.returncode == 2
    assert "chosen by DOCKER_CONTEXT" in done.stderr


def test_unreachable_engine_is_exit_1(docker: DockerCLI, tmp_path: Path) -> None:
    done = docker.run("-H", f"unix://{tmp_path}/none.sock", "persist", "version")
    assert done.returncode == 1
    assert "cannot connect to the Docker engine" in done.stderr


def test_tls_context_uses_its_certificates(docker: DockerCLI, contexts: list[str], unique: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with FakeEngine("fake-tls-engine", tls=pki) as fake:
        contexts.append(unique)
        docker.run(
            "context", "create", unique, "--docker",
            f"host={fake.host},ca={pki['ca']},cert={pki['client_cert']},key={pki['client_key']}",
            check=True,
        )  # fmt: skip
        report = persist_version(docker, "--context", unique)
        assert report["Engine"]["Version"] == "fake-tls-engine"  # type: ignore[index]
        # Without the client certificate the fake engine refuses the handshake.
        done = docker.run("-H", fake.host, "--tlsverify", f"--tlscacert={pki['ca']}", "persist", "version")
        assert done.returncode == 1
        assert "cannot connect" in done.stderr


def make_pki(directory: Path) -> dict[str, str]:
    """Make a CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=dptest-ca")  # fmt: skip
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", f"/CN=dptest-{name}")  # fmt: skip
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    paths = {
        "ca": "ca.pem", "server_cert": "server.pem", "server_key": "server-key.pem",
        "client_cert": "client.pem", "client_key": "client-key.pem",
    }  # fmt: skip
    return {key: os.path.join(directory, value) for key, value in paths.items()}
