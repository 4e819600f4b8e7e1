"""Linking this docker-persist into the Docker CLI's plugin folder, after a pip or pipx install.

The Docker CLI finds plugins by name in `~/.docker/cli-plugins` (or `$DOCKER_CONFIG/cli-plugins`)
and, for every user, `/usr/local/lib/docker/cli-plugins`. A pip install puts a `docker-persist`
script on PATH instead; `docker-persist install-plugin` links it where the CLI looks. Nothing
that is not docker-persist's own link is ever replaced or removed without `--force`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

from docker_persist.errors import ConfigError

SYSTEM_PLUGIN_DIR = "/usr/local/lib/docker/cli-plugins"
NAME = "docker-persist"


def plugin_dir(config_dir: str, system: bool) -> str:
    """Return the folder the Docker CLI reads plugins from: the user's, or every user's (`system`)."""
    return SYSTEM_PLUGIN_DIR if system else os.path.join(config_dir, "cli-plugins")


def this_executable(environ: Mapping[str, str]) -> str:
    """Return the absolute path of the docker-persist program running now: the bundle's binary, or the
    console script of a pip install. Raise ConfigError if it cannot be found."""
    if getattr(sys, "frozen", False):
        return os.path.realpath(sys.executable)
    candidates: list[str | None] = [sys.argv[0]] if os.path.basename(sys.argv[0]) == NAME else []
    candidates += [os.path.join(os.path.dirname(sys.executable), NAME), shutil.which(NAME, path=environ.get("PATH"))]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise ConfigError(
        "cannot find the docker-persist program to link: run `docker-persist install-plugin` from the "
        "installed `docker-persist` command"
    )


def link_plugin(source: str, directory: str, force: bool = False) -> tuple[str, str]:
    """Make `directory`/docker-persist a symlink to `source`; return (the link, what it replaced: "" if none).

    Raise ConfigError if something else is there (a file, or a link to another program) and not
    `force`, or if the folder cannot be written.
    """
    link = os.path.join(directory, NAME)
    replaced = ""
    if os.path.islink(link):
        replaced = os.readlink(link)
        if os.path.realpath(link) == os.path.realpath(source):
            return link, replaced
        if not force and os.path.basename(os.path.realpath(link)) != NAME:
            raise ConfigError(f"{link} links to {replaced}, which is not docker-persist: pass --force to replace it")
    elif os.path.lexists(link):
        if not force:
            raise ConfigError(f"{link} exists and is not a link (another install?): pass --force to replace it")
        replaced = "a file"
    try:
        os.makedirs(directory, exist_ok=True)
        staging = f"{link}.{os.getpid()}.tmp"
        os.symlink(source, staging)
        os.replace(staging, link)  # atomic: the CLI never finds no plugin, or half of one
    except OSError as error:
        raise ConfigError(f"cannot link {link}: {error.strerror} (for {directory}, run it with sudo)") from error
    return link, replaced
