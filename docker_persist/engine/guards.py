"""Engine guards: a labelled container that mounts a volume keeps the engine from removing it.

`docker volume rm`, `docker volume prune`, `docker rm -v` and `docker compose down -v` all refuse
a volume that a container uses ("volume is in use"). A guard is such a container, made by
docker-persist for one volume: it mounts the volume read-only, has no network, runs as nobody
on a read-only root file system, and carries no Compose labels, so `docker compose down` leaves
it alone.

A guard *runs*: `docker container prune` and `docker system prune` remove only stopped
containers, so a stopped guard would be pruned and its volume with it. Its program is the
few-byte waiter of guardbin.py, in an image docker-persist imports itself; it uses no CPU, and
restart policy `always` brings it back after an engine restart. On an engine whose
architecture guardbin.py has no program for, a guard is a created, never-started container,
which prunes remove: `check` says so.

What still gets past a guard: removing the guard itself (`docker rm -f` on it, or `docker stop`
on it followed by a prune), `docker volume rm --force` of an engine that ignores use, and
deleting the volume's folder on the host. `check` reports a missing or stopped guard, and
`docker persist up` and `protect` put it back.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

from docker_persist import __version__
from docker_persist.engine import (
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_VOLUME,
    ContainerSpec,
    ContainerSummary,
    Engine,
    EngineConflictError,
    VolumeMount,
)
from docker_persist.engine.guardbin import guard_program
from docker_persist.engine.volumeio import MOUNT_POINT, ensure_helper_image

GUARD_REPOSITORY = "docker-persist/guard"
GUARD_PROGRAM = "/docker-persist-guard"
NAME_PREFIX = "docker-persist-guard-"
MAX_NAME = 128


def guard_name(volume: str) -> str:
    """Return the guard container's name for a volume: unique whatever the volume name's length."""
    name = NAME_PREFIX + volume
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(volume.encode()).hexdigest()[:16]
    return f"{name[: MAX_NAME - len(digest) - 1]}-{digest}"


def find_guards(engine: Engine, volume: str) -> list[ContainerSummary]:
    """Return the guard containers of a volume."""
    return engine.list_containers([f"{LABEL_ROLE}=guard", f"{LABEL_VOLUME}={volume}"])


def ensure_guard_image(engine: Engine) -> str | None:
    """Return the image whose program guards run, importing it the first time; None if the engine's
    architecture has no guard program."""
    program = guard_program(engine.version().arch)
    if program is None:
        return None
    reference = f"{GUARD_REPOSITORY}:{__version__}"
    if not engine.image_exists(reference):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as rootfs:
            entry = tarfile.TarInfo(GUARD_PROGRAM.strip("/"))
            entry.size, entry.mode = len(program), 0o555
            rootfs.addfile(entry, io.BytesIO(program))
        engine.import_image(GUARD_REPOSITORY, __version__, buffer.getvalue())
    return reference


def create_guard(engine: Engine, volume: str, project: str) -> str:
    """Guard a volume, unless a running guard does already; return the guard's ID.

    A stopped guard (an engine restart without the restart policy, or one made by an older
    docker-persist) is replaced by a running one.
    """
    image = ensure_guard_image(engine)
    existing = find_guards(engine, volume)
    running = [g for g in existing if g.state in ("running", "restarting")]
    if running or (existing and image is None):
        return (running or existing)[0].id
    for stopped in existing:
        engine.remove_container(stopped.id, force=True)
    labels = {LABEL_ROLE: "guard", LABEL_VOLUME: volume, LABEL_PROJECT: project}
    mount = (VolumeMount(volume, MOUNT_POINT, read_only=True),)
    if image is None:
        spec = ContainerSpec(ensure_helper_image(engine), ("/docker-persist-guard-is-never-started",), labels, mount)
        return engine.create_container(guard_name(volume), spec)
    spec = ContainerSpec(
        image=image,
        command=(GUARD_PROGRAM,),
        labels=labels,
        mounts=mount,
        user="65534:65534",
        restart_always=True,
        read_only_rootfs=True,
        stop_signal="SIGKILL",
    )
    try:
        guard = engine.create_container(guard_name(volume), spec)
    except EngineConflictError:
        # Another run guarded it meanwhile, or a container took the name: ours if it guards this volume.
        again = [g for g in find_guards(engine, volume) if g.state in ("running", "restarting")]
        if again:
            return again[0].id
        raise
    engine.start_container(guard)
    return guard


def remove_guards(engine: Engine, volume: str) -> int:
    """Remove every guard of a volume; return how many there were."""
    guards = find_guards(engine, volume)
    for guard in guards:
        engine.remove_container(guard.id, force=True)
    return len(guards)
