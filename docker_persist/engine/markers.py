"""Marks docker-persist leaves on the engine: incomplete volumes, and leftovers of killed runs.

A volume being filled by a restore carries an *incomplete marker* until its content digest
matches the snapshot: a never-started container from docker-persist's own image, labelled
`io.docker-persist.role=incomplete` with the volume, project and snapshot, that mounts the
volume. The marker lives on the engine, so `up`, the Compose provider and `check` of every user
and host see it, and the engine refuses to remove the half-filled volume by accident.

Helper containers and scratch volumes carry the project's label; a run killed with -9 cannot
remove them, so the next operation on the project removes them (it holds the project lock, so
no live run owns them).
"""

from __future__ import annotations

from docker_persist.engine import LABEL_PROJECT, LABEL_ROLE, LABEL_VOLUME, ContainerSpec, Engine, VolumeMount
from docker_persist.engine.volumeio import MOUNT_POINT, ensure_helper_image

LABEL_SNAPSHOT = "io.docker-persist.snapshot"


def mark_incomplete(engine: Engine, volume: str, project: str, snapshot: str) -> str:
    """Mark `volume` as holding part of `snapshot`; return the marker's ID."""
    spec = ContainerSpec(
        image=ensure_helper_image(engine),
        command=("/docker-persist-marker-is-never-started",),
        labels={LABEL_ROLE: "incomplete", LABEL_VOLUME: volume, LABEL_PROJECT: project, LABEL_SNAPSHOT: snapshot},
        mounts=(VolumeMount(volume, MOUNT_POINT, read_only=True),),
    )
    return engine.create_container(None, spec)


def clear_incomplete(engine: Engine, volume: str) -> None:
    """Remove the incomplete markers of `volume` (none is fine)."""
    for marker in engine.list_containers([f"{LABEL_ROLE}=incomplete", f"{LABEL_VOLUME}={volume}"]):
        engine.remove_container(marker.id, force=True)


def incomplete_volumes(engine: Engine, project: str | None = None) -> dict[str, str]:
    """Return the volumes marked incomplete (of `project`, if given), with the snapshot each holds part of."""
    labels = [f"{LABEL_ROLE}=incomplete"] + ([f"{LABEL_PROJECT}={project}"] if project else [])
    return {m.labels.get(LABEL_VOLUME, ""): m.labels.get(LABEL_SNAPSHOT, "") for m in engine.list_containers(labels)}


def remove_leftovers(engine: Engine, project: str) -> int:
    """Remove the helper containers and scratch volumes of `project` that killed runs left; return how many.

    Call it holding the project lock.
    """
    helpers = engine.list_containers([f"{LABEL_ROLE}=helper", f"{LABEL_PROJECT}={project}"])
    for helper in helpers:
        engine.remove_container(helper.id, force=True)
    scratch = [
        v.name
        for v in engine.list_volumes().values()
        if v.labels.get(LABEL_ROLE) == "scratch" and v.labels.get(LABEL_PROJECT) == project
    ]
    for volume in scratch:
        for container in engine.containers_using_volume(volume):
            engine.remove_container(container.id, force=True)
        engine.remove_volume(volume, force=True)
    return len(helpers) + len(scratch)
