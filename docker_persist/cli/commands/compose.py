"""`docker-persist compose ...`: the Compose provider entry point (Docker Compose runs it; see provider.py)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import Command, PendingProject, open_project_store, project_journal
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.core.planner import DEFAULT_LAYER_THRESHOLD
from docker_persist.errors import ExitStatus, PersistError

if TYPE_CHECKING:
    from docker_persist.actions.common import Workspace
    from docker_persist.cli.provider import Invocation, Messages
    from docker_persist.config.model import Project


def add_arguments(parser: DockerArgumentParser) -> None:
    del parser  # every argument is the provider protocol's: see provider.split_provider_args


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.cli.provider import METADATA, Messages, read_parent_invocation, split_provider_args
    from docker_persist.config.project import ComposeOptions

    project_name, command, _options, _service = split_provider_args(args.passthrough)
    messages = Messages(context.env.stdout)
    if command == "metadata":
        context.env.stdout.write(json.dumps(METADATA, indent=2) + "\n")
        return ExitStatus.OK
    if command not in ("up", "down") or not project_name:
        messages.send(
            "error", f"docker-persist compose: expected --project-name=NAME up|down SERVICE, got {args.passthrough}"
        )
        return ExitStatus.USAGE
    invocation = read_parent_invocation()
    try:
        options = (invocation.options if invocation else ComposeOptions())._replace(project_name=project_name)
        cwd = invocation.cwd if invocation else None
        project, _ = PendingProject(context, None, options=options, cwd=cwd).wait()
        if command == "up":
            _up(context, args, project, messages)
        else:
            _down(context, args, project, messages, invocation)
    except PersistError as error:
        messages.send("error", str(error))
        return ExitStatus.FAILED
    return ExitStatus.OK


def _up(context: Context, args: argparse.Namespace, project: Project, messages: Messages) -> None:
    from docker_persist.actions.up import prepare_volumes
    from docker_persist.cli.commands.base import identity_path, read_live_state

    result = prepare_volumes(
        _workspace(context, project, messages),
        open_project_store(context, args, project),
        lambda: read_live_state(context, args, project, DEFAULT_LAYER_THRESHOLD, with_sizes=True),
        identity_path(context, args),  # $DOCKER_PERSIST_IDENTITY: Compose passes no flag of ours
    )
    guarded = [s.volume for s in result.done if s.action == "protect"]
    messages.info(f"volumes ready{': protected ' + ', '.join(guarded) if guarded else ''}")


def _down(
    context: Context, args: argparse.Namespace, project: Project, messages: Messages, invocation: Invocation | None
) -> None:
    from docker_persist.actions.down import DownRequest, down
    from docker_persist.cli.commands.base import read_live_state, reported
    from docker_persist.cli.provider import removes_volumes

    with reported(context, project, "down", ()) as report:
        result = down(
            _workspace(context, project, messages),
            open_project_store(context, args, project),
            DownRequest(removes_volumes(invocation), layer_threshold=DEFAULT_LAYER_THRESHOLD, wrapper=False),
            lambda: read_live_state(context, args, project, DEFAULT_LAYER_THRESHOLD, with_sizes=True),
        )
        report.snapshot = result.snapshot.name if result.snapshot else None
    if result.inherited:
        messages.info("docker persist down saved and released these volumes already")
    elif result.snapshot is not None:
        messages.info(f"snapshot {result.snapshot.name} holds {', '.join(v.key for v in result.snapshot.volumes)}")
    if result.plan is not None and result.plan.release_guards and not result.released:
        messages.info(
            "the guards stay: the command line of `docker compose down` could not be read, so the volumes were "
            "backed up but are kept (run `docker persist down -v` to remove them)"
        )


def _workspace(context: Context, project: Project, messages: Messages) -> Workspace:
    from docker_persist.actions.common import Workspace

    # Compose runs no `docker compose` for us here: the provider never starts services itself.
    return Workspace(context.engine, project, project_journal(context, project), say=messages.info)


COMMAND = Command(
    add_arguments=add_arguments, run=run, usage="[--project-name=NAME] metadata|up|down [SERVICE]", passthrough=True
)
