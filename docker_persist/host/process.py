"""The one place that spawns processes: `docker compose` and friends."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, NamedTuple

from docker_persist.host.dockerconfig import DockerConfig, find_cli_plugin
from docker_persist.host.files import write_atomically
from docker_persist.host.paths import cache_dir

if TYPE_CHECKING:
    import subprocess


class ComposeVersion(NamedTuple):
    """The Compose CLI plugin the Docker CLI would run, and its version (None if unusable)."""

    path: str | None
    version: str | None
    problem: str | None = None


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for a child process: ours, less what is only meant for us.

    The Docker CLI tells a plugin it runs as one with DOCKER_CLI_PLUGIN_* variables; a
    child Compose seeing them would expect to be a plugin too. A PyInstaller bundle puts
    its own libraries first on LD_LIBRARY_PATH, which must not leak into other programs.
    """
    child = {k: v for k, v in environ.items() if not k.startswith(("DOCKER_CLI_PLUGIN_", "_PYI_"))}
    if "_PYI_ARCHIVE_FILE" in environ or "LD_LIBRARY_PATH_ORIG" in environ:
        original = environ.get("LD_LIBRARY_PATH_ORIG")
        child.pop("LD_LIBRARY_PATH_ORIG", None)
        if original:
            child["LD_LIBRARY_PATH"] = original
        else:
            child.pop("LD_LIBRARY_PATH", None)
    return child


def _binary_key(path: str) -> str:
    real = os.path.realpath(path)
    stat = os.stat(real)
    return f"{real}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"


def find_compose_version(config: DockerConfig, environ: Mapping[str, str], timeout: float = 20.0) -> ComposeVersion:
    """Return the version of the Compose plugin that `docker compose` would run.

    The answer is cached against the binary's identity (path, inode, size, mtime), so a
    replaced binary is asked again; asking costs a process start on every `version`.
    """
    path = find_cli_plugin(config, "compose")
    if path is None:
        return ComposeVersion(None, None, "no docker-compose CLI plugin installed")
    cache_file = os.path.join(cache_dir(environ), "compose-version.json")
    try:
        key = _binary_key(path)
        with open(cache_file, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("key") == key and isinstance(cached.get("version"), str):
            return ComposeVersion(path, cached["version"])
    except (OSError, ValueError, AttributeError):
        pass
    import subprocess  # only on a cache miss: it costs `version` 6 ms of start-up

    try:
        done = subprocess.run(
            [path, "version", "--short"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=child_environ(environ),
        )
    except (OSError, subprocess.SubprocessError) as error:
        return ComposeVersion(path, None, f"{path} did not run: {error}")
    if done.returncode != 0:
        return ComposeVersion(path, None, f"{path} failed: {done.stderr.strip()}")
    version = done.stdout.strip().removeprefix("v")
    _write_cache(cache_file, {"key": _binary_key(path), "version": version})
    return ComposeVersion(path, version)


def _write_cache(path: str, data: object) -> None:
    """Write a cache file atomically; a cache that cannot be written is simply not kept."""
    with contextlib.suppress(OSError):
        write_atomically(path, json.dumps(data).encode(), durable=False)


def find_compose(config: DockerConfig) -> str:
    """Return the path of the Compose v2 CLI plugin. Raise ConfigError if it is not installed."""
    path = find_cli_plugin(config, "compose")
    if path is None:
        from docker_persist.errors import ConfigError

        raise ConfigError("Docker Compose v2 is not installed: `docker compose version` must work")
    return path


class PendingComposeConfig:
    """A `docker compose config` started in the background; `result()` waits for its YAML.

    Starting it first lets the caller import and prepare while Compose works (~60 ms).
    """

    def __init__(self, argv: list[str], environ: Mapping[str, str], cwd: str | None) -> None:
        import subprocess

        from docker_persist.errors import ConfigError

        self.argv = argv
        try:
            self.process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=child_environ(environ),
                cwd=cwd,
            )
        except OSError as error:
            raise ConfigError(f"cannot run {argv[0]}: {error}") from error

    def result(self) -> str:
        """Return the YAML Compose printed. Raise ConfigError with Compose's own message if it refused."""
        from docker_persist.errors import ConfigError

        stdout, stderr = self.process.communicate()
        if self.process.returncode != 0:
            raise ConfigError(f"docker compose rejected the project:\n{stderr.strip()}")
        return stdout


def start_compose_config(
    config: DockerConfig, project_argv: Sequence[str], environ: Mapping[str, str], cwd: str | None = None
) -> PendingComposeConfig:
    """Start `docker compose [project flags] config` and return the pending run.

    The plugin binary is run directly (standalone mode): `config` needs no engine, and
    this saves two process starts. Raise ConfigError if Compose is not installed.
    """
    return PendingComposeConfig([find_compose(config), *project_argv, "config"], environ, cwd)


def check_compose_arguments(
    config: DockerConfig, project_argv: Sequence[str], subcommand: str, args: Sequence[str], environ: Mapping[str, str]
) -> str | None:
    """Ask Compose whether `docker compose SUBCOMMAND ARGS` is a command line it accepts, running nothing.

    Compose parses every flag before it acts on `--help`, so an unknown flag or a bad value fails
    here, before docker-persist stops a service. Return Compose's message, or None if it accepts.
    """
    import subprocess

    argv = [find_compose(config), *project_argv, subcommand, "--help", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=child_environ(environ), timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot run {argv[0]}: {error}"
    if done.returncode == 0:
        return None
    return done.stderr.strip() or done.stdout.strip() or f"docker compose {subcommand} exited {done.returncode}"


def run_docker_compose(
    global_argv: Sequence[str],
    project_argv: Sequence[str],
    args: Sequence[str],
    environ: Mapping[str, str],
    own_terminal: bool = False,
) -> int:
    """Run `docker [global flags] compose [project flags] ARGS` and return its exit code.

    Through the docker CLI, so that it reaches exactly the engine `docker` would. Its
    output goes to our stderr (stdout may carry JSON), or, with own_terminal, straight to
    the user's terminal, as when the user runs `docker compose up` themselves.
    Raise PersistError if docker cannot be run.
    """
    import subprocess
    import sys

    from docker_persist.errors import PersistError

    argv = ["docker", *global_argv, "compose", *project_argv, *args]
    try:
        done = subprocess.run(
            argv, stdout=None if own_terminal else sys.stderr, check=False, env=child_environ(environ)
        )
    except OSError as error:
        raise PersistError(f"cannot run docker: {error}") from error
    return done.returncode


_GNU_TAR: list[str | None] = []


def find_gnu_tar() -> str | None:
    """Return the path of GNU tar, or None (BusyBox's tar lacks what the fast path needs)."""
    if not _GNU_TAR:
        import shutil
        import subprocess

        path = shutil.which("tar")
        version = ""
        if path is not None:
            try:
                version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
            except OSError:
                version = ""
        _GNU_TAR.append(path if "GNU tar" in version else None)
    return _GNU_TAR[0]


class _Drain:
    """Read a child's stderr in a thread as it comes, keeping its last STDERR_KEPT bytes.

    A child that writes more than a pipe holds (64 KiB) to stderr would block on it, and a
    parent that reads stderr only at the end would wait for it forever.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        import threading

        self._stream = stream
        self._kept = bytearray()
        self._thread = threading.Thread(target=self._run, name="docker-persist-stderr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while chunk := self._stream.read(1 << 16):
            self._kept += chunk
            del self._kept[: max(0, len(self._kept) - STDERR_KEPT)]

    def text(self) -> str:
        """Wait for the stream to end; return its last lines."""
        self._thread.join()
        self._stream.close()
        return bytes(self._kept).decode(errors="replace").strip()


STDERR_KEPT = 16 << 10


# What tar_create archives with (bench/backup_restore times the host's tar with the same, beside plain tar).
TAR_CREATE_OPTIONS = (
    "--numeric-owner",
    "--format=posix",
    "--sparse-version=1.0",
    "--pax-option=delete=atime,delete=ctime",
    "--xattrs",
    "--xattrs-exclude=security.selinux",
)
PIPE_SIZE = 1 << 20


def widen_pipe(fd: int) -> None:
    """Give a pipe a buffer of PIPE_SIZE (Linux's default for an unprivileged maximum, fs.pipe-max-size),
    not 64 KiB: the process at the other end keeps working while our thread that reads or writes it
    waits for the GIL. Best effort: elsewhere, or over the limit, the pipe keeps its size."""
    import fcntl

    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def tar_create(tar: str, directory: str, environ: Mapping[str, str]) -> Generator[bytes, None, None]:
    """Yield a tar of `directory` (entries `./...`) made by GNU tar. Raise PersistError if tar fails.

    Numeric owners; every xattr but SELinux labels (a host's policy, not data), POSIX ACLs
    included as their `system.posix_acl_*` xattrs, which both GNU tar and the engine's
    archive API put back; mtimes to the nanosecond, negative or past 2242 too; and sparse
    files as sparse (PAX format 1.0: only the data extents are stored, found with
    SEEK_DATA/SEEK_HOLE, and GNU tar extracts them with their holes again). The content
    digest leaves mtimes out, reads sparse files as the files they extract to, and counts the
    xattrs that only this path reads apart (see ArchiveSummary.portable_digest).
    """
    import subprocess

    from docker_persist.errors import PersistError

    argv = [tar, "-C", directory, *TAR_CREATE_OPTIONS, "--warning=no-file-changed",
            "--warning=no-file-removed", "--warning=no-file-ignored", "-cf", "-", "."]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_environ(environ))
    assert process.stdout is not None and process.stderr is not None
    widen_pipe(process.stdout.fileno())
    errors = _Drain(process.stderr)
    try:
        while chunk := process.stdout.read(1 << 20):
            yield chunk
    finally:
        if process.poll() is None:
            process.stdout.close()
        process.wait()
        message = errors.text()
    # Exit 1 means files changed while being read (a live volume): a warning, as for the engine.
    if process.returncode not in (0, 1):
        raise PersistError(f"tar of {directory} failed (exit {process.returncode}): {message}")


def tar_extract(tar: str, directory: str, chunks: Iterable[bytes], environ: Mapping[str, str]) -> None:
    """Extract a tar stream into `directory` with GNU tar, keeping owners, modes, mtimes, xattrs and ACLs.

    Raise PersistError if tar fails.
    """
    import subprocess

    from docker_persist.errors import PersistError

    argv = [tar, "-C", directory, "-x", "--numeric-owner", "--same-owner", "--same-permissions",
            "--xattrs", "--xattrs-include=*", "-f", "-"]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=child_environ(environ))
    assert process.stdin is not None and process.stderr is not None
    widen_pipe(process.stdin.fileno())
    errors = _Drain(process.stderr)
    try:
        for chunk in chunks:
            process.stdin.write(chunk)
        process.stdin.close()
    except BrokenPipeError:
        pass  # tar stopped reading: its exit code and message say why
    finally:
        if not process.stdin.closed:
            process.stdin.close()
        process.wait()
        message = errors.text()
    if process.returncode != 0:
        raise PersistError(f"extracting into {directory} failed (exit {process.returncode}): {message}")


class RemovalBehind:
    """Remove top-level entries of a folder, given by name, with `rm -rf` running beside this process:
    what a reader of the folder has gone past goes while it reads on (a drill's scratch volume, whose
    millions of files would otherwise be removed one by one after the read).

    One `rm` at a time, given every name passed since the last one started; none after one fails.
    Best effort: what rm leaves, or a name it never got, is left to whoever removes the folder, and
    close() waits for the running rm so that no removal races theirs.
    """

    ARGUMENT_BYTES = (
        96 << 10
    )  # per rm: under the smallest ARG_MAX Linux allows (128 KiB), with room for the environment

    def __init__(self, folder: str, environ: Mapping[str, str]) -> None:
        import shutil

        self._folder = os.fsencode(folder)
        self._rm = shutil.which("rm", path=environ.get("PATH"))
        self._environ = child_environ(environ)
        self._queued: list[bytes] = []
        self._running: subprocess.Popen[bytes] | None = None

    def passed(self, names: Iterable[bytes]) -> None:
        """Queue top-level names, one path component each, to remove; start an rm if none runs."""
        import subprocess

        self._queued.extend(name for name in names if name not in (b"", b".", b"..") and b"/" not in name)
        if self._running is not None and self._running.poll() is not None:
            self._reap()
        if self._queued and self._rm is not None and self._running is None:
            take, size = 0, 0
            for name in self._queued:
                size += len(self._folder) + len(name) + 2
                if take and size > self.ARGUMENT_BYTES:
                    break
                take += 1
            batch, self._queued = self._queued[:take], self._queued[take:]
            paths = [os.path.join(self._folder, name) for name in batch]
            try:
                self._running = subprocess.Popen(
                    [self._rm, "-rf", "--one-file-system", "--", *paths],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env=self._environ,
                )  # fmt: skip
            except OSError:
                self._rm = None

    @property
    def removing(self) -> bool:
        """Whether an rm started here may still run."""
        return self._running is not None

    def wait(self) -> None:
        """Wait for the running rm, if any."""
        if self._running is not None:
            self._running.wait()
            self._reap()

    def _reap(self) -> None:
        assert self._running is not None
        if self._running.returncode != 0:
            self._rm = None  # an rm that failed (one without --one-file-system, a read-only folder): no more
        self._running = None

    def close(self) -> None:
        """Wait for the running rm; start no other."""
        self.wait()
        self._rm = None
        self._queued = []

    def __enter__(self) -> RemovalBehind:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def read_crontab() -> list[str]:
    """Return the lines of the user's crontab (none if there is no crontab yet)."""
    import subprocess

    from docker_persist.errors import PersistError

    try:
        done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    except OSError as error:
        raise PersistError(f"cannot run crontab: {error}") from error
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return []
        raise PersistError(f"crontab -l failed: {done.stderr.strip()}")
    return done.stdout.splitlines()


def write_crontab(lines: Sequence[str]) -> None:
    """Replace the user's crontab with `lines`."""
    import subprocess

    from docker_persist.errors import PersistError

    text = "".join(f"{line}\n" for line in lines)
    try:
        done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, check=False)
    except OSError as error:
        raise PersistError(f"cannot run crontab: {error}") from error
    if done.returncode != 0:
        raise PersistError(f"crontab - failed: {done.stderr.strip()}")
