"""A project on the in-memory engine and store, for unit tests of the actions.

`Bed` holds a one-service project (`app` mounts the precious volume `data`, engine name
`shop_data`), a MemoryEngine, a MemoryStore, a journal in a temp dir, and a stand-in for
`docker compose` that does to the MemoryEngine what Compose does to an engine. `crash_at`
simulates kill -9 at a crash point: it records the engine, the store and the journal as they
are at that point, lets the action unwind, and then puts that recorded state back, so that what
the next command finds is exactly what a killed process would have left.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

from docker_persist.actions.common import Workspace
from docker_persist.config.model import Mount, Project, Service, ServicePolicy, Volume, VolumePolicy
from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_VOLUME
from docker_persist.engine.memory import MemoryEngine
from docker_persist.host import faults
from docker_persist.host.journal import Journal
from docker_persist.store.memory import MemoryStore

PROJECT = "shop"
VOLUME = "shop_data"


class Crash(BaseException):
    """kill -9, as a test sees it: nothing may catch it."""


def make_project(consistency: str = "none", restore: str = "none") -> Project:
    volume = Volume(
        key="data",
        name=VOLUME,
        policy=VolumePolicy(restore=restore),
    )
    service = Service(
        name="app",
        image="app-image",
        mounts=(Mount(type="volume", target="/data", source="data"),),
        policy=ServicePolicy(consistency=consistency),
    )
    return Project(name=PROJECT, working_dir="/srv/shop", services=(service,), volumes={"data": volume})


class FakeCompose:
    """`docker compose up --detach --no-deps SERVICE...` and `create --no-deps SERVICE...`, on a MemoryEngine."""

    def __init__(self, engine: MemoryEngine, project: Project) -> None:
        self.engine = engine
        self.project = project
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> None:
        self.calls.append(list(args))
        verb, services = args[0], [a for a in args[1:] if not a.startswith("-")]
        for name in services:
            service = self.project.service(name)
            assert service is not None
            mounts = {self.project.volumes[m.source].name: m.target for m in service.mounts if m.source}
            for volume in mounts:
                if volume not in self.engine.volumes:
                    key = next(k for k, v in self.project.volumes.items() if v.name == volume)
                    self.engine.add_volume(volume, {COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: key})
            existing = [
                c for c in self.engine.containers.values() if c.labels.get("com.docker.compose.service") == name
            ]
            container = (
                existing[0] if existing else self.engine.add_compose_container(PROJECT, name, mounts, state="created")
            )
            if verb == "up":
                self.engine.start_container(container.id)


@dataclasses.dataclass
class Bed:
    engine: MemoryEngine
    store: MemoryStore
    project: Project
    journal: Journal
    compose: FakeCompose
    said: list[str]

    def workspace(self, project: Project | None = None) -> Workspace:
        project = project or self.project
        return Workspace(self.engine, project, self.journal, self.compose, self.said.append)

    def app(self) -> str:
        """Return the app container's state ("" if it has none)."""
        found = [c for c in self.engine.containers.values() if c.labels.get("com.docker.compose.service") == "app"]
        return found[0].state if found else ""

    def guarded(self) -> bool:
        return any(
            c.labels.get("io.docker-persist.role") == "guard" and c.state == "running"
            for c in self.engine.containers.values()
        )

    def leftovers(self) -> list[str]:
        """Return what no operation should leave: helpers, markers, scratch volumes, pending snapshots."""
        found = [
            f"container {c.name} ({c.labels['io.docker-persist.role']})"
            for c in self.engine.containers.values()
            if c.labels.get("io.docker-persist.role") in ("helper", "incomplete")
        ]
        found += [f"volume {v}" for v, vol in self.engine.volumes.items() if vol.labels.get("io.docker-persist.role")]
        found += [f"pending {p}" for p in self.store.pending]
        return found

    @contextlib.contextmanager
    def crash_at(self, point: str) -> Iterator[list[str]]:
        """Arm a crash point; after the block, the engine, store and journal are as the crash left them.

        Yields a list that holds the point once it was reached.
        """
        reached: list[str] = []
        saved: dict[str, object] = {}

        def crash() -> None:
            reached.append(point)
            saved["engine"] = copy.deepcopy((self.engine.volumes, self.engine.containers, self.engine.images))
            saved["store"] = copy.deepcopy((self.store.snapshots, self.store.pending))
            path = Path(self.journal.path)
            saved["journal"] = path.read_bytes() if path.exists() else None
            raise Crash(point)

        old = (faults._ARMED, faults._crash)
        faults._ARMED, faults._crash = point, crash
        try:
            with contextlib.suppress(Crash):
                yield reached
        finally:
            faults._ARMED, faults._crash = old
        if reached:
            self.engine.volumes, self.engine.containers, self.engine.images = saved["engine"]  # type: ignore[misc]
            self.store.snapshots, self.store.pending = saved["store"]  # type: ignore[misc]
            journal = saved["journal"]
            path = Path(self.journal.path)
            if journal is None:
                path.unlink(missing_ok=True)
            else:
                assert isinstance(journal, bytes)
                path.write_bytes(journal)


def make_bed(tmp_path: Path, consistency: str = "none", restore: str = "none") -> Bed:
    engine = MemoryEngine()
    project = make_project(consistency, restore)
    engine.add_volume(VOLUME, {COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: "data"})
    engine.write(VOLUME, "notes.txt", b"precious data\n", mode=0o640, uid=1000, gid=1000)
    engine.write(VOLUME, "dir/big", bytes(range(256)) * 400)
    engine.add_compose_container(PROJECT, "app", {VOLUME: "/data"})
    journal = Journal.for_project({"XDG_STATE_HOME": str(tmp_path)}, "unix:///memory.sock", PROJECT)
    return Bed(engine, MemoryStore(), project, journal, FakeCompose(engine, project), [])
