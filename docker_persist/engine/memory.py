"""An in-memory Docker engine with the contract of `docker_persist.engine.Engine`, for unit tests.

It keeps what the real engine keeps and refuses what it refuses: volumes with their files,
containers with their state and mounts, names that must be unique, a volume in use that cannot
be removed, a running container that is started again (fine), a paused one paused again (fine).
Volume data moves as real tar streams (entries `./...`, numeric owners), so the digests the
actions compute over them are the real ones.

Tests reach past the contract through plain attributes: `volumes`, `containers`, `fail_next`
(make the next call of a method raise), `on_exec` and `on_run` (what commands in containers
do), and the `add_*`/`files` helpers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from docker_persist.core.state import ContainerMount, ContainerState, GuardState, VolumeState
from docker_persist.engine import (
    COMPOSE_ONEOFF,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_VOLUME,
    ContainerSpec,
    ContainerStatus,
    ContainerSummary,
    Engine,
    EngineConflictError,
    EngineNotFoundError,
    EngineVersion,
    ExecResult,
    ExecStream,
)
from docker_persist.errors import EngineError
from docker_persist.streams.pipeline import ChunkReader


@dataclasses.dataclass
class Node:
    """What a path in a volume holds. Hard-linked paths share one Node, as they share an inode."""

    kind: str  # file | dir | symlink | fifo
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""
    mtime: int = 1_700_000_000


@dataclasses.dataclass
class MemVolume:
    """A volume: its definition and its files, by normalized path ("." is the root)."""

    name: str
    driver: str = "local"
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    files: dict[str, Node] = dataclasses.field(default_factory=lambda: {".": Node("dir", 0o755)})


class _MemExec:
    """A finished exec's stdout, in chunks, and its result."""

    def __init__(self, out: bytes, result: ExecResult) -> None:
        self.out = out
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.out), 65536):
            yield self.out[start : start + 65536]

    def result(self) -> ExecResult:
        return self._result


@dataclasses.dataclass
class MemContainer:
    """A container: its identity, labels, state and the volumes it mounts (name -> target)."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    mounts: dict[str, str]
    state: str = "created"  # created | running | paused | exited
    spec: ContainerSpec | None = None
    starts: int = 0
    layer: dict[str, bytes] = dataclasses.field(default_factory=dict)  # writable-layer files by path
    start_fails: bool = False  # the engine refuses to start it (a bind source gone, say)


class MemoryEngine:
    """An engine that lives in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.volumes: dict[str, MemVolume] = {}
        self.containers: dict[str, MemContainer] = {}
        self.images: set[str] = set()
        self.host_folders: dict[str, dict[str, Node]] = {}  # device -> files: what bound volumes keep
        self.calls: list[str] = []  # every method called, in order
        self.fail_next: dict[str, BaseException] = {}  # method name -> what its next call raises
        self.on_exec: Callable[[MemContainer, str], tuple[int, str]] = lambda container, command: (0, "")
        self.on_run: Callable[[ContainerSpec, MemoryEngine], tuple[int, str]] = lambda spec, engine: (0, "")
        self.on_exec_stream: Callable[[MemContainer, tuple[str, ...], bytes | None], tuple[int, bytes, str]] = (
            lambda container, argv, stdin: (0, b"", "")
        )
        self._ids = itertools.count(1)

    # --- helpers for tests ------------------------------------------------------------------

    def add_volume(self, name: str, labels: Mapping[str, str] | None = None, driver: str = "local") -> MemVolume:
        """Create a volume directly (as Compose would)."""
        volume = MemVolume(name, driver, labels=dict(labels or {}))
        self.volumes[name] = volume
        return volume

    def add_compose_container(
        self, project: str, service: str, mounts: Mapping[str, str], state: str = "running", number: int = 1
    ) -> MemContainer:
        """Create a container of a Compose service that mounts volumes (name -> target)."""
        labels = {COMPOSE_PROJECT: project, COMPOSE_SERVICE: service, COMPOSE_ONEOFF: "False"}
        container = self._add(f"{project}-{service}-{number}", "app-image", labels, dict(mounts))
        container.state = state
        if state in ("running", "paused"):
            container.starts = 1
        return container

    def files(self, volume: str) -> dict[str, tuple[object, ...]]:
        """Return a volume's listing: path -> (kind, mode, uid, gid, data or target)."""
        return {
            path: (node.kind, node.mode, node.uid, node.gid, node.target if node.kind == "symlink" else node.data)
            for path, node in sorted(self.volumes[volume].files.items())
        }

    def write(self, volume: str, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        """Write a file into a volume, creating its parent folders."""
        files = self.volumes[volume].files
        parent = posixpath.dirname(path)
        while parent and parent not in files:
            files[parent] = Node("dir", 0o755)
            parent = posixpath.dirname(parent)
        files[path] = Node("file", mode, uid, gid, data)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        error = self.fail_next.pop(name, None)
        if error is not None:
            raise error

    def _add(self, name: str, image: str, labels: dict[str, str], mounts: dict[str, str]) -> MemContainer:
        if any(c.name == name for c in self.containers.values()):
            raise EngineConflictError(
                f'POST /containers/create: Conflict. The container name "/{name}" is already in use'
            )
        container = MemContainer(f"{next(self._ids):064x}", name, image, labels, mounts)
        self.containers[container.id] = container
        return container

    def _container(self, container_id: str) -> MemContainer:
        found = self.containers.get(container_id) or next(
            (c for c in self.containers.values() if c.name == container_id), None
        )
        if found is None:
            raise EngineNotFoundError(f"No such container: {container_id}")
        return found

    def _volume(self, name: str) -> MemVolume:
        volume = self.volumes.get(name)
        if volume is None:
            raise EngineNotFoundError(f"GET /volumes/{name}: get {name}: no such volume")
        return volume

    # --- the protocol ----------------------------------------------------------------------------

    def version(self) -> EngineVersion:
        """Return a fixed version."""
        self._call("version")
        return EngineVersion("memory", "1.41", "1.12", "linux", "amd64")

    def list_project_containers(self, project: str, changes_above: int | None = None) -> list[ContainerState]:
        """Return the project's containers, with their writable-layer sizes."""
        self._call("list_project_containers")
        result = []
        for c in self.containers.values():
            if c.labels.get(COMPOSE_PROJECT) != project or LABEL_ROLE in c.labels:
                continue
            size = sum(len(data) for data in c.layer.values())
            changes = tuple(sorted(c.layer)) if changes_above is not None and size > changes_above else None
            mounts = tuple(ContainerMount("volume", target, name=volume) for volume, target in c.mounts.items())
            result.append(
                ContainerState(
                    id=c.id,
                    name=c.name,
                    service=c.labels.get(COMPOSE_SERVICE, ""),
                    image=c.image,
                    state=c.state,
                    mounts=mounts,
                    size_rw=size,
                    changes=changes,
                    oneoff=c.labels.get(COMPOSE_ONEOFF) == "True",
                )
            )
        return result

    def list_volumes(self, names: Iterable[str] | None = None, with_sizes: bool = False) -> dict[str, VolumeState]:
        """Return the volumes by name, with the bytes of their files as the size."""
        self._call("list_volumes")
        wanted = set(names) if names is not None else None
        return {v.name: self._state(v, with_sizes) for v in self.volumes.values() if wanted is None or v.name in wanted}

    def _state(self, volume: MemVolume, with_size: bool = False) -> VolumeState:
        size = sum(len(n.data) for n in volume.files.values()) if with_size else None
        return VolumeState(volume.name, volume.driver, dict(volume.options), dict(volume.labels), "", size)

    def image_volumes(self, images: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Return no declared VOLUMEs: the images here declare none."""
        self._call("image_volumes")
        return {}

    def list_guards(self, project: str | None = None) -> list[GuardState]:
        """Return the guard containers."""
        self._call("list_guards")
        return [
            GuardState(c.id, c.labels.get(LABEL_VOLUME, ""), c.labels.get(LABEL_PROJECT, ""), c.state == "running")
            for c in self.containers.values()
            if c.labels.get(LABEL_ROLE) == "guard" and (project is None or c.labels.get(LABEL_PROJECT) == project)
        ]

    def inspect_volume(self, name: str) -> VolumeState | None:
        """Return the volume, or None."""
        self._call("inspect_volume")
        volume = self.volumes.get(name)
        return None if volume is None else self._state(volume)

    def create_volume(
        self,
        name: str,
        driver: str = "local",
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Create a volume; creating one that exists is fine, as it is for the engine."""
        self._call("create_volume")
        if name not in self.volumes:
            volume = MemVolume(name, driver or "local", dict(driver_opts or {}), dict(labels or {}))
            device = volume.options.get("device") if volume.options.get("o") == "bind" else None
            if device is not None:  # a folder of the host: its files outlive the volume, as with the real engine
                volume.files = self.host_folders.setdefault(device, {".": Node("dir", 0o755)})
            self.volumes[name] = volume

    def remove_volume(self, name: str, force: bool = False) -> None:
        """Remove a volume; refused while a container (in any state) mounts it."""
        self._call("remove_volume")
        if name not in self.volumes:
            if force:
                return
            raise EngineNotFoundError(f"DELETE /volumes/{name}: get {name}: no such volume")
        users = [c.name for c in self.containers.values() if name in c.mounts]
        if users:
            raise EngineConflictError(f"DELETE /volumes/{name}: remove {name}: volume is in use - [{users[0]}]")
        del self.volumes[name]

    def containers_using_volume(self, name: str) -> list[ContainerSummary]:
        """Return every container that mounts the volume."""
        self._call("containers_using_volume")
        return [self._summary(c) for c in self.containers.values() if name in c.mounts]

    def _summary(self, container: MemContainer) -> ContainerSummary:
        return ContainerSummary(container.id, container.name, dict(container.labels), container.state, container.image)

    def list_containers(self, labels: Iterable[str], all_states: bool = True) -> list[ContainerSummary]:
        """Return the containers that carry every label given."""
        self._call("list_containers")
        wanted = [label.partition("=") for label in labels]

        def matches(container: MemContainer) -> bool:
            return all(
                key in container.labels and (not eq or container.labels[key] == value) for key, eq, value in wanted
            )

        return [
            self._summary(c)
            for c in self.containers.values()
            if matches(c) and (all_states or c.state in ("running", "paused"))
        ]

    def create_container(self, name: str | None, spec: ContainerSpec) -> str:
        """Create a container from a spec; its volumes must exist (the engine would create them)."""
        self._call("create_container")
        if spec.image not in self.images:
            raise EngineNotFoundError(f"No such image: {spec.image}")
        for mount in spec.mounts:
            if mount.volume not in self.volumes:
                self.volumes[mount.volume] = MemVolume(mount.volume)
        container = self._add(
            name or f"mem_{next(self._ids)}", spec.image, dict(spec.labels), {m.volume: m.target for m in spec.mounts}
        )
        container.spec = spec
        return container.id

    def remove_container(self, container_id: str, force: bool = True) -> None:
        """Remove a container; one already gone is fine."""
        self._call("remove_container")
        with contextlib.suppress(EngineNotFoundError):
            container = self._container(container_id)
            if container.state in ("running", "paused") and not force:
                raise EngineConflictError(f"You cannot remove a running container {container.id}")
            del self.containers[container.id]

    def inspect_container(self, container_id: str) -> ContainerStatus:
        """Return a container's state."""
        self._call("inspect_container")
        c = self._container(container_id)
        return ContainerStatus(c.id, c.state in ("running", "paused"), c.state == "paused", c.state, str(c.starts))

    def start_container(self, container_id: str) -> None:
        """Start a container; a running one is fine."""
        self._call("start_container")
        c = self._container(container_id)
        if c.state in ("running", "paused"):
            return
        if c.start_fails:
            raise EngineError(f"POST /containers/{c.id}/start: the container cannot start")
        c.state = "running"
        c.starts += 1

    def stop_container(self, container_id: str, timeout: int | None = None) -> None:
        """Stop a container; a stopped one is fine."""
        self._call("stop_container")
        c = self._container(container_id)
        if c.state in ("running", "paused"):
            c.state = "exited"

    def pause_container(self, container_id: str) -> None:
        """Pause a running container; a paused one is fine."""
        self._call("pause_container")
        c = self._container(container_id)
        if c.state == "running":
            c.state = "paused"
        elif c.state != "paused":
            raise EngineConflictError(f"Container {c.id} is not running")

    def unpause_container(self, container_id: str) -> None:
        """Unpause a container; one that is not paused is fine."""
        self._call("unpause_container")
        c = self._container(container_id)
        if c.state == "paused":
            c.state = "running"

    def exec_in_container(self, container_id: str, command: str) -> tuple[int, str]:
        """Run `on_exec` for a running container."""
        self._call("exec_in_container")
        c = self._container(container_id)
        if c.state != "running":
            raise EngineConflictError(f"Container {c.id} is not running")
        return self.on_exec(c, command)

    @contextlib.contextmanager
    def exec_stream(
        self, container_id: str, argv: Sequence[str], stdin: Iterable[bytes] | None = None
    ) -> Iterator[ExecStream]:
        """Run `on_exec_stream` for a running container: given the container, argv and all of stdin (None
        without), it returns (exit code, stdout, stderr)."""
        self._call("exec_stream")
        c = self._container(container_id)
        if c.state != "running":
            raise EngineConflictError(f"Container {c.id} is not running")
        code, out, err = self.on_exec_stream(c, tuple(argv), None if stdin is None else b"".join(stdin))
        yield _MemExec(out, ExecResult(code, err))

    def run_container(self, spec: ContainerSpec, timeout: float | None = None) -> tuple[int, str]:
        """Run `on_run` with the spec (its volumes readable through this engine)."""
        self._call("run_container")
        return self.on_run(spec, self)

    def image_exists(self, reference: str) -> bool:
        """Return True if the image was imported."""
        self._call("image_exists")
        return reference in self.images

    def import_image(self, repository: str, tag: str, rootfs_tar: bytes) -> str:
        """Record the image."""
        self._call("import_image")
        self.images.add(f"{repository}:{tag}")
        return f"{repository}:{tag}"

    @contextlib.contextmanager
    def volume_archive(self, volume: str, project: str) -> Iterator[Iterator[bytes]]:
        """Yield the tar of a volume's files, rooted at "./"."""
        self._call("volume_archive")
        files = self._volume(volume).files
        yield iter([_tar(files)])

    def reads_all_xattrs(self, volume: str) -> bool:
        """Return True: the fake keeps what it is given."""
        return True

    def host_path(self, volume: str, writable: bool = False) -> str | None:
        """Return None: the fake's volumes live in memory, never in a folder."""
        return None

    def extract_volume_archive(
        self, volume: str, project: str, root: tuple[int, int, int], tar_stream: Iterable[bytes]
    ) -> None:
        """Extract a tar into a volume, then give its root the mode and owner asked."""
        self._call("extract_volume_archive")
        files = self._volume(volume).files
        chunks = iter(tar_stream)
        _untar(files, chunks)
        for _ in chunks:  # the engine takes the whole request body, whatever follows the archive's end
            pass
        mode, uid, gid = root
        node = files["."]
        node.mode, node.uid, node.gid = mode & 0o7777, uid, gid

    def emptying(self, volume: str, images: Sequence[str]) -> str | None:
        """Return "in memory": the fake can empty any volume."""
        self._call("emptying")
        return "in memory"

    def empty_volume(self, volume: str, project: str, images: Sequence[str]) -> None:
        """Remove every entry of a volume but its root."""
        self._call("empty_volume")
        files = self._volume(volume).files
        for path in [p for p in files if p != "."]:
            del files[path]

    def container_layer_archive(self, container_id: str, paths: Sequence[str]) -> Iterator[bytes]:
        """Yield a tar of the given paths of a container's writable layer."""
        self._call("container_layer_archive")
        layer = self._container(container_id).layer
        files: dict[str, Node] = {".": Node("dir", 0o755)}
        for path, data in layer.items():
            if any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths):
                files[path.strip("/")] = Node("file", 0o644, data=data)
        return iter([_tar(files)])


def _tar(files: Mapping[str, Node]) -> bytes:
    """Return a tar of the files, entries "./" and "./path", hard links as links to the first path."""
    buffer = io.BytesIO()
    seen: dict[int, str] = {}
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, node in sorted(files.items()):
            name = "./" if path == "." else f"./{path}"
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = node.mode, node.uid, node.gid, node.mtime
            data: Any = None
            if id(node) in seen:
                info.type, info.linkname = tarfile.LNKTYPE, seen[id(node)]
            elif node.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif node.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, node.target
            elif node.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                info.size, data = len(node.data), io.BytesIO(node.data)
                seen[id(node)] = name
            archive.addfile(info, data)
    return buffer.getvalue()


def _untar(files: dict[str, Node], chunks: Iterable[bytes]) -> None:
    """Extract a tar stream into `files` (the last entry for a path wins, as tar does)."""
    reader: Any = ChunkReader(chunks)
    with tarfile.open(fileobj=reader, mode="r|") as archive:
        for info in archive:
            path = posixpath.normpath(info.name.removeprefix("./")) if info.name not in (".", "./") else "."
            path = "." if path in ("", ".") else path
            if info.islnk():
                files[path] = files[posixpath.normpath(info.linkname.removeprefix("./"))]
                continue
            kind = "dir" if info.isdir() else "symlink" if info.issym() else "fifo" if info.isfifo() else "file"
            node = Node(kind, info.mode & 0o7777, info.uid, info.gid, target=info.linkname, mtime=int(info.mtime))
            if info.isreg():
                extracted = archive.extractfile(info)
                node.data = extracted.read() if extracted is not None else b""
            files[path] = node


if TYPE_CHECKING:  # mypy checks that the fake keeps the whole protocol

    def _conforms(engine: MemoryEngine) -> Engine:
        return engine
