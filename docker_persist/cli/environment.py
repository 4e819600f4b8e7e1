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
        """Return True if stdout is a terminal that output may decorate, with colour above all.

        False when colour is turned off (`colour_allowed`), as if stdout were not a terminal: `check`
        colours its findings by this.
        """
        return self.colour_allowed and _isatty(self.stdout)

    @property
    def colour_allowed(self) -> bool:
        """Return False if the user turned ANSI colour off: NO_COLOR set to anything but "" (https://no-color.org),
        or TERM=dumb."""
        return not self.environ.get("NO_COLOR") and self.environ.get("TERM") != "dumb"

    @property
    def colour(self) -> bool:
        """Return True if stdout may carry ANSI colour: a terminal, and colour not turned off."""
        return self.stdout_isatty

    @property
    def stderr_isatty(self) -> bool:
        """Return True if stderr is a terminal."""
        return _isatty(self.stderr)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
