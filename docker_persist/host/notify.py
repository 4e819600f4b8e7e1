"""Deliver notifications (Apprise) and health pings (HTTP), each with a short deadline.

Nothing here raises: a delivery that fails returns why, and the caller logs and counts it. A
command's result never depends on whether a person could be told. The deliveries of one event
go out in parallel threads and are waited for at most DEADLINE seconds in all; a target still
hanging then counts as failed (its thread is a daemon: the process does not wait for it).
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Sequence

TIMEOUT = 5.0  # seconds to connect, and to wait for an answer, per target
DEADLINE = 15.0  # seconds for all the targets of one event
PING_TIMEOUT = 5.0
MAX_PING_BODY = 10_000  # bytes of error text sent with a /fail ping (Healthchecks keeps 100 kB)


def masked(url: str) -> str:
    """Return `url` as it may be printed: Apprise's own privacy form (tokens and passwords hidden) without its
    query, or only the scheme when Apprise cannot read it."""
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin:
            return str(plugin.url(privacy=True)).split("?", 1)[0].rstrip("/")  # type: ignore[no-untyped-call]
    except Exception:  # masking must never fail: fall back to the scheme alone
        pass
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://***"


def scrub(text: str, url: str) -> str:
    """Return `text` (an error Apprise logged about `url`) with the URL masked and its secrets removed: the
    password, path segments and query values of 6 characters or more, and the host where Apprise's own
    masked form hides it (a Telegram bot token is the host)."""
    shown = masked(url)
    text = text.replace(url, shown)
    try:
        parts = urllib.parse.urlsplit(url)
        secrets = [parts.password or ""]
        secrets += [p for p in parts.path.split("/") if len(p) >= 6]
        secrets += [v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 6]
        if parts.netloc not in shown:  # a Telegram bot token is the host (with a colon: no real port)
            secrets += [parts.netloc, *(p for p in re.split(r"[:@]", parts.netloc) if len(p) >= 6)]
    except ValueError:
        return text if url not in text else text.replace(url, shown)
    for secret in sorted((s for s in secrets if s and s not in shown), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def url_problem(url: str) -> str | None:
    """Return why Apprise cannot send to `url` (an unknown scheme, a malformed URL), or None."""
    import apprise

    with _Capture(threading.get_ident()) as capture:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    return None if plugin else scrub(capture.first() or "Apprise cannot read it", url)


# Apprise schemes whose host part is a server to connect to (not a token): `check` can see whether it answers.
_SERVER_SCHEMES = {"json": 80, "jsons": 443, "form": 80, "forms": 443, "xml": 80, "xmls": 443, "http": 80,
                   "https": 443, "ntfy": 80, "ntfys": 443, "gotify": 80, "gotifys": 443}  # fmt: skip


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Return why the server of a webhook-like URL (json://, form://, ntfy://, a ping's http(s)://...) does not
    accept a connection, or None (also for services whose URL names no server: their hosts are the provider's)."""
    import socket

    scheme = url.split("://", 1)[0].lower()
    if scheme not in _SERVER_SCHEMES:
        return None  # the provider's server (its host part may be a token: never parsed, never printed)
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port or _SERVER_SCHEMES[scheme]
    except ValueError:
        return "the host or port is not valid"
    if not host:
        return None
    if parts.scheme.lower() in ("ntfy", "ntfys") and parts.path.strip("/") == "":
        return None  # ntfy://topic: the topic on ntfy.sh, no server of the user's
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"{host}:{port}: {error.strerror or error}"


class _Capture(logging.Handler):
    """Collect the warnings Apprise logs from one thread (it reports why a send failed only there)."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.WARNING)
        self.thread = thread
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())

    def first(self) -> str | None:
        return next((line.strip().splitlines()[0] for line in self.lines if line.strip()), None)

    def __enter__(self) -> _Capture:
        logger = logging.getLogger("apprise")
        logger.addHandler(self)
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.propagate = False  # its own lines never reach the user's terminal raw
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("apprise").removeHandler(self)


_TYPES = {"failure": "failure", "stale": "warning", "recovered": "success", "success": "success"}


def _send_one(url: str, title: str, body: str, kind: str, results: dict[str, str | None]) -> None:
    """Send one message; record None on success, else why not."""
    try:
        import apprise

        with _Capture(threading.get_ident()) as capture:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
            if not plugin:
                results[url] = scrub(capture.first() or "Apprise cannot read this URL", url)
                return
            for attribute in ("socket_connect_timeout", "socket_read_timeout"):
                current = getattr(plugin, attribute, None)
                setattr(plugin, attribute, TIMEOUT if current is None else min(float(current), TIMEOUT))
            ok = plugin.notify(body=body, title=title, notify_type=apprise.NotifyType(_TYPES.get(kind, "info")))
        results[url] = None if ok else scrub(capture.first() or "the service refused the message", url)
    except Exception as error:  # a sender's bug must not fail the backup it reports on
        results[url] = scrub(f"{type(error).__name__}: {error}", url)


def send(
    urls: Sequence[str], title: str, body: str, kind: str = "failure", deadline: float = DEADLINE
) -> dict[str, str | None]:
    """Send the message, of an event `kind` (failure, stale, recovered, success: the services colour or tag it
    by that), to every URL at once; return, for each, None if it was delivered, else why not."""
    results: dict[str, str | None] = {}
    threads = [
        threading.Thread(target=_send_one, args=(url, title, body, kind, results), name="notify", daemon=True)
        for url in dict.fromkeys(urls)
    ]
    for thread in threads:
        thread.start()
    import time

    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    late = f"no answer within {deadline:.0f} s"
    return {url: results.get(url, late) for url in dict.fromkeys(urls)}


def ping_url(base: str, phase: str) -> str:
    """Return the URL of a ping: `base` for success, `base/start` and `base/fail` for the others.

    An Uptime Kuma push URL (…/api/push/TOKEN) takes its status as a query instead, and has no start.
    """
    parts = urllib.parse.urlsplit(base)
    if "/api/push/" in parts.path:
        query = urllib.parse.parse_qs(parts.query)
        query["status"] = ["down" if phase == "fail" else "up"]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))
    if phase == "success":
        return base
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + f"/{phase}"))


def ping(base: str, phase: str, body: str = "") -> str | None:
    """Ping the dead-man's switch at `base` for `phase` (start, success, fail); return None, or why it failed.
    A failure ping carries the error text as its body (POST); the others are GETs."""
    import urllib.request

    try:
        kuma = "/api/push/" in urllib.parse.urlsplit(base).path
        url = ping_url(base, phase)
    except ValueError:
        return "the ping URL is not valid"
    if phase == "start" and kuma:
        return None  # Uptime Kuma has no start signal
    if phase == "fail" and kuma:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        query["msg"] = [body[:200]]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))
        body = ""
    data = body.encode("utf-8", "replace")[:MAX_PING_BODY] if body else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("User-Agent", "docker-persist")
    try:
        with urllib.request.urlopen(request, timeout=PING_TIMEOUT) as response:  # http(s) only: the schema says so
            response.read(1024)
    except Exception as error:  # urllib raises many kinds; a ping never fails the work
        reason = getattr(error, "reason", None) or error
        return f"{type(error).__name__}: {reason}"
    return None
