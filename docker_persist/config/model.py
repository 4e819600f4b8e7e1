"""The Compose project as docker-persist sees it: frozen dataclasses, built once from
`docker compose config` output and never from raw dicts again.

Pure: no I/O. `project.load_project` runs Compose; `build_project` here turns its parsed
YAML into the model. Validation of `x-persist` against the schema happens before this
(`schema.validate_document`), so the builders may assume well-formed values.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from docker_persist.errors import ConfigError
from docker_persist.units import Duration, parse_duration

CONSISTENCY = ("stop", "pause", "none")
ON_DOWN = ("backup", "refuse", "allow")
COMPRESSION = ("zstd", "gzip", "none")  # x-persist.compression; the schema's enum (a test checks)


@dataclasses.dataclass(frozen=True)
class KeepPolicy:
    """Retention, with restic's semantics: the rules are a union, -1 means all."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    within: str | None = None

    def is_empty(self) -> bool:
        """Return True if no rule is set (an empty policy would forget everything)."""
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class EncryptPolicy:
    """`x-persist.encrypt`: the age recipients that snapshot archives are encrypted to."""

    recipients: tuple[str, ...] = ()  # age1... or ssh-ed25519/ssh-rsa public keys
    recipients_file: str | None = None  # one recipient a line, as `age -R` reads; relative to the project


NOTIFY_EVENTS = ("failure", "success", "stale", "recovered")  # the schema's notify_event enum (a test checks)


@dataclasses.dataclass(frozen=True)
class NotifyTarget:
    """One `x-persist.notify` entry: an Apprise URL and the events it is told of."""

    url: str
    on: tuple[str, ...] = ("failure",)


@dataclasses.dataclass(frozen=True)
class ProjectPolicy:
    """Project-wide `x-persist` (top level)."""

    store: str | None = None
    store_password_file: str | None = None  # a restic store's password, when the environment gives none
    compression: str = "zstd"
    keep: KeepPolicy | None = None
    on_down: str = "backup"
    schedule: str | None = None
    max_age: Duration | None = None  # a newer snapshot is required, else `check` warns
    verify_max_age: Duration | None = None  # a newer passing verify is required
    ignore: tuple[str, ...] = ()
    encrypt: EncryptPolicy | None = None
    notify: tuple[NotifyTarget, ...] = ()
    ping: str | None = None  # a dead-man's-switch URL: /start, itself, /fail


@dataclasses.dataclass(frozen=True)
class VolumePolicy:
    """`x-persist` of a precious volume (top-level volume, or a long-syntax mount entry)."""

    protect: bool = True
    restore: str = "none"  # latest | none | <snapshot name>
    max_age: Duration | None = None
    verify_max_age: Duration | None = None
    schedule: str | None = None
    notify: tuple[NotifyTarget, ...] | None = None  # None: the project's


@dataclasses.dataclass(frozen=True)
class DumpPolicy:
    """`x-persist.dump` of a service: a logical dump, streamed from the running service instead of copying its files.

    A command left None is the known image's (core/dumps.py); `volume` None: the volume on the image's data path.
    """

    command: str | None = None  # sh -c script printing the dump on stdout, run in the service's container
    restore: str | None = None  # sh -c script reading the dump on stdin
    ready: str | None = None  # sh -c script exiting 0 once the database accepts the restore
    volume: str | None = None  # the key of the volume the dump stands for
    also_volume: bool = False  # save the volume's files too


@dataclasses.dataclass(frozen=True)
class ServicePolicy:
    """`x-persist` of a service."""

    consistency: str = "none"
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    verify: str | None = None  # a command run over the restored volume by `verify`
    paths: tuple[str, ...] = ()  # container paths whose data must persist
    ignore: tuple[str, ...] = ()  # check rule IDs silenced for this service
    dump: DumpPolicy | None = None


@dataclasses.dataclass(frozen=True)
class Mount:
    """One entry of a service's `volumes:` (and `tmpfs:`), in Compose's long syntax.

    `source` is the volume key for a named volume, the host path for a bind, and None
    for an anonymous volume or a tmpfs. `precious` is the mount's own `x-persist`:
    True (`true`/`{}`/object), False (`false`) or None (not annotated).
    """

    type: str  # volume | bind | tmpfs | npipe | cluster | image
    target: str
    source: str | None = None
    read_only: bool = False
    precious: bool | None = None
    ignore: tuple[str, ...] = ()
    policy: VolumePolicy | None = None  # the mount's own policy, used when the volume has none

    @property
    def is_anonymous(self) -> bool:
        """Return True for a volume mount with no name: the next `up` makes a new one."""
        return self.type == "volume" and not self.source


@dataclasses.dataclass(frozen=True)
class Service:
    """A Compose service."""

    name: str
    image: str | None
    mounts: tuple[Mount, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    policy: ServicePolicy | None = None
    provider: str | None = None  # provider.type, for provider services
    provider_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    # What a temporary container of the service needs to run its database (a dump's restore and drill).
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    secrets: tuple[tuple[str, str], ...] = ()  # (host file, container path) of its file-based Compose secrets
    user: str | None = None


@dataclasses.dataclass(frozen=True)
class Volume:
    """A top-level Compose volume. `name` is the engine's name for it."""

    key: str
    name: str
    driver: str | None = None
    driver_opts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    external: bool = False
    policy: VolumePolicy | None = None  # None: not precious
    disposable: bool = False  # `x-persist: false`: no warnings, no backups
    # A bind-mounted host folder marked precious (precious_binds): backed up through a scratch
    # volume bound to it, under `key` (bind-<path>); `name` is that scratch volume's.
    bind_source: str | None = None


@dataclasses.dataclass(frozen=True)
class Project:
    """A Compose project with its `x-persist` annotations."""

    name: str
    working_dir: str
    services: tuple[Service, ...]
    volumes: Mapping[str, Volume]
    policy: ProjectPolicy = ProjectPolicy()

    def service(self, name: str) -> Service | None:
        """Return the service called `name`, or None."""
        return next((s for s in self.services if s.name == name), None)

    def precious_volumes(self) -> list[Volume]:
        """Return the volumes `x-persist` marks precious, in file order."""
        return [v for v in self.volumes.values() if v.policy is not None]

    def precious_binds(self) -> list[Volume]:
        """Return the bind-mounted host folders a mount-level `x-persist` marks precious, once each, in file order,
        as volumes to back up (see Volume.bind_source)."""
        import hashlib

        found: dict[str, Volume] = {}
        for service in self.services:
            for mount in service.mounts:
                if mount.type != "bind" or not mount.precious or not mount.source or mount.source in found:
                    continue
                digest = hashlib.sha256(f"{self.name}\0{mount.source}".encode()).hexdigest()[:12]
                key = bind_key(self.working_dir, mount.source)
                if key in self.volumes or any(v.key == key for v in found.values()):
                    key = f"{key}-{digest[:6]}"  # two paths with one slug ("a b", "a-b"), or a volume's key
                found[mount.source] = Volume(
                    key=key,
                    name=f"docker-persist-bind-{digest}",
                    driver="local",
                    driver_opts={"type": "none", "o": "bind", "device": mount.source},
                    policy=mount.policy or VolumePolicy(),
                    bind_source=mount.source,
                )
        return list(found.values())

    def notify_targets(self, volume_key: str) -> tuple[NotifyTarget, ...]:
        """Return who is told about the volume `volume_key`: its own x-persist.notify, else the project's."""
        volume = self.volumes.get(volume_key) or next((v for v in self.precious_binds() if v.key == volume_key), None)
        if volume is not None and volume.policy is not None and volume.policy.notify is not None:
            return volume.policy.notify
        return self.policy.notify

    def services_using(self, volume_key: str) -> list[Service]:
        """Return the services that mount the volume `volume_key`."""
        return [s for s in self.services if any(m.type == "volume" and m.source == volume_key for m in s.mounts)]


def bind_key(working_dir: str, source: str) -> str:
    """Return the snapshot key of a bind-mounted host folder: `bind-` and its path, relative to the project
    where it is inside it, as a part name (`./uploads` -> `bind-uploads`, `/srv/a b` -> `bind-srv-a-b`)."""
    import posixpath
    import re

    relative = posixpath.relpath(source, working_dir) if posixpath.isabs(source) else source
    path = relative if not relative.startswith("..") else source
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", path).strip("-.") or "root"
    return f"bind-{slug}"[:200]


# --- building the model from `docker compose config` output -------------------------


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _duration(value: Any) -> Duration | None:
    return None if value is None else parse_duration(str(value))


def build_keep_policy(raw: Mapping[str, Any]) -> KeepPolicy:
    """Return the KeepPolicy for a `keep:` mapping."""
    return KeepPolicy(
        **{k: raw[k] for k in ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within") if k in raw}
    )


def build_encrypt_policy(raw: Any, working_dir: str) -> EncryptPolicy | None:
    """Return the EncryptPolicy for an `encrypt:` mapping; a relative recipients_file is under working_dir."""
    if not isinstance(raw, Mapping):
        return None
    return EncryptPolicy(
        recipients=_strings(raw.get("recipients")),
        recipients_file=_path_under(working_dir, raw.get("recipients_file")),
    )


def _path_under(working_dir: str, path: Any) -> str | None:
    """Return a file named in x-persist: `~` expanded, a relative one under the project's working_dir."""
    return None if path is None else os.path.normpath(os.path.join(working_dir, os.path.expanduser(str(path))))


def build_notify(raw: Any) -> tuple[NotifyTarget, ...] | None:
    """Return the targets of a `notify:` list (None when absent): a string is told of failures only."""
    if not isinstance(raw, list):
        return None
    targets = []
    for entry in raw:
        if isinstance(entry, Mapping):
            events = _strings(entry.get("on")) or ("failure",)
            targets.append(NotifyTarget(str(entry["url"]), tuple(e for e in NOTIFY_EVENTS if e in events)))
        else:
            targets.append(NotifyTarget(str(entry)))
    return tuple(targets)


def build_project_policy(raw: Any, working_dir: str = ".") -> ProjectPolicy:
    """Return the ProjectPolicy for a top-level `x-persist` value (absent: defaults)."""
    if not isinstance(raw, Mapping):
        return ProjectPolicy()
    return ProjectPolicy(
        store=raw.get("store"),
        store_password_file=_path_under(working_dir, raw.get("store_password_file")),
        compression=raw.get("compression", "zstd"),
        keep=build_keep_policy(raw["keep"]) if isinstance(raw.get("keep"), Mapping) else None,
        on_down=raw.get("on_down", "backup"),
        schedule=raw.get("schedule"),
        max_age=_duration(raw.get("max_age")),
        verify_max_age=_duration(raw.get("verify_max_age")),
        ignore=_strings(raw.get("ignore")),
        encrypt=build_encrypt_policy(raw.get("encrypt"), working_dir),
        notify=build_notify(raw.get("notify")) or (),
        ping=raw.get("ping"),
    )


def build_volume_policy(raw: Any) -> VolumePolicy | None:
    """Return the policy for a volume's `x-persist`: None unless it marks the volume precious."""
    if raw is None or raw is False:
        return None
    if raw is True or not isinstance(raw, Mapping):
        return VolumePolicy()
    return VolumePolicy(
        protect=bool(raw.get("protect", True)),
        restore=str(raw.get("restore", "none")),
        max_age=_duration(raw.get("max_age")),
        verify_max_age=_duration(raw.get("verify_max_age")),
        schedule=raw.get("schedule"),
        notify=build_notify(raw.get("notify")),
    )


def build_dump_policy(raw: Any) -> DumpPolicy | None:
    """Return the DumpPolicy for a service's `dump:` (`auto`, or a mapping); None when absent."""
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        return DumpPolicy()  # "auto"
    return DumpPolicy(
        command=raw.get("command"),
        restore=raw.get("restore"),
        ready=raw.get("ready"),
        volume=raw.get("volume"),
        also_volume=bool(raw.get("also_volume", False)),
    )


def build_service_policy(raw: Any) -> ServicePolicy | None:
    """Return the ServicePolicy for a service's `x-persist`, or None when absent."""
    if not isinstance(raw, Mapping):
        return None
    return ServicePolicy(
        consistency=raw.get("consistency", "none"),
        pre=_strings(raw.get("pre")),
        post=_strings(raw.get("post")),
        verify=raw.get("verify"),
        paths=_strings(raw.get("paths")),
        ignore=_strings(raw.get("ignore")),
        dump=build_dump_policy(raw.get("dump")),
    )


def build_mount(raw: Mapping[str, Any]) -> Mount:
    """Return the Mount for one long-syntax entry of a service's `volumes:`."""
    annotation = raw.get("x-persist")
    precious = None if annotation is None else annotation is not False
    ignore = _strings(annotation.get("ignore")) if isinstance(annotation, Mapping) else ()
    return Mount(
        type=str(raw.get("type", "volume")),
        target=str(raw.get("target", "")),
        source=raw.get("source") or None,
        read_only=bool(raw.get("read_only", False)),
        precious=precious,
        ignore=ignore,
        policy=build_volume_policy(annotation),
    )


def build_service(name: str, raw: Mapping[str, Any], secrets: Mapping[str, Any] | None = None) -> Service:
    """Return the Service for one entry of `services:`."""
    mounts = [build_mount(m) for m in raw.get("volumes") or () if isinstance(m, Mapping)]
    tmpfs = raw.get("tmpfs") or ()
    for path in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        # `tmpfs: /run` or `/run:size=64m`: the path is before the first colon.
        mounts.append(Mount(type="tmpfs", target=str(path).split(":", 1)[0]))
    provider = raw.get("provider") if isinstance(raw.get("provider"), Mapping) else None
    depends = raw.get("depends_on") or {}
    return Service(
        name=name,
        image=raw.get("image"),
        mounts=tuple(mounts),
        privileged=bool(raw.get("privileged", False)),
        cap_add=tuple(str(c).upper().removeprefix("CAP_") for c in raw.get("cap_add") or ()),
        policy=build_service_policy(raw.get("x-persist")),
        provider=str(provider.get("type")) if provider else None,
        provider_options=dict(provider.get("options") or {}) if provider else {},
        depends_on=tuple(depends) if isinstance(depends, (Mapping, list)) else (),
        environment=_environment(raw.get("environment")),
        command=_argv(raw.get("command")),
        entrypoint=_argv(raw.get("entrypoint")),
        secrets=_secret_files(raw.get("secrets"), secrets or {}),
        user=str(raw["user"]) if raw.get("user") is not None else None,
    )


def _secret_files(raw: Any, declared: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Return (host file, container path) for each of a service's secrets that a top-level `file:` backs."""
    found = []
    for entry in raw if isinstance(raw, list) else ():
        source = entry.get("source") if isinstance(entry, Mapping) else entry
        target = entry.get("target") if isinstance(entry, Mapping) else None
        top = declared.get(str(source))
        if isinstance(top, Mapping) and top.get("file"):
            path = str(target or source)
            found.append((str(top["file"]), path if path.startswith("/") else f"/run/secrets/{path}"))
    return tuple(found)


def _environment(raw: Any) -> dict[str, str]:
    """Return a service's environment as Compose resolved it (a mapping; a list of NAME=value read too)."""
    if isinstance(raw, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {}


def _argv(raw: Any) -> tuple[str, ...] | None:
    """Return a command or entrypoint as Compose gives it (a list; a string is run by a shell)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return ("/bin/sh", "-c", raw)
    return tuple(str(part) for part in raw)


def build_volume(key: str, raw: Mapping[str, Any] | None, project_name: str, mounts: Sequence[Mount]) -> Volume:
    """Return the Volume for a top-level volume, merging the x-persist of the mounts that use it."""
    raw = raw or {}
    annotation = raw.get("x-persist")
    policy = build_volume_policy(annotation)
    disposable = annotation is False
    if policy is None and not disposable:
        # The top-level volume says nothing: the first mount that marks it precious decides.
        policy = next((m.policy for m in mounts if m.policy is not None), None)
    external = raw.get("external")
    return Volume(
        key=key,
        name=str(raw.get("name") or f"{project_name}_{key}"),
        driver=raw.get("driver"),
        driver_opts={str(k): str(v) for k, v in (raw.get("driver_opts") or {}).items()},
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        external=bool(external) if not isinstance(external, Mapping) else True,
        policy=policy,
        disposable=disposable,
    )


def build_project(document: Mapping[str, Any], working_dir: str) -> Project:
    """Return the Project for the parsed YAML of `docker compose config`.

    Raise ConfigError if the document has no project name.
    """
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("docker compose config gave no project name")
    secrets = document.get("secrets") if isinstance(document.get("secrets"), Mapping) else {}
    services = tuple(build_service(str(n), s or {}, secrets) for n, s in (document.get("services") or {}).items())
    all_mounts = [m for s in services for m in s.mounts]
    volumes = {
        str(key): build_volume(str(key), raw, name, [m for m in all_mounts if m.type == "volume" and m.source == key])
        for key, raw in (document.get("volumes") or {}).items()
    }
    return Project(
        name=name,
        working_dir=working_dir,
        services=services,
        volumes=volumes,
        policy=build_project_policy(document.get("x-persist"), working_dir),
    )


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Return the bytes in a size such as `10MB`, `512k`, `1GiB` or `4096`. Raise ConfigError otherwise."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ConfigError(f"invalid size {text!r}: expected e.g. 10MB, 512KiB, 1G or a number of bytes")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[:1] if unit[:1] in "kmgt" else ""]
    return int(number * base**power)
