"""Who is told what, and when: the alert state machine behind x-persist.notify, and its messages.

Pure: the state is data (actions/alerts.py keeps it in a file, under a lock), the clock is a
parameter, and sending is someone else's. An operation's outcome moves each of its volumes
between `ok` and `failing`, per kind of operation (a failed verify does not make a later backup a
recovery); only a change makes an event, so a volume that fails on every retry is told of once,
and told again when it recovers. Staleness works the same way, per volume and limit. Events with
their volumes are routed to the targets of those volumes (a volume's own notify, else the
project's), and a target only hears of the kinds its `on` lists.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from docker_persist.config.model import NotifyTarget

PROJECT_WIDE = "-"  # the key of an outcome that names no volume (a config error, an unreachable store)
MAX_DETAIL = 400  # characters of an error kept and sent: the first line, cut here


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one operation on some of a project's volumes ended."""

    operation: str  # backup | verify | copy | forget | schedule | down | guard
    volumes: tuple[str, ...]
    ok: bool
    snapshot: str | None = None
    error: str | None = None  # what failed, when not ok
    # True: a problem seen and already mended (a guard put back): told once, leaves no failing state
    mended: bool = False


@dataclasses.dataclass(frozen=True)
class Staleness:
    """One volume's age against one of its limits, as `check` and the scheduler see it."""

    volume: str
    limit: str  # max_age | verify_max_age
    stale: bool
    detail: str  # e.g. "newest snapshot 3d 2h old (max_age 26h)" or "no snapshot"


@dataclasses.dataclass(frozen=True)
class Event:
    """Something a person is told: a change of state of some volumes."""

    kind: str  # failure | success | stale | recovered
    operation: str
    volumes: tuple[str, ...]
    snapshot: str | None = None
    detail: str = ""


@dataclasses.dataclass
class Failure:
    """A failing (volume, operation): since when, and the latest error."""

    since: datetime.datetime
    at: datetime.datetime
    error: str
    snapshot: str | None = None


@dataclasses.dataclass
class AlertState:
    """What is remembered between runs: the failing (volume, operation) pairs, the stale (volume, limit)
    pairs, and the notifications that could not be delivered."""

    failing: dict[tuple[str, str], Failure] = dataclasses.field(default_factory=dict)
    stale: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # -> detail
    last_failure: dict[str, Failure] = dataclasses.field(default_factory=dict)  # volume -> newest, kept after recovery
    last_operation: dict[str, str] = dataclasses.field(default_factory=dict)  # volume -> operation of last_failure
    notify_failures: int = 0


def first_line(text: str | None) -> str:
    """Return the first non-empty line of an error, cut to MAX_DETAIL characters."""
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."


def apply_outcome(state: AlertState, outcome: Outcome, now: datetime.datetime) -> list[Event]:
    """Record `outcome` in `state`; return the events it makes: at most one failure (the volumes that start
    failing), one recovered (those that stop) and one success (the others)."""
    volumes = outcome.volumes or (PROJECT_WIDE,)
    if outcome.mended:
        detail = first_line(outcome.error)
        for volume in volumes:
            state.last_failure[volume] = Failure(now, now, detail, outcome.snapshot)
            state.last_operation[volume] = outcome.operation
        return [Event("failure", outcome.operation, outcome.volumes, outcome.snapshot, detail)]
    if not outcome.ok:
        detail = first_line(outcome.error) or f"{outcome.operation} failed"
        new = []
        for volume in volumes:
            key = (volume, outcome.operation)
            previous = state.failing.get(key)
            if previous is None:
                new.append(volume)
            since = previous.since if previous is not None else now
            state.failing[key] = Failure(since, now, detail, outcome.snapshot)
            state.last_failure[volume] = state.failing[key]
            state.last_operation[volume] = outcome.operation
        named = tuple(v for v in new if v != PROJECT_WIDE)
        return [Event("failure", outcome.operation, named, outcome.snapshot, detail)] if new else []
    recovered = [v for v in volumes if state.failing.pop((v, outcome.operation), None) is not None]
    # A success of the volumes also ends a project-wide failure of that operation (the store was unreachable).
    project_wide = outcome.volumes and state.failing.pop((PROJECT_WIDE, outcome.operation), None) is not None
    if project_wide and not recovered:
        recovered = list(outcome.volumes)
    events = []
    if recovered:
        named = tuple(v for v in recovered if v != PROJECT_WIDE)
        events.append(Event("recovered", outcome.operation, named, outcome.snapshot, f"{outcome.operation} succeeded"))
    others = tuple(v for v in outcome.volumes if v not in recovered)
    if others or (not outcome.volumes and not recovered):
        events.append(Event("success", outcome.operation, others, outcome.snapshot, f"{outcome.operation} succeeded"))
    return events


def apply_staleness(state: AlertState, facts: Iterable[Staleness]) -> list[Event]:
    """Record the volumes' ages in `state`; return one stale event for the (volume, limit) pairs that became
    stale, and one recovered event for those that are fresh again."""
    became, fresh = [], []
    for fact in facts:
        key = (fact.volume, fact.limit)
        if fact.stale:
            if key not in state.stale:
                became.append(fact)
            state.stale[key] = fact.detail
        elif state.stale.pop(key, None) is not None:
            fresh.append(fact)
    events = []
    if became:
        volumes = tuple(dict.fromkeys(f.volume for f in became))
        events.append(Event("stale", "check", volumes, None, "; ".join(f"{f.volume}: {f.detail}" for f in became)))
    if fresh:
        volumes = tuple(dict.fromkeys(f.volume for f in fresh))
        events.append(Event("recovered", "check", volumes, None, "; ".join(f"{f.volume}: {f.detail}" for f in fresh)))
    return events


def route(
    events: Sequence[Event],
    targets_of: Callable[[str], Sequence[NotifyTarget]],
    project_targets: Sequence[NotifyTarget],
) -> list[tuple[NotifyTarget, Event]]:
    """Return each (target, event) to send: a target hears of an event once, narrowed to its volumes, and only
    if it listens for the event's kind. An event that names no volume goes to the project's targets."""
    deliveries: list[tuple[NotifyTarget, Event]] = []
    for event in events:
        by_url: dict[str, tuple[NotifyTarget, list[str]]] = {}
        if not event.volumes:
            for target in project_targets:
                by_url.setdefault(target.url, (target, []))
        for volume in event.volumes:
            for target in targets_of(volume):
                by_url.setdefault(target.url, (target, []))[1].append(volume)
        for target, volumes in by_url.values():
            if event.kind in target.on:
                deliveries.append((target, dataclasses.replace(event, volumes=tuple(volumes))))
    return deliveries


_TITLES = {
    "failure": "{operation} of {project} failed",
    "success": "{operation} of {project} succeeded",
    "stale": "snapshots of {project} are too old",
    "recovered": "{project} recovered",
}


def render_message(event: Event, project: str, host: str, hint: str) -> tuple[str, str]:
    """Return the title and body of the message for `event`: the project, host, volumes, snapshot, what
    happened (the first line of the error), and the command that shows more."""
    title = "docker-persist: " + _TITLES[event.kind].format(operation=event.operation, project=project)
    lines = [f"Project: {project}", f"Host: {host}"]
    if event.volumes:
        lines.append(f"Volumes: {', '.join(event.volumes)}")
    if event.snapshot:
        lines.append(f"Snapshot: {event.snapshot}")
    label = {"failure": "Error", "stale": "Too old", "recovered": "Now", "success": "Done"}[event.kind]
    if event.detail:
        lines.append(f"{label}: {event.detail}")
    lines.append(f"More: {hint}")
    return title, "\n".join(lines)


# --- the state as JSON ---------------------------------------------------------------------


def _time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _failure_document(failure: Failure) -> dict[str, Any]:
    return {"since": _time(failure.since), "at": _time(failure.at), "error": failure.error,
            "snapshot": failure.snapshot}  # fmt: skip


def _failure(value: Any) -> Failure | None:
    if not isinstance(value, Mapping):
        return None
    since, at = _parse_time(value.get("since")), _parse_time(value.get("at"))
    snapshot = value.get("snapshot")
    if since is None or at is None:
        return None
    return Failure(since, at, str(value.get("error") or ""), snapshot if isinstance(snapshot, str) else None)


def dump_alerts(state: AlertState) -> str:
    """Return the JSON text of the state."""
    document = {
        "failing": [
            {"volume": v, "operation": o, **_failure_document(f)} for (v, o), f in sorted(state.failing.items())
        ],
        "stale": [{"volume": v, "limit": lim, "detail": d} for (v, lim), d in sorted(state.stale.items())],
        "last_failure": {
            v: {**_failure_document(f), "operation": state.last_operation.get(v, "")}
            for v, f in sorted(state.last_failure.items())
        },
        "notify_failures": state.notify_failures,
    }
    return json.dumps(document, indent=2) + "\n"


def load_alerts(text: str) -> AlertState:
    """Return the state from its JSON text; what cannot be read is dropped (the worst case is a message
    sent twice), never raised."""
    try:
        document: Any = json.loads(text)
    except ValueError:
        return AlertState()
    if not isinstance(document, dict):
        return AlertState()
    state = AlertState()

    def entries(key: str) -> list[Any]:
        value = document.get(key)
        return value if isinstance(value, list) else []

    for entry in entries("failing"):
        failure = _failure(entry)
        if failure is not None and isinstance(entry.get("volume"), str) and isinstance(entry.get("operation"), str):
            state.failing[(entry["volume"], entry["operation"])] = failure
    for entry in entries("stale"):
        if isinstance(entry, Mapping) and isinstance(entry.get("volume"), str) and isinstance(entry.get("limit"), str):
            state.stale[(entry["volume"], entry["limit"])] = str(entry.get("detail") or "")
    last = document.get("last_failure")
    for volume, entry in (last if isinstance(last, Mapping) else {}).items():
        failure = _failure(entry)
        if failure is not None:
            state.last_failure[str(volume)] = failure
            state.last_operation[str(volume)] = str(entry.get("operation") or "")
    count = document.get("notify_failures")
    state.notify_failures = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0
    return state
