"""HTTP/1.1 to the Docker engine over a unix socket, TCP or TLS, with the standard library only.

Why not the Docker SDK's requests-based client: importing it costs ~110 ms, which the
plugin would pay on every `check` and `version` (the CLI starts a plugin twice per
command). The SDK remains the transport for ssh:// engines (`SDKTransport`).

Responses stream: a body is read as the caller consumes it, so archives of any size
pass through with flat memory. An idle connection is kept for the next request.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from docker_persist import __version__
from docker_persist.errors import EngineError
from docker_persist.host.dockerconfig import Endpoint

if TYPE_CHECKING:
    import docker

USER_AGENT = f"docker-persist/{__version__}"
CHUNK = 1 << 20
Body = bytes | Iterable[bytes] | None


class EngineNotFoundError(EngineError):
    """The engine answered 404: no such container, volume or image."""


class EngineConflictError(EngineError):
    """The engine answered 409: e.g. a volume still in use, a name already taken."""


def unreachable(endpoint: Endpoint, reason: object) -> EngineError:
    """Return the error for an engine that does not answer, naming the endpoint and the context."""
    via = f' (context "{endpoint.context}", chosen by {endpoint.source})' if endpoint.source != "default" else ""
    return EngineError(
        f"cannot connect to the Docker engine at {endpoint.host}{via}: {reason}. Is the docker daemon running?"
    )


def permission_denied(endpoint: Endpoint, path: str) -> EngineError:
    """Return the error for an engine socket this user may not open (EACCES): whose it is, and what to do."""
    import os
    import pwd
    import stat

    via = f' (context "{endpoint.context}", chosen by {endpoint.source})' if endpoint.source != "default" else ""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid {os.getuid()}"
    owner = ""
    try:
        import grp

        info = os.stat(path)
        who = f"{pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}"
        owner = f" (owned by {who}, mode {stat.filemode(info.st_mode)[1:]})"
    except (OSError, KeyError):
        pass
    return EngineError(
        f"permission denied while trying to connect to the Docker engine socket at {endpoint.host}{via}: "
        f"user {user} is not allowed to use {path}{owner}. Either:\n"
        "  - add yourself to the docker group: `sudo usermod -aG docker $USER`, then log out and back in "
        "(or run `newgrp docker`); mind that the docker group grants root-level access to this machine;\n"
        "  - or use an engine you may use: rootless Docker (https://docs.docker.com/engine/security/rootless/), "
        "or another context: `docker context ls`, then `docker context use NAME` (or --context NAME)."
    )


def api_error(status: int, method: str, path: str, body: bytes) -> EngineError:
    """Return the error for a non-2xx answer, with the engine's own message."""
    try:
        message = str(json.loads(body).get("message", "")) or body.decode(errors="replace").strip()
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    text = f"{method} {path.partition('?')[0]}: {message or f'HTTP {status}'}"
    if status == 404:
        return EngineNotFoundError(text)
    if status == 409:
        return EngineConflictError(text)
    return EngineError(text)


class Response(Protocol):
    """A streamed answer from the engine."""

    @property
    def status(self) -> int:
        """The HTTP status."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers, names lower-cased."""
        ...

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """Yield the body in pieces as it arrives."""
        ...

    def read(self) -> bytes:
        """Return the whole body."""
        ...

    def close(self) -> None:
        """Drop the rest of the body."""
        ...


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = io.BufferedReader(socket.SocketIO(sock, "rb"), CHUNK)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class HTTPResponse:
    """A response read from a raw connection: Content-Length, chunked, or until close."""

    def __init__(self, transport: HTTPTransport, connection: _Connection, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        self._transport = transport
        self._connection: _Connection | None = connection
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else None
        self._reusable = headers.get("connection", "").lower() != "close" and (self._chunked or length is not None)
        self._chunk_left = 0
        if status in (204, 304) or self._remaining == 0:
            self._finish()

    def _finish(self) -> None:
        if self._connection is not None:
            if self._reusable:
                self._transport.release(self._connection)
            else:
                self._connection.close()
            self._connection = None

    def _read_chunked(self, size: int) -> bytes:
        assert self._connection is not None
        reader = self._connection.reader
        if self._chunk_left == 0:
            line = reader.readline()
            if not line:
                raise EngineError("the engine closed the connection mid-answer")
            self._chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
            if self._chunk_left == 0:
                while reader.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._finish()
                return b""
        data = reader.read(min(size, self._chunk_left))
        if not data:
            raise EngineError("the engine closed the connection mid-answer")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            reader.readline()  # the CRLF after the chunk
        return data

    def _read_some(self, size: int) -> bytes:
        if self._connection is None:
            return b""
        if self._chunked:
            return self._read_chunked(size)
        reader = self._connection.reader
        if self._remaining is None:
            data = reader.read1(size)
            if not data:
                self._finish()
            return data
        data = reader.read1(min(size, self._remaining))
        if not data:
            raise EngineError("the engine closed the connection mid-answer")
        self._remaining -= len(data)
        if self._remaining == 0:
            self._finish()
        return data

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """Yield the body in pieces as it arrives."""
        try:
            while self._connection is not None:
                data = self._read_some(size)
                if data:
                    yield data
        except OSError as error:
            self.close()
            raise EngineError(f"reading from the engine failed: {error}") from error

    def read(self) -> bytes:
        """Return the whole body."""
        return b"".join(self.iter_chunks())

    def close(self) -> None:
        """Drop the rest of the body (and the connection, which is no longer in a known state)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


WAIT = None
"""A request's timeout that waits as long as the engine works (a volume of millions of files to
remove, a hook or a container to wait for): the engine answers when it is done, not before."""


class Transport(Protocol):
    """How requests reach the engine."""

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        versioned: bool = True,
        timeout: float | None = -1.0,
    ) -> Response:
        """Send a request; return the streamed response (any status). `timeout` bounds each wait
        for the engine in seconds: -1 is the transport's own, WAIT (None) waits for ever."""
        ...


class HTTPTransport:
    """HTTP/1.1 over a unix socket, TCP or TLS, keeping one idle connection for reuse."""

    def __init__(self, endpoint: Endpoint, timeout: float, api_version: str) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.api_version = api_version
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> _Connection:
        host = self.endpoint.host
        try:
            if host.startswith("unix://"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                path = host.removeprefix("unix://")
                try:
                    sock.connect(path)
                except PermissionError as error:
                    sock.close()
                    raise permission_denied(self.endpoint, path) from error
                except OSError:
                    sock.close()
                    raise
                return _Connection(sock)
            address, _, port = host.removeprefix("tcp://").rpartition(":")
            address = address.strip("[]")
            sock = socket.create_connection((address, int(port)), timeout=self.timeout)
            if self.endpoint.tls is not None:
                sock = self._wrap_tls(sock, address)
            return _Connection(sock)
        except OSError as error:
            raise unreachable(self.endpoint, error) from error

    def _wrap_tls(self, sock: socket.socket, address: str) -> socket.socket:
        import ssl

        tls = self.endpoint.tls
        assert tls is not None
        if tls.verify:
            context = ssl.create_default_context(cafile=tls.ca_cert)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if tls.cert and tls.key:
                context.load_cert_chain(tls.cert, tls.key)
            return context.wrap_socket(sock, server_hostname=address)
        except (OSError, ssl.SSLError):
            sock.close()
            raise

    def release(self, connection: _Connection) -> None:
        """Keep a connection whose last answer was read in full, for the next request."""
        with self._lock:
            if len(self._idle) < 4:
                self._idle.append(connection)
                return
        connection.close()

    def _take(self) -> tuple[_Connection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    # HTTP/1.1 over a socket: one branch per way a response can be framed or fail.
    def request(  # noqa: PLR0912
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        versioned: bool = True,
        timeout: float | None = -1.0,
    ) -> HTTPResponse:
        """Send a request; return the streamed response (any status). See Transport.request for `timeout`."""
        target = (f"/v{self.api_version}" if versioned else "") + quote(path, safe="/:@!$&'()*+,;=-._~")
        if params:
            query = {k: _query_value(v) for k, v in params.items() if v is not None}
            target += "?" + urlencode(query)
        head = [f"{method} {target} HTTP/1.1", "Host: docker", f"User-Agent: {USER_AGENT}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        streaming = body is not None and not isinstance(body, bytes)
        if isinstance(body, bytes):
            head.append(f"Content-Length: {len(body)}")
        elif streaming:
            head.append("Transfer-Encoding: chunked")
        elif method in ("POST", "PUT"):
            head.append("Content-Length: 0")
        header_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            connection, reused = self._take()
            try:
                connection.sock.settimeout(self.timeout if timeout == -1.0 else timeout)
                connection.sock.sendall(header_bytes)
                if isinstance(body, bytes):
                    connection.sock.sendall(body)
                elif streaming:
                    assert body is not None
                    for piece in body:
                        if piece:
                            connection.sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    connection.sock.sendall(b"0\r\n\r\n")
                status, response_headers = _read_head(connection.reader)
            except (OSError, EngineError) as error:
                connection.close()
                if isinstance(error, TimeoutError):  # the engine is working on it, or stuck: never send it twice
                    raise EngineError(
                        f"the engine did not answer {method} {path} within {connection.sock.gettimeout() or 0:g} s"
                    ) from error
                # A kept connection the engine closed meanwhile: retry once on a new one,
                # unless a body stream was already (partly) consumed.
                if reused and attempt == 0 and not streaming:
                    continue
                if isinstance(error, EngineError):
                    raise
                raise unreachable(self.endpoint, error) from error
            except BaseException:
                # The body's source failed (an unsafe archive, Ctrl-C): drop the connection, so
                # the engine sees the request cut short and lets go of the container it writes to.
                connection.close()
                raise
            return HTTPResponse(self, connection, status, response_headers)
        raise AssertionError("unreachable")

    def hijack(self, path: str, body: bytes) -> _Connection:
        """POST `body` (JSON) to `path` asking the engine to hand the connection over as a raw stream (exec
        start with stdin); return the connection, which the caller closes. It waits for ever.

        Raise EngineError for an answer other than 101 (or 200: an engine that streams without upgrading).
        """
        target = f"/v{self.api_version}" + quote(path, safe="/:@!$&'()*+,;=-._~")
        head = [f"POST {target} HTTP/1.1", "Host: docker", f"User-Agent: {USER_AGENT}",
                "Content-Type: application/json", "Connection: Upgrade", "Upgrade: tcp",
                f"Content-Length: {len(body)}"]  # fmt: skip
        connection = self._connect()
        try:
            connection.sock.settimeout(None)
            connection.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            status, headers = _read_head(connection.reader)
            if status not in (101, 200):
                detail = HTTPResponse(self, connection, status, headers).read()
                raise api_error(status, "POST", path, detail)
        except OSError as error:
            connection.close()
            raise unreachable(self.endpoint, error) from error
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _read_head(reader: io.BufferedReader[Any]) -> tuple[int, dict[str, str]]:
    while True:
        line = reader.readline(65536)
        if not line:
            raise EngineError("the engine closed the connection without answering")
        try:
            status = int(line.split()[1])
        except (IndexError, ValueError) as error:
            raise EngineError(f"the engine sent a malformed HTTP answer: {line[:80]!r}") from error
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 100:
            return status, headers


class _SDKResponse:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in response.headers.items()}

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        yield from self._response.iter_content(chunk_size=size)

    def read(self) -> bytes:
        data: bytes = self._response.content
        return data

    def close(self) -> None:
        self._response.close()


class SDKTransport:
    """Requests through the Docker SDK: the transport for ssh:// engines."""

    def __init__(self, client: docker.APIClient, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = endpoint

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        versioned: bool = True,
        timeout: float | None = -1.0,
    ) -> _SDKResponse:
        """Send a request; return the streamed response (any status). The SDK's requests wait for ever."""
        import requests.exceptions

        prefix = f"/v{self.client.api_version}" if versioned else ""
        url = f"{self.client.base_url}{prefix}{quote(path)}"
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = self.client.request(
                method, url, params=query, data=body, headers=dict(headers or {}), stream=True, timeout=None
            )
        except requests.exceptions.ConnectionError as error:
            raise unreachable(self.endpoint, error) from error
        return _SDKResponse(response)
