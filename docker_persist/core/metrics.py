"""Per-volume freshness metrics, from the snapshot manifests and the scheduler's state file.

Collecting and rendering are pure; `metrics --textfile` writes the text with
host.files.write_atomically, for node_exporter's textfile collector. The format is Prometheus' text
exposition format 0.0.4.

The manifest records no backup duration: only the scheduler measures it (in its state file), so
a volume backed up by hand has no `docker_persist_last_backup_duration_seconds`, rather than one
derived from something else.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence

from docker_persist.core.dumps import volume_of
from docker_persist.core.manifest import TREE_SUFFIX, Manifest, VolumeRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclasses.dataclass(frozen=True)
class VolumeMetrics:
    """What is known of one volume's backups."""

    project: str
    volume: str
    snapshots: int = 0
    last_success: datetime.datetime | None = None  # the newest snapshot holding the volume
    bytes: int | None = None  # content bytes in that snapshot
    stored_bytes: int | None = None  # its archive's size in the store
    duration: float | None = None  # seconds, as the scheduler measured its last backup
    failures: int = 0
    last_verify: datetime.datetime | None = None
    last_verify_ok: bool | None = None
    up: bool | None = None  # its newest snapshot is within max_age and the store was read (None: not judged)


@dataclasses.dataclass(frozen=True)
class ProjectMetrics:
    """What is known of the project as a whole: whether its store answered, and what could not be read or sent."""

    project: str
    store_up: bool
    damaged: int = 0  # snapshots whose manifest cannot be read
    notify_failures: int = 0


def collect_metrics(
    project: str,
    volume_keys: Sequence[str],
    manifests: Sequence[Manifest],
    failures: Mapping[str, int],
    durations: Mapping[str, float],
    up: Mapping[str, bool] | None = None,
    deduplicated: bool = False,
) -> list[VolumeMetrics]:
    """Given the project's volumes, its manifests and the scheduler's counters, return each volume's metrics.
    In a `deduplicated` store (restic) a snapshot's parts share their chunks: no stored size is given.

    Volumes that only appear in snapshots are included too; container-layer and anonymous
    parts saved by `down` are not volumes of the project and are left out.
    """
    ordered = sorted(manifests, key=lambda m: (m.created, m.name))

    def stands_for(record: VolumeRecord) -> str | None:  # a dump stands for its volume
        return volume_of(record) if record.kind in ("volume", "dump") else None

    keys = list(dict.fromkeys([*volume_keys, *(k for m in ordered for r in m.volumes if (k := stands_for(r)))]))
    result = []
    for key in keys:
        # One entry per snapshot: its files if it holds them (they tell the sizes), else its dump.
        holding = []
        for manifest in ordered:
            held = [r for r in manifest.volumes if stands_for(r) == key]
            if held:
                holding.append((manifest, min(held, key=lambda r: r.kind != "volume")))
        verifications = [v for m, _ in holding for v in m.verifications if key in v.volumes]
        last_verify = max(verifications, key=lambda v: v.at, default=None)
        latest = holding[-1] if holding else None
        result.append(
            VolumeMetrics(
                project=project,
                volume=key,
                snapshots=len(holding),
                last_success=latest[0].created if latest else None,
                bytes=latest[1].bytes if latest and not latest[0].locked else None,  # sealed: not known
                stored_bytes=None
                if deduplicated or not latest or latest[1].file.endswith(TREE_SUFFIX)
                else latest[1].archive_bytes,
                duration=durations.get(key),
                failures=failures.get(key, 0),
                last_verify=last_verify.at if last_verify else None,
                last_verify_ok=last_verify.ok if last_verify else None,
                up=(up or {}).get(key),
            )
        )
    return result


_Value = float | int | None  # None leaves the sample out
_METRICS: tuple[tuple[str, str, str], ...] = (  # name suffix, type, help
    ("last_success_timestamp_seconds", "gauge", "Unix time of the newest snapshot holding the volume."),
    ("latest_snapshot_age_seconds", "gauge", "Seconds since the newest snapshot holding the volume was taken."),
    (
        "last_backup_duration_seconds",
        "gauge",
        "Seconds the scheduler's last backup of the volume took (absent: not measured; manifests record none).",
    ),
    ("backup_bytes", "gauge", "Content bytes of the volume in its newest snapshot."),
    ("backup_stored_bytes", "gauge", "Bytes the volume's newest snapshot archive takes in the store."),
    ("snapshots", "gauge", "Snapshots in the store that hold the volume."),
    ("backup_failures_total", "counter", "Scheduled backups, retention or verify runs of the volume that failed."),
    ("last_verify_timestamp_seconds", "gauge", "Unix time of the volume's newest restore drill (verify)."),
    ("last_verify_success", "gauge", "1 if the volume's newest restore drill passed, 0 if it failed."),
    (
        "volume_up",
        "gauge",
        "1 if the volume's newest snapshot is within its max_age, 0 if it is older, missing, or the store cannot "
        "be read.",
    ),
)
_PROJECT_METRICS: tuple[tuple[str, str, str], ...] = (
    ("store_up", "gauge", "1 if the project's snapshot store could be listed, 0 if not."),
    ("snapshots_damaged", "gauge", "Snapshots of the project whose manifest cannot be read."),
    ("notify_failures_total", "counter", "Notifications and health pings that could not be delivered."),
)


def _timestamp(value: datetime.datetime | None) -> float | None:
    return value.timestamp() if value else None


_VALUES: dict[str, Callable[[VolumeMetrics, datetime.datetime], _Value]] = {
    "last_success_timestamp_seconds": lambda m, now: _timestamp(m.last_success),
    "latest_snapshot_age_seconds": lambda m, now: (
        max(0.0, (now - m.last_success).total_seconds()) if m.last_success else None
    ),
    "last_backup_duration_seconds": lambda m, now: m.duration,
    "backup_bytes": lambda m, now: m.bytes,
    "backup_stored_bytes": lambda m, now: m.stored_bytes,
    "snapshots": lambda m, now: m.snapshots,
    "backup_failures_total": lambda m, now: m.failures,
    "last_verify_timestamp_seconds": lambda m, now: _timestamp(m.last_verify),
    "last_verify_success": lambda m, now: None if m.last_verify_ok is None else int(m.last_verify_ok),
    "volume_up": lambda m, now: None if m.up is None else int(m.up),
}
_PROJECT_VALUES: dict[str, Callable[[ProjectMetrics], int]] = {
    "store_up": lambda m: int(m.store_up),
    "snapshots_damaged": lambda m: m.damaged,
    "notify_failures_total": lambda m: m.notify_failures,
}


def _value(name: str, metrics: VolumeMetrics, now: datetime.datetime) -> _Value:
    """Return the value of metric family `name` for a volume. Raise KeyError for an unknown name."""
    return _VALUES[name](metrics, now)


def render_metrics(
    volumes: Iterable[VolumeMetrics], now: datetime.datetime, projects: Sequence[ProjectMetrics] = ()
) -> str:
    """Return the metrics in Prometheus' text exposition format, with HELP and TYPE for each family."""
    volumes = list(volumes)
    lines = []
    for suffix, kind, help_text in _PROJECT_METRICS if projects else ():
        name = f"docker_persist_{suffix}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{project="{escape_label(p.project)}"}} {_PROJECT_VALUES[suffix](p)}' for p in projects]
    for suffix, kind, help_text in _METRICS:
        name = f"docker_persist_{suffix}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for metrics in volumes:
            value = _value(suffix, metrics, now)
            if value is not None:
                labels = f'project="{escape_label(metrics.project)}",volume="{escape_label(metrics.volume)}"'
                lines.append(f"{name}{{{labels}}} {format_value(value)}")
    return "\n".join(lines) + "\n"


def escape_label(value: str) -> str:
    """Return a label value escaped for the exposition format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float | int) -> str:
    """Return a sample value: integers as such, other floats with up to millisecond precision."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")
