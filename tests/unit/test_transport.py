"""The HTTP transport's timeouts, against a fake engine on a unix socket that takes its time to answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_persist.engine.transport import WAIT, HTTPTransport
from docker_persist.errors import EngineError
from docker_persist.host.dockerconfig import Endpoint


class SlowEngine:
    """Answers every request with 204, `delay` seconds after it arrives for a path under /slow; keeps
    connections alive; counts the requests."""

    def __init__(self, path: Path, delay: float) -> None:
        self.delay = delay
        self.requests: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with client:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    try:
                        piece = client.recv(4096)
                    except OSError:
                        return
                    if not piece:
                        return
                    data += piece
                head, data = data.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0]
                self.requests.append(line)
                if b" /v1.41/slow" in line:
                    time.sleep(self.delay)
                try:
                    client.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    return


@pytest.fixture
def slow_engine(tmp_path: Path) -> Iterator[tuple[SlowEngine, HTTPTransport]]:
    engine = SlowEngine(tmp_path / "docker.sock", delay=1.5)
    transport = HTTPTransport(Endpoint("default", f"unix://{tmp_path / 'docker.sock'}", None, "default"), 0.5, "1.41")
    yield engine, transport
    transport.close()
    engine.server.close()


def test_a_slow_answer_past_the_timeout_fails_once_without_a_second_request(
    slow_engine: tuple[SlowEngine, HTTPTransport],
) -> None:
    engine, transport = slow_engine
    assert transport.request("GET", "/fast").read() == b""  # the connection is kept, and reused below
    with pytest.raises(EngineError, match=r"^the engine did not answer DELETE /slow/volume within 0\.5 s$"):
        transport.request("DELETE", "/slow/volume")
    time.sleep(2)
    assert engine.requests == [b"GET /v1.41/fast HTTP/1.1", b"DELETE /v1.41/slow/volume HTTP/1.1"], (
        "a request the engine is working on is never sent twice"
    )


def test_wait_waits_for_as_long_as_the_engine_works(slow_engine: tuple[SlowEngine, HTTPTransport]) -> None:
    engine, transport = slow_engine
    response = transport.request("DELETE", "/slow/volume", timeout=WAIT)
    assert response.status == 204
    assert response.read() == b""
    assert transport.request("POST", "/slow/wait", timeout=3.0).read() == b""  # its own, past the delay
    assert len(engine.requests) == 2
