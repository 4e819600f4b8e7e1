"""The snapshot manifest (`manifest.json`): frozen dataclasses and their exact JSON form.

Pure: no I/O. The store moves the bytes; `dump_manifest` and `load_manifest` turn them into a
`Manifest` and back, so that `load_manifest(dump_manifest(m), where) == m`.

The JSON form (format 1), written with an indent of 2 and a trailing newline:

- top level, in this order: `format`, `name`, `project`, `created`, `reason`, `tool_version`,
  `volumes`, `services`, `verifications`, and `pinned` (true) only for a pinned snapshot;
- inside each record (volume, root, service, verification) and each string map (driver
  options, labels), keys are sorted;
- datetimes are UTC, `"2026-11-26T15:30:00Z"`, with microseconds (`...:00.250000Z`) only when
  they are not zero;
- a volume root's `mode` is an octal string such as `"0755"`, as `ls -l` users read it;
- a volume record has `encryption` (`"age"`) only when its part is encrypted, and then the
  manifest is format 3 (see SEALED_FORMAT): what the parts hold is sealed too.

Format 3 (encrypted snapshots) keeps readable only what listing, retention, `copy` and the
stored files' checks need: the name, project, time, reason, tool version and pin; per part its
key, kind, file, compression, encryption, and the stored (encrypted) file's size and sha256;
per service its name and consistency; per verification its time, result and volumes. The rest
(each volume's source name, driver, options and labels, content digest, byte and entry counts
and root; the services' hook commands) is `sealed`: the JSON of `private_document`, encrypted
with age to the snapshot's recipients, in base64. A verification's detail, which may quote
file names or content, is not written at all. Loaded without a key, a format 3 manifest is
`locked`: its sealed fields are empty until `open_sealed` fills them in.

`load_manifest` is strict about what it knows (every field must be present with the right type,
except the lists that default to empty) and ignores keys it does not know, so that an older
docker-persist can read what a newer one adds without a format bump.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from docker_persist.config.model import COMPRESSION
from docker_persist.errors import ConfigError, PersistError

FORMAT = 1
"""The manifest format of a snapshot without encryption."""
ENCRYPTED_FORMAT = 2
"""Format 2 adds a volume record's `encryption` ("age"). It is written only when a part is
encrypted, so that an older docker-persist refuses those snapshots with "upgrade" rather than
reading ciphertext as a corrupt archive, and still reads every other snapshot."""
SEALED_FORMAT = 3
"""Format 3: an encrypted snapshot whose manifest seals what its parts hold (see the module docstring).
docker-persist writes it for every encrypted snapshot; format 2 ones are still read."""
FORMATS = (FORMAT, ENCRYPTED_FORMAT, SEALED_FORMAT)
ENCRYPTIONS = ("age",)
MAX_VERIFICATIONS = 20
"""How many verification results a manifest keeps (the newest)."""
ARCHIVE_SUFFIXES = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
"""A part's file name ends in the suffix of its compression (then `.age` if encrypted)."""
TREE_SUFFIX = ".tree"
"""A folder part (`<key>.tree`, restic stores only): restic backed up the volume's files itself. It has no stored
file of its own (its record's size is 0, its sha256 that of no bytes); read, it is a tar of the files restic
restores, and its content digest proves it exact."""
COMPRESSIONS = tuple(ARCHIVE_SUFFIXES)
assert COMPRESSIONS == COMPRESSION, "x-persist.compression and the manifest name the same compressions"

SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PART_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
"""A file inside a snapshot: a plain name, never a path ("." and ".." are refused separately)."""
MANIFEST_FILE = "manifest.json"
AUTOMATIC_REASONS = ("pre-restore", "pre-down")
"""The reasons of the snapshots docker-persist takes on its own. Retention gives them slots of their
own, and `latest` never means a pre-restore (undo) snapshot."""
UNDO_REASON = "pre-restore"

UTC = datetime.timezone.utc

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_MODE = re.compile(r"^[0-7]{3,6}$")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:Z|([+-])(\d{2}):(\d{2}))$")
_REASON_SLUG = re.compile(r"[^a-z0-9]+")
_AUTOMATIC_STAMP = "%Y-%m-%dT%H%M%SZ"


class ManifestError(PersistError):
    """A snapshot's manifest cannot be read: not JSON, a field missing or ill-typed, or a newer format."""


def check_snapshot_name(name: str) -> str:
    """Given a snapshot name, return it unchanged if it is valid.

    Raise ConfigError if it is not 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'
    starting with a letter or digit; this keeps "../x", "a/b" and ".hidden" out of the store.
    """
    if not is_snapshot_name(name):
        raise ConfigError(
            f"invalid snapshot name {name!r}: a snapshot name is 1 to 128 characters of letters, digits, "
            "'.', '_' and '-', starting with a letter or digit (for example 2026-11-26-before-upgrade)"
        )
    return name


def is_snapshot_name(name: str) -> bool:
    """Return True if `name` is a valid snapshot name."""
    # fullmatch, because `$` alone would also accept a trailing newline.
    return SNAPSHOT_NAME.fullmatch(name) is not None


def is_part_name(filename: str) -> bool:
    """Return True if `filename` may name a part (a file) inside a snapshot."""
    return PART_NAME.fullmatch(filename) is not None and filename not in (".", "..", MANIFEST_FILE)


def automatic_name(now: datetime.datetime, reason: str) -> str:
    """Given a timezone-aware time and a reason, return a snapshot name such as `2026-11-26T153000Z-pre-down`.

    The time is turned to UTC and cut to the second. The reason becomes a slug of [a-z0-9-]
    ("Pre Down!" -> "pre-down"), cut so that the name stays within 128 characters; an empty
    slug leaves the timestamp alone. Raise ValueError if `now` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("automatic_name needs a timezone-aware time")
    stamp = now.astimezone(UTC).strftime(_AUTOMATIC_STAMP)
    slug = _REASON_SLUG.sub("-", reason.lower()).strip("-")
    slug = slug[: 127 - len(stamp)].rstrip("-")
    return check_snapshot_name(f"{stamp}-{slug}" if slug else stamp)


@dataclasses.dataclass(frozen=True)
class RootEntry:
    """The volume root's own mode and owner, which a restore applies by hand."""

    mode: int  # mode & 0o7777
    uid: int
    gid: int


@dataclasses.dataclass(frozen=True)
class IndexRecord:
    """A part's file index (core/fileindex.py): its file in the snapshot, and that file's sha256 and size
    (JSON: `{"file", "sha256", "size"}`, the stored file's size, compressed and encrypted like the part)."""

    file: str
    sha256: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class VolumeRecord:
    """One volume in a snapshot: where it came from, its archive, and what the archive holds."""

    key: str  # the volume's key in the Compose file (or the engine name for volumes outside a project)
    source: str  # the engine's volume name at backup time
    driver: str
    driver_opts: Mapping[str, str] = dataclasses.field(hash=False)
    labels: Mapping[str, str] = dataclasses.field(hash=False)
    file: str  # "<key>.tar.zst" | ".tar.gz" | ".tar"
    compression: str  # zstd | gzip | none
    archive_sha256: str  # hex sha256 of the stored (compressed) file
    archive_bytes: int  # size of the stored file
    content_digest: str  # "sha256:<hex>", order-independent digest of the tar content (archive.py)
    bytes: int
    files: int
    directories: int
    symlinks: int
    entries: int
    root: RootEntry | None
    # volume | anonymous-volume | container-layer (the changed paths of a container's
    # writable layer, saved by `down`); those two restore only with --to | bind | dump (a
    # database's logical dump, keyed `<volume>.dump`, loaded into that volume's database).
    kind: str = "volume"
    encryption: str | None = None  # "age": the part is the compressed archive, encrypted (file ends in .age)
    index: IndexRecord | None = None  # none in snapshots taken before docker-persist wrote file indexes


RECORD_KINDS = ("volume", "anonymous-volume", "container-layer", "bind", "dump")


@dataclasses.dataclass(frozen=True)
class ServiceRecord:
    """How one service was kept consistent during the backup, and the hooks that ran."""

    name: str
    consistency: str  # stop | pause | none
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Verification:
    """One restore drill: when it ran, whether it passed, and which volumes it covered."""

    at: datetime.datetime
    ok: bool
    detail: str
    volumes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Everything a snapshot says about itself."""

    name: str
    project: str
    created: datetime.datetime
    tool_version: str
    reason: str
    volumes: tuple[VolumeRecord, ...]
    services: tuple[ServiceRecord, ...] = ()
    verifications: tuple[Verification, ...] = ()  # history, oldest first
    format: int = FORMAT
    pinned: bool = False  # kept by every retention policy, until unpinned
    sealed: str = ""  # format 3: the private document, encrypted (base64); see the module docstring
    locked: bool = False  # format 3 read without its key: the sealed fields are empty

    def volume(self, key: str) -> VolumeRecord | None:
        """Return the record of the volume with this key, or None."""
        return next((v for v in self.volumes if v.key == key), None)

    @property
    def last_verification(self) -> Verification | None:
        """Return the newest verification result, or None if the snapshot was never verified."""
        return self.verifications[-1] if self.verifications else None

    def with_verification(self, verification: Verification) -> Manifest:
        """Return a copy with `verification` appended, keeping the newest MAX_VERIFICATIONS."""
        history = (*self.verifications, verification)[-MAX_VERIFICATIONS:]
        return dataclasses.replace(self, verifications=history)

    @property
    def automatic(self) -> bool:
        """Return True for a snapshot docker-persist took on its own (an undo snapshot, or before a down)."""
        return self.reason in AUTOMATIC_REASONS

    @property
    def total_bytes(self) -> int:
        """Return the bytes the snapshot takes in the store (the sum of its archives)."""
        return sum(v.archive_bytes for v in self.volumes)


def dump_manifest(manifest: Manifest) -> bytes:
    """Return the exact `manifest.json` bytes for `manifest`.

    Raise ValueError if a datetime in it is naive.
    """
    sealed = manifest.format == SEALED_FORMAT
    if sealed and not manifest.sealed:
        raise ValueError("a format 3 manifest needs its sealed document")
    document = {
        "format": manifest.format,
        "name": manifest.name,
        "project": manifest.project,
        "created": format_datetime(manifest.created),
        "reason": manifest.reason,
        "tool_version": manifest.tool_version,
        "volumes": [_public_volume(v) if sealed else _dump_volume(v) for v in manifest.volumes],
        "services": [_dump_service(s, hooks=not sealed) for s in manifest.services],
        "verifications": [_dump_verification(v, detail=not sealed) for v in manifest.verifications],
    }
    if manifest.pinned:
        document["pinned"] = True
    if sealed:
        document["sealed"] = manifest.sealed
    # ensure_ascii keeps lone surrogates (non-UTF-8 names read from tar) encodable, and loads restores them.
    return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def private_document(manifest: Manifest) -> bytes:
    """Return what format 3 seals of `manifest`: per volume key its private fields, per service its hooks."""
    if manifest.locked:
        raise ValueError("a locked manifest has nothing to seal")
    document = {
        "volumes": {
            v.key: {k: x for k, x in _dump_volume(v).items() if k not in _PUBLIC_VOLUME} for v in manifest.volumes
        },
        "services": {s.name: {"pre": list(s.pre), "post": list(s.post)} for s in manifest.services},
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=True).encode("ascii")


def open_sealed(manifest: Manifest, document: bytes, where: str) -> Manifest:
    """Given a locked manifest and its decrypted private document, return the manifest with every field.

    Raise ManifestError if the document is not one `private_document` wrote for these volumes.
    """
    try:
        parsed = json.loads(document.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{where}: the sealed part of the manifest is not JSON; the snapshot is damaged") from error
    top = _Fields(parsed, "sealed", where)
    private = top.value.get("volumes")
    hooks = top.value.get("services")
    if not isinstance(private, dict) or set(private) != {v.key for v in manifest.volumes}:
        top.fail("volumes", "does not hold the volumes the manifest lists")
    if not isinstance(hooks, dict) or set(hooks) != {s.name for s in manifest.services}:
        top.fail("services", "does not hold the services the manifest lists")
    volumes = []
    for volume in manifest.volumes:
        fields = _Fields(private[volume.key], f"sealed.volumes.{volume.key}", where)
        merged = {**fields.value, **_public_volume(volume)}
        volumes.append(_load_volume(_Fields(merged, fields.path, where)))
    services = []
    for service in manifest.services:
        fields = _Fields(hooks[service.name], f"sealed.services.{service.name}", where)
        services.append(
            dataclasses.replace(
                service, pre=fields.texts("pre", optional=True), post=fields.texts("post", optional=True)
            )
        )
    return dataclasses.replace(manifest, volumes=tuple(volumes), services=tuple(services), locked=False)


def format_datetime(value: datetime.datetime) -> str:
    """Return a timezone-aware datetime as UTC ISO 8601: `2026-11-26T15:30:00Z` (microseconds if any).

    Raise ValueError if it is naive.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"manifest datetimes must be timezone-aware, got {value!r}")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def _dump_volume(volume: VolumeRecord) -> dict[str, Any]:
    record: dict[str, Any] = {
        "key": volume.key,
        "source": volume.source,
        "driver": volume.driver,
        "driver_opts": dict(sorted(volume.driver_opts.items())),
        "labels": dict(sorted(volume.labels.items())),
        "file": volume.file,
        "compression": volume.compression,
        "archive_sha256": volume.archive_sha256,
        "archive_bytes": volume.archive_bytes,
        "content_digest": volume.content_digest,
        "bytes": volume.bytes,
        "files": volume.files,
        "directories": volume.directories,
        "symlinks": volume.symlinks,
        "entries": volume.entries,
        "root": None
        if volume.root is None
        else {"mode": f"{volume.root.mode:04o}", "uid": volume.root.uid, "gid": volume.root.gid},
        "kind": volume.kind,
    }
    if volume.encryption is not None:
        record["encryption"] = volume.encryption
    if volume.index is not None:
        record["index"] = {"file": volume.index.file, "sha256": volume.index.sha256, "size": volume.index.bytes}
    return _sorted(record)


_PUBLIC_VOLUME = ("archive_bytes", "archive_sha256", "compression", "encryption", "file", "index", "key", "kind")


def _public_volume(volume: VolumeRecord) -> dict[str, Any]:
    return {key: value for key, value in _dump_volume(volume).items() if key in _PUBLIC_VOLUME}


def _dump_service(service: ServiceRecord, hooks: bool = True) -> dict[str, Any]:
    record: dict[str, Any] = {"name": service.name, "consistency": service.consistency}
    if hooks:
        record.update(pre=list(service.pre), post=list(service.post))
    return _sorted(record)


def _dump_verification(verification: Verification, detail: bool = True) -> dict[str, Any]:
    record = {
        "at": format_datetime(verification.at),
        "ok": verification.ok,
        "detail": verification.detail if detail else "",
        "volumes": list(verification.volumes),
    }
    return _sorted(record)


def _sorted(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: (_sorted(value) if isinstance(value, dict) else value) for key, value in sorted(record.items())}


def load_manifest(data: bytes, where: str) -> Manifest:
    """Given the bytes of a `manifest.json` and a description of where they come from, return the Manifest.

    Raise ManifestError, naming `where` and the field, if the bytes are not a JSON object,
    if a known field is missing or ill-typed, or if the format is not one this version reads.
    Unknown keys are ignored.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ManifestError(f"{where}: the manifest is not UTF-8 text ({error}); the snapshot is damaged") from error
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"{where}: the manifest is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "the snapshot is damaged or was edited by hand"
        ) from error
    top = _Fields(document, "", where)
    version = top.integer("format")
    readable = " and ".join(str(f) for f in FORMATS)
    if version > max(FORMATS):
        raise ManifestError(
            f"{where}: the manifest has format {version}, written by a newer docker-persist, and this version "
            f"reads formats {readable}: upgrade docker-persist to use this snapshot"
        )
    if version not in FORMATS:
        top.fail("format", f"{version} is not a manifest format (this version reads formats {readable})")
    name = top.text("name")
    if not is_snapshot_name(name):
        top.fail("name", f"{name!r} is not a valid snapshot name")
    sealed = top.text("sealed") if version == SEALED_FORMAT else ""
    if sealed and not _BASE64.fullmatch(sealed):
        top.fail("sealed", "expected base64 text")
    volumes = tuple(_load_volume(item, locked=bool(sealed)) for item in top.records("volumes"))
    keys = [v.key for v in volumes]
    duplicate = next((key for key in keys if keys.count(key) > 1), None)
    if duplicate is not None:
        top.fail("volumes", f"the volume key {duplicate!r} appears twice")
    if version < ENCRYPTED_FORMAT and any(v.encryption for v in volumes):
        top.fail("format", f"{version} cannot hold encrypted parts (format {ENCRYPTED_FORMAT} can)")
    if sealed and not all(v.encryption for v in volumes):
        top.fail("format", f"{version} is for encrypted snapshots, and a part is not encrypted")
    return Manifest(
        name=name,
        project=top.text("project"),
        created=top.time("created"),
        tool_version=top.text("tool_version"),
        reason=top.text("reason", empty=True),
        volumes=volumes,
        services=tuple(_load_service(item) for item in top.records("services", optional=True)),
        verifications=tuple(_load_verification(item) for item in top.records("verifications", optional=True)),
        format=version,
        pinned=top.boolean("pinned") if "pinned" in top.value else False,
        sealed=sealed,
        locked=bool(sealed),
    )


def _load_volume(fields: _Fields, locked: bool = False) -> VolumeRecord:
    compression = fields.text("compression")
    if compression not in COMPRESSIONS:
        fields.fail("compression", f"expected one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    file = fields.text("file")
    if not is_part_name(file):
        fields.fail("file", f"{file!r} is not a plain file name")
    archive_sha256 = fields.text("archive_sha256")
    if not _SHA256_HEX.fullmatch(archive_sha256):
        fields.fail("archive_sha256", f"expected 64 lowercase hex digits, got {archive_sha256!r}")
    kind = fields.text("kind") if "kind" in fields.value else "volume"
    if kind not in RECORD_KINDS:
        fields.fail("kind", f"expected one of {', '.join(RECORD_KINDS)}, got {kind!r}")
    encryption = fields.text("encryption") if "encryption" in fields.value else None
    if encryption is not None and encryption not in ENCRYPTIONS:
        fields.fail("encryption", f"expected one of {', '.join(ENCRYPTIONS)}, got {encryption!r}")
    key, archive_bytes = fields.text("key"), fields.count("archive_bytes")
    index = _load_index(fields.optional_record("index") if "index" in fields.value else None, file)
    if locked:  # format 3 without its key: the rest is sealed
        return VolumeRecord(
            key=key, source="", driver="", driver_opts={}, labels={}, file=file, compression=compression,
            archive_sha256=archive_sha256, archive_bytes=archive_bytes, content_digest="", bytes=0, files=0,
            directories=0, symlinks=0, entries=0, root=None, kind=kind, encryption=encryption, index=index,
        )  # fmt: skip
    content_digest = fields.text("content_digest")
    if not _CONTENT_DIGEST.fullmatch(content_digest):
        fields.fail("content_digest", f"expected 'sha256:' and 64 lowercase hex digits, got {content_digest!r}")
    root = fields.optional_record("root")
    return VolumeRecord(
        key=key,
        source=fields.text("source"),
        driver=fields.text("driver"),
        driver_opts=fields.text_map("driver_opts"),
        labels=fields.text_map("labels"),
        file=file,
        compression=compression,
        archive_sha256=archive_sha256,
        archive_bytes=archive_bytes,
        content_digest=content_digest,
        bytes=fields.count("bytes"),
        files=fields.count("files"),
        directories=fields.count("directories"),
        symlinks=fields.count("symlinks"),
        entries=fields.count("entries"),
        root=None if root is None else RootEntry(mode=root.mode("mode"), uid=root.count("uid"), gid=root.count("gid")),
        kind=kind,
        encryption=encryption,
        index=index,
    )


def _load_index(fields: _Fields | None, part: str) -> IndexRecord | None:
    if fields is None:
        return None
    file = fields.text("file")
    if not is_part_name(file) or file == part:
        fields.fail("file", f"{file!r} is not a plain file name of its own")
    sha256 = fields.text("sha256")
    if not _SHA256_HEX.fullmatch(sha256):
        fields.fail("sha256", f"expected 64 lowercase hex digits, got {sha256!r}")
    return IndexRecord(file, sha256, fields.count("size"))


def _load_service(fields: _Fields) -> ServiceRecord:
    return ServiceRecord(
        name=fields.text("name"),
        consistency=fields.text("consistency"),
        pre=fields.texts("pre", optional=True),
        post=fields.texts("post", optional=True),
    )


def _load_verification(fields: _Fields) -> Verification:
    return Verification(
        at=fields.time("at"),
        ok=fields.boolean("ok"),
        detail=fields.text("detail", empty=True),
        volumes=fields.texts("volumes"),
    )


class _Fields:
    """A JSON object being read, with its path ("volumes[0].root") for error messages."""

    def __init__(self, value: object, path: str, where: str) -> None:
        self.path = path
        self.where = where
        if not isinstance(value, dict):
            self._fail_at(path or "the manifest", f"expected a JSON object, got {_describe(value)}")
        self.value: dict[str, object] = value

    def fail(self, key: str, problem: str) -> NoReturn:
        """Raise ManifestError for the field `key` of this object."""
        self._fail_at(self._child(key), problem)

    def _fail_at(self, path: str, problem: str) -> NoReturn:
        raise ManifestError(f"{self.where}: invalid manifest: {path}: {problem}; the snapshot is damaged")

    def _child(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str) -> object:
        if key not in self.value:
            self.fail(key, "missing")
        return self.value[key]

    def text(self, key: str, empty: bool = False) -> str:
        """Return the string field `key`, which must not be empty unless `empty`."""
        value = self._get(key)
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        if not value and not empty:
            self.fail(key, "must not be empty")
        return value

    def integer(self, key: str) -> int:
        """Return the integer field `key` (JSON true and false are not integers)."""
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_describe(value)}")
        return value

    def count(self, key: str) -> int:
        """Return the non-negative integer field `key`."""
        value = self.integer(key)
        if value < 0:
            self.fail(key, f"must not be negative, got {value}")
        return value

    def boolean(self, key: str) -> bool:
        """Return the boolean field `key`."""
        value = self._get(key)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def mode(self, key: str) -> int:
        """Return the octal mode string field `key` ("0755") as an int."""
        value = self.text(key)
        if not _MODE.fullmatch(value) or int(value, 8) > 0o7777:
            self.fail(key, f"expected an octal mode such as '0755', got {value!r}")
        return int(value, 8)

    def time(self, key: str) -> datetime.datetime:
        """Return the datetime field `key` ("2026-11-26T15:30:00Z"), in UTC."""
        value = self.text(key)
        match = _DATETIME.fullmatch(value)
        if match is None:
            self.fail(key, f"expected a UTC time such as '2026-11-26T15:30:00Z', got {value!r}")
        year, month, day, hour, minute, second, fraction, sign, off_hours, off_minutes = match.groups()
        try:
            offset = datetime.timedelta(0)
            if sign:
                offset = datetime.timedelta(hours=int(off_hours), minutes=int(off_minutes))
                offset = -offset if sign == "-" else offset
            parsed = datetime.datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second),
                int((fraction or "0").ljust(6, "0")),
                tzinfo=datetime.timezone(offset),
            )
        except ValueError as error:
            self.fail(key, f"{value!r} is not a valid time ({error})")
        return parsed.astimezone(UTC)

    def texts(self, key: str, optional: bool = False) -> tuple[str, ...]:
        """Return the list-of-strings field `key`; an absent optional one is empty."""
        if optional and key not in self.value:
            return ()
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, f"expected a list of strings, got {_describe(value)}")
        return tuple(value)

    def text_map(self, key: str) -> dict[str, str]:
        """Return the string-to-string object field `key`."""
        value = self._get(key)
        if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
            self.fail(key, f"expected an object of strings, got {_describe(value)}")
        return dict(value)

    def records(self, key: str, optional: bool = False) -> list[_Fields]:
        """Return the list-of-objects field `key`; an absent optional one is empty."""
        if optional and key not in self.value:
            return []
        value = self._get(key)
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {_describe(value)}")
        return [_Fields(item, f"{self._child(key)}[{index}]", self.where) for index, item in enumerate(value)]

    def optional_record(self, key: str) -> _Fields | None:
        """Return the object field `key`, or None if it is null."""
        value = self._get(key)
        return None if value is None else _Fields(value, self._child(key), self.where)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    kinds = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}
    return next((kind for cls, kind in kinds.items() if isinstance(value, cls)), type(value).__name__)
