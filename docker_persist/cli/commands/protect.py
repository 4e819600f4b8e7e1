"""`docker persist protect|unprotect VOLUME...`: add or remove a volume's engine guard."""

from __future__ import annotations

import argparse
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    check_format,
    make_progress,
    make_workspace,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UsageError


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("volumes", nargs="*", metavar="VOLUME", help=argparse.SUPPRESS)
    add_project_flags(parser)
    add_format_flag(parser)


def _volume_names(
    context: Context, args: argparse.Namespace, command: str
) -> tuple[PendingProject, list[tuple[str, str]]]:
    """Return the project and (key, engine name) of each volume named: a project key or an engine name.

    With no names, every precious volume with protect on. Raise ConfigError for a volume that does not exist,
    and for `protect` of one the project declares `x-persist: false`.
    """
    from docker_persist.actions.protect import select_named_volumes

    pending = PendingProject(context, args)
    project, _ = pending.wait()
    if not args.volumes:
        chosen = [(v.key, v.name) for v in project.precious_volumes() if v.policy and v.policy.protect]
        if not chosen:
            raise UsageError(f"name the volumes to {command}: no x-persist volume has protect on", f"{ROOT} {command}")
        return pending, chosen

    def exists(name: str) -> bool:
        return context.engine.inspect_volume(name) is not None

    return pending, select_named_volumes(project, args.volumes, command, exists)


def _report(context: Context, args: argparse.Namespace, verb: str, rows: list[tuple[str, str, bool]]) -> int:
    output = check_format(args, verb)
    if output == "json":
        document = [{"volume": name, "key": key, "changed": changed} for key, name, changed in rows]
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        words = {"protect": ("protected", "already protected"), "unprotect": ("unprotected", "not protected")}[verb]
        for _, name, changed in rows:
            context.env.stdout.write(f"{name}: {words[0] if changed else words[1]}\n")
    return ExitStatus.OK


def run_protect(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.protect import protect

    check_format(args, "protect")
    pending, volumes = _volume_names(context, args, "protect")
    project, _ = pending.wait()
    rows = protect(make_workspace(context, pending, project, make_progress(context)), volumes)
    return _report(context, args, "protect", rows)


def run_unprotect(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.protect import unprotect

    check_format(args, "unprotect")
    pending, volumes = _volume_names(context, args, "unprotect")
    project, _ = pending.wait()
    rows = unprotect(make_workspace(context, pending, project, make_progress(context)), volumes)
    return _report(context, args, "unprotect", rows)


PROTECT = Command(add_arguments=add_arguments, run=run_protect, usage="[OPTIONS] [VOLUME...]")
UNPROTECT = Command(add_arguments=add_arguments, run=run_unprotect, usage="[OPTIONS] [VOLUME...]")
