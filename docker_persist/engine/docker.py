"""The real Docker engine: the `Engine` protocol over HTTP (unix socket, TCP or TLS).

Requests go over `transport.HTTPTransport` (standard library, fast to import); ssh:// engines go
through the Docker SDK (`transport.SDKTransport`), imported only for them. The engine's JSON is
read here and nowhere else: callers get the typed values of `docker_persist.engine`.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
    EngineVersion,
    ExecResult,
    ExecStream,
)
from docker_persist.engine.transport import (
    USER_AGENT,
    WAIT,
    Body,
    EngineConflictError,
    EngineNotFoundError,
    HTTPTransport,
    SDKTransport,
    Transport,
    api_error,
    unreachable,
)
from docker_persist.errors import EngineError
from docker_persist.host.dockerconfig import Endpoint

if TYPE_CHECKING:
    from docker_persist.core.state import ContainerState, GuardState, VolumeState

# The newest API version docker-persist speaks; older engines get their own (>= 1.41).
MAX_API_VERSION = "1.47"
MIN_API_VERSION = "1.41"
# "Not modified": starting a running container, stopping a stopped one. Done, as asked.
NOT_MODIFIED = 304


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


class DockerEngine:
    """The Docker engine behind one endpoint (see `docker_persist.engine.Engine` for the contract)."""

    def __init__(
        self,
        endpoint: Endpoint,
        timeout: float = 60.0,
        allow_local_fast_path: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.allow_local_fast_path = allow_local_fast_path
        self.environ: Mapping[str, str] = environ or {}  # what helper processes (tar) are run with

    @functools.cached_property
    def local_root(self) -> str | None:
        """Return `/proc/<pid>/root` of the engine process when it runs on this host and we may read its files.

        The engine's volume mountpoints are then readable under that root, in the engine's
        own mount namespace. The process is found from the unix socket's peer credentials,
        so an engine reached through a forwarded socket is never mistaken for a local one.
        None when the fast path is off, or the engine is remote or out of reach.
        """
        import os
        import socket
        import struct

        if not self.allow_local_fast_path or not self.endpoint.host.startswith("unix://"):
            return None
        path = self.endpoint.host.removeprefix("unix://")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(path)
                credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except (OSError, AttributeError):
            return None
        pid = struct.unpack("3i", credentials)[0]
        root = f"/proc/{pid}/root"
        return root if pid > 0 and os.access(root, os.R_OK | os.X_OK) else None

    @functools.cached_property
    def transport(self) -> Transport:
        """How requests reach this engine; made on first use."""
        if self.endpoint.host.startswith(("unix://", "tcp://")):
            return HTTPTransport(self.endpoint, self.timeout, api_version=MIN_API_VERSION)
        return SDKTransport(self.sdk_client(), self.endpoint)

    @functools.cached_property
    def api_version(self) -> str:
        """The API version to speak: the engine's own, capped at the newest docker-persist knows."""
        raw = self.call_json("GET", "/version", versioned=False)
        server = str(raw.get("ApiVersion", MIN_API_VERSION))
        chosen = min(server, MAX_API_VERSION, key=_version_tuple)
        if _version_tuple(chosen) < _version_tuple(MIN_API_VERSION):
            raise EngineError(f"the engine speaks API {server}; docker-persist needs {MIN_API_VERSION} or newer")
        return chosen

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        versioned: bool = True,
        also_ok: tuple[int, ...] = (),
        timeout: float | None = -1.0,
    ) -> Any:
        """Send a request and return the streamed response. Raise EngineError for a non-2xx answer
        (other than the statuses in `also_ok`). `timeout`: see Transport.request (-1: the default)."""
        transport = self.transport
        if versioned and isinstance(transport, HTTPTransport):
            transport.api_version = self.api_version
        response = transport.request(method, path, params, body, headers, versioned, timeout)
        if response.status >= 300 and response.status not in also_ok:
            detail = response.read()
            raise api_error(response.status, method, path, detail)
        return response

    def call_json(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        versioned: bool = True,
        timeout: float | None = -1.0,
    ) -> Any:
        """Send a request (with a JSON body, if any) and return the decoded JSON answer (None if empty)."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else None
        data = self.request(method, path, params, payload, headers, versioned, timeout=timeout).read()
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as error:
            raise EngineError(f"{method} {path}: the engine's answer is not JSON: {data[:100]!r}") from error

    def version(self) -> EngineVersion:
        """Return the engine's version. Raise EngineError if it does not answer."""
        raw = self.call_json("GET", "/version", versioned=False)
        return EngineVersion(
            version=str(raw.get("Version", "?")),
            api_version=str(raw.get("ApiVersion", "?")),
            min_api_version=str(raw.get("MinAPIVersion", "?")),
            os=str(raw.get("Os", "?")),
            arch=str(raw.get("Arch", "?")),
        )

    def sdk_client(self) -> Any:
        """The Docker SDK's low-level client, for the engines only it can reach (ssh://)."""
        import docker
        import docker.errors

        try:
            return docker.APIClient(
                base_url=self.endpoint.host,
                version="auto",
                timeout=int(self.timeout),
                user_agent=USER_AGENT,
                use_ssh_client=True,
            )
        except docker.errors.DockerException as error:
            raise unreachable(self.endpoint, error) from error

    # --- read-only state --------------------------------------------------------------

    def list_project_containers(self, project: str, changes_above: int | None = None) -> list[ContainerState]:
        """Return the project's containers (found by Compose labels), with writable-layer sizes.

        The changed paths are read only for containers whose writable layer holds more
        than `changes_above` bytes: the diff walks the whole layer.
        """
        from docker_persist.core.state import ContainerMount, ContainerState

        raw = self.call_json(
            "GET",
            "/containers/json",
            {"all": True, "size": True, "filters": {"label": [f"{COMPOSE_PROJECT}={project}"]}},
        )
        containers = []
        for item in raw:
            labels = item.get("Labels") or {}
            if LABEL_ROLE in labels:
                continue
            size_rw = item.get("SizeRw")
            changes = None
            if changes_above is not None and size_rw is not None and size_rw > changes_above:
                changes = tuple(self.container_changes(item["Id"]))
            mounts = tuple(
                ContainerMount(
                    type=str(m.get("Type", "")),
                    destination=str(m.get("Destination", "")),
                    name=m.get("Name") or None,
                    source=str(m.get("Source", "")),
                    rw=bool(m.get("RW", True)),
                )
                for m in item.get("Mounts") or ()
            )
            names = item.get("Names") or [item["Id"][:12]]
            containers.append(
                ContainerState(
                    id=item["Id"],
                    name=str(names[0]).lstrip("/"),
                    service=str(labels.get(COMPOSE_SERVICE, "")),
                    image=str(item.get("Image", "")),
                    state=str(item.get("State", "")),
                    mounts=mounts,
                    size_rw=size_rw,
                    changes=changes,
                    oneoff=labels.get(COMPOSE_ONEOFF) == "True",
                )
            )
        return containers

    def container_changes(self, container_id: str) -> list[str]:
        """Return the paths added or changed in a container's writable layer (not deletions)."""
        raw = self.call_json("GET", f"/containers/{container_id}/changes") or []
        return sorted(str(c["Path"]) for c in raw if c.get("Kind") in (0, 1))

    def list_volumes(self, names: Iterable[str] | None = None, with_sizes: bool = False) -> dict[str, VolumeState]:
        """Return the engine's volumes by name (only `names`, if given), sizes read from /system/df if asked."""
        from docker_persist.core.state import VolumeState

        wanted = set(names) if names is not None else None
        raw = self.call_json("GET", "/volumes").get("Volumes") or []
        sizes: dict[str, int] = {}
        if with_sizes:
            usage = self.call_json("GET", "/system/df").get("Volumes") or []
            for item in usage:
                size = (item.get("UsageData") or {}).get("Size", -1)
                if size is not None and size >= 0:
                    sizes[item["Name"]] = int(size)
        return {
            v["Name"]: VolumeState(
                name=v["Name"],
                driver=str(v.get("Driver", "")),
                options=dict(v.get("Options") or {}),
                labels=dict(v.get("Labels") or {}),
                mountpoint=str(v.get("Mountpoint", "")),
                size=sizes.get(v["Name"]),
            )
            for v in raw
            if wanted is None or v["Name"] in wanted
        }

    def image_volumes(self, images: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Return each local image's declared VOLUMEs; images not present locally are left out."""
        result = {}
        for image in sorted(set(images)):
            try:
                config = self.call_json("GET", f"/images/{image}/json").get("Config") or {}
            except EngineNotFoundError:
                continue
            result[image] = tuple(sorted((config.get("Volumes") or {}).keys()))
        return result

    def list_guards(self, project: str | None = None) -> list[GuardState]:
        """Return the guard containers (of `project`, if given)."""
        from docker_persist.core.state import GuardState

        filters = [f"{LABEL_ROLE}=guard"] + ([f"{LABEL_PROJECT}={project}"] if project else [])
        raw = self.call_json("GET", "/containers/json", {"all": True, "filters": {"label": filters}})
        return [
            GuardState(
                id=c["Id"],
                volume=str(c["Labels"].get(LABEL_VOLUME, "")),
                project=str(c["Labels"].get(LABEL_PROJECT, "")),
                running=c.get("State") in ("running", "restarting"),
            )
            for c in raw
        ]

    # --- volumes ------------------------------------------------------------------------

    def inspect_volume(self, name: str) -> VolumeState | None:
        """Return the volume called `name`, or None if there is none."""
        from docker_persist.core.state import VolumeState

        try:
            raw = self.call_json("GET", f"/volumes/{name}")
        except EngineNotFoundError:
            return None
        return VolumeState(
            name=raw["Name"],
            driver=str(raw.get("Driver", "")),
            options=dict(raw.get("Options") or {}),
            labels=dict(raw.get("Labels") or {}),
            mountpoint=str(raw.get("Mountpoint", "")),
        )

    def create_volume(
        self,
        name: str,
        driver: str = "local",
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Create a volume. Raise EngineError if the engine refuses."""
        body = {"Name": name, "Driver": driver or "local", "DriverOpts": dict(driver_opts or {}),
                "Labels": dict(labels or {})}  # fmt: skip
        self.call_json("POST", "/volumes/create", body=body)

    def remove_volume(self, name: str, force: bool = False) -> None:
        """Remove a volume. Raise EngineConflictError while a container (e.g. a guard) uses it."""
        # The engine answers once every file is gone: minutes for millions of them.
        self.request("DELETE", f"/volumes/{name}", {"force": force}, timeout=WAIT).read()

    def containers_using_volume(self, name: str) -> list[ContainerSummary]:
        """Return every container, running or not, that mounts volume `name`."""
        raw = self.call_json("GET", "/containers/json", {"all": True, "filters": {"volume": [name]}})
        return [_summary(item) for item in raw]

    # --- images docker-persist makes itself -----------------------------------------------

    def image_exists(self, reference: str) -> bool:
        """Return True if the image is present locally."""
        try:
            self.call_json("GET", f"/images/{reference}/json")
        except EngineNotFoundError:
            return False
        return True

    def import_image(self, repository: str, tag: str, rootfs_tar: bytes) -> str:
        """Import a tiny image from a root filesystem tar (nothing is pulled); return its reference.

        (Engine 20.10 accepts no LABEL change on import: the repository name marks these images.)
        """
        response = self.request(
            "POST",
            "/images/create",
            {"fromSrc": "-", "repo": repository, "tag": tag},
            body=rootfs_tar,
            headers={"Content-Type": "application/x-tar"},
        )
        # The engine streams JSON progress lines; an error arrives as a line, not as a status.
        for line in response.read().splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("error"):
                raise EngineError(f"importing image {repository}:{tag}: {message['error']}")
        return f"{repository}:{tag}"

    # --- containers ---------------------------------------------------------------------

    def create_container(self, name: str | None, spec: ContainerSpec) -> str:
        """Create (never start) a container; return its ID. Raise EngineConflictError if the name is taken."""
        created = self.call_json("POST", "/containers/create", {"name": name}, body=_create_body(spec))
        return str(created["Id"])

    def remove_container(self, container_id: str, force: bool = True) -> None:
        """Remove a container; a container that is already gone is not an error."""
        with contextlib.suppress(EngineNotFoundError):
            self.request("DELETE", f"/containers/{container_id}", {"force": force}).read()

    def inspect_container(self, container_id: str) -> ContainerStatus:
        """Return a container's state."""
        raw = self.call_json("GET", f"/containers/{container_id}/json")
        state = raw.get("State") or {}
        return ContainerStatus(
            id=str(raw.get("Id", container_id)),
            running=bool(state.get("Running")),
            paused=bool(state.get("Paused")),
            status=str(state.get("Status", "unknown")),
            started_at=str(state.get("StartedAt", "")),
        )

    def list_containers(self, labels: Iterable[str], all_states: bool = True) -> list[ContainerSummary]:
        """Return the containers carrying every label given (`k` or `k=v`)."""
        raw = self.call_json("GET", "/containers/json", {"all": all_states, "filters": {"label": list(labels)}})
        return [_summary(item) for item in raw]

    def stop_container(self, container_id: str, timeout: int | None = None) -> None:
        """Stop a container (a stopped one is fine), within its own stop timeout unless one is given."""
        # The engine answers once the container is down: after its stop_grace_period, which may be minutes.
        self.request("POST", f"/containers/{container_id}/stop", {"t": timeout}, also_ok=(NOT_MODIFIED,),
                     timeout=WAIT).read()  # fmt: skip

    def start_container(self, container_id: str) -> None:
        """Start a container (a running one is fine)."""
        self.request("POST", f"/containers/{container_id}/start", also_ok=(NOT_MODIFIED,)).read()

    def pause_container(self, container_id: str) -> None:
        """Freeze a container's processes (a paused one is fine)."""
        try:
            self.request("POST", f"/containers/{container_id}/pause").read()
        except EngineConflictError:
            if not self.inspect_container(container_id).paused:
                raise  # not running, say: the engine's message says so

    def unpause_container(self, container_id: str) -> None:
        """Thaw a paused container (one that is not paused is fine)."""
        try:
            self.request("POST", f"/containers/{container_id}/unpause").read()
        except EngineNotFoundError:
            raise
        except EngineError:  # 409 on newer engines, 500 on 20.10: "Container ... is not paused"
            if self.inspect_container(container_id).paused:
                raise

    @contextlib.contextmanager
    def exec_stream(
        self, container_id: str, argv: Sequence[str], stdin: Iterable[bytes] | None = None
    ) -> Iterator[ExecStream]:
        """Run `argv` in a running container over a hijacked connection: stdout streams, stdin is fed from a
        thread and then half-closed; see Engine.exec_stream."""
        transport = self.transport
        if not isinstance(transport, HTTPTransport):
            raise EngineError(f"streaming into or out of a container needs a unix:// or tcp:// engine, not "
                              f"{self.endpoint.host}")  # fmt: skip
        if stdin is not None and self.endpoint.tls is not None:
            # Writing and reading one TLS connection from two threads is not safe, and half-closing it ends it.
            raise EngineError("loading a dump through a TLS engine connection is not supported: run docker persist "
                              "on the engine's host, or through its unix socket")  # fmt: skip
        transport.api_version = self.api_version
        created = self.call_json(
            "POST",
            f"/containers/{container_id}/exec",
            body={"Cmd": list(argv), "AttachStdout": True, "AttachStderr": True,
                  "AttachStdin": stdin is not None, "Tty": False},
        )  # fmt: skip
        exec_id = str(created["Id"])
        connection = transport.hijack(f"/exec/{exec_id}/start", json.dumps({"Detach": False, "Tty": False}).encode())
        stream = _HijackedExec(self, exec_id, connection, stdin)
        try:
            yield stream
        finally:
            stream.close()

    def exec_in_container(self, container_id: str, command: str) -> tuple[int, str]:
        """Run `sh -c command` in a running container; return (exit code, combined output)."""
        created = self.call_json(
            "POST",
            f"/containers/{container_id}/exec",
            body={"Cmd": ["sh", "-c", command], "AttachStdout": True, "AttachStderr": True, "Tty": False},
        )
        exec_id = created["Id"]
        response = self.request(  # a hook (a dump) may say nothing for minutes: wait for it
            "POST", f"/exec/{exec_id}/start", body=json.dumps({"Detach": False, "Tty": False}).encode(),
            headers={"Content-Type": "application/json"}, timeout=WAIT,
        )  # fmt: skip
        output = _demultiplex(response.read())
        code = self.call_json("GET", f"/exec/{exec_id}/json").get("ExitCode")
        return (int(code) if code is not None else -1), output

    def run_container(self, spec: ContainerSpec, timeout: float | None = WAIT) -> tuple[int, str]:
        """Create, start and wait for a container (at most `timeout` seconds, by default as long as it
        runs); return (exit code, output). It is always removed."""
        container = self.create_container(None, spec)
        try:
            self.start_container(container)
            waited = self.call_json(
                "POST", f"/containers/{container}/wait", {"condition": "not-running"}, timeout=timeout
            )
            code = int((waited or {}).get("StatusCode", -1))
            logs = self.request("GET", f"/containers/{container}/logs", {"stdout": True, "stderr": True}).read()
            return code, _demultiplex(logs)
        finally:
            self.remove_container(container, force=True)

    # --- archives -----------------------------------------------------------------------

    def get_archive(self, container_id: str, path: str) -> Any:
        """Return the streamed tar of `path` in a container (`/data/.` gives entries rooted at `./`)."""
        return self.request("GET", f"/containers/{container_id}/archive", {"path": path})

    def put_archive(self, container_id: str, path: str, tar_stream: Iterable[bytes]) -> None:
        """Extract a streamed tar into `path` in a container."""
        self.request(
            "PUT", f"/containers/{container_id}/archive", {"path": path, "noOverwriteDirNonDir": True},
            body=tar_stream, headers={"Content-Type": "application/x-tar"},
        ).read()  # fmt: skip

    # --- volume data (see volumeio: the local fast path, else helper containers) -----------

    def volume_archive(self, volume: str, project: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """Return a context that yields the tar stream of a volume, rooted at its root."""
        from docker_persist.engine.volumeio import volume_archive

        return volume_archive(self, volume, project)

    def reads_all_xattrs(self, volume: str) -> bool:
        """Return True on the fast path (GNU tar reads every xattr); False through the archive API."""
        from docker_persist.engine.volumeio import local_volume_path

        return local_volume_path(self, volume) is not None

    def host_path(self, volume: str, writable: bool = False) -> str | None:
        from docker_persist.engine.volumeio import local_volume_path

        return local_volume_path(self, volume, writable)

    def extract_volume_archive(
        self, volume: str, project: str, root: tuple[int, int, int], tar_stream: Iterable[bytes]
    ) -> None:
        """Extract a tar stream (entries `./...`) into the empty volume `volume`, giving its root."""
        from docker_persist.engine.volumeio import extract_volume_archive

        extract_volume_archive(self, volume, project, root, tar_stream)

    def container_layer_archive(self, container_id: str, paths: Sequence[str]) -> Iterator[bytes]:
        """Yield one tar, rooted like a volume's, of the given paths of a container's file system."""
        from docker_persist.engine.volumeio import container_layer_archive

        return container_layer_archive(self, container_id, paths)

    def emptying(self, volume: str, images: Sequence[str]) -> str | None:
        """Return how `empty_volume` would empty this volume here, or None if it cannot."""
        from docker_persist.engine.volumeio import emptying

        return emptying(self, volume, images)

    def empty_volume(self, volume: str, project: str, images: Sequence[str]) -> None:
        """Remove every entry of a volume but its root (on the host, or in a container of one of `images`)."""
        from docker_persist.engine.volumeio import empty_volume

        empty_volume(self, volume, project, images)


def _summary(item: Mapping[str, Any]) -> ContainerSummary:
    names = item.get("Names") or [str(item["Id"])[:12]]
    return ContainerSummary(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/"),
        labels=dict(item.get("Labels") or {}),
        state=str(item.get("State", "")),
        image=str(item.get("Image", "")),
    )


def _create_body(spec: ContainerSpec) -> dict[str, Any]:
    """Return the engine's create body for a spec: no network, never Compose's labels."""
    host: dict[str, Any] = {
        "NetworkMode": "none",
        "Mounts": [
            {"Type": "volume", "Source": m.volume, "Target": m.target, "ReadOnly": m.read_only,
             "VolumeOptions": {"NoCopy": not m.copy_up}}
            for m in spec.mounts
        ] + [{"Type": "bind", "Source": source, "Target": target, "ReadOnly": True} for source, target in spec.binds],
    }  # fmt: skip
    if spec.restart_always:
        host["RestartPolicy"] = {"Name": "always"}
    if spec.read_only_rootfs:
        host["ReadonlyRootfs"] = True
    if spec.memory_limit is not None:
        host["Memory"] = spec.memory_limit
    if spec.pids_limit is not None:
        host["PidsLimit"] = spec.pids_limit
    body: dict[str, Any] = {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "Labels": dict(spec.labels),
        "NetworkDisabled": not spec.loopback,
        "HostConfig": host,
    }
    if spec.entrypoint is not None:
        body["Entrypoint"] = list(spec.entrypoint)
    if spec.user is not None:
        body["User"] = spec.user
    if spec.stop_signal is not None:
        body["StopSignal"] = spec.stop_signal
    if spec.env:
        body["Env"] = [f"{k}={v}" for k, v in spec.env.items()]
    return body


class _HijackedExec:
    """The stdout of an exec over a raw connection, demultiplexed (8-byte frame headers: stream, size); its
    stdin written by a thread, then half-closed so that the command sees end of file."""

    MAX_STDERR = 64 * 1024

    def __init__(self, engine: DockerEngine, exec_id: str, connection: Any, stdin: Iterable[bytes] | None) -> None:
        import threading

        self.engine, self.exec_id, self.connection = engine, exec_id, connection
        self.stderr = bytearray()
        self.failure: BaseException | None = None
        self.fed = 0  # bytes of stdin the command was given
        self.fed_all = stdin is None
        self.writer: threading.Thread | None = None
        if stdin is not None:
            self.writer = threading.Thread(target=self._feed, args=(stdin,), name="exec-stdin", daemon=True)
            self.writer.start()

    def _feed(self, stdin: Iterable[bytes]) -> None:
        import socket

        sock = self.connection.sock
        try:
            for chunk in stdin:
                if chunk:
                    sock.sendall(chunk)
                    self.fed += len(chunk)
            self.fed_all = True
        except BaseException as error:  # the source failed (a bad archive) or the command stopped reading
            self.failure = error
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    def _exactly(self, size: int) -> bytes:
        data = self.connection.reader.read(size)
        return data if data is not None else b""

    def __iter__(self) -> Iterator[bytes]:
        while True:
            header = self._exactly(8)
            if len(header) < 8:
                return
            size = int.from_bytes(header[4:8], "big")
            payload = self._exactly(size)
            if header[0] == 2:
                self.stderr += payload
                del self.stderr[: max(0, len(self.stderr) - self.MAX_STDERR)]
            elif payload:
                yield payload
            if len(payload) < size:
                return

    def result(self) -> ExecResult:
        """Return the exit code (once the engine says the command exited) and stderr."""
        import time

        if self.writer is not None:
            self.writer.join()
        if self.failure is not None and not isinstance(self.failure, OSError):
            raise self.failure  # the source failed (a dump that does not match its digest)
        for _ in range(100):  # the stream ends as the process does: the engine may record it a moment later
            raw = self.engine.call_json("GET", f"/exec/{self.exec_id}/json")
            if not raw.get("Running"):
                code = raw.get("ExitCode")
                result = ExecResult(int(code) if code is not None else -1, self.stderr.decode(errors="replace"))
                break
            time.sleep(0.05)
        else:
            raise EngineError(f"exec {self.exec_id[:12]} still runs after its output ended")
        if result.code == 0 and not self.fed_all:  # a failure's own exit code and error say more
            raise EngineError(f"the command stopped reading its input after {self.fed} bytes ({self.failure})")
        return result

    def close(self) -> None:
        import socket

        with contextlib.suppress(OSError):
            self.connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a writer blocked in sendall
        self.connection.close()


def _demultiplex(data: bytes) -> str:
    """Return the text of a multiplexed exec stream (8-byte frame headers), stdout and stderr in order."""
    out, index = [], 0
    while index + 8 <= len(data):
        size = int.from_bytes(data[index + 4 : index + 8], "big")
        out.append(data[index + 8 : index + 8 + size])
        index += 8 + size
    if index < len(data):  # not multiplexed after all (a TTY exec)
        out.append(data[index:])
    return b"".join(out).decode(errors="replace")


if TYPE_CHECKING:  # mypy checks that the real engine keeps the whole protocol
    from docker_persist.engine import Engine

    def _conforms(engine: DockerEngine) -> Engine:
        return engine
