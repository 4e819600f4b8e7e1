"""Quiesce services while their volumes are read: hooks, then stop or pause, and always undo.

`pre` hooks run first (in the running container), then the service is stopped or
paused per its `consistency`; afterwards it is started or unpaused again, and `post`
hooks run. The undo happens in `finally`, so an error, Ctrl-C or SIGTERM (which `main`
turns into KeyboardInterrupt) still brings every service back. A service that does not
come back is an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence

from docker_persist.config.model import Project, ServicePolicy
from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_SERVICE, Engine
from docker_persist.errors import PersistError, add_note
from docker_persist.host.journal import Journal
from docker_persist.host.signals import interrupts_deferred

log = logging.getLogger(__name__)


class HookFailedError(PersistError):
    """A `pre` or `post` hook exited non-zero."""


class RestartFailedError(PersistError):
    """A service stopped or paused for a snapshot did not come back."""


@dataclasses.dataclass(frozen=True)
class QuiescePlan:
    """What quiescing does to one service."""

    service: str
    consistency: str
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


def plan_quiesce(project: Project, volume_keys: Sequence[str]) -> list[QuiescePlan]:
    """Return, in file order, how to quiesce each service that mounts one of the volumes."""
    plans = []
    binds = {v.bind_source for v in project.precious_binds() if v.key in volume_keys}
    for service in project.services:
        if not any(
            (m.type == "volume" and m.source in volume_keys) or (m.type == "bind" and m.source in binds)
            for m in service.mounts
        ):
            continue
        policy = service.policy or ServicePolicy()
        plans.append(QuiescePlan(service.name, policy.consistency, policy.pre, policy.post))
    return plans


def unescape_compose(command: str) -> str:
    """Return a command as the user wrote it: `docker compose config` prints `$$` for `$`."""
    return command.replace("$$", "$")


def _running_containers(engine: Engine, project: str, service: str) -> list[str]:
    labels = [f"{COMPOSE_PROJECT}={project}", f"{COMPOSE_SERVICE}={service}"]
    return [c.id for c in engine.list_containers(labels, all_states=False) if c.state == "running"]


def _run_hooks(
    engine: Engine, containers: list[str], service: str, stage: str, hooks: Sequence[str], say: Callable[[str], None]
) -> None:
    for hook in hooks:
        if not containers:
            raise HookFailedError(f"{stage} hook of service {service!r} cannot run: the service is not running")
        command = unescape_compose(hook)
        say(f"{service}: {stage} hook: {command}")
        code, output = engine.exec_in_container(containers[0], command)
        if code != 0:
            tail = output.strip().splitlines()[-5:]
            detail = ("\n  " + "\n  ".join(tail)) if tail else ""
            raise HookFailedError(f"{stage} hook of service {service!r} exited {code}: {command}{detail}")


@contextlib.contextmanager
def quiesced(
    engine: Engine,
    project: str,
    plans: Sequence[QuiescePlan],
    say: Callable[[str], None],
    journal: Journal | None = None,
) -> Iterator[None]:
    """Hold the services quiet for the body; bring each back afterwards, whatever happened.

    Each container is written to the journal before it is stopped or paused, so that a
    run killed with -9 is undone by the next one. Raise HookFailedError if a hook fails
    (the post hooks and restarts still run), and RestartFailedError if a service does
    not come back.
    """
    undo: list[tuple[str, str, list[str]]] = []  # (service, action, containers)
    running: dict[str, list[str]] = {p.service: _running_containers(engine, project, p.service) for p in plans}
    failed: BaseException | None = None
    try:
        for plan in plans:
            _run_hooks(engine, running[plan.service], plan.service, "pre", plan.pre, say)
        for plan in plans:
            _quiet(engine, plan, running[plan.service], say, journal, undo)
        yield
    except BaseException as error:
        failed = error
        raise
    finally:
        with interrupts_deferred():  # a second Ctrl-C must not leave a service down
            failures = _undo(engine, undo, say, journal)
            hook_error = _post_hooks(engine, plans, running, say, failures)
        if failed is not None:
            # The first error is the one to show (a full store, say); what went wrong putting
            # things back is added to it, never in its place.
            for failure in failures:
                add_note(failed, failure)
            if hook_error is not None:
                add_note(failed, str(hook_error))
        elif failures:
            raise RestartFailedError("; ".join(failures))
        elif hook_error is not None:
            raise hook_error


def _quiet(
    engine: Engine,
    plan: QuiescePlan,
    containers: list[str],
    say: Callable[[str], None],
    journal: Journal | None,
    undo: list[tuple[str, str, list[str]]],
) -> None:
    """Stop or pause a service's running containers as its plan says, each journaled first; record the undo."""
    if plan.consistency not in ("stop", "pause") or not containers:
        return
    stop = plan.consistency == "stop"
    say(f"{plan.service}: {'stopping' if stop else 'pausing'} {len(containers)} container(s)")
    undo.append((plan.service, "start" if stop else "unpause", containers))
    for container in containers:
        if journal is not None:
            journal.add_to("stopped" if stop else "paused", container)
        if stop:
            engine.stop_container(container)
        else:
            engine.pause_container(container)


def _post_hooks(
    engine: Engine,
    plans: Sequence[QuiescePlan],
    running: dict[str, list[str]],
    say: Callable[[str], None],
    failures: list[str],
) -> HookFailedError | None:
    """Run every service's post hooks; return the first hook that failed, adding other failures to `failures`."""
    hook_error: HookFailedError | None = None
    for plan in plans:
        try:
            _run_hooks(engine, running[plan.service], plan.service, "post", plan.post, say)
        except HookFailedError as error:
            hook_error = hook_error or error
        except PersistError as error:
            failures.append(f"post hook of {plan.service!r}: {error}")
    return hook_error


def _undo(
    engine: Engine, undo: list[tuple[str, str, list[str]]], say: Callable[[str], None], journal: Journal | None
) -> list[str]:
    failures = []
    for service, action, containers in reversed(undo):
        for container in containers:
            try:
                if action == "start":
                    engine.start_container(container)
                else:
                    engine.unpause_container(container)
                if journal is not None:
                    journal.remove_from("stopped" if action == "start" else "paused", container)
                status = engine.inspect_container(container)
                if not status.running or status.paused:
                    failures.append(f"service {service!r} did not come back ({status.status})")
            except PersistError as error:
                failures.append(f"service {service!r} did not come back: {error}")
        say(f"{service}: {'started' if action == 'start' else 'unpaused'} again")
    return failures
