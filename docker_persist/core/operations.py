"""Destructive operations as explicit state machines: what the journal records, and how each
recorded state is recovered. Pure data and decisions; host/journal.py keeps the records and
actions/recover.py carries the decisions out.

A restore (and the restore `up` does into an empty volume) goes through these phases, and the
journal is written *before* each step it names is taken:

    planned ──► stopped ──► undo-taken ──► replacing ──► replaced ──► (record removed)

- planned:    the targets and the services that use them are known; nothing is touched yet.
- stopped:    the services that use the targets are stopped (their containers still exist).
- undo-taken: the undo snapshot of every target that held data is published (its name is in
              the record, or there was nothing to keep).
- replacing:  targets are being replaced, one at a time. Each target has its own status:
                pending   -> untouched;
                removing  -> the containers that use it are being removed; its data is intact;
                replacing -> the volume was removed (or is being re-created and filled); it is
                             marked incomplete on the engine until its content digest matches;
                replaced  -> it holds the snapshot, checked by digest.
- replaced:   every target holds the snapshot; what remains is to start the services again.

No destructive step (removing a volume) is taken before the phase is undo-taken, so the undo
snapshot always exists before data goes away. A failure or a kill is recovered by the next
operation on the project (it holds the project lock, so the recorded run is dead):

- planned, stopped, undo-taken, or replacing with no target that held data touched yet: roll
  back. Targets that held nothing before (absent or empty) and were partly filled are emptied
  again, the guards removed are put back, the services are started, the record goes. Nothing the
  user had is lost; the undo snapshot, if taken, stays as a snapshot.
- replaced: roll forward: put the guards back, start the services, drop the record.
- replacing with a target that held data removed or replaced: only the same restore can finish
  it (`restore SNAPSHOT` again), or a restore of another snapshot over the same volumes (the undo
  snapshot, to take it back); every other command refuses, saying which volume is in which state
  and where the data that was there is. `docker persist recover --abandon` drops the record on
  request and leaves the volumes as they are, saying so.

A `down` records its phases too (backed-up, guards-released), so that a killed `down` has its
guards put back on the volumes that are still there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

PHASES = ("planned", "stopped", "undo-taken", "replacing", "replaced")
TARGET_STATUSES = ("pending", "removing", "replacing", "replaced")
BEFORE = ("absent", "empty", "data")  # what a target held before the operation
DOWN_PHASES = ("planned", "backed-up", "guards-released")


@dataclasses.dataclass
class Target:
    """One volume an operation restores into, and how far it got."""

    key: str  # the volume's key in the snapshot
    volume: str  # the engine's volume name
    before: str  # absent | empty | data
    guarded: bool = False
    status: str = "pending"
    driver: str = "local"  # how to create it again: from the project or the volume, never the store
    driver_opts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def outlives(self) -> bool:
        """Return True if the volume's files outlive it (a bound host folder, a network share, another
        driver): creating it again does not empty it, so it is emptied before it is filled."""
        return self.driver != "local" or bool(self.driver_opts)

    @property
    def held_data(self) -> bool:
        """Return True if the volume held something before the operation."""
        return self.before == "data"

    @property
    def destroyed(self) -> bool:
        """Return True if what the volume held is gone (replaced by part or all of the snapshot)."""
        return self.held_data and self.status in ("replacing", "replaced")


@dataclasses.dataclass
class Operation:
    """An operation on a project's volumes that a kill must not leave half done."""

    kind: str  # restore | up | down
    snapshot: str  # the snapshot restored (restore, up), or taken (down; "" for none)
    source: str  # the project the snapshot belongs to
    store: str  # the store's URL
    phase: str = "planned"
    targets: list[Target] = dataclasses.field(default_factory=list)
    running: list[str] = dataclasses.field(default_factory=list)  # services to start again
    created: list[str] = dataclasses.field(default_factory=list)  # services whose containers were only created
    undo: str | None = None  # the undo snapshot, once published
    released: list[str] = dataclasses.field(default_factory=list)  # down: volumes whose guards were released
    pid: int = 0
    started: str = ""

    def target(self, volume: str) -> Target | None:
        """Return the target for an engine volume name, or None."""
        return next((t for t in self.targets if t.volume == volume), None)


def recovery(operation: Operation) -> str:
    """Return how an interrupted operation is recovered: "rollback", "forward" or "finish".

    "finish" means a target that held data is destroyed and the rest is not done: only a restore
    over the same volumes may go on; other operations refuse.
    """
    if operation.kind == "down":
        return "rollback"
    if operation.phase == "replaced" or (operation.targets and all(t.status == "replaced" for t in operation.targets)):
        return "forward"
    if any(t.destroyed for t in operation.targets):
        return "finish"
    return "rollback"


def describe(operation: Operation) -> str:
    """Return, in a sentence, what state an interrupted operation left the volumes in."""
    if operation.kind == "down":
        return f"a `down` was interrupted after {operation.phase}"
    states = []
    for target in operation.targets:
        if target.status == "replaced":
            state = f"holds snapshot {operation.snapshot!r}"
        elif target.status == "replacing":
            state = f"holds part of snapshot {operation.snapshot!r} (incomplete)"
        else:
            state = "is untouched"
        states.append(f"{target.volume} {state}")
    what = "restore" if operation.kind == "restore" else "restore of `up`"
    text = f"a {what} of snapshot {operation.snapshot!r} was interrupted ({operation.phase}): " + "; ".join(states)
    lost = [t.volume for t in operation.targets if t.destroyed]
    if lost:
        where = f"undo snapshot {operation.undo!r}" if operation.undo else "no snapshot (they were empty)"
        text += f". What {', '.join(lost)} held before is in {where}"
    stopped = operation.running
    if stopped:
        text += f". Stopped by it: {', '.join(stopped)}"
    return text


def dump_operation(operation: Operation) -> dict[str, Any]:
    """Return the JSON form of an operation."""
    document = dataclasses.asdict(operation)
    for target in document["targets"]:
        target["driver_opts"] = dict(target["driver_opts"])
        target["labels"] = dict(target["labels"])
    return document


def load_operation(document: Any) -> Operation | None:
    """Return the operation of a JSON record, or None if it is not one this version wrote."""
    if not isinstance(document, Mapping):
        return None
    try:
        targets = [
            Target(
                key=str(t["key"]),
                volume=str(t["volume"]),
                before=str(t["before"]) if t.get("before") in BEFORE else "data",
                guarded=bool(t.get("guarded", False)),
                status=str(t["status"]) if t.get("status") in TARGET_STATUSES else "replacing",
                driver=str(t.get("driver") or "local"),
                driver_opts={str(k): str(v) for k, v in (t.get("driver_opts") or {}).items()},
                labels={str(k): str(v) for k, v in (t.get("labels") or {}).items()},
            )
            for t in document.get("targets") or []
        ]
        phase = str(document.get("phase", "replacing"))
        return Operation(
            kind=str(document["kind"]),
            snapshot=str(document.get("snapshot", "")),
            source=str(document.get("source", "")),
            store=str(document.get("store", "")),
            phase=phase if phase in PHASES + DOWN_PHASES else "replacing",
            targets=targets,
            running=_strings(document.get("running")),
            created=_strings(document.get("created")),
            undo=str(document["undo"]) if document.get("undo") else None,
            released=_strings(document.get("released")),
            pid=int(document.get("pid") or 0),
            started=str(document.get("started", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def legacy_operation(record: Any) -> Operation | None:
    """Return the operation of a version 1 journal's `restore` record (volumes, services, guarded, undo).

    Those records do not say how far the restore got: every volume is taken as partly restored.
    """
    if not isinstance(record, Mapping) or not record.get("snapshot"):
        return None
    guarded = set(_strings(record.get("guarded")))
    targets = [
        Target(key=volume, volume=volume, before="data", guarded=volume in guarded, status="replacing")
        for volume in _strings(record.get("volumes"))
    ]
    return Operation(
        kind="restore",
        snapshot=str(record["snapshot"]),
        source="",
        store="",
        phase="replacing",
        targets=targets,
        running=_strings(record.get("services")),
        undo=str(record["undo"]) if record.get("undo") else None,
    )


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, Sequence) and not isinstance(value, str) else []
