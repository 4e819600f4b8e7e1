"""The one package that talks to the Docker engine, behind the small typed `Engine` protocol.

Everything else depends on the protocol and the typed values here, never on the engine's JSON.
`docker.DockerEngine` is the real engine (HTTP over a unix socket, TCP or TLS; the Docker SDK
for ssh://); `memory.MemoryEngine` is an in-memory engine with the same contract, for unit
tests of the orchestration. Volume data moves as tar streams rooted at the volume's root
(entries `./...`), numeric owners, whichever way the engine reads or writes them.

Types here are NamedTuples, not dataclasses: `version` loads this module, and dataclasses
costs every start-up 15 ms.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple, Protocol

from docker_persist.engine.transport import EngineConflictError, EngineNotFoundError, unreachable
from docker_persist.errors import EngineError

if TYPE_CHECKING:
    from docker_persist.core.state import ContainerState, GuardState, VolumeState

__all__ = [
    "COMPOSE_ONEOFF",
    "COMPOSE_PROJECT",
    "COMPOSE_SERVICE",
    "COMPOSE_VOLUME",
    "LABEL_PROJECT",
    "LABEL_ROLE",
    "LABEL_VOLUME",
    "ContainerSpec",
    "ContainerStatus",
    "ContainerSummary",
    "Engine",
    "EngineConflictError",
    "EngineError",
    "EngineNotFoundError",
    "EngineVersion",
    "VolumeMount",
    "unreachable",
]

# Labels on what docker-persist itself creates (guards, helpers, scratch volumes, its images).
# Guards carry no Compose labels on purpose: `docker compose down` would remove them.
LABEL_ROLE = "io.docker-persist.role"  # guard | helper | scratch | incomplete
LABEL_VOLUME = "io.docker-persist.volume"
LABEL_PROJECT = "io.docker-persist.project"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
COMPOSE_VOLUME = "com.docker.compose.volume"


class EngineVersion(NamedTuple):
    """What `GET /version` says about the engine."""

    version: str
    api_version: str
    min_api_version: str
    os: str
    arch: str


class VolumeMount(NamedTuple):
    """A volume mounted into a container docker-persist creates."""

    volume: str
    target: str
    read_only: bool = False
    copy_up: bool = False  # let the engine copy the image's files at `target` into an empty volume


class ContainerSpec(NamedTuple):
    """A container docker-persist creates: never with a network, never with Compose's labels."""

    image: str
    command: tuple[str, ...]
    labels: Mapping[str, str]
    mounts: tuple[VolumeMount, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    user: str | None = None
    restart_always: bool = False  # the engine starts it again when it stops, and after a restart of the engine
    read_only_rootfs: bool = False
    stop_signal: str | None = None
    memory_limit: int | None = None  # bytes
    pids_limit: int | None = None
    env: Mapping[str, str] | None = None  # a database's settings, for a dump's restore and drill
    binds: tuple[tuple[str, str], ...] = ()  # (host path, container path), read-only: a service's config and secrets
    # Network mode none alone (a loopback, and /etc/hosts naming localhost), not even that: a database's
    # initialisation looks its own host name up.
    loopback: bool = False


class ExecResult(NamedTuple):
    """How a streamed exec ended: its exit code, and what it said on stderr (the last 64 KiB)."""

    code: int
    stderr: str


class ExecStream(Protocol):
    """A command running in a container: iterate for its stdout; then `result()`."""

    def __iter__(self) -> Iterator[bytes]: ...

    def result(self) -> ExecResult:
        """Return the exit code and stderr, once stdout has ended (waiting for the command to exit)."""
        ...


class ContainerSummary(NamedTuple):
    """A container as the engine lists it."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str  # created | running | paused | restarting | removing | exited | dead
    image: str = ""

    @property
    def service(self) -> str:
        """The Compose service it belongs to ("" for none)."""
        return self.labels.get(COMPOSE_SERVICE, "")

    @property
    def role(self) -> str:
        """What docker-persist made it for ("" for a container that is not ours)."""
        return self.labels.get(LABEL_ROLE, "")


class ContainerStatus(NamedTuple):
    """A container's state as the engine inspects it."""

    id: str
    running: bool
    paused: bool
    status: str  # the engine's word: running, exited, paused, ...
    started_at: str = ""


class Engine(Protocol):
    """What docker-persist asks of a Docker engine. Every method raises EngineError when the engine
    refuses or cannot be reached, EngineNotFoundError (a subclass) for what does not exist."""

    def version(self) -> EngineVersion:
        """Return the engine's version."""
        ...

    # --- what the project has --------------------------------------------------------------

    def list_project_containers(self, project: str, changes_above: int | None = None) -> list[ContainerState]:
        """Return the project's containers (by Compose labels; not docker-persist's own), with the
        changed paths of the writable layers larger than `changes_above` bytes."""
        ...

    def list_volumes(self, names: Iterable[str] | None = None, with_sizes: bool = False) -> dict[str, VolumeState]:
        """Return the volumes by name (only `names`, if given), with sizes where the engine reports them."""
        ...

    def image_volumes(self, images: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Return each local image's declared VOLUMEs; images not present are left out."""
        ...

    def list_guards(self, project: str | None = None) -> list[GuardState]:
        """Return the guard containers (of `project`, if given)."""
        ...

    # --- volumes -----------------------------------------------------------------------------

    def inspect_volume(self, name: str) -> VolumeState | None:
        """Return the volume called `name`, or None."""
        ...

    def create_volume(
        self,
        name: str,
        driver: str = "local",
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Create a volume."""
        ...

    def remove_volume(self, name: str, force: bool = False) -> None:
        """Remove a volume. Raise EngineConflictError while a container uses it; a missing one is
        EngineNotFoundError unless `force`."""
        ...

    def containers_using_volume(self, name: str) -> list[ContainerSummary]:
        """Return every container, running or not, that mounts volume `name`."""
        ...

    # --- containers ----------------------------------------------------------------------------

    def list_containers(self, labels: Iterable[str], all_states: bool = True) -> list[ContainerSummary]:
        """Return the containers carrying every label given (`k` or `k=v`); only running ones unless `all_states`."""
        ...

    def create_container(self, name: str | None, spec: ContainerSpec) -> str:
        """Create (not start) a container; return its ID. Raise EngineConflictError if the name is taken."""
        ...

    def remove_container(self, container_id: str, force: bool = True) -> None:
        """Remove a container; one already gone is not an error."""
        ...

    def inspect_container(self, container_id: str) -> ContainerStatus:
        """Return a container's state."""
        ...

    def start_container(self, container_id: str) -> None:
        """Start a container; a running one is fine."""
        ...

    def stop_container(self, container_id: str, timeout: int | None = None) -> None:
        """Stop a container within its stop timeout (or `timeout` seconds); a stopped one is fine."""
        ...

    def pause_container(self, container_id: str) -> None:
        """Freeze a container's processes; a paused one is fine."""
        ...

    def unpause_container(self, container_id: str) -> None:
        """Thaw a container; one that is not paused is fine."""
        ...

    def exec_stream(
        self, container_id: str, argv: Sequence[str], stdin: Iterable[bytes] | None = None
    ) -> AbstractContextManager[ExecStream]:
        """Run `argv` in a running container, its stdin fed from `stdin` (then closed) if given; within the
        block, its stdout streams as it comes. Leaving the block early ends the connection."""
        ...

    def exec_in_container(self, container_id: str, command: str) -> tuple[int, str]:
        """Run `sh -c command` in a running container; return (exit code, combined output)."""
        ...

    def run_container(self, spec: ContainerSpec, timeout: float | None = None) -> tuple[int, str]:
        """Create, start and wait for a container (at most `timeout` seconds; None: as long as it runs);
        return (exit code, output). It is always removed."""
        ...

    # --- images docker-persist makes itself -------------------------------------------------

    def image_exists(self, reference: str) -> bool:
        """Return True if the image is present."""
        ...

    def import_image(self, repository: str, tag: str, rootfs_tar: bytes) -> str:
        """Import an image from a root filesystem tar (nothing is pulled); return its reference."""
        ...

    # --- volume data ----------------------------------------------------------------------------

    def volume_archive(self, volume: str, project: str) -> AbstractContextManager[Iterator[bytes]]:
        """Return a context that yields the tar stream of a volume, rooted at its root."""
        ...

    def reads_all_xattrs(self, volume: str) -> bool:
        """Return True if `volume_archive` carries every xattr of the volume, ACLs included; False if only
        security.capability (the engine's archive API)."""
        ...

    def host_path(self, volume: str, writable: bool = False) -> str | None:
        """Return where the volume's files are on this machine, readable (and writable, if asked) by this
        process, for a program that reads or fills a folder (restic); None if the engine is remote, the
        driver keeps them elsewhere, or the local fast path is off."""
        ...

    def extract_volume_archive(
        self, volume: str, project: str, root: tuple[int, int, int], tar_stream: Iterable[bytes]
    ) -> None:
        """Extract a tar stream (entries `./...`) into the empty volume `volume`, giving its root
        (mode, uid, gid)."""
        ...

    def container_layer_archive(self, container_id: str, paths: Sequence[str]) -> Iterator[bytes]:
        """Yield one tar, rooted like a volume's, of the given paths of a container's file system."""
        ...

    def emptying(self, volume: str, images: Sequence[str]) -> str | None:
        """Return how `empty_volume` would empty this volume here (a sentence), or None if it cannot.

        Needed for a volume whose data outlives it (the local driver bound to a host folder, an
        NFS share, another driver): removing and creating it again keeps the files.
        """
        ...

    def empty_volume(self, volume: str, project: str, images: Sequence[str]) -> None:
        """Remove every entry of a volume but its root: on the host when the engine is local and the data
        is reachable, else in a container of one of `images` that has a shell. Raise EngineError if neither."""
        ...
