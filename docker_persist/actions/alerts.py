"""Tell people: record each operation's outcome, send the notifications it makes, ping the dead-man's switch.

The state (core/alerts.py) lives in $XDG_STATE_HOME/docker-persist/alerts/<engine>-<project>.json,
read, changed and written whole under a lock beside it, so two runs at once neither lose a
failure nor both announce it. Delivery goes through a Sender (host/notify.py in the CLI, a
recording fake in tests). A notification or ping that cannot be delivered is logged, with the
target masked, and counted in the state file (`docker_persist_notify_failures_total`); it
never raises, and never changes the result of the command it reports on.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from docker_persist.config.model import Project
from docker_persist.core.alerts import (
    AlertState,
    Event,
    Outcome,
    Staleness,
    apply_outcome,
    apply_staleness,
    dump_alerts,
    load_alerts,
    render_message,
    route,
)
from docker_persist.errors import BusyError, PersistError
from docker_persist.host.files import write_atomically
from docker_persist.host.locks import FileLock
from docker_persist.host.paths import engine_state_file

LOCK_WAIT = 30.0  # seconds another run may hold the alert state (it holds it for a read and a write)


class Sender(Protocol):
    """Delivers messages and pings; never raises."""

    def send(self, urls: Sequence[str], title: str, body: str, kind: str) -> dict[str, str | None]: ...

    def ping(self, base: str, phase: str, body: str = "") -> str | None: ...

    def masked(self, url: str) -> str: ...


class HostSender:
    """The real sender: Apprise for messages, urllib for pings."""

    def send(self, urls: Sequence[str], title: str, body: str, kind: str) -> dict[str, str | None]:
        from docker_persist.host import notify

        return notify.send(urls, title, body, kind)

    def ping(self, base: str, phase: str, body: str = "") -> str | None:
        from docker_persist.host import notify

        return notify.ping(base, phase, body)

    def masked(self, url: str) -> str:
        from docker_persist.host import notify

        return notify.masked(url)


class AlertsBusyError(BusyError):
    """Another run holds the alert state for longer than LOCK_WAIT."""


def alerts_path(environ: Mapping[str, str], engine_host: str, project: str) -> str:
    """Return the alert state file of `project` on the engine at `engine_host`."""
    return engine_state_file(environ, "alerts", engine_host, project)


def read_alerts(path: str) -> AlertState:
    """Return the alert state at `path` (empty when there is none or it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return load_alerts(handle.read())
    except (FileNotFoundError, NotADirectoryError):
        return AlertState()
    except (OSError, UnicodeDecodeError):
        return AlertState()


def host_label(engine_host: str) -> str:
    """Return how a message names where it happened: this machine, and the engine when it is not local."""
    name = socket.gethostname()
    local = engine_host.startswith(("unix://", "npipe://")) or not engine_host
    return name if local else f"{name} (engine {engine_host})"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Notifier:
    """Records outcomes of one project's operations and tells its notify targets and ping URL."""

    def __init__(
        self,
        project: Project,
        engine_host: str,
        environ: Mapping[str, str],
        log: Callable[[str], None],
        sender: Sender | None = None,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.project = project
        self.engine_host = engine_host
        self.path = alerts_path(environ, engine_host, project.name)
        self.log = log
        self.sender: Sender = sender or HostSender()
        self.now = now
        self.lock = FileLock(os.path.splitext(self.path)[0] + ".lock", AlertsBusyError, "the alert state")

    @property
    def hint(self) -> str:
        return f"docker persist status -p {self.project.name}"

    def _update(self, change: Callable[[AlertState], list[Event]]) -> list[Event]:
        """Apply `change` to the state under its lock and save it; return its events ([] if it cannot be kept:
        then nothing is sent, for a message the state does not remember would be sent again and again)."""
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with self.lock.hold("notify", timeout=LOCK_WAIT):
                state = read_alerts(self.path)
                events = change(state)
                write_atomically(self.path, dump_alerts(state).encode())
        except (OSError, PersistError) as error:
            self.log(f"cannot keep the alert state in {self.path}: {getattr(error, 'strerror', None) or error}")
            return []
        return events

    def record(self, outcome: Outcome) -> list[Event]:
        """Record an operation's outcome and send the messages its state changes make; return the events."""
        now = self.now()
        events = self._update(lambda state: apply_outcome(state, outcome, now))
        self._deliver(events)
        return events

    def staleness(self, facts: Sequence[Staleness]) -> list[Event]:
        """Record the volumes' ages and send a `stale` message for those that became too old, and a `recovered`
        one for those that are fresh again; return the events."""
        events = self._update(lambda state: apply_staleness(state, facts))
        self._deliver(events)
        return events

    def ping(self, phase: str, body: str = "") -> None:
        """Ping x-persist.ping for `phase` (start, success, fail), if the project sets one."""
        url = self.project.policy.ping
        if not url:
            return
        problem = self.sender.ping(url, phase, body)
        if problem is not None:
            self._failed(url, f"the {phase} ping", problem)

    def _deliver(self, events: Sequence[Event]) -> None:
        deliveries = route(events, self.project.notify_targets, self.project.policy.notify)
        if not deliveries:
            return
        host = host_label(self.engine_host)
        by_message: dict[tuple[str, str, str], list[str]] = {}
        for target, event in deliveries:
            title, body = render_message(event, self.project.name, host, self.hint)
            by_message.setdefault((title, body, event.kind), []).append(target.url)
        for (title, body, kind), urls in by_message.items():
            for url, problem in self.sender.send(urls, title, body, kind).items():
                if problem is not None:
                    self._failed(url, f"the message {title!r}", problem)

    def _failed(self, url: str, what: str, problem: str) -> None:
        self.log(f"could not deliver {what} to {self.sender.masked(url)}: {problem}")

        def count(state: AlertState) -> list[Event]:
            state.notify_failures += 1
            return []

        self._update(count)
