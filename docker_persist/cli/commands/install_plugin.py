"""`docker-persist install-plugin`: link a pip- or pipx-installed docker-persist as a Docker CLI plugin."""

from __future__ import annotations

import argparse

from docker_persist.cli.commands.base import Command
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.errors import ExitStatus


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument(
        "--system", action="store_true", help="Link into /usr/local/lib/docker/cli-plugins, for every user"
    )
    parser.add_argument("--force", action="store_true", help="Replace what is there even if it is not docker-persist")


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.host.dockerconfig import find_config_dir
    from docker_persist.host.pluginlink import link_plugin, plugin_dir, this_executable

    environ = context.env.environ
    source = this_executable(environ)
    directory = plugin_dir(find_config_dir(context.options, environ), args.system)
    link, replaced = link_plugin(source, directory, args.force)
    note = f" (it linked to {replaced})" if replaced and replaced != source else ""
    context.env.stdout.write(f"Linked {link} -> {source}{note}. Try: docker persist version\n")
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
