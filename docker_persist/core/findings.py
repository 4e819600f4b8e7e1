"""What `check` reports: findings with a stable rule ID, a severity, a message and a fix."""

from __future__ import annotations

import dataclasses

SEVERITIES = ("info", "warning", "error")


def severity_rank(severity: str) -> int:
    """Return 0 for info, 1 for warning, 2 for error."""
    return SEVERITIES.index(severity)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem found in a project.

    `message` is one line naming the service and path; `fix` is a concrete change.
    """

    rule: str  # DP001 ...
    severity: str  # info | warning | error
    message: str
    fix: str
    service: str | None = None
    volume: str | None = None  # the volume key in the Compose file
    path: str | None = None  # a container path, or a host path for bind mounts

    def as_dict(self) -> dict[str, str | None]:
        """Return the finding as a plain dict, for JSON output."""
        return dataclasses.asdict(self)
