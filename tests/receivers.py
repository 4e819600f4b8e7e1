"""Loopback receivers for notification tests: a JSON webhook / ping server and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Webhook:
    """Records every request (method, path, body) it answers with 200 (or `status`)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.status = status
        self.delay = delay
        self.port = 0

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[str]:
        return [body for _, p, body in self.requests if p == path]


@contextmanager
def webhook(status: int = 200, delay: float = 0.0) -> Iterator[Webhook]:
    """Serve a Webhook on a free loopback port for the block."""
    record = Webhook(status, delay)

    class Handler(http.server.BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            if record.delay:
                threading.Event().wait(record.delay)
            record.requests.append((self.command, self.path, body))
            self.send_response(record.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = handle_any  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    record.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    """The messages an SMTP server accepted: (from, to, content)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content = envelope.content.decode("utf-8", "replace") if isinstance(envelope.content, bytes) else ""
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 OK"

    def url(self) -> str:
        return f"mailto://dp@example.com?smtp=127.0.0.1&port={self.port}&to=ops@example.com"


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """Run an aiosmtpd server on a free loopback port for the block."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    mailbox.port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
