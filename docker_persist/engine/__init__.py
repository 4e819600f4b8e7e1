"""The one package that talks to the Docker engine.

Everything else depends on the small typed `Engine` interface here. Requests go over
`transport.HTTPTransport` (standard library, fast to import); ssh:// engines go through
the Docker SDK (`transport.SDKTransport`), imported only for them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from docker_persist.dockerconfig import Endpoint
from docker_persist.engine.transport import (
    USER_AGENT,
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

if TYPE_CHECKING:
    from docker_persist.state import ContainerState, GuardState, VolumeState

__all__ = ["Engine", "EngineConflictError", "EngineError", "EngineNotFoundError", "EngineVersion", "unreachable"]

# The newest API version docker-persist speaks; older engines get their own (>= 1.41).
MAX_API_VERSION = "1.47"
MIN_API_VERSION = "1.41"

# Labels on what docker-persist itself creates (guards, helpers, its image). Guards carry
# no Compose labels on purpose: `docker compose down` would remove them.
LABEL_ROLE = "io.docker-persist.role"  # guard | helper | image
LABEL_VOLUME = "io.docker-persist.volume"
LABEL_PROJECT = "io.docker-persist.project"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
COMPOSE_VOLUME = "com.docker.compose.volume"


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


class EngineVersion(NamedTuple):
    """What `GET /version` says about the engine."""

    version: str
    api_version: str
    min_api_version: str
    os: str
    arch: str


class Engine:
    """The Docker engine behind one endpoint."""

    def __init__(self, endpoint: Endpoint, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

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
    ) -> Any:
        """Send a request and return the streamed response. Raise EngineError for a non-2xx answer."""
        transport = self.transport
        if versioned and isinstance(transport, HTTPTransport):
            transport.api_version = self.api_version
        response = transport.request(method, path, params, body, headers, versioned)
        if response.status >= 300:
            detail = response.read()
            raise api_error(response.status, method, path, detail)
        return response

    def call_json(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None, versioned: bool = True
    ) -> Any:
        """Send a request (with a JSON body, if any) and return the decoded JSON answer (None if empty)."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else None
        data = self.request(method, path, params, payload, headers, versioned).read()
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
        from docker_persist.state import ContainerMount, ContainerState

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
        from docker_persist.state import VolumeState

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
        from docker_persist.state import GuardState

        filters = [f"{LABEL_ROLE}=guard"] + ([f"{LABEL_PROJECT}={project}"] if project else [])
        raw = self.call_json("GET", "/containers/json", {"all": True, "filters": {"label": filters}})
        return [
            GuardState(
                id=c["Id"],
                volume=str(c["Labels"].get(LABEL_VOLUME, "")),
                project=str(c["Labels"].get(LABEL_PROJECT, "")),
            )
            for c in raw
        ]
