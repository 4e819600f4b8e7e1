"""Load a Compose project exactly as Compose would, and validate its `x-persist`.

The model comes from `docker compose config` in YAML form (its JSON form drops nested
`x-` keys in Compose 2.40.3), run with the user's own project flags and environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from docker_persist.config.model import Project, build_project
from docker_persist.errors import ConfigError

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


class ComposeOptions(NamedTuple):
    """Compose's project flags, as the user gave them."""

    files: tuple[str, ...] = ()
    project_name: str | None = None
    project_directory: str | None = None
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()

    def to_argv(self) -> list[str]:
        """Return these flags as `docker compose` arguments."""
        argv: list[str] = []
        for path in self.files:
            argv += ["-f", path]
        if self.project_name:
            argv += ["-p", self.project_name]
        if self.project_directory:
            argv += ["--project-directory", self.project_directory]
        for profile in self.profiles:
            argv += ["--profile", profile]
        for env_file in self.env_files:
            argv += ["--env-file", env_file]
        return argv

    def merged(self, other: ComposeOptions) -> ComposeOptions:
        """Return these flags with `other`'s added (other's single values win)."""
        return ComposeOptions(
            files=self.files + other.files,
            project_name=other.project_name or self.project_name,
            project_directory=other.project_directory or self.project_directory,
            profiles=self.profiles + other.profiles,
            env_files=self.env_files + other.env_files,
        )


def find_project_files(options: ComposeOptions, environ: Mapping[str, str], cwd: str) -> list[str]:
    """Return the Compose files Compose would read (for pointing findings at lines), best effort."""
    if options.files:
        base = options.project_directory or cwd
        return [os.path.normpath(os.path.join(base, f)) if f != "-" else f for f in options.files]
    if environ.get("COMPOSE_FILE"):
        separator = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [os.path.normpath(os.path.join(cwd, f)) for f in environ["COMPOSE_FILE"].split(separator) if f]
    directory = options.project_directory or cwd
    while True:
        for name in DEFAULT_FILES:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return [candidate]
        parent = os.path.dirname(directory)
        if parent == directory:
            return []
        directory = parent


def parse_compose_yaml(text: str) -> dict[str, Any]:
    """Return the parsed YAML of `docker compose config`. Raise ConfigError if it is not a mapping."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        document = yaml.load(text, Loader=loader)  # a safe loader, C or Python
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse the output of docker compose config: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError("docker compose config printed no project")
    return document


def load_document(document: Mapping[str, Any], working_dir: str) -> Project:
    """Validate the `x-persist` in a parsed Compose config and return the Project.

    Raise ConfigError listing every schema violation, each with its path.
    """
    from docker_persist.config.schema import format_issues, validate_document

    issues = validate_document(document)
    if issues:
        count = f"{len(issues)} problems" if len(issues) > 1 else "1 problem"
        raise ConfigError(f"invalid x-persist ({count}):\n{format_issues(issues)}")
    return build_project(document, working_dir)
