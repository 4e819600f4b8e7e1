"""Delivery through the real Apprise and urllib, to receivers on 127.0.0.1: webhooks, SMTP, pings, and failures."""

from __future__ import annotations

import json
import time

import pytest

from docker_persist.host import notify
from tests.receivers import free_port, smtp_server, webhook


def test_a_json_webhook_gets_the_title_and_body() -> None:
    with webhook() as hook:
        url = hook.url("json", "/hook")
        assert notify.send([url], "docker-persist: backup of p failed", "Project: p\nError: boom") == {url: None}
    (body,) = hook.bodies("/hook")
    document = json.loads(body)
    assert document["title"] == "docker-persist: backup of p failed"
    assert document["message"] == "Project: p\nError: boom"
    assert document["type"] == "failure"


def test_the_kind_of_event_is_the_message_type() -> None:
    with webhook() as hook:
        notify.send([hook.url("json", "/h")], "t", "b", kind="recovered")
        notify.send([hook.url("json", "/h")], "t", "b", kind="stale")
    assert [json.loads(b)["type"] for b in hook.bodies("/h")] == ["success", "warning"]


def test_an_email_reaches_the_smtp_server() -> None:
    with smtp_server() as mailbox:
        assert notify.send([mailbox.url()], "docker-persist: backup of p failed", "Volumes: db") == {
            mailbox.url(): None
        }
    ((sender, recipients, content),) = mailbox.messages
    assert sender == "dp@example.com"
    assert recipients == ["ops@example.com"]
    assert "docker-persist: backup of p failed" in content
    assert "Volumes: db" in content


def test_targets_are_sent_to_at_once_and_a_dead_one_says_why() -> None:
    dead = f"json://127.0.0.1:{free_port()}/x"
    with webhook() as hook, smtp_server() as mailbox:
        results = notify.send([hook.url("json", "/a"), dead, mailbox.url()], "t", "b")
    assert results[hook.url("json", "/a")] is None
    assert results[mailbox.url()] is None
    assert results[dead] is not None and "127.0.0.1" in results[dead]


def test_a_refusing_service_is_a_failure() -> None:
    with webhook(status=500) as hook:
        url = hook.url("json", "/h")
        problem = notify.send([url], "t", "b")[url]
    assert problem is not None


def test_a_hanging_service_is_given_up_on_by_the_deadline() -> None:
    with webhook(delay=3.0) as hook:
        url = hook.url("json", "/slow")
        started = time.monotonic()
        problem = notify.send([url], "t", "b", deadline=0.5)[url]
        assert time.monotonic() - started < 2.0
    assert problem == "no answer within 0 s" or (problem or "").startswith("no answer within")


def test_an_unreadable_url_is_a_failure_with_its_secret_masked() -> None:
    url = "tgram://bottoken123456/"
    problem = notify.send([url], "t", "b")[url]
    assert problem is not None
    assert "bottoken123456" not in problem


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mailtos://user:hunter2secret@example.com", "mailtos://user:****@example.com"),
        ("json://127.0.0.1:8080/hook", "json://127.0.0.1:8080/hook"),
        ("nonsense://token-abcdef", "nonsense://***"),
    ],
)
def test_a_url_is_masked_as_apprise_masks_it(url: str, shown: str) -> None:
    assert notify.masked(url) == shown


def test_masked_forms_hide_tokens() -> None:
    assert "SECRETTOKEN" not in notify.masked("discord://12345/SECRETTOKEN")
    assert "123456:ABCSECRET" not in notify.masked("tgram://123456:ABCSECRET/987")


def test_scrub_removes_secrets_from_any_text() -> None:
    url = "json://user:pw-secret-1@hooks.example.com/path?key=valuesecret"
    text = f"failed to reach {url}; password pw-secret-1, valuesecret"
    scrubbed = notify.scrub(text, url)
    for secret in ("pw-secret-1", "valuesecret"):
        assert secret not in scrubbed
    assert "hooks.example.com" in scrubbed  # which target it was stays readable
    token = "tgram://123456:ABCSECRET/987"
    assert "ABCSECRET" not in notify.scrub("Telegram 123456:ABCSECRET refused", token)


def test_url_problem() -> None:
    assert notify.url_problem("json://127.0.0.1/x") is None
    assert notify.url_problem("ntfy://ntfy.sh/topic") is None
    assert notify.url_problem("bogus://x") is not None
    assert notify.url_problem("mailto://") is not None


def test_unreachable() -> None:
    with webhook() as hook:
        assert notify.unreachable(hook.url("json", "/x")) is None
        assert notify.unreachable(f"http://127.0.0.1:{hook.port}/ping") is None
    assert "Connection refused" in (notify.unreachable(f"json://127.0.0.1:{free_port()}/x") or "")
    assert notify.unreachable("ntfy://mytopic") is None  # ntfy.sh's, not a server of the user's
    assert notify.unreachable("discord://1/2") is None  # the provider's server: not probed


def test_pings_start_success_and_fail_with_the_error_as_body() -> None:
    with webhook() as hook:
        base = hook.url("http", "/ping/uuid")
        assert notify.ping(base, "start") is None
        assert notify.ping(base, "success") is None
        assert notify.ping(base, "fail", "cannot write: No space left on device") is None
    assert hook.requests == [
        ("GET", "/ping/uuid/start", ""),
        ("GET", "/ping/uuid", ""),
        ("POST", "/ping/uuid/fail", "cannot write: No space left on device"),
    ]


def test_an_uptime_kuma_push_url_takes_its_status_as_a_query() -> None:
    with webhook() as hook:
        base = hook.url("http", "/api/push/TOKEN") + "?msg=OK"
        assert notify.ping(base, "start") is None  # no start signal: nothing sent
        assert notify.ping(base, "success") is None
        assert notify.ping(base, "fail", "boom") is None
    assert [path for _, path, _ in hook.requests] == [
        "/api/push/TOKEN?msg=OK&status=up",
        "/api/push/TOKEN?msg=boom&status=down",
    ]


def test_a_dead_ping_url_says_why_and_does_not_raise() -> None:
    assert "refused" in (notify.ping(f"http://127.0.0.1:{free_port()}/x", "start") or "").lower()


def test_a_token_in_the_host_part_is_never_parsed_nor_printed() -> None:
    assert notify.unreachable("tgram://123456789:AAHsecretTOKEN/987654") is None
    assert notify.unreachable("json://[::1/x") == "the host or port is not valid"


def test_a_malformed_ping_url_is_a_failure_not_an_exception() -> None:
    assert notify.ping("https://[::1/x", "start") == "the ping URL is not valid"
