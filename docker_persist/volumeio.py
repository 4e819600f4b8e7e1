"""Moving a volume's bytes through the engine's archive API, on helper containers.

A helper is created from docker-persist's own tiny image and never started: the engine
mounts the volume for the archive calls of a stopped container, which works with any
volume driver and any engine, local or remote. Nothing is pulled.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any

from docker_persist import __version__
from docker_persist.engine import LABEL_PROJECT, LABEL_ROLE, LABEL_VOLUME, Engine

HELPER_REPOSITORY = "docker-persist/helper"
ROOT_REPOSITORY = "docker-persist/root"
MOUNT_POINT = "/data"


def _rootfs(entries: Iterable[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            archive.addfile(entry)
    return buffer.getvalue()


def ensure_helper_image(engine: Engine) -> str:
    """Return docker-persist's empty helper image, importing it the first time."""
    reference = f"{HELPER_REPOSITORY}:{__version__}"
    if not engine.image_exists(reference):
        engine.import_image(HELPER_REPOSITORY, __version__, _rootfs(()))
    return reference


def ensure_root_image(engine: Engine, mode: int, uid: int, gid: int) -> str:
    """Return an image whose /data has this mode and owner, importing it the first time.

    When an empty volume is mounted where an image has a directory, the engine gives the
    volume's root that directory's mode and owner ("copy-up"). That is the one way to set
    a volume root's mode through the API: extracting the archive's root entry does not.
    """
    tag = f"{mode & 0o7777:04o}-{uid}-{gid}"
    reference = f"{ROOT_REPOSITORY}:{tag}"
    if not engine.image_exists(reference):
        entry = tarfile.TarInfo(MOUNT_POINT.strip("/"))
        entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, mode & 0o7777, uid, gid
        engine.import_image(ROOT_REPOSITORY, tag, _rootfs([entry]))
    return reference


def helper_config(image: str, volume: str, project: str, copy_up: bool, read_only: bool = False) -> dict[str, Any]:
    """Return the create config of a helper that mounts `volume` at /data, with no network."""
    return {
        "Image": image,
        "Cmd": ["/docker-persist-helper-is-never-started"],
        "Labels": {LABEL_ROLE: "helper", LABEL_PROJECT: project, LABEL_VOLUME: volume,
                   "io.docker-persist.pid": str(os.getpid())},
        "NetworkDisabled": True,
        "HostConfig": {
            "NetworkMode": "none",
            "Mounts": [{"Type": "volume", "Source": volume, "Target": MOUNT_POINT, "ReadOnly": read_only,
                        "VolumeOptions": {"NoCopy": not copy_up}}],
        },
    }  # fmt: skip


@contextlib.contextmanager
def helper_container(
    engine: Engine, volume: str, project: str, image: str | None = None, copy_up: bool = False, read_only: bool = False
) -> Iterator[str]:
    """Create a helper for `volume` and remove it afterwards, whatever happens."""
    config = helper_config(image or ensure_helper_image(engine), volume, project, copy_up, read_only)
    container = engine.create_container(None, config)
    try:
        yield container
    finally:
        engine.remove_container(container, force=True)


def remove_stale_helpers(engine: Engine, project: str) -> int:
    """Remove helpers of `project` left by a killed run; return how many. Call it holding the project lock."""
    stale = engine.list_containers([f"{LABEL_ROLE}=helper", f"{LABEL_PROJECT}={project}"])
    for container in stale:
        engine.remove_container(container["Id"], force=True)
    return len(stale)


def read_volume(engine: Engine, container: str) -> Iterator[bytes]:
    """Yield the tar of the helper's volume, rooted at the volume's root (entries `./...`)."""
    response = engine.get_archive(container, f"{MOUNT_POINT}/.")
    try:
        yield from response.iter_chunks()
    finally:
        response.close()


def write_volume(engine: Engine, container: str, tar_stream: Iterable[bytes]) -> None:
    """Extract a tar (entries `./...`) into the helper's volume."""
    engine.put_archive(container, MOUNT_POINT, tar_stream)
