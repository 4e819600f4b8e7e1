"""The one module that talks to the Docker engine.

Everything else depends on the small typed `Engine` interface here. The Docker SDK is
imported lazily: `version` uses a minimal HTTP GET over the socket so that the CLI
starts fast; everything else goes through `docker.APIClient`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from docker_persist import __version__
from docker_persist.dockerconfig import Endpoint
from docker_persist.errors import EngineError

if TYPE_CHECKING:
    import docker

    from docker_persist.state import ContainerState, GuardState, VolumeState

USER_AGENT = f"docker-persist/{__version__}"

# Labels on what docker-persist itself creates (guards, helpers, its image). Guards carry
# no Compose labels on purpose: `docker compose down` would remove them.
LABEL_ROLE = "io.docker-persist.role"  # guard | helper | image
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


def _open_socket(endpoint: Endpoint, timeout: float) -> socket.socket | None:
    """Return a connected socket to the engine, or None where only the SDK can reach it (ssh)."""
    if endpoint.host.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.host.removeprefix("unix://"))
        except OSError:
            sock.close()
            raise
        return sock
    if not endpoint.host.startswith("tcp://"):
        return None
    host, _, port = endpoint.host.removeprefix("tcp://").rpartition(":")
    host = host.strip("[]")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    if endpoint.tls is None:
        return sock
    import ssl

    tls = endpoint.tls
    if tls.verify:
        ssl_context = ssl.create_default_context(cafile=tls.ca_cert)
    else:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    try:
        if tls.cert and tls.key:
            ssl_context.load_cert_chain(tls.cert, tls.key)
        return ssl_context.wrap_socket(sock, server_hostname=host)
    except (OSError, ssl.SSLError):
        sock.close()
        raise


def _read_http_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read a whole HTTP/1.1 response sent with `Connection: close`; return (status, body)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError) as error:
        raise EngineError(f"the engine sent a malformed HTTP response: {lines[0][:80]!r}") from error
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        decoded, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded.append(rest[:size])
            rest = rest[size + 2 :]
        body = b"".join(decoded)
    return status, body


def unreachable(endpoint: Endpoint, reason: object) -> EngineError:
    """Return the error for an engine that does not answer, naming the endpoint and the context."""
    via = f' (context "{endpoint.context}", chosen by {endpoint.source})' if endpoint.source != "default" else ""
    return EngineError(
        f"cannot connect to the Docker engine at {endpoint.host}{via}: {reason}. Is the docker daemon running?"
    )


class Engine:
    """The Docker engine behind one endpoint."""

    def __init__(self, endpoint: Endpoint, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def _get_json_light(self, path: str) -> Any:
        """GET `path` with a bare HTTP request: the SDK costs 150 ms to import, too much for `version`."""
        try:
            sock = _open_socket(self.endpoint, min(self.timeout, 15.0))
            if sock is None:
                return self.api.get(self.api.base_url + path).json()  # ssh:// and friends
            with sock:
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
                )
                sock.sendall(request.encode("ascii"))
                status, body = _read_http_response(sock)
        except OSError as error:
            raise unreachable(self.endpoint, error) from error
        if status != 200:
            raise EngineError(f"the engine answered {status} to GET {path}: {body[:200]!r}")
        return json.loads(body)

    def version(self) -> EngineVersion:
        """Return the engine's version. Raise EngineError if it does not answer."""
        raw = self._get_json_light("/version")
        return EngineVersion(
            version=str(raw.get("Version", "?")),
            api_version=str(raw.get("ApiVersion", "?")),
            min_api_version=str(raw.get("MinAPIVersion", "?")),
            os=str(raw.get("Os", "?")),
            arch=str(raw.get("Arch", "?")),
        )

    @functools.cached_property
    def api(self) -> docker.APIClient:
        """The Docker SDK's low-level client for this endpoint, with the API version negotiated."""
        import docker
        import docker.errors
        import docker.tls

        tls: docker.tls.TLSConfig | bool = False
        material = self.endpoint.tls
        if material is not None:
            client_cert = (material.cert, material.key) if material.cert and material.key else None
            verify: bool | str = (material.ca_cert or True) if material.verify else False
            tls = docker.tls.TLSConfig(client_cert=client_cert, ca_cert=material.ca_cert, verify=verify)
        try:
            return docker.APIClient(
                base_url=self.endpoint.host,
                tls=tls,
                version="auto",
                timeout=int(self.timeout),
                user_agent=USER_AGENT,
                use_ssh_client=self.endpoint.host.startswith("ssh://"),
            )
        except docker.errors.DockerException as error:
            raise unreachable(self.endpoint, error) from error

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate SDK and transport errors into EngineError naming what was being done."""
        import docker.errors
        import requests.exceptions

        try:
            yield
        except docker.errors.APIError as error:
            raise EngineError(f"{doing}: {error.explanation or error}") from error
        except requests.exceptions.ConnectionError as error:
            raise unreachable(self.endpoint, error) from error
        except docker.errors.DockerException as error:
            raise EngineError(f"{doing}: {error}") from error

    # --- read-only state --------------------------------------------------------------

    def list_project_containers(self, project: str, changes_above: int | None = None) -> list[ContainerState]:
        """Return the project's containers (found by Compose labels), with writable-layer sizes.

        The changed paths are read only for containers whose writable layer holds more
        than `changes_above` bytes: the diff walks the whole layer.
        """
        from docker_persist.state import ContainerMount, ContainerState

        with self._errors(f"listing the containers of project {project!r}"):
            raw = self.api.containers(all=True, size=True, filters={"label": f"{COMPOSE_PROJECT}={project}"})
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
        with self._errors(f"reading the changes of container {container_id[:12]}"):
            raw = self.api.diff(container_id) or []
        return sorted(str(c["Path"]) for c in raw if c.get("Kind") in (0, 1))

    def list_volumes(self, names: Iterable[str] | None = None, with_sizes: bool = False) -> dict[str, VolumeState]:
        """Return the engine's volumes by name (only `names`, if given), sizes read from /system/df if asked."""
        from docker_persist.state import VolumeState

        wanted = set(names) if names is not None else None
        with self._errors("listing volumes"):
            raw = self.api.volumes().get("Volumes") or []
        sizes: dict[str, int] = {}
        if with_sizes:
            with self._errors("reading volume sizes"):
                usage = self.api.df().get("Volumes") or []
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
        import docker.errors

        result = {}
        for image in sorted(set(images)):
            try:
                with self._errors(f"inspecting image {image}"):
                    config = self.api.inspect_image(image).get("Config") or {}  # type: ignore[no-untyped-call]
            except EngineError as error:
                if isinstance(error.__cause__, docker.errors.NotFound):
                    continue
                raise
            result[image] = tuple(sorted((config.get("Volumes") or {}).keys()))
        return result

    def list_guards(self, project: str | None = None) -> list[GuardState]:
        """Return the guard containers (of `project`, if given)."""
        from docker_persist.state import GuardState

        filters = [f"{LABEL_ROLE}=guard"] + ([f"{LABEL_PROJECT}={project}"] if project else [])
        with self._errors("listing guards"):
            raw = self.api.containers(all=True, filters={"label": filters})
        return [
            GuardState(
                id=c["Id"],
                volume=str(c["Labels"].get(LABEL_VOLUME, "")),
                project=str(c["Labels"].get(LABEL_PROJECT, "")),
            )
            for c in raw
        ]
