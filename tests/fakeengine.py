"""A stand-in engine: answers GET /version on a unix or TCP socket with a fixed body.

It lets tests prove that a command reached *this* endpoint and no other.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from types import TracebackType


class FakeEngine:
    """Serve `/version` with `version` as the engine version, in a background thread."""

    def __init__(
        self, version: str, unix_path: str | None = None, chunked: bool = False, tls: dict[str, str] | None = None
    ) -> None:
        self.version = version
        self.tls_context: ssl.SSLContext | None = None
        if tls is not None:
            # Mutual TLS: a client without a certificate from the CA is refused.
            self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls["ca"])
            self.tls_context.verify_mode = ssl.CERT_REQUIRED
            self.tls_context.load_cert_chain(tls["server_cert"], tls["server_key"])
        self.chunked = chunked
        self.requests: list[str] = []
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.host = f"unix://{unix_path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.host = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.tls_context is not None:
                try:
                    conn = self.tls_context.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.split(b"\r\n", 1)[0].decode())
                body = json.dumps(
                    {
                        "Version": self.version,
                        "ApiVersion": "1.41",
                        "MinAPIVersion": "1.12",
                        "Os": "linux",
                        "Arch": "fake",
                    }
                ).encode()
                if self.chunked:
                    half = len(body) // 2
                    payload = (
                        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
                        + b"0\r\n\r\n"
                    )
                    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                else:
                    payload = body
                    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
                conn.sendall(head + b"Content-Type: application/json\r\n\r\n" + payload)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
