"""Snapshot actions: backup, restore, verify, forget, list. Each is a function the thin CLI calls.

Data flows engine -> helper container -> archive stream -> (content digest, compressor
[-> age] -> sha256 -> store) on backup, and store -> sha256 [-> age] -> decompressor ->
(safety and digest) -> archive PUT on restore. Everything streams; memory stays flat.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from docker_persist import __version__
from docker_persist.actions.quiesce import QuiescePlan, plan_quiesce, quiesced, recover_interrupted
from docker_persist.config.model import KeepPolicy, Project, Volume
from docker_persist.core.archive import ArchiveSummary, MalformedArchiveError, TarDigester, UnsafeArchiveError
from docker_persist.core.manifest import (
    ENCRYPTED_FORMAT,
    FORMAT,
    Manifest,
    RootEntry,
    ServiceRecord,
    Verification,
    VolumeRecord,
    automatic_name,
    check_snapshot_name,
    dump_manifest,
    load_manifest,
)
from docker_persist.core.planner import DownPlan
from docker_persist.core.retention import Decision
from docker_persist.core.state import ContainerState, LiveState
from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_VOLUME, LABEL_ROLE, Engine
from docker_persist.engine.volumeio import extract_volume_archive, remove_stale_helpers, volume_archive
from docker_persist.errors import ConfigError, PersistError, SnapshotNotFoundError
from docker_persist.host.journal import Journal
from docker_persist.store import PendingSnapshot, Store, not_found
from docker_persist.streams.compression import EXTENSIONS, CorruptArchiveError, iter_decompressed, make_compressor
from docker_persist.streams.encryption import DecryptionError, IdentityError
from docker_persist.streams.pipeline import BackgroundWriter, in_background

Say = Callable[[str], None]
Progress = Callable[[str, int], None]  # (label, bytes just moved)
LOCK_TIMEOUT = 5.0


class IntegrityError(PersistError):
    """A snapshot's archive does not match its manifest: corrupt or tampered."""


@dataclasses.dataclass(frozen=True)
class PartFormat:
    """How a snapshot part is written: compressed, then encrypted with age when there are recipients."""

    compression: str
    recipients: tuple[Any, ...] = ()

    @property
    def encryption(self) -> str | None:
        from docker_persist.streams.encryption import ENCRYPTION

        return ENCRYPTION if self.recipients else None

    def filename(self, key: str) -> str:
        from docker_persist.streams.encryption import SUFFIX

        return f"{key}{EXTENSIONS[self.compression]}{SUFFIX if self.recipients else ''}"


def part_format(project: Project, compression: str | None = None) -> PartFormat:
    """Return how the project's snapshot parts are written (`compression` overrides x-persist's).

    Raise ConfigError if x-persist.encrypt names a bad recipient or an unreadable file.
    """
    recipients: tuple[Any, ...] = ()
    if project.policy.encrypt is not None:
        from docker_persist.streams.encryption import load_recipients

        recipients = tuple(load_recipients(project.policy.encrypt))
    return PartFormat(compression or project.policy.compression, recipients)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def select_volumes(project: Project, keys: Sequence[str]) -> list[Volume]:
    """Return the volumes to act on: those named, else every precious one.

    Raise ConfigError for an unknown name, or when nothing is selected.
    """
    if keys:
        chosen = []
        for key in keys:
            volume = project.volumes.get(key) or next((v for v in project.volumes.values() if v.name == key), None)
            if volume is None:
                known = ", ".join(project.volumes) or "none"
                raise ConfigError(f"project {project.name!r} has no volume {key!r} (volumes: {known})")
            chosen.append(volume)
        return chosen
    precious = project.precious_volumes()
    if not precious:
        raise ConfigError(
            f"nothing to back up: no volume of project {project.name!r} is marked with x-persist; "
            "annotate one (volumes: {name: {x-persist: {}}}) or name the volumes to back up"
        )
    return precious


def _volumes_for_service(project: Project, services: Sequence[str]) -> list[str]:
    keys = []
    for name in services:
        service = project.service(name)
        if service is None:
            raise ConfigError(f"project {project.name!r} has no service {name!r}")
        keys += [m.source for m in service.mounts if m.type == "volume" and m.source and m.source not in keys]
    return keys


# --- backup ------------------------------------------------------------------------------


def _archive_into(
    pending: PendingSnapshot, filename: str, fmt: PartFormat, archive: Iterable[bytes], label: str, progress: Progress
) -> tuple[BackgroundWriter, ArchiveSummary]:
    """Digest, compress (and encrypt) and store one tar stream as a part of the pending snapshot.

    Three stages on two cores: a thread reads the source; the main thread digests it
    and feeds zstd; a thread hashes and writes the compressed bytes. With encryption, a
    fourth thread runs age between zstd and the writer.
    """
    from docker_persist.streams.encryption import EncryptingSink

    digester = TarDigester(check_safety=False)
    with pending.open_part(filename) as part:
        sink = BackgroundWriter(part)
        encrypting = EncryptingSink(sink, fmt.recipients) if fmt.recipients else None
        try:
            compressor = make_compressor(fmt.compression, encrypting or sink)
            for chunk in in_background(archive):
                digester.feed(chunk)
                compressor.write(chunk)
                progress(label, len(chunk))
            compressor.finish()
            if encrypting is not None:
                encrypting.finish()
        finally:
            if encrypting is not None:
                encrypting.close()
            sink.close()
    return sink, digester.finish()


def backup_volume(
    engine: Engine,
    project: str,
    volume: Volume,
    pending: PendingSnapshot,
    fmt: PartFormat,
    progress: Progress,
    kind: str = "volume",
) -> VolumeRecord:
    """Stream one volume into the pending snapshot; return its manifest record."""
    live = engine.inspect_volume(volume.name)
    if live is None:
        raise PersistError(f"volume {volume.name!r} ({volume.key}) does not exist: nothing to back up")
    filename = fmt.filename(volume.key)
    with volume_archive(engine, volume.name, project) as archive:
        sink, summary = _archive_into(pending, filename, fmt, archive, volume.key, progress)
    record = _volume_record(volume, live.driver, live.options, live.labels, filename, fmt, sink, summary)
    return dataclasses.replace(record, kind=kind)


def backup_layer(
    engine: Engine,
    key: str,
    container: ContainerState,
    paths: Sequence[str],
    pending: PendingSnapshot,
    fmt: PartFormat,
    progress: Progress,
) -> VolumeRecord:
    """Stream the given paths of a container's writable layer into the pending snapshot, as a volume-like part."""
    from docker_persist.engine.volumeio import container_layer_archive

    filename = fmt.filename(key)
    archive = container_layer_archive(engine, container.id, paths)
    sink, summary = _archive_into(pending, filename, fmt, archive, key, progress)
    record = _volume_record(Volume(key=key, name=container.name), "local", {}, {}, filename, fmt, sink, summary)
    return dataclasses.replace(record, kind="container-layer")


def _volume_record(
    volume: Volume,
    driver: str,
    options: Mapping[str, str],
    labels: Mapping[str, str],
    filename: str,
    fmt: PartFormat,
    sink: BackgroundWriter,
    summary: ArchiveSummary,
) -> VolumeRecord:
    root = summary.root
    return VolumeRecord(
        key=volume.key,
        source=volume.name,
        driver=driver,
        driver_opts=dict(options),
        labels=dict(labels),
        file=filename,
        compression=fmt.compression,
        archive_sha256=sink.sha256.hexdigest(),
        archive_bytes=sink.size,
        content_digest=summary.digest,
        bytes=summary.bytes,
        files=summary.files,
        directories=summary.directories,
        symlinks=summary.symlinks,
        entries=summary.entries,
        root=RootEntry(root.mode, root.uid, root.gid) if root is not None else None,
        absolute_symlinks=summary.absolute_symlinks,
        encryption=fmt.encryption,
    )


@dataclasses.dataclass(frozen=True)
class BackupRequest:
    """What to back up and how."""

    volume_keys: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    name: str | None = None
    reason: str = "manual"
    compression: str | None = None  # None: the project's x-persist (default zstd)
    quiesce: bool = True


def backup(
    engine: Engine,
    store: Store,
    project: Project,
    request: BackupRequest,
    say: Say,
    progress: Progress,
    journal: Journal,
) -> Manifest:
    """Take a snapshot of the project's volumes and publish it atomically; return its manifest.

    Raise ConfigError for bad input (nothing is touched), SnapshotExistsError for a name in
    use, StoreLockedError if another operation holds the project, and HookFailedError or
    RestartFailedError from quiescing.
    """
    keys = list(request.volume_keys) + _volumes_for_service(project, request.services)
    volumes = select_volumes(project, keys)
    name = check_snapshot_name(request.name) if request.name else None
    fmt = part_format(project, request.compression)
    with store.lock(project.name, timeout=LOCK_TIMEOUT):
        _refuse_after_interrupted_restore(journal)
        recover_interrupted(engine, journal)
        return _backup_locked(engine, store, project, volumes, name, request, fmt, say, progress, journal)


def _refuse_after_interrupted_restore(journal: Journal) -> None:
    interrupted = journal.read().get("restore")
    if interrupted:
        raise PersistError(
            f"a restore of snapshot {interrupted['snapshot']!r} was interrupted and its volumes may be half "
            f"restored: finish it first with `docker persist restore {interrupted['snapshot']} --yes` "
            f"(the undo snapshot {interrupted.get('undo')!r} holds what was there before)"
        )


def publish_snapshot(
    pending: PendingSnapshot,
    project: str,
    name: str,
    reason: str,
    records: Sequence[VolumeRecord],
    plans: Sequence[QuiescePlan] = (),
    created: datetime.datetime | None = None,
) -> Manifest:
    """Write the manifest last and make the snapshot visible, atomically; return the manifest.

    On any failure the staged parts are removed: nothing partial is ever visible.
    """
    manifest = Manifest(
        name=name,
        project=project,
        created=created or _now(),
        tool_version=__version__,
        reason=reason,
        volumes=tuple(records),
        services=tuple(ServiceRecord(p.service, p.consistency, p.pre, p.post) for p in plans),
        format=ENCRYPTED_FORMAT if any(r.encryption for r in records) else FORMAT,
    )
    try:
        pending.publish(dump_manifest(manifest))
    except BaseException:
        pending.abort()
        raise
    return manifest


def unique_automatic_name(store: Store, project: str, reason: str) -> str:
    """Return an automatic name (UTC time and reason) no snapshot of the project has yet."""
    base = automatic_name(_now(), reason)
    taken = set(store.list_snapshots(project))
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def _backup_locked(
    engine: Engine,
    store: Store,
    project: Project,
    volumes: list[Volume],
    name: str | None,
    request: BackupRequest,
    fmt: PartFormat,
    say: Say,
    progress: Progress,
    journal: Journal | None = None,
) -> Manifest:
    if name is None:
        name = unique_automatic_name(store, project.name, request.reason)
    elif name in store.list_snapshots(project.name):
        from docker_persist.store import SnapshotExistsError

        raise SnapshotExistsError(
            f"snapshot {name!r} already exists in project {project.name!r}: choose another --name"
        )
    if remove_stale_helpers(engine, project.name):
        say("removed helper containers left by an interrupted run")
    plans = plan_quiesce(project, [v.key for v in volumes]) if request.quiesce else []
    created = _now()
    pending = store.begin(project.name, name)
    try:
        with quiesced(engine, project.name, plans, say, journal):
            records = [backup_volume(engine, project.name, v, pending, fmt, progress) for v in volumes]
    except BaseException:
        pending.abort()
        raise
    return publish_snapshot(pending, project.name, name, request.reason, records, plans, created)


# --- reading snapshots --------------------------------------------------------------------


def read_manifest(store: Store, project: str, name: str) -> Manifest:
    """Return the manifest of snapshot `name`. Raise SnapshotNotFoundError with the closest names."""
    check_snapshot_name(name)
    try:
        data = store.read_manifest(project, name)
    except SnapshotNotFoundError:
        raise not_found(project, name, store.list_snapshots(project)) from None
    return load_manifest(data, f"{store.url}/{project}/{name}/manifest.json")


def list_manifests(store: Store, project: str) -> list[Manifest]:
    """Return every snapshot of the project, oldest first."""
    manifests = [read_manifest(store, project, name) for name in store.list_snapshots(project)]
    return sorted(manifests, key=lambda m: (m.created, m.name))


def load_keys(
    store: Store, project: str, manifest: Manifest, records: Sequence[VolumeRecord], identity: str | None
) -> tuple[Any, ...]:
    """Return the identities that open the encrypted parts among `records` (none if none is encrypted).

    `identity` is the identity file (--identity, else $DOCKER_PERSIST_IDENTITY). Each encrypted
    part's age header is tried, so a missing or wrong key fails here, before anything is touched.
    Raise IdentityError (a ConfigError), or IntegrityError for a damaged header.
    """
    from docker_persist.streams.encryption import HEAD_BYTES, check_identities, require_identities

    encrypted = [r for r in records if r.encryption]
    if not encrypted:
        return ()
    identities = tuple(require_identities(identity, f"snapshot {manifest.name!r}"))
    for record in encrypted:
        with store.open_part(project, manifest.name, record.file) as part:
            head = part.read(HEAD_BYTES)
        try:
            check_identities(head, identities, f"snapshot {manifest.name!r}: {record.file}")
        except DecryptionError as error:
            raise IntegrityError(str(error)) from error
    return identities


def iter_archive(
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    digester: TarDigester | None = None,
    identities: Sequence[Any] = (),
) -> Iterator[bytes]:
    """Yield the tar bytes of one volume of a snapshot; check the stored file's size and sha256 at its end.

    Reading, hashing, decrypting (with `identities`, see load_keys), decompressing and (if
    given) feeding the digester run in background threads, beside the caller's work. Raise
    IntegrityError if the file differs from the manifest (once its last byte is read) or
    cannot be decrypted or decompressed.
    """
    from docker_persist.streams.encryption import iter_decrypted

    if record.encryption and not identities:
        raise IdentityError(f"snapshot {manifest.name!r}: {record.file} is encrypted, and no identity was given")

    def produce() -> Iterator[bytes]:
        sha256 = hashlib.sha256()
        size = 0

        def compressed() -> Iterator[bytes]:
            nonlocal size
            with store.open_part(project, manifest.name, record.file) as part:
                while data := part.read(1 << 20):
                    sha256.update(data)
                    size += len(data)
                    yield data

        where = f"snapshot {manifest.name!r}: {record.file}"
        stored = compressed()
        if record.encryption:
            stored = iter_decrypted(stored, identities, where)
        try:
            for data in iter_decompressed(record.compression, stored):
                if digester is not None:
                    digester.feed(data)
                yield data
        except DecryptionError as error:
            raise IntegrityError(str(error)) from error
        except CorruptArchiveError as error:
            raise IntegrityError(f"{where}: {error}") from error
        if size != record.archive_bytes or sha256.hexdigest() != record.archive_sha256:
            raise IntegrityError(
                f"snapshot {manifest.name!r}: {record.file} does not match its manifest "
                f"(sha256 {sha256.hexdigest()[:16]}…, {size} bytes; expected {record.archive_sha256[:16]}…, "
                f"{record.archive_bytes} bytes): the archive is corrupt or was changed"
            )

    return in_background(produce())


def check_archive(
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    progress: Progress,
    identities: Sequence[Any] = (),
) -> ArchiveSummary:
    """Read a volume's archive end to end and change nothing.

    Checks the stored file's size and sha256, that it decompresses, that every entry is
    safe to extract, and the entry count. File contents are not hashed here (the
    extraction that follows computes the content digest): this pass costs about what
    decompression does. Raise IntegrityError, naming the file and the fault.
    """
    digester = TarDigester(check_safety=True, allowed_absolute_symlinks=record.absolute_symlinks, hash_data=False)
    try:
        for chunk in iter_archive(store, project, manifest, record, digester, identities):
            progress(record.key, len(chunk))
        summary = digester.finish()
    except (IntegrityError, SnapshotNotFoundError, IdentityError):
        raise
    except PersistError as error:  # unsafe or malformed entries, store errors
        raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error
    if summary.entries != record.entries:
        raise IntegrityError(
            f"snapshot {manifest.name!r}: {record.file} holds {summary.entries} entries, its manifest says "
            f"{record.entries}: the archive or the manifest was changed"
        )
    return summary


# --- restore -------------------------------------------------------------------------------


def extract_into_volume(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    target: str,
    progress: Progress,
    identities: Sequence[Any] = (),
) -> ArchiveSummary:
    """Extract a volume's archive into the empty volume `target`, setting its root; return what was written.

    Raise IntegrityError if what was streamed does not match the manifest.
    """
    root = record.root or RootEntry(0o755, 0, 0)
    digester = TarDigester(check_safety=True, allowed_absolute_symlinks=record.absolute_symlinks)

    def stream() -> Iterator[bytes]:
        for chunk in iter_archive(store, project, manifest, record, digester, identities):
            progress(record.key, len(chunk))
            yield chunk

    try:
        extract_volume_archive(engine, target, project, (root.mode, root.uid, root.gid), stream())
    except (UnsafeArchiveError, MalformedArchiveError) as error:
        raise IntegrityError(f"snapshot {manifest.name!r}: {record.file}: {error}") from error
    summary = digester.finish()
    if summary.digest != record.content_digest:
        raise IntegrityError(f"volume {target!r}: the restored content does not match snapshot {manifest.name!r}")
    return summary


def volume_read_digest(engine: Engine, project: str, volume: str) -> ArchiveSummary:
    """Return the content summary of a volume as it is now, read back through the engine."""
    digester = TarDigester(check_safety=False)
    with volume_archive(engine, volume, project) as archive:
        for chunk in archive:
            digester.feed(chunk)
    return digester.finish()


def project_labels(volume: Volume, project: str) -> dict[str, str]:
    """Return the labels Compose puts on a volume it creates, so it adopts a volume we create."""
    return {COMPOSE_PROJECT: project, COMPOSE_VOLUME: volume.key}


@dataclasses.dataclass(frozen=True)
class RestoreRequest:
    """What to restore, from where, into what."""

    name: str
    volume_keys: tuple[str, ...] = ()
    to: str | None = None
    from_project: str | None = None
    identity: str | None = None  # the age identity file, for an encrypted snapshot


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    """What a restore did."""

    manifest: Manifest
    volumes: tuple[tuple[str, str], ...]  # (key, target volume)
    undo: str | None  # the undo snapshot's name, if one was taken
    restarted: tuple[str, ...]


@dataclasses.dataclass
class _Target:
    record: VolumeRecord
    name: str  # engine volume name to restore into
    volume: Volume | None  # the project's volume, when the target is one
    exists: bool = False
    containers: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # compose containers using it
    guarded: bool = False


ComposeRunner = Callable[[Sequence[str]], None]  # runs `docker compose [project flags] ARGS`


def _pick_records(manifest: Manifest, keys: Sequence[str]) -> list[VolumeRecord]:
    if not keys:
        return list(manifest.volumes)
    records = []
    for key in keys:
        record = manifest.volume(key) or next((r for r in manifest.volumes if r.source == key), None)
        if record is None:
            known = ", ".join(r.key for r in manifest.volumes)
            raise ConfigError(f"snapshot {manifest.name!r} has no volume {key!r} (it holds: {known})")
        records.append(record)
    return records


def _targets(engine: Engine, project: Project, records: list[VolumeRecord], to: str | None) -> list[_Target]:
    targets = []
    for record in records:
        volume = project.volumes.get(record.key)
        name = to or (volume.name if volume is not None else record.source)
        target = _Target(record, name, volume if to is None else None)
        target.exists = engine.inspect_volume(name) is not None
        for container in engine.containers_using_volume(name) if target.exists else []:
            labels = container.get("Labels") or {}
            role = labels.get(LABEL_ROLE)
            if role == "guard":
                target.guarded = True
            elif role == "helper":
                engine.remove_container(str(container["Id"]), force=True)  # stale: we hold the lock
            elif labels.get(COMPOSE_PROJECT) == project.name:
                target.containers.append(container)
            else:
                who = str((container.get("Names") or [container["Id"]])[0]).lstrip("/")
                raise ConfigError(
                    f"volume {name!r} is used by container {who!r}, which is not part of project "
                    f"{project.name!r}: stop and remove it first, or restore with --to NEW_VOLUME"
                )
        targets.append(target)
    return targets


@dataclasses.dataclass(frozen=True)
class ResolvedRestore:
    """What a restore request names: the snapshot, its volume records, and the keys that open them."""

    manifest: Manifest
    records: list[VolumeRecord]
    keys: tuple[Any, ...]  # see load_keys; empty unless a record is encrypted


def resolve_restore(store: Store, project: Project, request: RestoreRequest) -> ResolvedRestore:
    """Return the snapshot, volume records and keys a restore request names; touch nothing.

    Raise ConfigError for a bad name, --volume or --to, SnapshotNotFoundError with the
    closest names for an unknown snapshot, IdentityError for a missing or wrong key.
    """
    source = request.from_project or project.name
    manifest = read_manifest(store, source, request.name)
    if manifest.project != project.name and request.from_project is None:
        raise ConfigError(f"snapshot {request.name!r} belongs to project {manifest.project!r}: use --from-project")
    records = _pick_records(manifest, request.volume_keys)
    if request.to and len(records) != 1:
        raise ConfigError("--to restores one volume: choose it with --volume")
    others = [r.key for r in records if r.kind != "volume"]
    if others and not request.to:
        if request.volume_keys:
            raise ConfigError(
                f"{others[0]!r} in snapshot {manifest.name!r} is {records[0].kind.replace('-', ' ')} data, "
                "which has no volume of its own to go back to: restore it with --to NEW_VOLUME"
            )
        records = [r for r in records if r.kind == "volume"]  # the rest only with --volume KEY --to VOLUME
        if not records:
            raise ConfigError(f"snapshot {manifest.name!r} holds no project volume: use --volume KEY --to VOLUME")
    return ResolvedRestore(manifest, records, load_keys(store, source, manifest, records, request.identity))


def restore(
    engine: Engine,
    store: Store,
    project: Project,
    request: RestoreRequest,
    compose: ComposeRunner,
    say: Say,
    progress: Progress,
    journal: Journal,
    resolved: ResolvedRestore | None = None,
) -> RestoreResult:
    """Restore volumes from a snapshot by name (`resolved`: what resolve_restore gave for `request`).

    Order: check the archives (nothing touched if they are corrupt or unsafe), stop the
    services that use the volumes, take an undo snapshot of what is there, re-create each
    volume with its recorded driver, options and labels, extract and verify, then start
    again what was running. Raise IntegrityError, ConfigError or a PersistError that says
    what state things are in and how to resume.
    """
    resolved = resolved or resolve_restore(store, project, request)
    manifest, records, keys = resolved.manifest, resolved.records, resolved.keys
    source = request.from_project or project.name
    fmt = part_format(project)  # for the undo snapshot: a bad x-persist.encrypt fails now
    with store.lock(project.name, timeout=LOCK_TIMEOUT):
        recover_interrupted(engine, journal)
        targets = _targets(engine, project, records, request.to)
        # A volume that holds data is checked end to end before it is touched. Into a
        # volume that does not exist yet, nothing can be overwritten: the extraction itself
        # checks every entry before tar or the engine sees it, and the sha256 at the end.
        for target in targets:
            if target.exists:
                say(f"checking {target.record.file}")
                check_archive(store, source, manifest, target.record, progress, keys)
        reading = _Reading(source, manifest, keys, fmt)
        return _restore_locked(engine, store, project, reading, targets, compose, say, progress, journal)


@dataclasses.dataclass(frozen=True)
class _Reading:
    """Where a restore reads from, with what keys, and how its undo snapshot is written."""

    source: str  # the project the snapshot belongs to
    manifest: Manifest
    keys: tuple[Any, ...]
    undo_format: PartFormat


def _restore_locked(
    engine: Engine,
    store: Store,
    project: Project,
    reading: _Reading,
    targets: list[_Target],
    compose: ComposeRunner,
    say: Say,
    progress: Progress,
    journal: Journal,
) -> RestoreResult:
    # A restore killed part-way left its record. If this restore re-creates every volume
    # it touched, this one finishes it: the undo snapshot it took already holds what was
    # there before (the volumes now hold half a restore, not worth a snapshot), and the
    # services it stopped are still to be started again. Otherwise its record stays.
    manifest = reading.manifest
    previous = journal.read().get("restore") or {}
    finishing = bool(previous) and set(previous.get("volumes") or []) <= {t.name for t in targets}
    interrupted = previous if finishing else {}
    running: dict[str, bool] = {service: True for service in interrupted.get("services") or []}
    for target in targets:
        for container in target.containers:
            service = str((container.get("Labels") or {}).get("com.docker.compose.service", ""))
            running[service] = running.get(service, False) or container.get("State") == "running"
    guarded = sorted({t.name for t in targets if t.guarded} | set(interrupted.get("guarded") or []))
    for target in targets:
        target.guarded = target.name in guarded
    entry = {
        "snapshot": manifest.name,
        "volumes": sorted({t.name for t in targets} | set(interrupted.get("volumes") or [])),
        "services": sorted(s for s, was in running.items() if was),
        "guarded": guarded,
        "undo": interrupted.get("undo"),
    }
    if previous and not finishing:
        entry = {}  # another restore's record: leave it be
    if entry:
        journal.update(restore=entry)  # before anything is stopped: a kill from here on is recoverable
    for target in targets:
        for container in target.containers:
            if container.get("State") in ("running", "paused", "restarting"):
                say(f"stopping {str((container.get('Names') or ['?'])[0]).lstrip('/')}")
                engine.stop_container(str(container["Id"]))
    if finishing:
        undo = interrupted.get("undo")
        say(f"finishing the interrupted restore of {previous.get('snapshot')!r} (undo snapshot: {undo or 'none'})")
    else:
        existing = [t for t in targets if t.exists]
        undo = _take_undo_snapshot(engine, store, project, existing, reading.undo_format, say, progress)
        if entry:
            journal.update(restore={**entry, "undo": undo})
    done: list[tuple[str, str]] = []
    try:
        for target in targets:
            _replace_volume(engine, store, project.name, reading, target, say, progress)
            done.append((target.record.key, target.name))
    except BaseException as error:
        failed = targets[len(done)] if len(done) < len(targets) else None
        if failed is not None and not failed.exists:
            # The volume did not exist before this restore: take away the half-filled one.
            with contextlib.suppress(PersistError):
                engine.remove_volume(failed.name, force=True)
            if isinstance(error, IntegrityError) and not done and undo is None:
                raise  # nothing the user had was changed: the archive's fault is the whole story
        where = f"; the undo snapshot {undo!r} holds what was there before" if undo else ""
        raise PersistError(
            f"restore of snapshot {manifest.name!r} stopped part-way ({error}). Restored so far: "
            f"{', '.join(v for _, v in done) or 'nothing'}{where}. Run the same restore again to finish it: "
            f"it then starts the stopped services ({', '.join(running) or 'none'}) again."
        ) from error
    restarted = _restart(compose, running, say)
    if entry:
        journal.update(restore=None)
    return RestoreResult(manifest, tuple(done), undo, restarted)


def _replace_volume(
    engine: Engine,
    store: Store,
    project: str,
    reading: _Reading,
    target: _Target,
    say: Say,
    progress: Progress,
) -> None:
    """Re-create one volume from its record and extract the snapshot into it."""
    from docker_persist.engine.guards import create_guard, remove_guards

    for container in target.containers:
        engine.remove_container(str(container["Id"]), force=True)
    if target.exists:
        remove_guards(engine, target.name)
        engine.remove_volume(target.name)
    record = target.record
    # A project volume gets its recorded labels back, so Compose still owns it; a --to
    # volume gets none, so it does not claim to be a project's.
    labels = dict(record.labels) if target.volume is not None else {}
    engine.create_volume(target.name, record.driver, record.driver_opts, labels)
    say(f"restoring {record.key} into {target.name}")
    extract_into_volume(engine, store, reading.source, reading.manifest, record, target.name, progress, reading.keys)
    if target.guarded:
        create_guard(engine, target.name, project)


def _take_undo_snapshot(
    engine: Engine,
    store: Store,
    project: Project,
    targets: list[_Target],
    fmt: PartFormat,
    say: Say,
    progress: Progress,
) -> str | None:
    if not targets:
        return None
    name = unique_automatic_name(store, project.name, "pre-restore")
    say(f"taking undo snapshot {name}")
    pending = store.begin(project.name, name)
    try:
        records = []
        for target in targets:
            volume = target.volume or Volume(key=target.record.key, name=target.name)
            records.append(backup_volume(engine, project.name, volume, pending, fmt, progress))
    except BaseException:
        pending.abort()
        raise
    if all(r.entries <= 1 for r in records):  # nothing but the roots: nothing to undo
        pending.abort()
        return None
    publish_snapshot(pending, project.name, name, "pre-restore", records)
    return name


def _restart(compose: ComposeRunner, running: dict[str, bool], say: Say) -> tuple[str, ...]:
    if not running:
        return ()
    up = sorted(s for s, was in running.items() if was)
    created = sorted(s for s, was in running.items() if not was)
    if up:
        say(f"starting again: {', '.join(up)}")
        compose(["up", "--detach", "--no-deps", *up])
    if created:
        compose(["create", "--no-deps", *created])
    return tuple(up)


# --- verify -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VerifyCommand:
    """A service's `x-persist.verify`, run in its image over a restored volume."""

    image: str
    target: str  # where the service mounts the volume
    command: str


def verify_commands(project: Project) -> dict[str, VerifyCommand]:
    """Return, per volume key, the verify command of the service that mounts it (the first with one)."""
    commands: dict[str, VerifyCommand] = {}
    for service in project.services:
        if service.policy is None or not service.policy.verify or not service.image:
            continue
        for mount in service.mounts:
            if mount.type == "volume" and mount.source and mount.source not in commands:
                commands[mount.source] = VerifyCommand(service.image, mount.target, service.policy.verify)
    return commands


def _drill(
    engine: Engine,
    store: Store,
    project: str,
    manifest: Manifest,
    record: VolumeRecord,
    command: VerifyCommand | None,
    progress: Progress,
    identities: Sequence[Any] = (),
) -> str:
    """Restore one volume into a scratch volume and check it; return what passed. Raise on failure."""
    import secrets

    from docker_persist.actions.quiesce import unescape_compose
    from docker_persist.engine import LABEL_PROJECT, run_to_completion

    # No separate check pass: the scratch volume holds nothing to protect, and the
    # extraction checks every entry and the stored file's sha256 itself.
    scratch = f"docker-persist-verify-{secrets.token_hex(6)}"
    engine.create_volume(scratch, labels={LABEL_ROLE: "scratch", LABEL_PROJECT: project})
    try:
        extract_into_volume(engine, store, project, manifest, record, scratch, progress, identities)
        restored = volume_read_digest(engine, project, scratch)
        if restored.digest != record.content_digest:
            raise IntegrityError(f"{record.key}: the volume read back after the drill differs from the snapshot")
        if record.root is not None and restored.root is not None:
            got = (restored.root.mode & 0o7777, restored.root.uid, restored.root.gid)
            want = (record.root.mode & 0o7777, record.root.uid, record.root.gid)
            if got != want:
                raise IntegrityError(f"{record.key}: the restored volume root is {got}, the snapshot says {want}")
        detail = f"{record.key}: {restored.files} files, digest matches"
        if command is not None:
            config = {
                "Image": command.image,
                "Entrypoint": ["sh", "-c"],
                "Cmd": [unescape_compose(command.command)],
                "Labels": {LABEL_ROLE: "helper", LABEL_PROJECT: project},
                "NetworkDisabled": True,
                "HostConfig": {"NetworkMode": "none",
                               "Mounts": [{"Type": "volume", "Source": scratch, "Target": command.target}]},
            }  # fmt: skip
            code, output = run_to_completion(engine, config)
            if code != 0:
                last = " | ".join(output.strip().splitlines()[-3:])
                raise IntegrityError(
                    f"{record.key}: verify command exited {code}: {command.command}" + (f" ({last})" if last else "")
                )
            detail += f", verify command passed ({command.command})"
        return detail
    finally:
        engine.remove_volume(scratch, force=True)


def verify(
    engine: Engine,
    store: Store,
    project: Project,
    names: Sequence[str],
    say: Say,
    progress: Progress,
    identity: str | None = None,
) -> list[tuple[Manifest, Verification]]:
    """Run a restore drill for each snapshot named; record each result in its manifest and return them.

    A failed drill is a result, not an exception: the caller decides the exit code. A
    missing or wrong identity for an encrypted snapshot is not a result: it raises
    IdentityError before any drill, and nothing is recorded.
    """
    commands = verify_commands(project)
    results = []
    with store.lock(project.name, timeout=LOCK_TIMEOUT):
        manifests = [read_manifest(store, project.name, name) for name in names]
        keys: list[tuple[Any, ...] | IntegrityError] = []
        for manifest in manifests:
            try:
                keys.append(load_keys(store, project.name, manifest, manifest.volumes, identity))
            except IntegrityError as error:  # a damaged age header: a failed drill, recorded below
                keys.append(error)
        for manifest, loaded in zip(manifests, keys, strict=True):
            name = manifest.name
            details, ok = [], True
            identities: tuple[Any, ...] = ()
            if isinstance(loaded, IntegrityError):
                details, ok = [str(loaded)], False
            else:
                identities = loaded
            for record in manifest.volumes if ok else ():
                say(f"{name}: drilling {record.key}")
                command = commands.get(record.key)
                try:
                    details.append(_drill(engine, store, project.name, manifest, record, command, progress, identities))
                except PersistError as error:
                    ok = False
                    details.append(str(error))
            verification = Verification(
                at=_now(), ok=ok, detail="; ".join(details), volumes=tuple(r.key for r in manifest.volumes)
            )
            updated = manifest.with_verification(verification)
            store.replace_manifest(project.name, name, dump_manifest(updated))
            results.append((updated, verification))
    return results


def forget(store: Store, project: str, policy: KeepPolicy, dry_run: bool) -> list[Decision]:
    """Apply a retention policy to the project's snapshots; return every decision (newest first).

    Raise ConfigError for an empty policy. With dry_run nothing is removed.
    """
    from docker_persist.core.retention import SnapshotRef, apply_policy

    with store.lock(project, timeout=LOCK_TIMEOUT):
        manifests = list_manifests(store, project)
        decisions = apply_policy([SnapshotRef(m.name, m.created) for m in manifests], policy)
        if not dry_run:
            for decision in decisions:
                if not decision.keep:
                    store.delete(project, decision.snapshot.name)
    return decisions


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower() or "root"


def backup_before_down(
    engine: Engine,
    store: Store,
    project: Project,
    plan: DownPlan,
    state: LiveState,
    say: Say,
    progress: Progress,
    journal: Journal,
) -> Manifest | None:
    """Take the `<time>-pre-down` snapshot of everything `down` would destroy that on_down says to keep.

    Named volumes, anonymous volumes (kind anonymous-volume) and the changed paths of
    writable layers (kind container-layer), quiescing each affected service by its
    consistency setting. Return None when there is nothing to back up.
    """
    from docker_persist.core.planner import is_ephemeral_path
    from docker_persist.engine.volumeio import layer_paths

    losses = plan.to_back_up
    if not losses:
        return None
    services = sorted({loss.service for loss in losses if loss.service})
    plans = [p for p in plan_quiesce(project, [v.key for v in project.volumes.values()]) if p.service in services]
    planned = {p.service for p in plans}
    for service in project.services:
        if service.name in services and service.name not in planned:
            policy = service.policy
            plans.append(
                QuiescePlan(service.name, policy.consistency, policy.pre, policy.post)
                if policy
                else QuiescePlan(service.name, "none")
            )
    containers = {c.name: c for c in state.containers}
    fmt = part_format(project)
    with store.lock(project.name, timeout=LOCK_TIMEOUT):
        _refuse_after_interrupted_restore(journal)
        recover_interrupted(engine, journal)
        name = unique_automatic_name(store, project.name, "pre-down")
        pending = store.begin(project.name, name)
        try:
            records: list[VolumeRecord] = []
            keys: set[str] = set()
            with quiesced(engine, project.name, plans, say, journal):
                for loss in losses:
                    if loss.kind == "named-volume" and loss.key:
                        volume = project.volumes[loss.key]
                        records.append(backup_volume(engine, project.name, volume, pending, fmt, progress))
                        continue
                    base = f"{'anon' if loss.kind == 'anonymous-volume' else 'layer'}-{_slug(loss.service or 'x')}"
                    key = base + (f"-{_slug(loss.path)}" if loss.path else "")
                    number = 2
                    while key in keys or key in project.volumes:
                        key, number = f"{base}-{number}", number + 1
                    keys.add(key)
                    if loss.kind == "anonymous-volume":
                        volume = Volume(key=key, name=loss.name)
                        records.append(
                            backup_volume(engine, project.name, volume, pending, fmt, progress, kind="anonymous-volume")
                        )
                    else:
                        container = containers[loss.name]
                        paths = layer_paths(container.changes or (), is_ephemeral_path)
                        if paths:
                            records.append(backup_layer(engine, key, container, paths, pending, fmt, progress))
        except BaseException:
            pending.abort()
            raise
        return publish_snapshot(pending, project.name, name, "pre-down", records, plans)


def copy_snapshot(source: Store, target: Store, project: str, name: str, progress: Progress) -> Manifest:
    """Copy a published snapshot, byte for byte, to another store (e.g. local to S3, for an off-site copy).

    Each part's size and sha256 are checked against the manifest while it streams; the
    manifest is published last, so the copy appears only once complete. Raise
    SnapshotExistsError if the target already has the name, IntegrityError for a
    corrupt source part.
    """
    manifest = read_manifest(source, project, name)
    with target.lock(project, timeout=LOCK_TIMEOUT):
        if name in target.list_snapshots(project):
            from docker_persist.store import SnapshotExistsError

            raise SnapshotExistsError(f"{target.url} already has snapshot {name!r} of project {project!r}")
        pending = target.begin(project, name)
        try:
            for record in manifest.volumes:
                digest, size = hashlib.sha256(), 0
                with source.open_part(project, name, record.file) as reader, pending.open_part(record.file) as writer:
                    while data := reader.read(1 << 20):
                        digest.update(data)
                        size += len(data)
                        writer.write(data)
                        progress(record.key, len(data))
                if size != record.archive_bytes or digest.hexdigest() != record.archive_sha256:
                    raise IntegrityError(
                        f"snapshot {name!r}: {record.file} in {source.url} does not match its manifest: not copied"
                    )
            pending.publish(dump_manifest(manifest))
        except BaseException:
            pending.abort()
            raise
    return manifest
