"""`docker-persist compose ...`: the Compose provider entry point (Docker Compose runs it; see provider.py)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import Command, PendingProject, open_project_store, project_journal
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.errors import ExitStatus, PersistError

if TYPE_CHECKING:
    from docker_persist.cli.provider import Invocation, Messages
    from docker_persist.config.model import Project

LAYER_THRESHOLD = 10_000_000


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
    from docker_persist.actions.up import carry_out_up
    from docker_persist.cli.commands.base import identity_path, read_live_state
    from docker_persist.core.planner import plan_up

    state = read_live_state(context, args, project, LAYER_THRESHOLD, with_sizes=True)
    plan = plan_up(project, state)
    carry_out_up(
        context.engine,
        open_project_store(context, args, project),
        project,
        plan,
        messages.info,
        lambda label, size: None,
        identity_path(context, args),  # $DOCKER_PERSIST_IDENTITY: Compose passes no flag of ours
    )
    guarded = [s.volume for s in plan.steps if s.action == "protect"]
    messages.info(f"volumes ready{': protected ' + ', '.join(guarded) if guarded else ''}")


def _down(
    context: Context, args: argparse.Namespace, project: Project, messages: Messages, invocation: Invocation | None
) -> None:
    from docker_persist.actions.snapshots import backup_before_down
    from docker_persist.cli.commands.base import read_live_state
    from docker_persist.cli.provider import removes_volumes
    from docker_persist.core.planner import plan_down
    from docker_persist.engine.guards import remove_guards

    destructive = removes_volumes(invocation)
    state = read_live_state(context, args, project, LAYER_THRESHOLD, with_sizes=True)
    plan = plan_down(project, state, remove_volumes=destructive, layer_threshold=LAYER_THRESHOLD)
    if plan.refused:
        names = ", ".join(loss.key or loss.name for loss in plan.refused)
        raise PersistError(
            f"x-persist on_down is refuse: `down{' -v' if destructive else ''}` would destroy {names}; "
            "back up first (docker persist backup), or remove on_down: refuse"
        )
    store = open_project_store(context, args, project)
    manifest = backup_before_down(
        context.engine,
        store,
        project,
        plan,
        state,
        messages.info,
        lambda label, size: None,
        project_journal(context, project),
    )
    if manifest is not None:
        messages.info(f"snapshot {manifest.name} holds {', '.join(v.key for v in manifest.volumes)}")
    if destructive:
        # Backed up: now Compose may remove these volumes (their guards would stop it).
        for volume in plan.release_guards:
            remove_guards(context.engine, volume)


COMMAND = Command(
    add_arguments=add_arguments, run=run, usage="[--project-name=NAME] metadata|up|down [SERVICE]", passthrough=True
)
