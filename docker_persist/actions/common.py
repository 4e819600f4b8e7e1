"""What the actions share: the workspace they act in, the callbacks they report through, the
lock wait, and the error for a snapshot that does not match its manifest."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence

from docker_persist.config.model import Project
from docker_persist.engine import Engine
from docker_persist.errors import PersistError
from docker_persist.host.journal import Journal

Say = Callable[[str], None]
Progress = Callable[[str, int], None]  # (label, bytes just moved)
ComposeRunner = Callable[[Sequence[str]], None]  # runs `docker compose [project flags] ARGS`

LOCK_TIMEOUT = 5.0
"""How long an operation waits for another one on the same project (or store) to finish."""


class IntegrityError(PersistError):
    """A snapshot's archive does not match its manifest: corrupt or tampered."""


def _quiet(message: str) -> None:
    del message


def _no_progress(label: str, size: int) -> None:
    del label, size


def expect(progress: Progress, label: str, total: int | None) -> None:
    """Tell a progress reporter about how many bytes the pass `label` will move (None: unknown), if it asks."""
    method = getattr(progress, "expect", None)
    if method is not None:
        method(label, total)


def tar_size(entries: int, data_bytes: int) -> int:
    """Return about how many bytes a tar of `entries` entries holding `data_bytes` of file data takes."""
    return data_bytes + entries * 1024 + 1024  # a header, a PAX header and padding per entry, and the end


def _no_compose(args: Sequence[str]) -> None:
    raise PersistError(f"cannot run `docker compose {' '.join(args)}` here")


@dataclasses.dataclass(frozen=True)
class Workspace:
    """One project on one engine, as an action sees it: the engine, the project, its journal and
    lock, how to run `docker compose` for it, and where to report."""

    engine: Engine
    project: Project
    journal: Journal
    compose: ComposeRunner = _no_compose
    say: Say = _quiet
    progress: Progress = _no_progress


def now_utc() -> datetime.datetime:
    """Return the current UTC time, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def project_images(project: Project, key: str) -> list[str]:
    """Return the project's images, those of the services that mount volume `key` first: one with a shell
    empties a volume whose files outlive it."""
    first = [s.image for s in project.services_using(key) if s.image]
    return list(dict.fromkeys([*first, *(s.image for s in project.services if s.image)]))
