"""What every command is handed: the environment, the global flags, and lazy access to the engine."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from docker_persist.cli.environment import Environment
from docker_persist.host.dockerconfig import (
    DockerConfig,
    Endpoint,
    GlobalOptions,
    find_config_dir,
    load_docker_config,
    resolve_endpoint,
)

if TYPE_CHECKING:
    from docker_persist.actions.alerts import Sender
    from docker_persist.config.project import ComposeOptions
    from docker_persist.engine.docker import DockerEngine


class Context:
    """Per-invocation state. The engine connection is made on first use, never at start-up."""

    def __init__(self, env: Environment, options: GlobalOptions, compose_options: ComposeOptions | None = None) -> None:
        self.env = env
        self.options = options
        # Compose project flags given before the subcommand (`docker persist -f x.yml check`).
        self.compose_options = compose_options

    @functools.cached_property
    def docker_config(self) -> DockerConfig:
        """The Docker CLI config in force (--config, DOCKER_CONFIG or ~/.docker)."""
        return load_docker_config(find_config_dir(self.options, self.env.environ))

    @functools.cached_property
    def endpoint(self) -> Endpoint:
        """The engine endpoint `docker` would use. Raise ConfigError for a bad context."""
        return resolve_endpoint(self.options, self.env.environ, self.docker_config)

    @functools.cached_property
    def engine(self) -> DockerEngine:
        """The one interface to the Docker engine."""
        from docker_persist.engine.docker import DockerEngine

        # DOCKER_PERSIST_FAST_PATH=0 turns off reading local volumes' files directly.
        fast = self.env.environ.get("DOCKER_PERSIST_FAST_PATH", "1") not in ("0", "false", "no")
        return DockerEngine(self.endpoint, allow_local_fast_path=fast, environ=self.env.environ)

    @functools.cached_property
    def notify_sender(self) -> Sender:
        """What delivers notifications and pings (tests set a recording one)."""
        from docker_persist.actions.alerts import HostSender

        return HostSender()
