"""Engine guards: a stopped, labelled container that mounts a volume keeps the engine from removing it.

`docker volume rm`, `docker volume prune` and `docker compose down -v` all refuse a volume
that a container uses ("volume is in use"). A guard is created from docker-persist's own
empty image, mounts the volume read-only, has no network, and is never started. It
carries no Compose labels, so `docker compose down` leaves it alone.
"""

from __future__ import annotations

from typing import Any

from docker_persist.engine import LABEL_PROJECT, LABEL_ROLE, LABEL_VOLUME, Engine
from docker_persist.engine.volumeio import MOUNT_POINT, ensure_helper_image


def guard_name(volume: str) -> str:
    """Return the guard container's name for a volume (one guard per volume)."""
    return f"docker-persist-guard-{volume}"[:128]


def find_guards(engine: Engine, volume: str) -> list[dict[str, Any]]:
    """Return the guard containers of a volume (raw list entries)."""
    return engine.list_containers([f"{LABEL_ROLE}=guard", f"{LABEL_VOLUME}={volume}"])


def create_guard(engine: Engine, volume: str, project: str) -> str:
    """Create the guard of a volume unless it has one; return the guard's ID."""
    existing = find_guards(engine, volume)
    if existing:
        return str(existing[0]["Id"])
    config = {
        "Image": ensure_helper_image(engine),
        "Cmd": ["/docker-persist-guard-is-never-started"],
        "Labels": {LABEL_ROLE: "guard", LABEL_VOLUME: volume, LABEL_PROJECT: project},
        "NetworkDisabled": True,
        "HostConfig": {
            "NetworkMode": "none",
            "Mounts": [{"Type": "volume", "Source": volume, "Target": MOUNT_POINT, "ReadOnly": True,
                        "VolumeOptions": {"NoCopy": True}}],
        },
    }  # fmt: skip
    return engine.create_container(guard_name(volume), config)


def remove_guards(engine: Engine, volume: str) -> int:
    """Remove every guard of a volume; return how many there were."""
    guards = find_guards(engine, volume)
    for guard in guards:
        engine.remove_container(str(guard["Id"]), force=True)
    return len(guards)
