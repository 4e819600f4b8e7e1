"""The error hierarchy. `cli.main` is the one place that maps these to exit codes."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit codes, the same for every command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130


class PersistError(Exception):
    """Base of every error docker-persist reports to the user.

    The message is shown as is, so it must say what went wrong and what to do.
    """

    exit_status = ExitStatus.FAILED


class UsageError(PersistError):
    """Bad command line: unknown flag, missing argument, conflicting options."""

    exit_status = ExitStatus.USAGE

    def __init__(self, message: str, command: str = "docker persist") -> None:
        super().__init__(message)
        self.command = command


class ConfigError(PersistError):
    """Bad configuration: Docker config or context, Compose file, or x-persist."""

    exit_status = ExitStatus.USAGE


class EngineError(PersistError):
    """The Docker engine could not be reached or refused a request."""


class UnsafeOperationError(PersistError):
    """An operation was refused because it would lose data."""


class BusyError(PersistError):
    """Another docker-persist operation holds what this one needs (a project or store lock)."""


class SnapshotNotFoundError(PersistError):
    """No snapshot has the requested name."""


def add_note(error: BaseException, note: str) -> None:
    """Add a line to what is shown after an error's message (PEP 678's __notes__, which main prints)."""
    notes = getattr(error, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        error.__dict__["__notes__"] = notes
    notes.append(note)
