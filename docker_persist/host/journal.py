"""A write-ahead journal of what an operation must undo, so a run killed with -9 is finished later.

Before a backup stops or pauses a container, or a restore replaces volumes, it records
that here; when it has undone it, it clears the record. The next operation on the
project (holding the project lock) finds what a killed run left: it starts stopped
containers again, and a rerun restore reuses the undo snapshot already taken instead of
snapshotting a half-restored volume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from docker_persist.host.files import write_atomically
from docker_persist.host.paths import state_dir


class Journal:
    """The journal of one project on one engine."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def for_project(cls, environ: Mapping[str, str], engine_host: str, project: str) -> Journal:
        """Return the journal of `project` on the engine at `engine_host`."""
        engine = hashlib.sha256(engine_host.encode()).hexdigest()[:12]
        return cls(os.path.join(state_dir(environ), "journal", f"{engine}-{project}.json"))

    def read(self) -> dict[str, Any]:
        """Return what is recorded (empty if nothing)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: Mapping[str, Any]) -> None:
        """Record `data` durably (write, fsync, rename); an empty record removes the file."""
        if not any(data.values()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        write_atomically(self.path, json.dumps(dict(data), indent=2, sort_keys=True).encode())

    def update(self, **changes: Any) -> None:
        """Change some fields of the record."""
        data = self.read()
        data.update(changes)
        self.write(data)

    def add_to(self, field: str, value: str) -> None:
        """Add `value` to the list `field`."""
        data = self.read()
        values = list(data.get(field) or [])
        if value not in values:
            values.append(value)
        data[field] = values
        self.write(data)

    def remove_from(self, field: str, value: str) -> None:
        """Remove `value` from the list `field`."""
        data = self.read()
        data[field] = [v for v in data.get(field) or [] if v != value]
        self.write(data)
