"""The journal and the lock of one project on one engine, in docker-persist's state directory.

The journal is a write-ahead record of what an operation must undo or finish, so that a run
killed with -9 is recovered by the next one: the containers a backup stopped or paused, and the
operation under way with its phase (see core/operations.py for the phases and their recovery).
Every change is written whole (temp file, fsync, rename) before the step it describes is taken.

The lock (`hold`) is flock(2) on a file beside the journal, so the kernel releases it when its
holder dies, even by kill -9. Every operation that reads or changes the project's volumes holds
it, whatever the store, so two of them never overlap; holding it also means that a journal record
found is a dead run's. A child process (the Compose provider that `docker persist down` runs
through `docker compose down`) inherits its parent's hold: the parent puts a token in the lock
file and in the child's environment (LOCK_TOKEN_ENV), and `hold` in the child sees both match.

Files: $XDG_STATE_HOME/docker-persist/journal/<engine>-<project>.json and .lock, where <engine>
is a short hash of the engine's address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
from collections.abc import Mapping
from typing import Any

from docker_persist.core.operations import Operation, dump_operation, legacy_operation, load_operation
from docker_persist.errors import BusyError
from docker_persist.host.files import write_atomically
from docker_persist.host.locks import FileLock, is_ancestor
from docker_persist.host.paths import engine_state_file

FORMAT = 2
LOCK_TOKEN_ENV = "DOCKER_PERSIST_LOCK_TOKEN"


class ProjectBusyError(BusyError):
    """Another docker-persist operation holds the project on this engine."""


@dataclasses.dataclass
class Record:
    """What the journal holds."""

    stopped: list[str] = dataclasses.field(default_factory=list)  # containers a backup stopped
    paused: list[str] = dataclasses.field(default_factory=list)  # containers a backup paused
    operation: Operation | None = None

    def is_empty(self) -> bool:
        """Return True if nothing is left to recover."""
        return not self.stopped and not self.paused and self.operation is None


class Journal:
    """The journal and the lock of one project on one engine."""

    def __init__(self, path: str, environ: Mapping[str, str] | None = None, project: str = "") -> None:
        self.path = path
        self.lock_path = os.path.splitext(path)[0] + ".lock"
        self.environ: Mapping[str, str] = environ or {}
        self.project = project
        self._lock = FileLock(self.lock_path, ProjectBusyError, f"project {project!r} on this engine")

    @classmethod
    def for_project(cls, environ: Mapping[str, str], engine_host: str, project: str) -> Journal:
        """Return the journal of `project` on the engine at `engine_host`."""
        return cls(engine_state_file(environ, "journal", engine_host, project), environ, project)

    # --- the record ---------------------------------------------------------------------------

    def read(self) -> Record:
        """Return what is recorded (an empty Record if nothing, or if the file cannot be read)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            return Record()
        if not isinstance(document, dict):
            return Record()
        operation = load_operation(document.get("operation"))
        if operation is None and document.get("format") is None:
            operation = legacy_operation(document.get("restore"))  # written by docker-persist 0.x
        return Record(_strings(document.get("stopped")), _strings(document.get("paused")), operation)

    def write(self, record: Record) -> None:
        """Record durably (write, fsync, rename); an empty record removes the file."""
        if record.is_empty():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        document: dict[str, Any] = {"format": FORMAT, "stopped": record.stopped, "paused": record.paused}
        if record.operation is not None:
            document["operation"] = dump_operation(record.operation)
        write_atomically(self.path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())

    def set_operation(self, operation: Operation | None) -> None:
        """Record the operation under way (None: it is over)."""
        record = self.read()
        if operation is not None and not operation.pid:
            operation.pid = os.getpid()
            operation.started = _now()
        record.operation = operation
        self.write(record)

    def add_to(self, field: str, container: str) -> None:
        """Add a container to `stopped` or `paused`."""
        record = self.read()
        values: list[str] = getattr(record, field)
        if container not in values:
            values.append(container)
            self.write(record)

    def remove_from(self, field: str, container: str) -> None:
        """Remove a container from `stopped` or `paused`."""
        record = self.read()
        values: list[str] = getattr(record, field)
        if container in values:
            values.remove(container)
            self.write(record)

    # --- the lock -------------------------------------------------------------------------------

    def hold(self, operation: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[None]:
        """Hold the project on this engine for the block, waiting up to `timeout` seconds.

        Re-entrant within the process; shared with a child started with `child_environ()`.
        Raise ProjectBusyError, naming the holder, if another process still holds it.
        """
        if self.inherited():
            return contextlib.nullcontext()
        return self._lock.hold(operation, timeout)

    def inherited(self) -> bool:
        """Return True if this process works under its parent's hold of the lock (see the module docstring)."""
        if self._lock.token() is not None:
            return False
        path, _, token = self.environ.get(LOCK_TOKEN_ENV, "").rpartition(":")
        if path != self.lock_path or not token:
            return False
        holder = self._lock.holder()
        return holder is not None and holder.get("token") == token and is_ancestor(holder.get("pid"))

    def child_environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Return `environ` plus the token that lets a child process share this process's hold."""
        child = dict(environ)
        token = self._lock.token()
        if token is not None:
            child[LOCK_TOKEN_ENV] = f"{self.lock_path}:{token}"
        return child


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
