"""The one module that talks to the Docker engine.

Everything else depends on the small typed `Engine` interface here. The Docker SDK is
imported lazily: `version` uses a minimal HTTP GET over the socket so that the CLI
starts fast; everything else goes through `docker.APIClient`.
"""

from __future__ import annotations

import functools
import json
import socket
from typing import TYPE_CHECKING, Any, NamedTuple

from docker_persist import __version__
from docker_persist.dockerconfig import Endpoint
from docker_persist.errors import EngineError

if TYPE_CHECKING:
    import docker

USER_AGENT = f"docker-persist/{__version__}"


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
