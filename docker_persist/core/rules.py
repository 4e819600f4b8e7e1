"""The `check` rules: pure functions of the project, the live state and options to findings.

Each rule is a small function registered in RULES under a stable ID (DP001 ...). Rules that
look at where a container path's data lives share one resolver, `_place`, so that they agree;
where two rules would describe the same fact about the Compose file, the more specific one
reports it and the other stays silent (DP001 > DP012 > DP002 > DP004). `run_rules` applies
`ignore`, `x-persist: false` and the order.
"""

from __future__ import annotations

import dataclasses
import datetime
import posixpath
from collections.abc import Callable, Iterable, Sequence

from docker_persist.config.images import DUMPABLE, KnownImage, lookup_image
from docker_persist.config.model import Mount, Project, Service, Volume
from docker_persist.core.findings import Finding, severity_rank
from docker_persist.core.manifest import AUTOMATIC_REASONS
from docker_persist.core.retention import SnapshotFacts, plan_forget
from docker_persist.core.state import LiveState, SnapshotInfo, is_anonymous_volume_name
from docker_persist.errors import ConfigError
from docker_persist.units import DEFAULT_MAX_AGE, DEFAULT_VERIFY_MAX_AGE, Duration

SCHEDULED_MAX_AGE = Duration(hours=26)  # a daily schedule plus slack, when x-persist sets a schedule but no max_age


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """Thresholds and defaults for the rules, and whether the engine was read at all."""

    layer_threshold: int = 10 * 1024 * 1024  # bytes in a writable layer that count as data
    default_max_age: Duration = DEFAULT_MAX_AGE  # when x-persist sets neither max_age nor schedule
    default_verify_max_age: Duration = DEFAULT_VERIFY_MAX_AGE  # when x-persist sets no verify_max_age
    engine_read: bool = True  # False for `check --static`: an empty LiveState says nothing about what is missing
    encrypt_problem: str | None = None  # why x-persist.encrypt's recipients cannot be loaded (the command reads them)
    # (where, masked URL, severity, problem) of each x-persist.notify or ping target that cannot be used
    notify_problems: tuple[tuple[str, str, str, str], ...] = ()


DEFAULT_OPTIONS = CheckOptions()

RuleCheck = Callable[[Project, LiveState, CheckOptions], list[Finding]]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A check rule: its stable ID, its usual severity, a title and the function that runs it."""

    id: str
    severity: str
    title: str
    check: RuleCheck


# --- paths --------------------------------------------------------------------------


def _normalize(path: str) -> str:
    normalized = posixpath.normpath(path)
    return "/" + normalized.lstrip("/") if normalized.startswith("/") else normalized


def _is_within(path: str, parent: str) -> bool:
    """Return True if `path` is `parent` or below it."""
    path, parent = _normalize(path), _normalize(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _overlaps(a: str, b: str) -> bool:
    return _is_within(a, b) or _is_within(b, a)


def _overlaps_any(path: str, others: Iterable[str]) -> bool:
    return any(_overlaps(path, other) for other in others)


def _deepest_mount(mounts: Iterable[Mount], path: str) -> Mount | None:
    """Return the mount that holds `path` in the container: the deepest one at or above it."""
    holding = [m for m in mounts if m.target and _is_within(path, m.target)]
    return max(holding, key=lambda m: len(_normalize(m.target)), default=None)


# --- where a container path's data lives ----------------------------------------------

_LOST_KINDS = ("tmpfs", "anonymous", "layer", "unknown")  # worst first


@dataclasses.dataclass(frozen=True)
class _Placement:
    """Where a container path's data lives.

    kind: named | bind | anonymous | tmpfs | layer (the writable layer) | unknown (an
    anonymous volume or the layer: the image's VOLUMEs were not read) | other.
    """

    kind: str
    mount: Mount | None = None
    image_volume: str | None = None  # the image VOLUME that makes the anonymous volume
    shadowed: Mount | None = None  # a Compose mount above that image VOLUME, which does not stop it
    live_volume: str | None = None  # the anonymous volume a live container has there


def _image_of(service: Service, state: LiveState) -> str | None:
    """Return the service's image, or its live container's image for a service that builds one."""
    if service.image:
        return service.image
    return next((c.image for c in state.containers_of(service.name) if c.image), None)


def _declared_volumes(service: Service, state: LiveState) -> tuple[str, ...] | None:
    """Return the image's VOLUMEs, or None if the image was not inspected."""
    image = _image_of(service, state)
    return state.image_volumes.get(image) if image else None


def _image_anonymous_volumes(service: Service, state: LiveState) -> list[str]:
    """Return the image VOLUMEs Docker makes anonymous volumes for: those with no mount at exactly that path.

    A mount above one does not count: Docker still mounts an anonymous volume over it.
    """
    targets = {_normalize(m.target) for m in service.mounts}
    return [v for v in _declared_volumes(service, state) or () if _normalize(v) not in targets]


def _place(service: Service, state: LiveState, path: str) -> _Placement:
    """Return where `path` lives: the deepest of the Compose mounts and the image's anonymous volumes above it."""
    mount = _deepest_mount(service.mounts, path)
    anonymous = [v for v in _image_anonymous_volumes(service, state) if _is_within(path, v)]
    image_volume = max(anonymous, key=lambda v: len(_normalize(v)), default=None)
    if image_volume is not None and (mount is None or len(_normalize(image_volume)) > len(_normalize(mount.target))):
        return _Placement("anonymous", image_volume=image_volume, shadowed=mount)
    if mount is not None:
        kinds = {"bind": "bind", "tmpfs": "tmpfs", "volume": "named" if mount.source else "anonymous"}
        return _Placement(kinds.get(mount.type, "other"), mount=mount)
    for container in state.containers_of(service.name):
        for live in container.mounts:
            if (
                live.type == "volume"
                and is_anonymous_volume_name(live.name or "")
                and _is_within(path, live.destination)
            ):
                return _Placement("anonymous", live_volume=live.name)
    return _Placement("layer" if _declared_volumes(service, state) is not None else "unknown")


# One message per placement that loses data.
def _describe(placement: _Placement, path: str) -> str:  # noqa: PLR0911
    """Return the end of a message saying where `path` is, for a placement that loses data."""
    mount = placement.mount
    where = f" (mounted at {mount.target})" if mount and _normalize(mount.target) != _normalize(path) else ""
    if placement.kind == "tmpfs":
        return f"is on tmpfs{where}, emptied whenever the container stops"
    if placement.kind == "anonymous" and placement.image_volume:
        volume = placement.image_volume
        if placement.shadowed is not None:
            return (
                f"is on an anonymous volume: the image declares VOLUME {volume}, and the mount above it "
                f"at {placement.shadowed.target} does not stop Docker from making one"
            )
        return f"is on an anonymous volume: nothing is mounted there and the image declares VOLUME {volume}"
    if placement.kind == "anonymous" and placement.live_volume:
        return f"is on anonymous volume {placement.live_volume[:12]}: nothing is mounted there in the Compose file"
    if placement.kind == "anonymous":
        return f"is on an anonymous volume{where}"
    if placement.kind == "layer":
        return "is in the container's writable layer: nothing is mounted there and the image declares no VOLUME"
    return "is on no named volume: nothing is mounted there, so it is on an anonymous volume or in the container layer"


def _suggested_volume(service: Service) -> str:
    return f"{service.name}_data"


def _named_volume_fix(service: Service, path: str) -> str:
    key = _suggested_volume(service)
    return (
        f"mount a named volume there: `volumes: [{key}:{path}]` "
        f"and declare `{key}` under top-level `volumes:` with `x-persist: {{}}`"
    )


def _subject(service: Service, known: KnownImage | None = None) -> str:
    return f"service '{service.name}' ({known.name})" if known else f"service '{service.name}'"


# --- the data paths of well-known images ----------------------------------------------


def _known_image(service: Service, state: LiveState) -> KnownImage | None:
    return lookup_image(_image_of(service, state))


def _data_gap(service: Service, state: LiveState) -> tuple[KnownImage, str, _Placement] | None:
    """Return the known image, data path and placement when its data is on no named volume.

    The data paths are alternatives: one on a named volume is enough. What is mounted (by
    Compose, or as an anonymous volume for an image VOLUME) decides, the deepest data path
    first: a tmpfs on /var/lib/postgresql/data inside a named volume on /var/lib/postgresql
    loses postgres' data. A bind is preferred over the
    lost kinds (it is DP010's, not DP001's), then the worst placement, in path order.
    """
    known = _known_image(service, state)
    if known is None:
        return None
    placed = [(path, _place(service, state, path)) for path in known.data_paths]
    mounted = [(path, p) for path, p in placed if p.mount is not None or p.image_volume is not None]
    deciding = [(path, p) for path, p in mounted if not any(o != path and _is_within(o, path) for o, _ in mounted)]
    if any(p.kind not in (*_LOST_KINDS, "bind") for _, p in deciding):
        return None
    binds = [(path, p) for path, p in deciding if p.kind == "bind"]
    candidates = binds or [(path, p) for path, p in placed if p.kind in _LOST_KINDS]
    path, placement = min(candidates, key=lambda item: ((*_LOST_KINDS, "bind").index(item[1].kind), _inexact(*item)))
    return known, path, placement


def _inexact(path: str, placement: _Placement) -> bool:
    """Return False if the mount or image VOLUME that places `path` is at `path` itself (a better report)."""
    at = placement.mount.target if placement.mount else placement.image_volume
    return at is None or _normalize(at) != _normalize(path)


def _lost_data_path(service: Service, state: LiveState) -> str | None:
    """Return the data path DP001 reports for the service, if any."""
    gap = _data_gap(service, state)
    return gap[1] if gap and gap[2].kind != "bind" else None


def _precious_path_gaps(service: Service, state: LiveState) -> list[tuple[str, _Placement]]:
    """Return the service's `x-persist.paths` whose data is lost, except what DP001 reports."""
    if service.policy is None:
        return []
    reported = [p for p in (_lost_data_path(service, state),) if p]
    placed = [(path, _place(service, state, path)) for path in service.policy.paths]
    return [(path, p) for path, p in placed if p.kind in _LOST_KINDS and not _overlaps_any(path, reported)]


def _image_volume_gaps(service: Service, state: LiveState) -> list[str]:
    """Return the image VOLUMEs that nothing is mounted on, except paths DP001 or DP012 cover."""
    known = _known_image(service, state)
    covered = [*(known.data_paths if known else ()), *(path for path, _ in _precious_path_gaps(service, state))]
    return [v for v in _image_anonymous_volumes(service, state) if not _overlaps_any(v, covered)]


def _declared_anonymous_reported(service: Service, state: LiveState) -> list[str]:
    """Return the paths where DP001 or DP012 already report an anonymous volume the Compose file declares."""
    known = _known_image(service, state)
    return [*(known.data_paths if known else ()), *(path for path, _ in _precious_path_gaps(service, state))]


def _secondary_data_paths(service: Service, state: LiveState) -> tuple[str, ...]:
    """Return a known image's other data paths when its data is safe (mongo's /data/configdb), else ()."""
    known = _known_image(service, state)
    gap = _data_gap(service, state)
    return known.data_paths if known and (gap is None or gap[2].kind == "bind") else ()


# --- volumes and snapshots ------------------------------------------------------------


def _volume_users(project: Project, key: str) -> list[tuple[Service, Mount]]:
    return [(s, m) for s in project.services for m in s.mounts if m.type == "volume" and m.source == key]


def _volume_subject(project: Project, volume: Volume) -> tuple[str, str | None, str | None]:
    """Return how a message names the volume, and the service and path it is first mounted at."""
    users = _volume_users(project, volume.key)
    if not users:
        return f"volume '{volume.key}' (mounted by no service)", None, None
    where = ", ".join(f"'{s.name}' at {m.target}" for s, m in users)
    plural = "s" if len({s.name for s, _ in users}) > 1 else ""
    return f"volume '{volume.key}' (service{plural} {where})", users[0][0].name, users[0][1].target


def _volume_finding(project: Project, volume: Volume, rule: str, severity: str, problem: str, fix: str) -> Finding:
    subject, service, path = _volume_subject(project, volume)
    return Finding(rule, severity, f"{subject}: {problem}", fix, service=service, volume=volume.key, path=path)


def _precious(project: Project) -> list[Volume]:
    return [v for v in project.precious_volumes() if not v.disposable]


def _snapshots_of(state: LiveState, key: str) -> list[SnapshotInfo]:
    """Return the snapshots that contain the volume `key`, oldest first."""
    return sorted((s for s in state.snapshots or () if key in s.volumes), key=lambda s: s.created)


def _seconds_since(state: LiveState, moment: datetime.datetime) -> float:
    return (state.now - moment).total_seconds()


def _format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min"


def _format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def _older_than(state: LiveState, moment: datetime.datetime, limit: Duration) -> bool:
    return moment < limit.subtract_from(state.now)


def max_age_of(project: Project, volume: Volume, options: CheckOptions = DEFAULT_OPTIONS) -> Duration:
    """Return the age past which the volume's newest snapshot is stale: its max_age, the project's, 26h when
    scheduled, else the default."""
    policy = volume.policy
    explicit = (policy.max_age if policy else None) or project.policy.max_age
    if explicit:
        return explicit
    scheduled = (policy.schedule if policy else None) or project.policy.schedule
    return SCHEDULED_MAX_AGE if scheduled else options.default_max_age


def verify_max_age_of(project: Project, volume: Volume, options: CheckOptions = DEFAULT_OPTIONS) -> Duration:
    """Return the age past which the volume's newest passing restore drill is too old."""
    explicit = (volume.policy.verify_max_age if volume.policy else None) or project.policy.verify_max_age
    return explicit or options.default_verify_max_age


# --- the rules ------------------------------------------------------------------------


def find_data_off_named_volume(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP001: return findings for well-known images whose data path is on no named volume."""
    findings = []
    for service in project.services:
        gap = _data_gap(service, state)
        if gap is None or gap[2].kind == "bind":
            continue
        known, path, placement = gap
        findings.append(
            Finding(
                "DP001",
                "error",
                f"{_subject(service, known)}: {path} {_describe(placement, path)}",
                _named_volume_fix(service, path),
                service=service.name,
                path=path,
            )
        )
    return findings


def find_unmounted_image_volumes(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP002: return findings for image VOLUMEs that no named volume or bind is mounted on."""
    findings = []
    for service in project.services:
        for volume in _image_volume_gaps(service, state):
            findings.append(
                Finding(
                    "DP002",
                    "warning",
                    f"service '{service.name}' ({_image_of(service, state)}): the image declares VOLUME {volume} "
                    "and nothing is mounted there, so Docker makes an anonymous volume that `down` + `up` orphans",
                    f"{_named_volume_fix(service, volume)}; if what it holds is disposable, "
                    f"add `x-persist: {{ignore: [DP002]}}` to service '{service.name}'",
                    service=service.name,
                    path=volume,
                )
            )
    return findings


_SCRATCH_PREFIXES = ("/tmp", "/var/tmp", "/run", "/var/run", "/var/log", "/var/cache", "/proc", "/sys", "/dev")


def _is_scratch(path: str) -> bool:
    return any(_is_within(path, prefix) for prefix in _SCRATCH_PREFIXES) or ".cache" in path.split("/")


def _data_changes(changes: Sequence[str], mounted: Sequence[str]) -> list[str]:
    """Return the changed paths that look like data: not a parent of another, not scratch, not a mount point.

    The engine lists the stubs it creates for mount points (and their parents) as changes.
    """
    paths = sorted({_normalize(c) for c in changes if c})
    leaves = [p for p in paths if not any(o != p and _is_within(o, p) for o in paths)]
    return [p for p in leaves if not _is_scratch(p) and not any(_is_within(p, m) for m in mounted)]


def find_data_in_container_layer(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP003: return findings for containers holding data in their writable layer."""
    findings = []
    for service in project.services:
        for container in state.containers_of(service.name):
            if container.size_rw is None or container.size_rw <= options.layer_threshold:
                continue
            mounted = [m.destination for m in container.mounts] + [m.target for m in service.mounts]
            changed = _data_changes(container.changes, mounted) if container.changes is not None else None
            if changed == []:
                continue
            size = _format_size(container.size_rw)
            if changed is None:
                detail, path = "", None
            else:
                more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                detail, path = f" (e.g. {', '.join(changed[:3])}{more})", changed[0]
            findings.append(
                Finding(
                    "DP003",
                    "warning",
                    f"service '{service.name}' (container {container.name}): {size} of data in the writable layer"
                    f"{detail}; removing the container loses it",
                    f"find where it writes with `docker diff {container.name}` and mount a named volume on that "
                    f"directory, declared under top-level `volumes:` with `x-persist: {{}}`; back it up first with "
                    f"`docker cp {container.name}:<dir> <host dir>`",
                    service=service.name,
                    path=path,
                )
            )
    return findings


def find_orphaned_anonymous_volumes(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP004: return findings for anonymous volumes, live or declared, that `down` + `up` would orphan.

    A live one holds data now, so it is reported even where DP001 or DP002 describe the Compose
    file, with how to copy the data out; and also where the Compose file now mounts a named volume
    or a bind, since the next `up` recreates the container on that and leaves the data behind.
    Silent for the other data paths of a known image whose data is safe (mongo's /data/configdb).
    """
    project_names = {v.name for v in project.volumes.values()}
    findings = []
    for service in project.services:
        seen: set[str] = set()
        secondary = _secondary_data_paths(service, state)
        for container in state.containers_of(service.name):
            for live in container.mounts:
                name, target = live.name or "", _normalize(live.destination)
                if live.type != "volume" or not is_anonymous_volume_name(name) or name in project_names:
                    continue
                placement = _place(service, state, target)
                if target in seen or (placement.kind not in ("named", "bind") and _overlaps_any(target, secondary)):
                    continue
                seen.add(target)
                if placement.kind in ("named", "bind"):
                    findings.append(_replaced_anonymous_finding(service, target, container.name, name, placement))
                else:
                    findings.append(_anonymous_finding(service, target, container.name, name))
        reported = _declared_anonymous_reported(service, state)
        for mount in service.mounts:
            target = _normalize(mount.target)
            if mount.is_anonymous and target not in seen and not _overlaps_any(target, reported):
                seen.add(target)
                findings.append(_anonymous_finding(service, mount.target))
    return findings


def _anonymous_finding(service: Service, path: str, container: str | None = None, volume: str = "") -> Finding:
    where = f"anonymous volume {volume[:12]} (container {container})" if container else "an anonymous volume"
    copy = f"; copy the current data over first (`docker cp {container}:{path} <host dir>`)" if container else ""
    return Finding(
        "DP004",
        "warning",
        f"service '{service.name}': {path} is on {where}; after `docker compose down` the next `up` "
        "starts with a new empty one and orphans this one",
        _named_volume_fix(service, path) + copy,
        service=service.name,
        path=path,
    )


def _replaced_anonymous_finding(
    service: Service, path: str, container: str, volume: str, replacement: _Placement
) -> Finding:
    mount = replacement.mount
    new = f"volume '{mount.source}'" if mount and mount.type == "volume" else f"bind {mount.source if mount else '?'}"
    return Finding(
        "DP004",
        "warning",
        f"service '{service.name}': {path} is on anonymous volume {volume[:12]} (container {container}), but the "
        f"Compose file now mounts {new} there: the next `up` recreates the container without this data",
        f"before the next `up`, copy the data out (`docker cp {container}:{path} <host dir>`) and into the new "
        "mount once it exists, then restart the service",
        service=service.name,
        volume=mount.source if mount and mount.type == "volume" else None,
        path=path,
    )


def find_stale_snapshots(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP005: return findings for precious volumes with no snapshot, or only an old one."""
    findings = []
    for volume in _precious(project):
        if state.snapshots is None:
            findings.append(
                _volume_finding(
                    project,
                    volume,
                    "DP005",
                    "info",
                    "snapshot status unknown: no snapshot store could be read",
                    "set a reachable store in the top-level `x-persist: {store: ...}` (file:// or s3://) "
                    "and run `docker persist snapshots`",
                )
            )
            continue
        snapshots = _snapshots_of(state, volume.key)
        limit = max_age_of(project, volume, options)
        backup = f"run `docker persist backup {volume.key}`"
        if not snapshots:
            problem = "precious, but no snapshot contains it"
            fix = f'{backup} now, and schedule it with a top-level `x-persist: {{schedule: "0 3 * * *"}}`'
        elif _older_than(state, snapshots[-1].created, limit):
            newest = snapshots[-1]
            problem = (
                f"newest snapshot '{newest.name}' is {_format_duration(_seconds_since(state, newest.created))} old "
                f"(limit {limit})"
            )
            fix = f"{backup}; if backups are scheduled, check that the scheduler still runs"
        else:
            continue
        findings.append(_volume_finding(project, volume, "DP005", "warning", problem, fix))
    return findings


def find_unverified_snapshots(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP006: return findings for precious volumes whose snapshots failed or have not passed verify lately.

    A passing verify of any snapshot of the volume counts (a restore drill tests the process),
    so a fresh scheduled snapshot is not reported until the drill is overdue; a failed verify
    of the newest snapshot is always reported.
    """
    findings = []
    for volume in _precious(project):
        snapshots = _snapshots_of(state, volume.key)
        if not snapshots:
            continue  # DP005 says so
        newest = snapshots[-1]
        passed = [s for s in snapshots if s.verified_ok is True]
        last_pass = max((s.verified_at for s in passed if s.verified_at), default=None)
        limit = verify_max_age_of(project, volume, options)
        drill = f"run `docker persist verify` (a restore drill into a scratch volume) at least every {limit}"
        if newest.verified_ok is False:
            problem = f"its newest snapshot '{newest.name}' failed verify"
            fix = (
                f"run `docker persist verify {newest.name}` to see what differs, "
                f"then `docker persist backup {volume.key}` and verify the new snapshot"
            )
        elif not passed:
            problem = "no snapshot of it has ever passed verify, so no restore of it has been tested"
            fix = drill
        elif last_pass is not None and _older_than(state, last_pass, limit):
            age = _format_duration(_seconds_since(state, last_pass))
            problem = f"last passed verify {age} ago (limit {limit})"
            fix = drill
        else:
            continue
        findings.append(_volume_finding(project, volume, "DP006", "warning", problem, fix))
    return findings


_SENSITIVE_EXACT = ("/", "/root", "/home", "/Users", "/var", "/usr", "/bin", "/sbin", "/lib", "/run", "/var/run")
_SENSITIVE_TREES = ("/etc", "/boot", "/proc", "/sys", "/var/lib/docker")
_SECRET_DIRS = (".ssh", ".gnupg", ".aws", ".kube", ".docker")


def _is_docker_socket(source: str) -> bool:
    return posixpath.basename(_normalize(source)) == "docker.sock"


def _is_sensitive(source: str) -> bool:
    path = _normalize(source)
    parts = path.split("/")
    home = len(parts) == 3 and parts[1] in ("home", "Users")  # a whole home directory
    return (
        path in _SENSITIVE_EXACT
        or home
        or any(_is_within(path, tree) for tree in _SENSITIVE_TREES)
        or any(d in parts for d in _SECRET_DIRS)
    )


def _binds(service: Service) -> list[Mount]:
    return [m for m in service.mounts if m.type == "bind" and m.source]


def find_sensitive_bind_mounts(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP007: return findings for the Docker socket and writable binds of sensitive host paths."""
    findings = []
    for service in project.services:
        for mount in _binds(service):
            source = mount.source or ""
            if _is_docker_socket(source):
                ro = ", read-only or not:" if mount.read_only else ":"
                message = (
                    f"bind-mounts the Docker socket {source}{ro} it gives full control of the engine, "
                    "i.e. root on the host"
                )
                fix = "remove it, or put a socket proxy in front that allows only the API calls the service needs"
            elif not mount.read_only and _is_sensitive(source):
                message = (
                    f"has a writable bind mount of sensitive host path {source} at {mount.target}: "
                    "the container can change the host"
                )
                fix = (
                    f"mount it read-only (`{source}:{mount.target}:ro`), or bind only the file or directory "
                    "the service needs, or use a named volume"
                )
            else:
                continue
            findings.append(
                Finding("DP007", "error", f"service '{service.name}' {message}", fix, service=service.name, path=source)
            )
    return findings


def find_privileged_binds(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP008: return findings for privileged (or SYS_ADMIN) services, errors when they bind host paths."""
    findings = []
    for service in project.services:
        powers = ["`privileged: true`"] if service.privileged else []
        powers += [f"cap_add {c}" for c in service.cap_add if c in ("SYS_ADMIN", "ALL")]
        if not powers:
            continue
        binds = _binds(service)
        fix = "drop `privileged: true` (and SYS_ADMIN) and add only the capabilities and `devices:` it needs"
        if binds:
            sources = ", ".join(m.source or "" for m in binds)
            message = (
                f"has {' and '.join(powers)} and bind-mounts {sources}: "
                "it can remount them read-write and reach the rest of the host"
            )
            severity = "error"
        else:
            message = f"has {' and '.join(powers)}: it can mount host devices and escape the container"
            severity = "warning"
        findings.append(Finding("DP008", severity, f"service '{service.name}' {message}", fix, service=service.name))
    return findings


_SYSTEM_TREES = ("/etc", "/usr", "/proc", "/sys", "/dev", "/run", "/var/run", "/var/lib/docker")


def _host_kind(state: LiveState, source: str) -> str | None:
    return state.host_paths.get(source) or state.host_paths.get(_normalize(source))


def find_drifting_bind_mounts(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP009: return findings for single-file binds and bind sources missing on the host."""
    findings = []
    for service in project.services:
        for mount in _binds(service):
            source = mount.source or ""
            kind = _host_kind(state, source)
            system = source.endswith(".sock") or any(_is_within(source, tree) for tree in _SYSTEM_TREES)
            if kind == "file" and not system:
                message = (
                    f"bind mount of the single file {source} at {mount.target}: editors that save by rename "
                    "leave the container reading the old file"
                )
                fix = (
                    f"bind the directory that holds it (`{posixpath.dirname(_normalize(source))}`) on a directory "
                    "in the container and point the service at the file there, or restart the service after each edit"
                )
            elif kind == "missing":
                message = (
                    f"bind source {source} (at {mount.target}) does not exist on the host: "
                    "Docker creates an empty root-owned directory there"
                )
                fix = f"create it (`mkdir -p {source}`, or the file it should be) or fix the path in the Compose file"
            else:
                continue
            findings.append(
                Finding(
                    "DP009", "warning", f"service '{service.name}': {message}", fix, service=service.name, path=source
                )
            )
    return findings


def find_database_bind_mounts(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP010: return findings for database data paths on a bind mount."""
    findings = []
    for service in project.services:
        gap = _data_gap(service, state)
        if gap is None or gap[2].kind != "bind" or not gap[0].database:
            continue
        known, path, placement = gap
        mount = placement.mount
        source = posixpath.join(mount.source or "", posixpath.relpath(path, mount.target)) if mount else "?"
        source = _normalize(source)
        findings.append(
            Finding(
                "DP010",
                "warning",
                f"{_subject(service, known)}: {path} is a bind mount of {source}: the database user's uid must own it, "
                "and binds are slow and weaken fsync on Docker Desktop",
                f"{_named_volume_fix(service, path)}; then, with the service stopped, copy the data in: "
                f"`docker run --rm -v {source}:/from:ro -v {project.name}_{_suggested_volume(service)}:/to "
                f"{_image_of(service, state)} cp -a /from/. /to/`",
                service=service.name,
                path=path,
            )
        )
    return findings


def _image_data_on(service: Service, state: LiveState, mount: Mount) -> KnownImage | None:
    """Return the service's well-known image if `mount` holds its data, else None."""
    known = _known_image(service, state)
    if known is None:
        return None
    holds = any(_deepest_mount(service.mounts, path) is mount for path in known.data_paths)
    return known if holds or _is_within(mount.target, known.data_paths[0]) else None


def _holds_database(service: Service, state: LiveState, mount: Mount) -> bool:
    """Return True if `mount` holds the database files of the service's image."""
    known = _image_data_on(service, state, mount)
    return known is not None and known.database


def find_shared_writable_volumes(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP011: return findings for named volumes mounted read-write by more than one service."""
    findings = []
    for key in project.volumes:
        writers = [(s, m) for s, m in _volume_users(project, key) if not m.read_only]
        if len({s.name for s, _ in writers}) < 2:
            continue
        databases = [(s, m) for s, m in writers if _holds_database(s, state, m)]
        service, mount = (databases or writers)[0]
        where = ", ".join(f"'{s.name}' at {m.target}" for s, m in writers)
        other, other_mount = next((s, m) for s, m in writers if s is not service)
        if databases:
            severity, harm = "error", f"a second writer can corrupt the database files of '{service.name}'"
        else:
            severity, harm = "warning", "concurrent writers can clash, and a consistent snapshot must stop them all"
        findings.append(
            Finding(
                "DP011",
                severity,
                f"volume '{key}' is mounted read-write by services {where}: {harm}",
                f"mount it read-only in every service that only reads it (e.g. `{key}:{other_mount.target}:ro` in "
                f"'{other.name}'), or give each service its own volume; back up with `docker persist backup`",
                service=service.name,
                volume=key,
                path=mount.target,
            )
        )
    return findings


def find_precious_paths_not_persisted(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP012: return findings for `x-persist.paths` on tmpfs, an anonymous volume or the container layer."""
    findings = []
    for service in project.services:
        for path, placement in _precious_path_gaps(service, state):
            findings.append(
                Finding(
                    "DP012",
                    "error",
                    f"service '{service.name}': x-persist says {path} must persist, "
                    f"but it {_describe(placement, path)}",
                    _named_volume_fix(service, path),
                    service=service.name,
                    path=path,
                )
            )
    return findings


def _option_names(value: object) -> list[str]:
    """Return the names in a provider option: a comma-separated string or a list."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    return [str(item).strip() for item in items if str(item).strip()]


def _provider_references(project: Project) -> list[Finding]:
    volume_names = set(project.volumes) | {v.name for v in project.volumes.values()}
    findings = []
    for service in project.services:
        if service.provider != "persist":
            continue
        for option, exists in (("volumes", volume_names.__contains__), ("services", project.service)):
            for name in _option_names(service.provider_options.get(option)):
                if exists(name):
                    continue
                findings.append(
                    Finding(
                        "DP013",
                        "error",
                        f"service '{service.name}' (persist provider): option {option} names '{name}', "
                        f"which the project has no {option[:-1]} called",
                        f"fix the name in `provider: {{options: {{{option}: ...}}}}` or add the {option[:-1]}",
                        service=service.name,
                    )
                )
    return findings


def _restore_reference(project: Project, state: LiveState, volume: Volume) -> Finding | None:
    restore = volume.policy.restore if volume.policy else "none"
    if restore in ("latest", "none") or state.snapshots is None:
        return None
    named = [s for s in state.snapshots if s.name == restore]
    if named and volume.key in named[0].volumes:
        return None
    problem = (
        f"x-persist restore: {restore} names a snapshot that does not exist"
        if not named
        else f"x-persist restore: {restore} names a snapshot that does not contain it"
    )
    fix = "pick a name from `docker persist snapshots`, or use `restore: latest`"
    return _volume_finding(project, volume, "DP013", "error", problem, fix)


def find_dangling_references(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP013: return findings for x-persist naming volumes, services or snapshots that do not exist."""
    findings = []
    for volume in _precious(project):
        if not _volume_users(project, volume.key):
            findings.append(
                _volume_finding(
                    project,
                    volume,
                    "DP013",
                    "error",
                    "has x-persist, but no service mounts it",
                    f"mount it where the data is (`volumes: [{volume.key}:<path>]`) or drop it; "
                    "if its service is behind a profile, enable the profile",
                )
            )
        restore = _restore_reference(project, state, volume)
        if restore is not None:
            findings.append(restore)
    return findings + _provider_references(project)


def find_missing_external_volumes(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP014: return findings for external volumes that the engine does not have."""
    return [
        _volume_finding(
            project,
            volume,
            "DP014",
            "error",
            f"external volume '{volume.name}' does not exist, so `up` fails",
            f"create it (`docker volume create {volume.name}`) or restore it from a snapshot "
            f"(`docker persist restore <snapshot> --volume {volume.key}`), or fix `name:`",
        )
        for volume in project.volumes.values()
        if options.engine_read and volume.external and volume.name not in state.volumes
    ]


def find_unguarded_volumes(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP015: return findings for protected volumes that exist but have no running engine guard.

    A stopped guard counts as none: `docker container prune` and `docker system prune` remove it.
    """
    running = {g.volume for g in state.guards if g.running}
    stopped = {g.volume for g in state.guards if not g.running}
    findings = []
    for volume in _precious(project):
        if not (volume.policy and volume.policy.protect and volume.name in state.volumes) or volume.name in running:
            continue
        if volume.name in stopped:
            problem = (
                f"the guard of '{volume.name}' is not running, so `docker container prune` or `docker system prune` "
                "removes it, and the volume can go with the next prune"
            )
        else:
            problem = (
                f"protect is on but '{volume.name}' has no guard, so `docker volume rm` and `down -v` can remove it"
            )
        fix = f"run `docker persist protect {volume.key}` (or `docker persist up`, which restores guards)"
        findings.append(_volume_finding(project, volume, "DP015", "warning", problem, fix))
    return findings


def find_unquiesced_databases(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP016: return findings for databases on a precious volume with no `consistency` nor `pre` hook."""
    findings = []
    for service in project.services:
        known = _known_image(service, state)
        policy = service.policy
        if known is None or not known.database:
            continue
        if policy and (policy.consistency != "none" or policy.pre or (policy.dump and not policy.dump.also_volume)):
            continue  # quiesced, dumped by a hook, or dumped instead of copied
        for path in known.data_paths:
            mount = _place(service, state, path).mount
            volume = project.volumes.get(mount.source or "") if mount and mount.type == "volume" else None
            if volume is None or volume.policy is None:
                continue
            if known.name in DUMPABLE:
                fix = (f"add `x-persist: {{dump: auto}}` to service '{service.name}': a hot, consistent dump "
                       "while it keeps serving (or `consistency: stop`)")  # fmt: skip
            else:
                dump = known.dump_hook(path)
                hook = f", or dump first with `x-persist: {{pre: [...]}}` running `{dump}`" if dump else ""
                fix = f"add `x-persist: {{consistency: stop}}` to service '{service.name}'{hook}"
            findings.append(
                Finding(
                    "DP016",
                    "warning",
                    f"{_subject(service, known)}: {path} is on precious volume '{volume.key}' but x-persist sets "
                    "`consistency: none` and no `pre` hook: a copy of live database files may not restore",
                    fix,
                    service=service.name,
                    volume=volume.key,
                    path=path,
                )
            )
            break
    return findings


def find_unusable_encryption(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP017: x-persist.encrypt whose recipients cannot be loaded: every backup of the project would fail."""
    if project.policy.encrypt is None or options.encrypt_problem is None:
        return []
    return [
        Finding(
            "DP017",
            "error",
            f"x-persist.encrypt cannot be used ({options.encrypt_problem}): every backup of project "
            f"'{project.name}', scheduled and before `down` included, fails until it is fixed",
            "list age public keys in x-persist.encrypt.recipients or a readable recipients_file, one a line "
            "(`age-keygen -y KEY_FILE` prints the public key of a key)",
        )
    ]


def find_damaged_snapshots(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP019: return a finding for each snapshot whose manifest cannot be read."""
    return [
        Finding(
            rule="DP019",
            severity="warning",
            message=f"snapshot '{s.name}' is damaged: {s.damaged}",
            fix=f"if a copy of it exists elsewhere, copy it back; otherwise `docker persist forget {s.name}`",
        )
        for s in state.snapshots or ()
        if s.damaged is not None
    ]


def find_retention_preview(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP020: return what x-persist.keep would forget at the next backup, before it does (info)."""
    keep = project.policy.keep
    if keep is None or keep.is_empty() or not state.snapshots:
        return []
    facts = [
        SnapshotFacts(s.name, s.created, s.volumes, s.reason in AUTOMATIC_REASONS, s.pinned, s.verified_ok is True)
        for s in state.snapshots
        if s.damaged is None
    ]
    try:
        decisions = plan_forget(facts, keep, state.now)
    except ConfigError as error:
        return [Finding(rule="DP020", severity="error", message=f"x-persist.keep cannot be applied: {error}",
                        fix="fix x-persist.keep: every backup would fail to apply it")]  # fmt: skip
    gone = [d.snapshot.name for d in decisions if not d.keep]
    if not gone:
        return []
    listed = ", ".join(f"'{name}'" for name in gone[:5]) + (f" and {len(gone) - 5} more" if len(gone) > 5 else "")
    return [
        Finding(
            rule="DP020",
            severity="info",
            message=f"x-persist.keep forgets {len(gone)} snapshot(s) at the next backup: {listed}",
            fix="`docker persist forget --dry-run` shows why each is kept or not; `docker persist pin NAME` keeps one",
        )
    ]


def find_incomplete_volumes(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP018: return findings for the project's volumes that hold part of a restore that was interrupted."""
    findings = []
    for volume in project.volumes.values():
        snapshot = state.incomplete.get(volume.name)
        if snapshot is None:
            continue
        problem = (
            f"'{volume.name}' holds part of snapshot '{snapshot}': a restore into it was interrupted, and a service "
            "started on it would run on half of the data"
        )
        fix = f"finish it with `docker persist restore {snapshot} --yes` (or see `docker persist recover`)"
        findings.append(_volume_finding(project, volume, "DP018", "error", problem, fix))
    return findings


def find_uncovered_data(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP021: return findings for data that no x-persist policy covers, so that nothing backs it up.

    A named volume of the project that a service mounts and that is neither precious nor `x-persist: false`:
    an error where a database's files are on it, a warning otherwise; with its size where the
    live state has it. A writable bind mount of a host folder: a warning (docker persist backs
    up volumes; a host folder needs the host's own backup, or a named volume). Database binds
    are DP010's, sensitive ones DP007's.
    """
    findings = []
    for volume in project.volumes.values():
        users = _volume_users(project, volume.key)
        if volume.policy is not None or volume.disposable or volume.external or not users:
            continue  # covered, declared disposable, owned by no project here, or unused
        images = [known for s, m in users if (known := _image_data_on(s, state, m)) is not None]
        databases = sorted({known.name for known in images if known.database})
        if databases:
            kind = f"{', '.join(databases)} database files"
        else:
            kind = f"{', '.join(sorted({known.name for known in images}))} data" if images else "data"
        live = state.volumes.get(volume.name)
        size = f"{_format_size(live.size)} of " if live is not None and live.size is not None else ""
        what = f"{kind} (once created)" if live is None and options.engine_read else f"{size}{kind}"
        problem = (
            f"holds {what}, and no x-persist policy covers it: no snapshot is taken, and `docker compose down -v` "
            "or `docker volume rm` destroys it"
        )
        fix = (
            f"mark it precious (`x-persist: {{}}` under volumes.{volume.key}; `docker persist init` writes it), "
            "or `x-persist: false` if it is disposable (a cache)"
        )
        findings.append(_volume_finding(project, volume, "DP021", "error" if databases else "warning", problem, fix))
    for service in project.services:
        for mount in _binds(service):
            source = mount.source or ""
            if (
                mount.read_only
                or mount.precious  # backed up as a bind part
                or state.host_paths.get(source) != "dir"
                or _is_sensitive(source)
                or _is_docker_socket(source)
                or _holds_database(service, state, mount)
            ):
                continue
            findings.append(
                Finding(
                    "DP021",
                    "warning",
                    f"service '{service.name}' writes to host folder {source} (bind-mounted at {mount.target}): "
                    "docker persist backs up volumes, so no snapshot holds what is there",
                    f"if it is configuration, mount it read-only (`{source}:{mount.target}:ro`); if it is data, "
                    f"move it into a named volume marked `x-persist: {{}}`, or back the folder up on the host and "
                    f"add `x-persist: {{ignore: [DP021]}}` to service '{service.name}'",
                    service=service.name,
                    path=source,
                )
            )
    return findings


def find_unusable_notify_targets(project: Project, state: LiveState, options: CheckOptions) -> list[Finding]:
    """DP022: x-persist.notify and ping targets that cannot be read (error) or reached (warning): the failures
    they are for would reach nobody."""
    return [
        Finding(
            "DP022",
            severity,
            f"{where} {url} {problem}: failures would reach nobody there",
            "fix the URL (Apprise's syntax: https://github.com/caronc/apprise/wiki), or make the service reachable "
            "from this host",
        )
        for where, url, severity, problem in options.notify_problems
    ]


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("DP001", "error", "Database or stateful data on no named volume", find_data_off_named_volume),
        Rule("DP002", "warning", "Image VOLUME left to an anonymous volume", find_unmounted_image_volumes),
        Rule("DP003", "warning", "Data in a container's writable layer", find_data_in_container_layer),
        Rule("DP004", "warning", "Anonymous volume that down + up orphans", find_orphaned_anonymous_volumes),
        Rule("DP005", "warning", "Precious volume with no recent snapshot", find_stale_snapshots),
        Rule("DP006", "warning", "Snapshots not verified recently", find_unverified_snapshots),
        Rule("DP007", "error", "Sensitive host path or Docker socket bind-mounted", find_sensitive_bind_mounts),
        Rule("DP008", "error", "Privileged service with bind mounts", find_privileged_binds),
        Rule("DP009", "warning", "Bind mount that drifts from the host", find_drifting_bind_mounts),
        Rule("DP010", "warning", "Database data on a bind mount", find_database_bind_mounts),
        Rule("DP011", "error", "Named volume written by several services", find_shared_writable_volumes),
        Rule("DP012", "error", "x-persist path that does not persist", find_precious_paths_not_persisted),
        Rule("DP013", "error", "x-persist names something that does not exist", find_dangling_references),
        Rule("DP014", "error", "External volume missing", find_missing_external_volumes),
        Rule("DP015", "warning", "Protected volume without a guard", find_unguarded_volumes),
        Rule("DP016", "warning", "Database copied live", find_unquiesced_databases),
        Rule("DP017", "error", "Snapshots cannot be encrypted as x-persist asks", find_unusable_encryption),
        Rule("DP018", "error", "Volume holds part of an interrupted restore", find_incomplete_volumes),
        Rule("DP019", "warning", "Damaged snapshot", find_damaged_snapshots),
        Rule("DP020", "info", "What retention forgets next", find_retention_preview),
        Rule("DP021", "error", "Data that no x-persist policy covers", find_uncovered_data),
        Rule("DP022", "error", "Notification target that cannot be used", find_unusable_notify_targets),
    )
}


# --- running them ---------------------------------------------------------------------


def _mount_of(service: Service, finding: Finding) -> Mount | None:
    """Return the mount a finding is about: a bind by its source, else the mount holding its path or volume."""
    if finding.path:
        path = _normalize(finding.path)
        bind = next((m for m in _binds(service) if _normalize(m.source or "") == path), None)
        held = bind or (_deepest_mount(service.mounts, path) if path.startswith("/") else None)
        if held is not None:
            return held
    if finding.volume:
        return next((m for m in service.mounts if m.type == "volume" and m.source == finding.volume), None)
    return None


def _is_silenced(project: Project, finding: Finding) -> bool:
    """Return True if `ignore` or `x-persist: false` silences the finding."""
    rule = finding.rule.upper()
    if rule in {i.upper() for i in project.policy.ignore}:
        return True
    volume = project.volumes.get(finding.volume or "")
    if volume is not None and volume.disposable:
        return True
    service = project.service(finding.service) if finding.service else None
    if service is None:
        return False
    if service.policy is not None and rule in {i.upper() for i in service.policy.ignore}:
        return True
    mount = _mount_of(service, finding)
    if mount is None:
        return False
    mounted = project.volumes.get(mount.source or "") if mount.type == "volume" else None
    return mount.precious is False or bool(mounted and mounted.disposable) or rule in {i.upper() for i in mount.ignore}


def _sort_key(finding: Finding) -> tuple[int, str, str, str, str, str]:
    return (
        -severity_rank(finding.severity),
        finding.rule,
        finding.service or "",
        finding.volume or "",
        finding.path or "",
        finding.message,
    )


def run_rules(project: Project, state: LiveState, options: CheckOptions = DEFAULT_OPTIONS) -> list[Finding]:
    """Given a project and its live state, return every rule's findings that are not silenced, in a stable order.

    Silenced: the rule is in the project's, the service's or the mount's `ignore`, or the finding
    is about a volume or mount marked `x-persist: false`. Order: severity (errors first), rule,
    service, volume, path.
    """
    findings = [f for rule in RULES.values() for f in rule.check(project, state, options)]
    return sorted((f for f in findings if not _is_silenced(project, f)), key=_sort_key)
