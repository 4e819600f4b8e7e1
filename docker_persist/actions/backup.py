"""`backup`: take a snapshot of the project's volumes and publish it atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from docker_persist import __version__
from docker_persist.actions.common import LOCK_TIMEOUT, Progress, Workspace, now_utc
from docker_persist.actions.dumps import redact, wait_ready
from docker_persist.actions.quiesce import QuiescePlan, plan_quiesce, quiesced
from docker_persist.actions.recover import recover
from docker_persist.config.model import Project, Volume
from docker_persist.core.archive import ArchiveSummary, TarDigester, UnrestorableError
from docker_persist.core.dumps import DumpSpec, dump_specs
from docker_persist.core.manifest import (
    ARCHIVE_SUFFIXES,
    FORMAT,
    SEALED_FORMAT,
    TREE_SUFFIX,
    IndexRecord,
    Manifest,
    RootEntry,
    ServiceRecord,
    VolumeRecord,
    automatic_name,
    check_snapshot_name,
    dump_manifest,
    private_document,
)
from docker_persist.core.state import ContainerState
from docker_persist.engine import Engine
from docker_persist.engine.markers import remove_leftovers
from docker_persist.errors import ConfigError, PersistError
from docker_persist.host.faults import crash_point
from docker_persist.store import PendingSnapshot, Store
from docker_persist.streams.compression import Compressor, make_compressor
from docker_persist.streams.pipeline import BackgroundWriter, in_background

log = logging.getLogger(__name__)


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

        return f"{key}{ARCHIVE_SUFFIXES[self.compression]}{SUFFIX if self.recipients else ''}"


def part_format(project: Project, store: Store, compression: str | None = None) -> PartFormat:
    """Return how the project's snapshot parts are written into `store` (`compression` overrides x-persist's).

    A store that deduplicates (restic) gets plain tar streams: it compresses them itself, and a
    compressed or encrypted stream would share nothing with the last one. Raise ConfigError if
    x-persist.encrypt names a bad recipient or an unreadable file, or asks for age on such a store.
    """
    recipients: tuple[Any, ...] = ()
    if project.policy.encrypt is not None:
        if store.deduplicates:
            raise ConfigError(
                f"x-persist.encrypt cannot be used with {store.url}: a restic repository is always encrypted "
                "with its password, and age would leave restic nothing to deduplicate; remove x-persist.encrypt, "
                "or keep snapshots in another store"
            )
        from docker_persist.streams.encryption import load_recipients

        recipients = tuple(load_recipients(project.policy.encrypt))
    if store.deduplicates:
        return PartFormat("none")
    return PartFormat(compression or project.policy.compression, recipients)


def select_volumes(project: Project, keys: Sequence[str]) -> list[Volume]:
    """Return the volumes to act on: those named, else every precious one.

    Raise ConfigError for an unknown name, or when nothing is selected.
    """
    binds = {v.key: v for v in project.precious_binds()}
    if keys:
        chosen = []
        for key in keys:
            volume = project.volumes.get(key) or next((v for v in project.volumes.values() if v.name == key), None)
            volume = volume or binds.get(key)
            if volume is None:
                known = ", ".join([*project.volumes, *binds]) or "none"
                raise ConfigError(f"project {project.name!r} has no volume {key!r} (volumes: {known})")
            chosen.append(volume)
        return chosen
    precious = project.precious_volumes() + list(binds.values())
    if not precious:
        raise ConfigError(
            f"nothing to back up: no volume of project {project.name!r} is marked with x-persist; "
            "annotate one (volumes: {name: {x-persist: {}}}) or name the volumes to back up"
        )
    return precious


def volumes_for_services(project: Project, services: Sequence[str]) -> list[str]:
    """Return the keys of the volumes (and precious binds) the services mount. Raise ConfigError for an unknown one."""
    keys = []
    for name in services:
        service = project.service(name)
        if service is None:
            raise ConfigError(f"project {project.name!r} has no service {name!r}")
        keys += [m.source for m in service.mounts if m.type == "volume" and m.source and m.source not in keys]
        binds = {v.bind_source: v.key for v in project.precious_binds()}
        keys += [binds[m.source] for m in service.mounts if m.type == "bind" and m.source in binds]
    return keys


@contextlib.contextmanager
def _compressed_part(
    pending: PendingSnapshot, filename: str, compression: str, recipients: Sequence[Any]
) -> Iterator[tuple[Compressor, BackgroundWriter]]:
    """Yield a compressor writing the part `filename` of the pending snapshot (through age to
    `recipients`, if any), and the writer that hashes and stores its bytes. The compressed (and
    encrypted) stream is ended when the block ends without an error; the writer is always closed."""
    from docker_persist.streams.encryption import EncryptingSink

    with pending.open_part(filename) as part:
        sink = BackgroundWriter(part)
        encrypting = EncryptingSink(sink, recipients) if recipients else None
        try:
            compressor = make_compressor(compression, encrypting or sink)
            yield compressor, sink
            compressor.finish()
            if encrypting is not None:
                encrypting.finish()
        finally:
            if encrypting is not None:
                encrypting.close()
            sink.close()


def _archive_into(
    pending: PendingSnapshot, filename: str, fmt: PartFormat, archive: Iterable[bytes], label: str, progress: Progress
) -> tuple[BackgroundWriter, ArchiveSummary, BackgroundWriter]:
    """Digest, compress (and encrypt) and store one tar stream as a part of the pending snapshot.

    Three stages on two cores: a thread reads the source; the main thread digests it
    and feeds zstd; a thread hashes and writes the compressed bytes. With encryption, a
    fourth thread runs age between zstd and the writer. Then the part's file index
    (core/fileindex.py), compressed and encrypted alike; return both writers and the summary.
    """
    digester = TarDigester(check_safety=False, restorable=True, index=True)
    prime(pending, index_filename(filename))
    with _compressed_part(pending, filename, fmt.compression, fmt.recipients) as (compressor, sink):
        for chunk in in_background(archive):
            digester.feed(chunk)
            compressor.write(chunk)
            progress(label, len(chunk))
    summary = digester.finish()
    return sink, summary, _write_index(pending, index_filename(filename), fmt, digester)


def prime(pending: PendingSnapshot, filename: str) -> None:
    """Tell a store that can use it (restic: a run costs half a second before the first byte) that the part
    `filename` is written next."""
    early = getattr(pending, "prime_part", None)
    if early is not None:
        early(filename)


def index_filename(part: str) -> str:
    """Return the file name of a part's file index: `data.tar.zst` -> `data.index.zst` (`.age` kept), `data.tree`
    -> `data.index.zst`."""
    if part.endswith(TREE_SUFFIX):
        return f"{part.removesuffix(TREE_SUFFIX)}.index.zst"
    key, _, rest = part.partition(".tar")
    return f"{key}.index.zst{'.age' if rest.endswith('.age') else ''}"


def _write_index(pending: PendingSnapshot, filename: str, fmt: PartFormat, digester: TarDigester) -> BackgroundWriter:
    from docker_persist.core.fileindex import HEADER

    with _compressed_part(pending, filename, "zstd", fmt.recipients) as (compressor, sink):
        compressor.write(HEADER)
        for block in digester.index_blocks():
            compressor.write(block)
    return sink


def backup_volume(
    engine: Engine,
    project: str,
    volume: Volume,
    pending: PendingSnapshot,
    fmt: PartFormat,
    progress: Progress,
    kind: str = "volume",
    doing: str = "back up",
) -> VolumeRecord:
    """Stream one volume into the pending snapshot; return its manifest record."""
    live = engine.inspect_volume(volume.name)
    if live is None:
        raise PersistError(f"volume {volume.name!r} ({volume.key}) does not exist: nothing to back up")
    folder = tree_source(engine, volume, pending, kind)
    if folder is not None:
        filename = f"{volume.key}{TREE_SUFFIX}"
        summary, index = _tree_into(engine, project, volume, pending, folder, fmt, f"{doing} {volume.key}", progress)
        stored = (EMPTY_SHA256, 0)
    else:
        filename = fmt.filename(volume.key)
        try:
            with engine.volume_archive(volume.name, project) as archive:
                sink, summary, index = _archive_into(pending, filename, fmt, archive, f"{doing} {volume.key}", progress)
        except UnrestorableError as error:
            raise UnrestorableError(f"cannot back up volume {volume.key} ({volume.name}): {error}") from None
        stored = (sink.sha256.hexdigest(), sink.size)
    record = _volume_record(volume, live.driver, live.options, live.labels, filename, fmt, stored, summary, index)
    return dataclasses.replace(record, kind=kind)


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
"""The sha256 recorded for a folder part (see TREE_SUFFIX), which has no stored file of its own."""


def tree_source(engine: Engine, volume: Volume, pending: PendingSnapshot, kind: str) -> str | None:
    """Return the folder to hand to the store as a folder part (`<key>.tree`), or None to stream a tar.

    Only a store that backs up folders itself (restic: file by file, unchanged files not read again), a
    volume (not a bind folder, which a running service may write) whose files are on this machine, and
    which no running container uses at that moment: the content digest is read beside restic, and both
    must see the same files. A live volume goes as one tar stream, digest and data from one read.
    """
    if kind not in ("volume", "anonymous-volume") or getattr(pending, "start_tree", None) is None:
        return None
    folder = engine.host_path(volume.name)
    if folder is None:
        return None
    if any(c.state in ("running", "restarting") for c in engine.containers_using_volume(volume.name)):
        return None
    return folder


def _tree_into(
    engine: Engine,
    project: str,
    volume: Volume,
    pending: PendingSnapshot,
    folder: str,
    fmt: PartFormat,
    label: str,
    progress: Progress,
) -> tuple[ArchiveSummary, BackgroundWriter]:
    """Let the store back up `folder` itself while this process reads the volume's tar beside it for the
    content digest, the counts and the file index; return the summary and the index's writer.

    When the last snapshot of the folder is known (its record here, its restic snapshot the parent), restic
    runs first: if it found nothing changed, the last snapshot's digest and file index stand for this one
    too, and the volume is not read a second time.
    """
    import os

    filename, index_name = f"{volume.key}{TREE_SUFFIX}", index_filename(f"{volume.key}{TREE_SUFFIX}")
    stat = os.stat(folder)
    root = (stat.st_mode, stat.st_uid, stat.st_gid)
    parent = _tree_parent(pending, volume.key, filename, folder, root)
    writer = pending.start_tree(filename, folder, root, parent[2] if parent else None)  # type: ignore[attr-defined]
    prime(pending, index_name)
    if parent is not None:
        try:
            writer.close()
        except BaseException:
            writer.kill()
            raise
        if unchanged_tree(writer.summary):
            kept = parent_index(pending, parent[0], parent[1])
            if kept is not None:
                return _reuse_tree(pending, parent[1], kept, index_name)
    digester = TarDigester(check_safety=False, restorable=True, index=True)
    try:
        try:
            with engine.volume_archive(volume.name, project) as archive:
                for chunk in in_background(archive):
                    digester.feed(chunk)
                    progress(label, len(chunk))
            summary = digester.finish()
        except UnrestorableError as error:
            raise UnrestorableError(f"cannot back up volume {volume.key} ({volume.name}): {error}") from None
    except BaseException:
        writer.kill()
        raise
    writer.close()
    index = _write_index(pending, index_name, fmt, digester)
    return summary, index


def unchanged_tree(summary: Mapping[str, Any]) -> bool:
    """Return True if restic's backup summary says the folder is exactly its parent snapshot: no file or folder
    new or changed, and not one byte added (a deleted entry or a new symlink at the top changes the top
    folder's tree, which restic counts nowhere but in what it adds). Every node restic keeps carries its
    inode and change time, so an identical tree is the parent's tree."""
    counts = ("files_new", "files_changed", "dirs_new", "dirs_changed", "data_added")
    return all(isinstance(summary.get(k), int) and summary[k] == 0 for k in counts)


def _tree_parent(
    pending: PendingSnapshot, key: str, filename: str, folder: str, root: tuple[int, int, int]
) -> tuple[str, VolumeRecord, str] | None:
    """Return (snapshot name, its record of the volume, restic id) of the last folder part of `folder`, if its
    record can stand for an unchanged folder (same root mode and owner, a file index); else None."""
    tree: Any = pending  # a pending snapshot of a store that backs up folders (see tree_source)
    found = tree.tree_parent(filename, folder)
    if found is None:
        return None
    name, snapshot_id = found
    from docker_persist.core.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(tree.store.read_manifest(tree.project, name), name)
    except (ManifestError, PersistError) as error:
        log.info("the last snapshot of %s cannot stand for an unchanged one: %s", folder, error)
        return None
    record = next((v for v in manifest.volumes if v.key == key and v.file == filename), None)
    if record is None or record.root is None or record.index is None or not record.content_digest:
        return None
    if (record.root.mode & 0o7777, record.root.uid, record.root.gid) != (root[0] & 0o7777, root[1], root[2]):
        return None
    return name, record, snapshot_id


def parent_index(pending: PendingSnapshot, name: str, record: VolumeRecord) -> bytes | None:
    """Return the file index of snapshot `name`'s record, kept on this machine or read from the store, if its sha256
    and size are the record's; else None (the folder is then read again: a damaged old snapshot never stops a new
    one)."""
    assert record.index is not None
    tree: Any = pending  # a pending snapshot of a store that backs up folders: it has its store and project
    content = tree.store.kept_index(tree.project, record.index.file, record.index.sha256)
    if content is None:  # kept on another machine, or not at all: from the repository
        try:
            with tree.store.open_part(tree.project, name, record.index.file) as source:
                content = source.read()
        except PersistError as error:
            log.warning("snapshot %r: cannot read %s (%s): reading the volume again", name, record.index.file, error)
            return None
    if hashlib.sha256(content).hexdigest() != record.index.sha256 or len(content) != record.index.bytes:
        log.warning("snapshot %r: %s does not match its manifest: reading the volume again", name, record.index.file)
        return None
    return bytes(content)


def _reuse_tree(
    pending: PendingSnapshot, record: VolumeRecord, index: bytes, index_name: str
) -> tuple[ArchiveSummary, BackgroundWriter]:
    """Return the summary `record` holds, and write its file index `index` again as this snapshot's."""
    from docker_persist.core.archive import ArchiveRoot

    assert record.root is not None
    with pending.open_part(index_name) as part:
        sink = BackgroundWriter(part)
        try:
            sink.write(index)
        finally:
            sink.close()
    root = ArchiveRoot(record.root.mode, record.root.uid, record.root.gid, 0.0)
    summary = ArchiveSummary(record.content_digest, "", record.entries, record.files, record.directories,
                             record.symlinks, 0, record.bytes, root)  # fmt: skip
    return summary, sink


def backup_bind(
    engine: Engine, project: str, bind: Volume, pending: PendingSnapshot, fmt: PartFormat, progress: Progress
) -> VolumeRecord:
    """Stream a precious bind-mounted host folder into the pending snapshot, through a scratch volume bound to it
    (removing that volume never touches the folder); return its record, kind `bind`."""
    from docker_persist.engine import LABEL_PROJECT, LABEL_ROLE

    assert bind.bind_source is not None
    engine.create_volume(bind.name, "local", dict(bind.driver_opts), {LABEL_ROLE: "scratch", LABEL_PROJECT: project})
    try:
        record = backup_volume(engine, project, bind, pending, fmt, progress, kind="bind")
    finally:
        engine.remove_volume(bind.name, force=True)
    return dataclasses.replace(record, source=bind.bind_source, driver="bind", driver_opts={}, labels={})


DUMP_READY_TIMEOUT = 60.0  # seconds a running database may take to accept a dump (it may be initialising)


class DumpFailedError(PersistError):
    """A dump command failed, printed nothing, or was cut short: nothing is published."""


def dump_filename(key: str, fmt: PartFormat) -> str:
    """Return a dump part's file name: `db_data.dump.sql.zst` (`.age` when encrypted)."""
    from docker_persist.streams.encryption import SUFFIX

    compressed = ARCHIVE_SUFFIXES[fmt.compression].removeprefix(".tar")
    return f"{key}.sql{compressed}{SUFFIX if fmt.recipients else ''}"


def backup_dump(
    engine: Engine, container: str, spec: DumpSpec, source: str, pending: PendingSnapshot, fmt: PartFormat,
    progress: Progress,
) -> VolumeRecord:  # fmt: skip
    """Stream a service's dump from `docker exec` in its running `container` into the pending snapshot, as a
    part of kind `dump` (compressed, encrypted, hashed like a volume's; never a file anywhere). Return its record.

    Raise DumpFailedError if the command exits non-zero, prints nothing, or is cut short.
    """
    import hashlib

    filename = dump_filename(spec.key, fmt)
    digest, size = hashlib.sha256(), 0
    with (
        engine.exec_stream(container, ("sh", "-c", spec.command)) as stream,
        _compressed_part(pending, filename, fmt.compression, fmt.recipients) as (compressor, sink),
    ):
        for chunk in in_background(stream):
            digest.update(chunk)
            compressor.write(chunk)
            size += len(chunk)
            progress(f"dump {spec.service}", len(chunk))
        result = stream.result()
        said = "\n".join(redact(result.stderr).strip().splitlines()[-5:])
        if result.code != 0:
            raise DumpFailedError(
                f"the dump of service {spec.service!r} failed (exit {result.code}"
                f"{', killed' if result.code in (137, 143) else ''}): {said or 'it said nothing on stderr'}"
            )
        if size == 0:
            raise DumpFailedError(f"the dump of service {spec.service!r} printed nothing{': ' + said if said else ''}")
    return VolumeRecord(
        key=spec.key, source=source, driver="dump", driver_opts={}, labels={}, file=filename,
        compression=fmt.compression, archive_sha256=sink.sha256.hexdigest(), archive_bytes=sink.size,
        content_digest=f"sha256:{digest.hexdigest()}", bytes=size, files=0, directories=0, symlinks=0, entries=0,
        root=None, kind="dump", encryption=fmt.encryption,
    )  # fmt: skip


def running_container(engine: Engine, project: str, service: str) -> str | None:
    """Return a running container of the service (not a one-off `run`), or None."""
    from docker_persist.engine import COMPOSE_ONEOFF, COMPOSE_PROJECT, COMPOSE_SERVICE

    labels = [f"{COMPOSE_PROJECT}={project}", f"{COMPOSE_SERVICE}={service}"]
    running = [c for c in engine.list_containers(labels, all_states=False) if c.state == "running"]
    return next((c.id for c in running if c.labels.get(COMPOSE_ONEOFF) != "True"), None)


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
    filename = fmt.filename(key)
    archive = engine.container_layer_archive(container.id, paths)
    sink, summary, index = _archive_into(pending, filename, fmt, archive, f"back up {key}", progress)
    stored = (sink.sha256.hexdigest(), sink.size)
    layer = Volume(key=key, name=container.name)
    record = _volume_record(layer, "local", {}, {}, filename, fmt, stored, summary, index)
    return dataclasses.replace(record, kind="container-layer")


def _volume_record(
    volume: Volume,
    driver: str,
    options: Mapping[str, str],
    labels: Mapping[str, str],
    filename: str,
    fmt: PartFormat,
    stored: tuple[str, int],
    summary: ArchiveSummary,
    index: BackgroundWriter,
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
        archive_sha256=stored[0],
        archive_bytes=stored[1],
        content_digest=summary.digest,
        bytes=summary.bytes,
        files=summary.files,
        directories=summary.directories,
        symlinks=summary.symlinks,
        entries=summary.entries,
        root=RootEntry(root.mode, root.uid, root.gid) if root is not None else None,
        encryption=fmt.encryption,
        index=IndexRecord(index_filename(filename), index.sha256.hexdigest(), index.size),
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
    pin: bool = False


@dataclasses.dataclass(frozen=True)
class BackupResult:
    """A published snapshot, and how long the work took (from the lock on: waiting is not work)."""

    manifest: Manifest
    seconds: float


def backup(ws: Workspace, store: Store, request: BackupRequest, lock_timeout: float = LOCK_TIMEOUT) -> BackupResult:
    """Take a snapshot of the project's volumes and publish it atomically.

    Raise ConfigError for bad input (nothing is touched), SnapshotExistsError for a name in
    use, BusyError if another operation holds the project (after `lock_timeout` seconds),
    UnfinishedOperationError while a restore is unfinished, and HookFailedError or
    RestartFailedError from quiescing.
    """
    project = ws.project
    keys = list(request.volume_keys) + volumes_for_services(project, request.services)
    volumes = select_volumes(project, keys)
    name = check_snapshot_name(request.name) if request.name else None
    fmt = part_format(project, store, request.compression)
    selected = {v.key for v in volumes}
    dumps = [spec for spec in dump_specs(project) if spec.volume in selected] if request.quiesce else []
    with ws.journal.hold("backup", lock_timeout), store.lock(project.name, timeout=lock_timeout):
        started = time.monotonic()
        recover(ws)
        refuse_incomplete(ws, [v.name for v in volumes])
        manifest = _backup_locked(ws, store, volumes, name, request, fmt, dumps)
        return BackupResult(manifest, time.monotonic() - started)


def refuse_incomplete(ws: Workspace, volumes: Sequence[str]) -> None:
    """Raise UnfinishedOperationError if one of `volumes` holds part of a restore (a snapshot of it would be
    of broken data, and would become the newest)."""
    from docker_persist.actions.recover import UnfinishedOperationError
    from docker_persist.engine.markers import incomplete_volumes

    marked = incomplete_volumes(ws.engine, ws.project.name)
    partial = [v for v in volumes if v in marked]
    if partial:
        raise UnfinishedOperationError(
            f"volume {partial[0]} holds part of snapshot {marked[partial[0]]!r}: a restore into it was interrupted. "
            f"Finish it (`docker persist restore {marked[partial[0]]} --yes`, or `docker persist up` if `up` was "
            "restoring it) before backing it up"
        )


def publish_snapshot(
    pending: PendingSnapshot,
    project: str,
    name: str,
    reason: str,
    records: Sequence[VolumeRecord],
    plans: Sequence[QuiescePlan] = (),
    created: datetime.datetime | None = None,
    pinned: bool = False,
    recipients: Sequence[Any] = (),
) -> Manifest:
    """Write the manifest last and make the snapshot visible, atomically; return the manifest.

    With `recipients` (the parts are encrypted), what the manifest tells of the content is sealed
    to them (format 3). On any failure the staged parts are removed: nothing partial is ever visible.
    """
    try:
        manifest = Manifest(
            name=name,
            project=project,
            created=created or now_utc(),
            tool_version=__version__,
            reason=reason,
            volumes=tuple(records),
            services=tuple(ServiceRecord(p.service, p.consistency, p.pre, p.post) for p in plans),
            format=FORMAT,
            pinned=pinned,
        )
        if recipients:
            from docker_persist.streams.encryption import seal

            sealed = seal(private_document(manifest), recipients)
            manifest = dataclasses.replace(manifest, format=SEALED_FORMAT, sealed=sealed)
        pending.publish(dump_manifest(manifest))
    except BaseException:
        pending.abort()
        raise
    return manifest


def unique_automatic_name(store: Store, project: str, reason: str) -> str:
    """Return an automatic name (UTC time and reason) no snapshot of the project has yet."""
    base = automatic_name(now_utc(), reason)
    taken = set(store.list_snapshots(project))
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def _backup_locked(
    ws: Workspace,
    store: Store,
    volumes: list[Volume],
    name: str | None,
    request: BackupRequest,
    fmt: PartFormat,
    dumps: Sequence[DumpSpec] = (),
) -> Manifest:
    project, engine = ws.project, ws.engine
    if name is None:
        name = unique_automatic_name(store, project.name, request.reason)
    elif name in store.list_snapshots(project.name):
        from docker_persist.store import SnapshotExistsError

        raise SnapshotExistsError(
            f"snapshot {name!r} already exists in project {project.name!r}: choose another --name"
        )
    if remove_leftovers(engine, project.name):
        ws.say("removed what an interrupted run left (helper containers, scratch volumes)")
    # A dump stands for its volume while the service runs; a stopped service's files are at rest: copied.
    containers = {spec.service: running_container(engine, project.name, spec.service) for spec in dumps}
    for spec in dumps:
        if containers[spec.service] is None:
            log.warning("%s is not running: its volume %s is copied instead of dumped", spec.service, spec.volume)
    copied = {spec.service for spec in dumps if containers[spec.service] is None}
    dumps = [spec for spec in dumps if containers[spec.service] is not None]
    dumped = {spec.volume for spec in dumps if not spec.also_volume}
    volumes = [v for v in volumes if v.key not in dumped]
    plans = plan_quiesce(project, [v.key for v in volumes]) if request.quiesce else []
    # A dumped service whose files are copied instead (it is not running: stopped, or restarting in a loop)
    # is stopped while they are: its own consistency is its dump's.
    plans = [dataclasses.replace(p, consistency="stop") if p.service in copied and p.consistency == "none" else p
             for p in plans]  # fmt: skip
    partial = [v.key for v in volumes if not engine.reads_all_xattrs(v.name)]
    if partial:
        log.warning(
            "%s read through the engine's archive API, which carries no POSIX ACL and no xattr but "
            "security.capability: those are not saved. Run docker persist as root on the engine's host to keep them",
            ", ".join(partial) + (" is" if len(partial) == 1 else " are"),
        )
    created = now_utc()
    pending = store.begin(project.name, name)
    early = getattr(pending, "prime_manifest", None)  # restic: the manifest's run starts now, its key derivation
    if early is not None:  # overlapping the backup
        early(request.reason, request.pin)
    try:
        records = []
        for spec in dumps:  # before any service is stopped: a dump needs its service running
            source = project.volumes[spec.volume].name
            wait_ready(engine, containers[spec.service] or "", spec, DUMP_READY_TIMEOUT)  # not mid-initialisation
            ws.say(f"dumping {spec.service} (for volume {spec.volume})")
            records.append(backup_dump(engine, containers[spec.service] or "", spec, source, pending, fmt,
                                       ws.progress))  # fmt: skip
            crash_point("backup:dumped")
        with quiesced(engine, project.name, plans, ws.say, ws.journal):
            crash_point("backup:quiesced")
            records += [
                backup_bind(engine, project.name, v, pending, fmt, ws.progress)
                if v.bind_source
                else backup_volume(engine, project.name, v, pending, fmt, ws.progress)
                for v in volumes
            ]
            crash_point("backup:parts-written")
    except BaseException:
        pending.abort()
        raise
    manifest = publish_snapshot(
        pending, project.name, name, request.reason, records, plans, created, request.pin, fmt.recipients
    )
    crash_point("backup:published")
    return manifest
