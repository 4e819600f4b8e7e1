"""Compose's project flags on a subcommand's parser (-f, -p, --project-directory, --profile, --env-file)."""

from __future__ import annotations

import argparse

from docker_persist.config.project import ComposeOptions


def add_project_flags(parser: argparse.ArgumentParser) -> None:
    """Add Compose's project flags to a subcommand's parser."""
    parser.add_argument(
        "-f",
        "--file",
        dest="compose_files",
        action="append",
        default=[],
        metavar="stringArray",
        help="Compose configuration files",
    )
    parser.add_argument("-p", "--project-name", dest="compose_project_name", metavar="string", help="Project name")
    parser.add_argument(
        "--project-directory",
        dest="compose_project_directory",
        metavar="string",
        help="Alternate working directory (default: the path of the first Compose file)",
    )
    parser.add_argument(
        "--profile",
        dest="compose_profiles",
        action="append",
        default=[],
        metavar="stringArray",
        help="Specify a profile to enable",
    )
    parser.add_argument(
        "--env-file",
        dest="compose_env_files",
        action="append",
        default=[],
        metavar="stringArray",
        help="Specify an alternate environment file",
    )


def compose_options_from_args(args: argparse.Namespace) -> ComposeOptions:
    """Return the ComposeOptions a subcommand's parsed flags hold."""
    return ComposeOptions(
        files=tuple(getattr(args, "compose_files", ()) or ()),
        project_name=getattr(args, "compose_project_name", None),
        project_directory=getattr(args, "compose_project_directory", None),
        profiles=tuple(getattr(args, "compose_profiles", ()) or ()),
        env_files=tuple(getattr(args, "compose_env_files", ()) or ()),
    )
