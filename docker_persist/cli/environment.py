"""The process environment, injected so that tests run the real `main`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO


class Environment:
    """Streams and variables a command may use; nothing below `main` touches sys directly."""

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.environ: Mapping[str, str] = dict(os.environ) if environ is None else environ

    @property
    def stdout_isatty(self) -> bool:
        """Return True if stdout is a terminal (progress bars are allowed)."""
        return _isatty(self.stdout)

    @property
    def stderr_isatty(self) -> bool:
        """Return True if stderr is a terminal."""
        return _isatty(self.stderr)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
