"""Docker CLI configuration: the config dir, contexts, and which engine to talk to.

This resolves the engine endpoint exactly as the Docker CLI does, so that every
command reaches the engine `docker` would. It reads files only; it imports neither
the Docker SDK nor YAML, because `version` and the plugin metadata run through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

from docker_persist.errors import ConfigError

DEFAULT_CONTEXT = "default"
DEFAULT_UNIX_HOST = "unix:///var/run/docker.sock"
SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)
_CONTEXT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")


# NamedTuple, not a dataclass: dataclasses imports inspect, 15 ms of every start-up.
class GlobalOptions(NamedTuple):
    """Docker CLI global flags, as given (None where not given)."""

    context: str | None = None
    hosts: tuple[str, ...] = ()
    config: str | None = None
    debug: bool = False
    log_level: str | None = None
    tls: bool = False
    tlsverify: bool | None = None
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None

    def to_argv(self) -> list[str]:
        """Return these options as Docker CLI arguments, for spawning ``docker``."""
        argv: list[str] = []
        if self.config is not None:
            argv += ["--config", self.config]
        if self.context is not None:
            argv += ["--context", self.context]
        for host in self.hosts:
            argv += ["--host", host]
        if self.debug:
            argv.append("--debug")
        if self.log_level is not None:
            argv += ["--log-level", self.log_level]
        if self.tls:
            argv.append("--tls")
        if self.tlsverify is not None:
            argv.append(f"--tlsverify={'true' if self.tlsverify else 'false'}")
        for flag, value in (
            ("--tlscacert", self.tlscacert),
            ("--tlscert", self.tlscert),
            ("--tlskey", self.tlskey),
        ):
            if value is not None:
                argv += [flag, value]
        return argv


class TLSMaterial(NamedTuple):
    """Paths to TLS files (None where absent) and whether to verify the server."""

    ca_cert: str | None
    cert: str | None
    key: str | None
    verify: bool


class Endpoint(NamedTuple):
    """The engine to talk to, and why: `source` names the rule that chose it."""

    context: str
    host: str
    tls: TLSMaterial | None
    source: str


class DockerConfig(NamedTuple):
    """The parts of the Docker CLI config.json that docker-persist reads."""

    directory: str
    current_context: str | None
    plugin_extra_dirs: tuple[str, ...]


def find_config_dir(options: GlobalOptions, environ: Mapping[str, str]) -> str:
    """Return the Docker config dir: --config, then DOCKER_CONFIG, then ~/.docker."""
    if options.config:
        return os.path.expanduser(options.config)
    if environ.get("DOCKER_CONFIG"):
        return environ["DOCKER_CONFIG"]
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".docker")


def load_docker_config(directory: str) -> DockerConfig:
    """Read <directory>/config.json; a missing file is an empty config.

    Raise ConfigError if the file is not valid JSON.
    """
    path = os.path.join(directory, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raw = {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read Docker config {path}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"cannot read Docker config {path}: expected a JSON object")
    current = raw.get("currentContext")
    extra = raw.get("cliPluginsExtraDirs") or []
    return DockerConfig(
        directory=directory,
        current_context=current if isinstance(current, str) and current else None,
        plugin_extra_dirs=tuple(d for d in extra if isinstance(d, str)),
    )


def plugin_dirs(config: DockerConfig) -> list[str]:
    """Return the CLI plugin dirs in the order the Docker CLI searches them."""
    return [os.path.join(config.directory, "cli-plugins"), *config.plugin_extra_dirs, *SYSTEM_PLUGIN_DIRS]


def find_cli_plugin(config: DockerConfig, name: str) -> str | None:
    """Return the path of the CLI plugin `docker-<name>` the Docker CLI would run, if any."""
    for directory in plugin_dirs(config):
        candidate = os.path.join(directory, f"docker-{name}")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def choose_context_name(options: GlobalOptions, environ: Mapping[str, str], config: DockerConfig) -> tuple[str, str]:
    """Return (context name, the rule that chose it), in the Docker CLI's order."""
    if options.context:
        return options.context, "--context"
    if options.hosts:
        return DEFAULT_CONTEXT, "--host"
    if environ.get("DOCKER_HOST"):
        return DEFAULT_CONTEXT, "DOCKER_HOST"
    if environ.get("DOCKER_CONTEXT"):
        return environ["DOCKER_CONTEXT"], "DOCKER_CONTEXT"
    if config.current_context:
        return config.current_context, "config.json"
    return DEFAULT_CONTEXT, "default"


def normalize_host(host: str, tls: bool) -> str:
    """Return `host` as a full URL, as the Docker CLI's ParseHost does.

    Raise ConfigError for an address it cannot use.
    """
    host = host.strip()
    if not host:
        return "tcp://localhost:2376" if tls else DEFAULT_UNIX_HOST
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "tcp", host
    if scheme == "unix":
        return "unix://" + (rest or "/var/run/docker.sock")
    if scheme in ("ssh", "npipe", "fd"):
        return host
    if scheme in ("tcp", "http", "https"):
        try:
            parts = urllib.parse.urlsplit("tcp://" + rest)
            port = parts.port
        except ValueError as error:
            raise ConfigError(f"invalid Docker host {host!r}: {error}") from error
        hostname = parts.hostname or "localhost"
        if ":" in hostname:
            hostname = f"[{hostname}]"
        return f"tcp://{hostname}:{port or (2376 if tls else 2375)}"
    raise ConfigError(f"invalid Docker host {host!r}: unsupported scheme {scheme!r}")


def context_dir_key(name: str) -> str:
    """Return the folder name the Docker CLI stores context `name` under."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _default_endpoint(
    options: GlobalOptions, environ: Mapping[str, str], config: DockerConfig, source: str
) -> Endpoint:
    verify = options.tlsverify if options.tlsverify is not None else bool(environ.get("DOCKER_TLS_VERIFY"))
    use_tls = options.tls or verify or options.tlsverify is not None
    host = options.hosts[0] if options.hosts else environ.get("DOCKER_HOST", "")
    tls = None
    if use_tls:
        cert_dir = environ.get("DOCKER_CERT_PATH") or config.directory

        def pick(given: str | None, default: str) -> str | None:
            if given is not None:
                return os.path.expanduser(given)
            path = os.path.join(cert_dir, default)
            return path if os.path.exists(path) else None

        tls = TLSMaterial(
            ca_cert=pick(options.tlscacert, "ca.pem"),
            cert=pick(options.tlscert, "cert.pem"),
            key=pick(options.tlskey, "key.pem"),
            verify=verify,
        )
    return Endpoint(context=DEFAULT_CONTEXT, host=normalize_host(host, use_tls), tls=tls, source=source)


def load_context_endpoint(config: DockerConfig, name: str, source: str) -> Endpoint:
    """Return the docker endpoint stored for context `name`.

    Raise ConfigError if the context does not exist or its metadata is unreadable.
    """
    if not _CONTEXT_NAME.match(name):
        raise ConfigError(f'context "{name}": invalid context name')
    key = context_dir_key(name)
    meta_path = os.path.join(config.directory, "contexts", "meta", key, "meta.json")
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except FileNotFoundError as error:
        hint = f" (chosen by {source})" if source != "--context" else ""
        raise ConfigError(f'context "{name}" does not exist{hint}; `docker context ls` lists the contexts') from error
    except (OSError, ValueError) as error:
        raise ConfigError(f'context "{name}": cannot read {meta_path}: {error}') from error
    docker = meta.get("Endpoints", {}).get("docker") if isinstance(meta, dict) else None
    if not isinstance(docker, dict) or not isinstance(docker.get("Host"), str):
        raise ConfigError(f'context "{name}" has no docker endpoint ({meta_path})')
    tls_dir = os.path.join(config.directory, "contexts", "tls", key, "docker")
    files = {n: os.path.join(tls_dir, f"{n}.pem") for n in ("ca", "cert", "key")}
    present = {n: p for n, p in files.items() if os.path.isfile(p)}
    skip_verify = bool(docker.get("SkipTLSVerify"))
    tls = None
    if present or skip_verify:
        tls = TLSMaterial(
            ca_cert=present.get("ca"), cert=present.get("cert"), key=present.get("key"), verify=not skip_verify
        )
    return Endpoint(context=name, host=normalize_host(docker["Host"], tls is not None), tls=tls, source=source)


def resolve_endpoint(options: GlobalOptions, environ: Mapping[str, str], config: DockerConfig) -> Endpoint:
    """Return the engine endpoint the Docker CLI would use with these flags and environment.

    Raise ConfigError for an unknown or broken context.
    """
    name, source = choose_context_name(options, environ, config)
    if name == DEFAULT_CONTEXT:
        return _default_endpoint(options, environ, config, source)
    return load_context_endpoint(config, name, source)
