"""`restore`: restore volumes from a snapshot by name, with an undo snapshot first.

A restore is a journaled state machine (core/operations.py names the phases and their
recovery). In order, each step recorded in the journal before it is taken:

1. Resolve and check, touching nothing: the snapshot, its volumes, the keys that open them, and
   every archive read end to end (size, sha256, safety of every entry, entry count, content
   digest). A refusal here leaves no record and every service running.
2. planned: the targets (the current project's volumes for the snapshot's keys, or --to), what
   each holds, and the services that use them.
3. stopped: those services are stopped.
4. undo-taken: the undo snapshot of every target that holds data is published.
5. replacing: each target in turn: the containers that use it are removed, the volume is
   re-created with the project's driver, options and labels (never the manifest's), marked
   incomplete on the engine, filled, checked by content digest, unmarked, and guarded again.
6. replaced, then the services start again (Compose re-creates their containers) and the
   record goes.

A failure rolls back when nothing the user had is gone (the services start again, the record
goes) and otherwise leaves the record, so that running the same restore again finishes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from docker_persist.actions.backup import (
    PartFormat,
    backup_volume,
    part_format,
    publish_snapshot,
    unique_automatic_name,
)
from docker_persist.actions.catalog import (
    CheckedPart,
    check_archive,
    check_dump,
    checked_folder_part,
    extract_and_read_back,
    extract_into_volume,
    holds_exactly,
    move_checked,
    read_manifest,
    unlock,
    volume_is_empty,
)
from docker_persist.actions.common import LOCK_TIMEOUT, IntegrityError, Workspace, project_images
from docker_persist.actions.dumps import load_snapshot_dump
from docker_persist.actions.recover import (
    UnfinishedOperationError,
    recover,
    roll_back,
    start_services,
    unfinished_message,
)
from docker_persist.config.model import Project, Volume
from docker_persist.core.dumps import dump_for_volume, dumped_volume, volume_of
from docker_persist.core.manifest import TREE_SUFFIX, Manifest, RootEntry, VolumeRecord
from docker_persist.core.operations import Operation, Target, recovery
from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_VOLUME, ContainerSummary, Engine
from docker_persist.engine.guards import create_guard
from docker_persist.engine.markers import clear_incomplete, mark_incomplete, remove_leftovers
from docker_persist.errors import ConfigError, PersistError, add_note
from docker_persist.host.faults import crash_point
from docker_persist.host.signals import interrupts_deferred
from docker_persist.store import Store

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RestoreRequest:
    """What to restore, from where, into what."""

    name: str
    volume_keys: tuple[str, ...] = ()
    to: str | None = None
    from_project: str | None = None
    identity: str | None = None  # the age identity file, for an encrypted snapshot
    force: bool = False  # --to may name a volume of another Compose project
    dump: bool = False  # load the dump of a volume the snapshot holds both ways (files and dump)


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    """What a restore did."""

    manifest: Manifest
    volumes: tuple[tuple[str, str], ...]  # (key, target volume)
    undo: str | None  # the undo snapshot's name, if one was taken
    restarted: tuple[str, ...]
    finished: bool = False  # it finished an interrupted restore


@dataclasses.dataclass(frozen=True)
class ResolvedRestore:
    """What a restore request names: the snapshot, its volume records, and the keys that open them."""

    manifest: Manifest
    records: list[VolumeRecord]
    keys: tuple[Any, ...]  # see load_keys; empty unless a record is encrypted


def compose_volume_labels(project: Project, volume: Volume) -> dict[str, str]:
    """Return the labels for creating a project volume so that Compose adopts it as its own."""
    return {**volume.labels, COMPOSE_PROJECT: project.name, COMPOSE_VOLUME: volume.key}


def _pick_records(manifest: Manifest, keys: Sequence[str]) -> list[VolumeRecord]:
    if not keys:
        return list(manifest.volumes)
    records = []
    for key in keys:
        by_source = [r for r in manifest.volumes if r.source == key]  # an engine name: its files before its dump
        record = manifest.volume(key) or min(by_source, key=lambda r: r.kind == "dump", default=None)
        if record is None:
            known = ", ".join(r.key for r in manifest.volumes)
            raise ConfigError(f"snapshot {manifest.name!r} has no volume {key!r} (it holds: {known})")
        records.append(record)
    return records


def resolve_restore(store: Store, project: Project, request: RestoreRequest) -> ResolvedRestore:
    """Return the snapshot, volume records and keys a restore request names; touch nothing.

    Raise ConfigError for a bad name, --volume or --to, or a snapshot volume the project does
    not have; SnapshotNotFoundError with the closest names for an unknown snapshot;
    IdentityError for a missing or wrong key.
    """
    source = request.from_project or project.name
    manifest = read_manifest(store, source, request.name)
    if manifest.project != project.name and request.from_project is None:
        raise ConfigError(f"snapshot {request.name!r} belongs to project {manifest.project!r}: use --from-project")
    if manifest.locked:  # what the volumes hold (and their source names) is sealed with the parts' key
        manifest = unlock(store, source, manifest, [], request.identity)[0]
    records = _pick_records(manifest, request.volume_keys)
    records = _files_or_dumps(manifest, records, request.dump)
    if request.to and len(records) != 1:
        raise ConfigError("--to restores one volume: choose it with --volume")
    others = [r.key for r in records if r.kind not in ("volume", "dump")]
    if others and not request.to:
        if request.volume_keys:
            raise ConfigError(
                f"{others[0]!r} in snapshot {manifest.name!r} is {records[0].kind.replace('-', ' ')} data, "
                "which has no volume of its own to go back to: restore it with --to NEW_VOLUME, or into a "
                f"host folder with --volume {others[0]} --path / --to-dir DIR"
            )
        records = [r for r in records if r.kind in ("volume", "dump")]  # the rest only with --volume KEY --to VOLUME
        if not records:
            raise ConfigError(f"snapshot {manifest.name!r} holds no project volume: use --volume KEY --to VOLUME")
    if not request.to:
        # The target is always the current project's own volume for the key, never the
        # manifest's `source`: a snapshot (or whoever edited it) cannot name another volume.
        missing = [r.key for r in records if volume_of(r) not in project.volumes]
        if missing:
            raise ConfigError(
                f"snapshot {manifest.name!r} holds volume {missing[0]!r}, which project {project.name!r} does not "
                f"have: restore it into a volume of your choice with --volume {missing[0]} --to NEW_VOLUME "
                f"(Compose would name it {project.name}_{missing[0]})"
            )
    for record in records:
        if record.kind == "dump" and dump_for_volume(project, volume_of(record)) is None:
            raise ConfigError(
                f"snapshot {manifest.name!r} holds a dump of volume {volume_of(record)!r}, and no service of project "
                f"{project.name!r} sets x-persist.dump for it, so docker-persist cannot tell which database to load "
                f"it into: add dump to that service, or load {record.file} by hand (see the README)"
            )
    manifest, records, keys = unlock(store, source, manifest, [r.key for r in records], request.identity)
    return ResolvedRestore(manifest, records, keys)


def _files_or_dumps(manifest: Manifest, records: list[VolumeRecord], dump: bool) -> list[VolumeRecord]:
    """Return one record per volume: where the snapshot holds a volume's files and its dump, the files (the exact
    copy), or with `dump` the dump. Raise ConfigError for `dump` when a chosen volume has no dump."""
    dumps = {dumped_volume(r.key): r for r in manifest.volumes if r.kind == "dump"}
    if dump:
        chosen = [dumps.get(volume_of(r), r) if r.kind == "volume" else r for r in records]
        lacking = [r.key for r in chosen if r.kind == "volume"]
        if lacking:
            raise ConfigError(f"snapshot {manifest.name!r} holds no dump of volume {lacking[0]!r}")
        return list({r.key: r for r in chosen}.values())
    files = {r.key for r in records if r.kind == "volume"}
    return [r for r in records if not (r.kind == "dump" and dumped_volume(r.key) in files)]


@dataclasses.dataclass
class _Plan:
    """A restore's targets, with the containers of the project that use each."""

    targets: list[Target]
    users: dict[str, list[ContainerSummary]]  # volume -> compose containers of the project using it
    records: dict[str, VolumeRecord]  # volume -> the snapshot's record restored into it


def _plan_targets(ws: Workspace, resolved: ResolvedRestore, request: RestoreRequest) -> _Plan:
    """Inspect each target volume: what it holds, who uses it, how to create it again. Touch nothing.

    Raise ConfigError for a volume a container outside the project uses, or a --to volume of
    another project (without --force).
    """
    engine, project = ws.engine, ws.project
    plan = _Plan([], {}, {})
    for record in resolved.records:
        volume = None if request.to else project.volumes[volume_of(record)]
        name = request.to or (volume.name if volume is not None else record.key)
        live = engine.inspect_volume(name)
        if request.to and live is not None and not request.force:
            owner = live.labels.get(COMPOSE_PROJECT)
            if owner and owner != project.name:
                raise ConfigError(
                    f"volume {name!r} belongs to Compose project {owner!r}: a restore --to never replaces another "
                    "project's volume; choose a new volume name, or pass --force if you mean it"
                )
        if live is not None:
            driver, options, labels = live.driver or "local", dict(live.options), dict(live.labels)
        elif volume is not None:
            driver, options = volume.driver or "local", dict(volume.driver_opts)
            labels = compose_volume_labels(project, volume)
        else:
            driver, options, labels = "local", {}, {}  # a new --to volume: claims no project
        target = Target(volume_of(record), name, "absent", driver=driver, driver_opts=options, labels=labels)
        if record.kind != "dump" and (record.driver or "local", dict(record.driver_opts)) != (driver, options):
            # The store is untrusted: how a volume is made comes from the project, never from a manifest.
            log.warning(
                "snapshot %s recorded volume %s with driver %s and options %s; it is restored with the "
                "project's: driver %s, options %s",
                resolved.manifest.name,
                record.key,
                record.driver,
                dict(record.driver_opts),
                driver,
                options,
            )
        users = _project_users(engine, project.name, target) if live is not None else []
        if live is not None and target.outlives and engine.emptying(name, project_images(project, record.key)) is None:
            raise ConfigError(
                f"cannot restore into volume {name!r} in place: its files outlive it (driver {target.driver}, "
                f"options {dict(target.driver_opts)}), so it must be emptied first, and this engine is not on this "
                "host and no image of the project has a shell to do it; restore with --to NEW_VOLUME instead"
            )
        plan.targets.append(target)
        plan.users[name] = users
        plan.records[name] = record
    return plan


def _project_users(engine: Engine, project: str, target: Target) -> list[ContainerSummary]:
    """Return the project's containers that use the target volume; mark it guarded if a guard does.

    Raise ConfigError if a container outside the project uses it.
    """
    users: list[ContainerSummary] = []
    for container in engine.containers_using_volume(target.volume):
        if container.role == "guard":
            target.guarded = True
        elif container.role in ("helper", "incomplete"):
            continue  # ours: leftovers, removed with the volume
        elif container.labels.get(COMPOSE_PROJECT) == project:
            users.append(container)
        else:
            raise ConfigError(
                f"volume {target.volume!r} is used by container {container.name!r}, which is not part of project "
                f"{project!r}: stop and remove it first, or restore with --to NEW_VOLUME"
            )
    return users


def restore(
    ws: Workspace, store: Store, request: RestoreRequest, resolved: ResolvedRestore | None = None
) -> RestoreResult:
    """Restore volumes from a snapshot by name (`resolved`: what resolve_restore gave for `request`).

    Raise IntegrityError or ConfigError before anything is touched; UnfinishedOperationError
    when an interrupted restore must be finished first; a PersistError that says what state
    the volumes are in if it fails part-way (running it again then finishes it).
    """
    project = ws.project
    resolved = resolved or resolve_restore(store, project, request)
    fmt = part_format(project, store)  # for the undo snapshot: a bad x-persist.encrypt fails now
    source = request.from_project or project.name
    with (
        ws.journal.hold("restore", LOCK_TIMEOUT),
        store.lock(project.name, timeout=LOCK_TIMEOUT),
        contextlib.ExitStack() as scratches,
    ):
        resume = _resumable(ws.journal.read().operation, _target_names(project, resolved, request))
        recover(ws, resuming=resume is not None)  # first: what a dead run stopped is started again
        plan = _plan_targets(ws, resolved, request)
        if remove_leftovers(ws.engine, project.name):
            ws.say("removed what an interrupted run left (helper containers, scratch volumes)")
        for target in plan.targets:
            if resume is not None and resume.target(target.volume) is not None:
                continue  # what it held before is what the interrupted restore recorded
            if ws.engine.inspect_volume(target.volume) is not None:
                target.before = "empty" if volume_is_empty(ws.engine, project.name, target.volume) else "data"
                if resume is not None and target.held_data:
                    # It would need an undo snapshot of its own, beside the interrupted restore's.
                    raise UnfinishedOperationError(unfinished_message(resume))
        # Everything that can refuse the snapshot runs before anything is touched.
        checked: dict[str, CheckedPart] = {}
        to_check = [t for t in plan.targets if t.before == "data" or plan.users[t.volume]]
        kept = _kept_check(to_check, plan.records, getattr(store, "restore_tree", None) is not None)
        for target in sorted(to_check, key=lambda t: t is kept):  # the kept one last: see _kept_check
            record = plan.records[target.volume]
            ws.say(f"checking {record.file}")
            if record.kind == "dump":
                check_dump(store, source, resolved.manifest, record, ws.progress, resolved.keys)
            elif record.file.endswith(TREE_SUFFIX) and getattr(store, "restore_tree", None) is not None:
                checking = checked_folder_part(ws.engine, store, source, resolved.manifest, record, ws.progress,
                                               resolved.keys, keep=target is kept)  # fmt: skip
                if target is kept:  # its scratch volume stays until the restore ends
                    if (part := scratches.enter_context(checking)) is not None:
                        checked[target.volume] = part
                else:  # its scratch volume is gone before the next check
                    with checking:
                        pass
            else:
                check_archive(store, source, resolved.manifest, record, ws.progress, resolved.keys)
        operation = _operation(resolved, source, store, plan, resume)
        return _carry_out(ws, store, resolved, source, fmt, plan, operation, checked, finished=resume is not None)


def _kept_check(targets: Sequence[Target], records: dict[str, VolumeRecord], folders: bool) -> Target | None:
    """Return the target whose folder part's check is kept, to be moved into it (restic then restores that part
    once, not twice): the largest folder part going into a volume the engine really empties (not one whose
    files outlive it); None if there is none (or the store restores no folder). One only, checked last: the
    other checks' scratch volumes are gone by then, so the disk holds no more at once than with no check kept.
    """
    eligible = [t for t in targets if folders and records[t.volume].file.endswith(TREE_SUFFIX) and not t.outlives]
    return max(eligible, key=lambda t: records[t.volume].bytes, default=None)


def _target_names(project: Project, resolved: ResolvedRestore, request: RestoreRequest) -> set[str]:
    """Return the engine names of the volumes a restore replaces."""
    if request.to:
        return {request.to}
    return {project.volumes[volume_of(record)].name for record in resolved.records}


def _resumable(previous: Operation | None, wanted: set[str]) -> Operation | None:
    """Return the interrupted restore this one takes over: one not done yet, whose destroyed volumes this
    one fills again (with the same snapshot or another, such as its undo snapshot).

    Taking it over keeps its undo snapshot and leaves the services it stopped stopped, rather than
    starting them only to stop them again and take a second undo snapshot.
    """
    if previous is None or previous.kind != "restore" or recovery(previous) == "forward":
        return None
    if not {t.volume for t in previous.targets if t.destroyed} <= wanted:
        return None
    return previous


def _operation(
    resolved: ResolvedRestore, source: str, store: Store, plan: _Plan, resume: Operation | None
) -> Operation:
    """Return the record of this restore; a resumed one keeps what the interrupted one knew."""
    operation = Operation(kind="restore", snapshot=resolved.manifest.name, source=source, store=store.url)
    running: set[str] = set(resume.running) if resume else set()
    created: set[str] = set(resume.created) if resume else set()
    for target in plan.targets:
        earlier = resume.target(target.volume) if resume else None
        if earlier is not None:
            target.before, target.guarded = earlier.before, earlier.guarded or target.guarded
            target.driver, target.driver_opts, target.labels = earlier.driver, earlier.driver_opts, earlier.labels
            target.status = "pending"  # it is filled again from the start, whatever it holds now
        for container in plan.users[target.volume]:
            (running if container.state in ("running", "paused", "restarting") else created).add(container.service)
        operation.targets.append(target)
    operation.running, operation.created = sorted(running), sorted(created - running)
    if resume is not None:
        operation.undo = resume.undo
        # Its volumes that this restore leaves alone kept their data: they only get their guards back.
        for earlier in resume.targets:
            if operation.target(earlier.volume) is None and earlier.guarded:
                operation.targets.append(dataclasses.replace(earlier, status="replaced"))
    return operation


def _carry_out(
    ws: Workspace,
    store: Store,
    resolved: ResolvedRestore,
    source: str,
    fmt: PartFormat,
    plan: _Plan,
    operation: Operation,
    checked: dict[str, CheckedPart],
    finished: bool,
) -> RestoreResult:
    journal, engine = ws.journal, ws.engine
    journal.set_operation(operation)
    crash_point("restore:planned")
    try:
        for target in operation.targets:
            for container in plan.users[target.volume]:
                if container.state in ("running", "paused", "restarting"):
                    ws.say(f"stopping {container.name}")
                    engine.stop_container(container.id)
        operation.phase = "stopped"
        journal.set_operation(operation)
        crash_point("restore:stopped")
        if operation.undo is None:
            operation.undo = _take_undo_snapshot(ws, store, fmt, [t for t in operation.targets if t.held_data])
        operation.phase = "undo-taken"
        journal.set_operation(operation)
        crash_point("restore:undo-taken")
        operation.phase = "replacing"
        journal.set_operation(operation)
        for target in operation.targets:
            if target.volume in plan.records:
                _replace(ws, store, resolved, source, plan, operation, target, checked.get(target.volume))
            elif target.guarded:  # the interrupted restore's, left alone by this one: only its guard back
                create_guard(engine, target.volume, ws.project.name)
        operation.phase = "replaced"
        journal.set_operation(operation)
        crash_point("restore:replaced")
    except BaseException as error:
        _after_failure(ws, operation, error)
        raise
    with interrupts_deferred():
        restarted = start_services(ws, operation)
        journal.set_operation(None)
    volumes = tuple((t.key, t.volume) for t in operation.targets)
    return RestoreResult(resolved.manifest, volumes, operation.undo, restarted, finished)


def _replace(
    ws: Workspace,
    store: Store,
    resolved: ResolvedRestore,
    source: str,
    plan: _Plan,
    operation: Operation,
    target: Target,
    checked: CheckedPart | None = None,
) -> None:
    """Replace one target by the snapshot's content; every destructive step is journaled first. With `checked`
    (the check's scratch volume, holding exactly the part), its files are moved in when they can be, and the
    volume read back."""
    engine, journal = ws.engine, ws.journal
    target.status = "removing"
    journal.set_operation(operation)
    for container in engine.containers_using_volume(target.volume):
        engine.remove_container(container.id, force=True)  # compose containers (stopped), guards, leftovers
    crash_point("restore:containers-removed")
    target.status = "replacing"
    journal.set_operation(operation)
    crash_point("restore:replacing")
    engine.remove_volume(target.volume, force=True)
    engine.create_volume(target.volume, target.driver, target.driver_opts, target.labels)
    mark_incomplete(engine, target.volume, ws.project.name, resolved.manifest.name)
    crash_point("restore:volume-created")
    record = plan.records[target.volume]
    if target.outlives and not volume_is_empty(engine, ws.project.name, target.volume):
        ws.say(f"emptying {target.volume}: its files outlive the volume")
        engine.empty_volume(target.volume, ws.project.name, project_images(ws.project, record.key))
    ws.say(f"restoring {record.key} into {target.volume}")
    if record.kind == "dump":
        load_snapshot_dump(ws, store, source, resolved.manifest, record, resolved.keys, target.volume,
                           "restore:extracting")  # fmt: skip
    elif checked is not None and move_checked(engine, checked, target.volume, record.root or RootEntry(0o755, 0, 0),
                                              "restore:extracting"):  # fmt: skip
        if holds_exactly(engine, ws.project.name, target.volume, checked.summary) is None:
            raise IntegrityError(
                f"volume {target.volume!r}: the files moved in from the check do not match snapshot "
                f"{resolved.manifest.name!r}"
            )
    elif not target.outlives:
        extract_into_volume(engine, store, source, resolved.manifest, record, target.volume, ws.progress, resolved.keys)
    # What an outliving volume holds is what it was given, and nothing else: read it back.
    elif (
        extract_and_read_back(
            engine, store, source, resolved.manifest, record, target.volume, ws.progress, resolved.keys
        )
        is None
    ):
        raise IntegrityError(
            f"volume {target.volume!r} holds more than snapshot {resolved.manifest.name!r} after the restore: "
            "its driver kept files that docker-persist could not remove"
        )
    with interrupts_deferred():
        clear_incomplete(engine, target.volume)
        if target.guarded:
            create_guard(engine, target.volume, ws.project.name)
        target.status = "replaced"
        journal.set_operation(operation)
    crash_point("restore:volume-replaced")


def _after_failure(ws: Workspace, operation: Operation, error: BaseException) -> None:
    """Take back a failed restore that destroyed nothing; otherwise say what state it left, and keep the record."""
    decision = recovery(operation)
    if decision == "finish":
        note = unfinished_message(operation).replace("Nothing may", "Until then, nothing may")
        if operation.running:
            note += f". Stopped, and left stopped on the incomplete volumes: {', '.join(operation.running)}"
        add_note(error, note)
        return
    try:
        if decision == "forward":
            from docker_persist.actions.recover import roll_forward

            roll_forward(ws, operation)
            return
        roll_back(ws, operation)
        started = f"; started again: {', '.join(operation.running)}" if operation.running else ""
        add_note(error, f"nothing was changed{started}")
    except (PersistError, KeyboardInterrupt) as cleanup:
        add_note(error, f"taking the restore back failed too ({cleanup}): run `docker persist recover`")


def _take_undo_snapshot(ws: Workspace, store: Store, fmt: PartFormat, targets: list[Target]) -> str | None:
    """Publish a snapshot of what the targets hold now; return its name (None if none holds anything)."""
    if not targets:
        return None
    name = unique_automatic_name(store, ws.project.name, "pre-restore")
    ws.say(f"taking undo snapshot {name}")
    pending = store.begin(ws.project.name, name)
    try:
        records = []
        for target in targets:
            volume = ws.project.volumes.get(target.key)
            if volume is None or volume.name != target.volume:
                volume = Volume(key=target.key, name=target.volume)
            records.append(backup_volume(ws.engine, ws.project.name, volume, pending, fmt, ws.progress, doing="undo"))
    except BaseException:
        pending.abort()
        raise
    publish_snapshot(pending, ws.project.name, name, "pre-restore", records, recipients=fmt.recipients)
    return name
