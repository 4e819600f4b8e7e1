"""Recovery: finish or take back what a killed or failed run left, as core/operations.py decides.

Every operation that reads or changes a project's volumes calls `recover` first, holding the
project lock: the journal then holds only what a dead run left. Containers a backup stopped or
paused are started again; an interrupted restore is rolled back or forward when that loses
nothing, and otherwise blocks every command but the restore that finishes it (or `recover
--abandon`). Each step is idempotent, so a recovery that is itself killed is simply done again.
"""

from __future__ import annotations

import contextlib
import logging

from docker_persist.actions.common import Workspace, project_images
from docker_persist.core.operations import Operation, Target, describe, recovery
from docker_persist.engine import EngineNotFoundError
from docker_persist.engine.guards import create_guard, remove_guards
from docker_persist.engine.markers import clear_incomplete, incomplete_volumes
from docker_persist.errors import PersistError
from docker_persist.host.signals import interrupts_deferred

log = logging.getLogger(__name__)


class UnfinishedOperationError(PersistError):
    """An interrupted restore destroyed data it has not finished putting back: only finishing it, or
    abandoning it on purpose, may go on."""


def recover(ws: Workspace, resuming: bool = False) -> None:
    """Recover what the journal holds. Call it holding the project lock.

    With `resuming`, the caller is a restore about to finish the recorded one itself: an
    operation only a restore can finish is left to it. Otherwise raise UnfinishedOperationError
    for such an operation.
    """
    record = ws.journal.read()
    for field, action in (("stopped", ws.engine.start_container), ("paused", ws.engine.unpause_container)):
        for container in list(getattr(record, field)):
            log.warning("an interrupted run left container %s %s: bringing it back", container[:12], field)
            with contextlib.suppress(EngineNotFoundError):  # removed since: nothing to bring back
                action(container)
            ws.journal.remove_from(field, container)
    operation = record.operation
    if operation is None:
        return
    decision = recovery(operation)
    if decision == "finish":
        if resuming:
            return
        raise UnfinishedOperationError(unfinished_message(operation))
    log.warning("%s: %s", describe(operation), "rolling it forward" if decision == "forward" else "taking it back")
    if decision == "forward":
        roll_forward(ws, operation)
    else:
        roll_back(ws, operation)


def unfinished_message(operation: Operation) -> str:
    """Return what a refused command says about an operation only a restore can finish."""
    volumes = " ".join(f"--volume {t.key}" for t in operation.targets)
    again = f"docker persist restore {operation.snapshot} {volumes} --yes"
    text = (
        f"{describe(operation)}. Nothing may read or change these volumes until that is settled. Finish it: `{again}`"
    )
    if operation.undo:
        text += f"; or put back what was there: `docker persist restore {operation.undo} --yes`"
    return text + "; or give up on it, leaving the volumes as they are: `docker persist recover --abandon`"


def roll_back(ws: Workspace, operation: Operation) -> None:
    """Take back an operation that destroyed nothing: empty what it filled, put the guards back,
    start the services, forget the record."""
    with interrupts_deferred():
        for volume in operation.released:  # a killed `down`: its guards go back where the volumes remain
            if ws.engine.inspect_volume(volume) is not None:
                create_guard(ws.engine, volume, ws.project.name)
        for target in reversed(operation.targets):
            clear_incomplete(ws.engine, target.volume)
            if not target.held_data and target.status in ("replacing", "replaced"):
                _empty_again(ws, target)
            if target.guarded and ws.engine.inspect_volume(target.volume) is not None:
                create_guard(ws.engine, target.volume, ws.project.name)
        start_services(ws, operation)
        ws.journal.set_operation(None)


def roll_forward(ws: Workspace, operation: Operation) -> None:
    """Finish an operation whose volumes are all done: put the guards back, start the services,
    forget the record."""
    with interrupts_deferred():
        for target in operation.targets:
            clear_incomplete(ws.engine, target.volume)
            if target.guarded and ws.engine.inspect_volume(target.volume) is not None:
                create_guard(ws.engine, target.volume, ws.project.name)
        start_services(ws, operation)
        ws.journal.set_operation(None)


def abandon(ws: Workspace) -> Operation | None:
    """Forget the operation in the journal on the user's request, leaving the volumes as they are;
    return it (None if there was none). The services it stopped stay stopped."""
    operation = ws.journal.read().operation
    if operation is None:
        return None
    with interrupts_deferred():
        for target in operation.targets:
            clear_incomplete(ws.engine, target.volume)
            if target.guarded and ws.engine.inspect_volume(target.volume) is not None:
                create_guard(ws.engine, target.volume, ws.project.name)
        ws.journal.set_operation(None)
    return operation


def start_services(ws: Workspace, operation: Operation) -> tuple[str, ...]:
    """Start again what the operation stopped (Compose re-creates the containers it removed); return
    the services started."""
    running, created = sorted(operation.running), sorted(set(operation.created) - set(operation.running))
    if running:
        ws.say(f"starting again: {', '.join(running)}")
        ws.compose(["up", "--detach", "--no-deps", *running])
    if created:  # `create` has no --no-deps; --no-recreate leaves the containers that exist (dependencies) alone
        ws.compose(["create", "--no-recreate", *created])
    return tuple(running)


def _empty_again(ws: Workspace, target: Target) -> None:
    """Make a target that held nothing before hold nothing again: remove it, and create it empty if it existed."""
    for container in ws.engine.containers_using_volume(target.volume):
        if container.role not in ("guard", "incomplete", "helper") and container.state in ("running", "paused"):
            raise PersistError(
                f"volume {target.volume} holds part of a restore and container {container.name} runs on it: "
                "stop it, then run the command again"
            )
        ws.engine.remove_container(container.id, force=True)
    remove_guards(ws.engine, target.volume)
    ws.engine.remove_volume(target.volume, force=True)
    if target.before == "empty" or target.outlives:
        ws.engine.create_volume(target.volume, target.driver, target.driver_opts, target.labels)
        if target.outlives:  # creating it again did not empty it
            ws.engine.empty_volume(target.volume, ws.project.name, project_images(ws.project, target.key))
        if target.before != "empty":
            ws.engine.remove_volume(target.volume, force=True)


def incomplete_report(ws: Workspace) -> dict[str, str]:
    """Return the project's volumes that hold part of a restore: volume -> what to run."""
    report = {volume: f"holds part of snapshot {snapshot!r}" for volume, snapshot in
              incomplete_volumes(ws.engine, ws.project.name).items()}  # fmt: skip
    operation = ws.journal.read().operation
    if operation is not None:
        for target in operation.targets:
            if target.status == "replacing":
                report[target.volume] = f"holds part of snapshot {operation.snapshot!r}"
    return report
