"""`verify`: restore drills into scratch volumes, recorded in the manifests."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from docker_persist.actions.catalog import drill, read_manifest, scratch_volume, unlock
from docker_persist.actions.common import LOCK_TIMEOUT, IntegrityError, Progress, Workspace, now_utc
from docker_persist.config.model import Project
from docker_persist.core.dumps import volumes_held
from docker_persist.core.manifest import (
    Manifest,
    ManifestError,
    Verification,
    VolumeRecord,
    dump_manifest,
)
from docker_persist.engine import LABEL_ROLE, Engine
from docker_persist.engine.markers import remove_leftovers
from docker_persist.errors import PersistError
from docker_persist.store import Store


@dataclasses.dataclass(frozen=True)
class VerifyCommand:
    """A service's `x-persist.verify`, run in its image over a restored volume."""

    image: str
    target: str  # where the service mounts the volume
    command: str


def verify_commands(project: Project) -> dict[str, VerifyCommand]:
    """Return, per volume key, the verify command of the service that mounts it (the first with one).

    A dumped service's verify asks its running database (a dump's drill runs it so): a drill of its
    volume's files, which no database serves, leaves it out.
    """
    commands: dict[str, VerifyCommand] = {}
    for service in project.services:
        if service.policy is None or not service.policy.verify or not service.image or service.policy.dump:
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
    from docker_persist.actions.quiesce import unescape_compose
    from docker_persist.engine import LABEL_PROJECT, ContainerSpec, VolumeMount

    # No separate check pass: the scratch volume holds nothing to protect, and the
    # extraction checks every entry and the stored file's sha256 itself.
    with scratch_volume(engine, project) as scratch:
        # With no command to run on it, the scratch volume's files are removed as the read-back goes past
        # them, beside it, instead of one by one by the engine after it.
        restored = drill(engine, store, project, manifest, record, scratch, progress, identities,
                         "verify:extracting", remove_behind=command is None)  # fmt: skip
        if record.root is not None and restored.root is not None:
            got = (restored.root.mode & 0o7777, restored.root.uid, restored.root.gid)
            want = (record.root.mode & 0o7777, record.root.uid, record.root.gid)
            if got != want:
                raise IntegrityError(f"{record.key}: the restored volume root is {got}, the snapshot says {want}")
        detail = f"{record.key}: {restored.files} files, digest matches"
        if command is not None:
            spec = ContainerSpec(
                image=command.image,
                entrypoint=("sh", "-c"),
                command=(unescape_compose(command.command),),
                labels={LABEL_ROLE: "helper", LABEL_PROJECT: project},
                mounts=(VolumeMount(scratch, command.target),),
            )
            code, output = engine.run_container(spec)
            if code != 0:
                last = " | ".join(output.strip().splitlines()[-3:])
                raise IntegrityError(
                    f"{record.key}: verify command exited {code}: {command.command}" + (f" ({last})" if last else "")
                )
            detail += f", verify command passed ({command.command})"
        return detail


def _drill_dump(
    ws: Workspace, store: Store, manifest: Manifest, record: VolumeRecord, identities: Sequence[Any] = ()
) -> str:
    """Load a dump into a container of its service's image on a scratch volume, and run the service's verify
    command in that container while the database runs; return what passed. Raise on failure."""

    from docker_persist.actions.dumps import load_snapshot_dump, redact, tail
    from docker_persist.actions.quiesce import unescape_compose
    from docker_persist.core.dumps import dump_for_volume, dumped_volume

    project, engine = ws.project, ws.engine
    spec = dump_for_volume(project, dumped_volume(record.key))
    service = project.service(spec.service) if spec is not None else None
    command = service.policy.verify if service is not None and service.policy is not None else None
    passed: list[str] = []

    def check(container: str) -> None:
        if command is None:
            return
        with engine.exec_stream(container, ("sh", "-c", unescape_compose(command))) as stream:
            output = tail(stream)
            result = stream.result()
        if result.code != 0:
            last = " | ".join(redact(result.stderr or output).strip().splitlines()[-3:])
            raise IntegrityError(f"{record.key}: verify command exited {result.code}: {command}"
                                 + (f" ({last})" if last else ""))  # fmt: skip
        passed.append(f", verify command passed ({command})")

    with scratch_volume(engine, project.name) as scratch:
        spec = load_snapshot_dump(ws, store, project.name, manifest, record, identities, scratch,
                                  "verify:extracting", then=check)  # fmt: skip
    return f"{record.key}: dump of {record.bytes} bytes loaded into {spec.service}'s image{''.join(passed)}"


def verify(
    ws: Workspace, store: Store, names: Sequence[str], identity: str | None = None
) -> list[tuple[str, Verification]]:
    """Run a restore drill for each snapshot named; record each result in its manifest and return them.

    A failed drill is a result, not an exception: the caller decides the exit code. So is a
    damaged snapshot (its manifest cannot be read, so the result is not recorded in it). A
    missing or wrong identity for an encrypted snapshot is not a result: it raises
    IdentityError before any drill, and nothing is recorded. The scratch volumes carry the
    project's label, and the drill holds the project lock, so that what a killed drill left is
    removed by the next operation, and only then.
    """
    project, engine = ws.project, ws.engine
    commands = verify_commands(project)
    results: list[tuple[str, Verification]] = []
    with ws.journal.hold("verify", LOCK_TIMEOUT), store.lock(project.name, timeout=LOCK_TIMEOUT):
        if remove_leftovers(engine, project.name):
            ws.say("removed what an interrupted run left (helper containers, scratch volumes)")
        manifests: list[Manifest] = []
        for name in names:
            try:
                manifests.append(read_manifest(store, project.name, name))
            except ManifestError as error:
                at, volumes = now_utc(), ()
                results.append((name, Verification(at=at, ok=False, detail=f"damaged: {error}", volumes=volumes)))
        keys: list[tuple[Any, ...] | IntegrityError] = []
        for index, manifest in enumerate(manifests):
            try:
                manifests[index], _, opened = unlock(
                    store, project.name, manifest, [r.key for r in manifest.volumes], identity
                )
                keys.append(opened)
            except IntegrityError as error:  # a damaged age header or sealed part: a failed drill, recorded below
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
                ws.say(f"{name}: drilling {record.key}")
                command = commands.get(record.key)
                try:
                    if record.kind == "dump":
                        drilled = _drill_dump(ws, store, manifest, record, identities)
                    else:
                        drilled = _drill(engine, store, project.name, manifest, record, command, ws.progress,
                                         identities)  # fmt: skip
                    details.append(drilled)
                except PersistError as error:
                    ok = False
                    details.append(str(error))
            covered = volumes_held(manifest)
            verification = Verification(at=now_utc(), ok=ok, detail="; ".join(details), volumes=covered)
            updated = manifest.with_verification(verification)
            store.replace_manifest(project.name, name, dump_manifest(updated))
            results.append((name, verification))
    return results
