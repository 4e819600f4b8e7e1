"""People are told, through the real `docker persist`: a webhook, an SMTP server and a ping receiver on
127.0.0.1 get what a failed, repeated and recovered backup, a stale volume and a failed `down -v` send;
a dead target never changes a result; `status` and `metrics` judge what they see."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.bed.seaweed import stop_process
from tests.engine.conftest import ComposeProject
from tests.receivers import Mailbox, Webhook, free_port, smtp_server, webhook

SERVICE = """
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - data:/data
"""


def notified(hook: Webhook, mailbox: Mailbox, extra: str = "") -> str:
    """A one-volume project telling the webhook and the mailbox of failures and recoveries, with a ping URL."""
    return (
        SERVICE
        + f"""volumes:
  data:
    x-persist: {{protect: false}}
x-persist:
  notify:
    - url: {hook.url("json", "/hook")}
      on: [failure, recovered, stale]
    - url: "{mailbox.url()}"
      on: [failure, recovered]
  ping: {hook.url("http", "/ping/uuid")}
{extra}"""
    )


def messages(hook: Webhook) -> list[dict[str, str]]:
    return [json.loads(body) for body in hook.bodies("/hook")]


def broken_store(tmp_path: Path) -> dict[str, str]:
    """An environment whose store cannot be written: its folder would be under a regular file."""
    (tmp_path / "not-a-folder").write_text("")
    return {"DOCKER_PERSIST_STORE": str(tmp_path / "not-a-folder" / "store")}


def test_a_failing_backup_is_told_once_to_each_target_and_its_recovery_once(
    project: ComposeProject, tmp_path: Path
) -> None:
    with webhook() as hook, smtp_server() as mailbox:
        project.write(notified(hook, mailbox))
        project.compose("up", "-d")
        broken = broken_store(tmp_path)
        for _ in range(3):  # fails every time: told once
            failed = project.persist("backup", env=broken)
            assert failed.returncode == 1, failed.stderr
            assert "Error: creating a store folder failed" in failed.stderr
        (message,) = messages(hook)
        assert message["title"] == f"docker-persist: backup of {project.name} failed"
        body = message["message"]
        assert f"Project: {project.name}" in body and "Volumes: data" in body
        assert "Error: creating a store folder failed: Not a directory" in body
        assert f"More: docker persist status -p {project.name}" in body
        ((_, recipients, mail),) = mailbox.messages
        assert recipients == ["ops@example.com"] and f"backup of {project.name} failed" in mail

        done = project.persist("backup", "--name", "good")
        assert done.returncode == 0, done.stderr
        recovered = messages(hook)[1:]
        assert [m["title"] for m in recovered] == [f"docker-persist: {project.name} recovered"]
        assert "Snapshot: good" in recovered[0]["message"]
        assert len(mailbox.messages) == 2 and f"{project.name} recovered" in mailbox.messages[1][2]
        done = project.persist("backup", "--name", "good-2")  # a success after a success: nobody hears of it
        assert done.returncode == 0, done.stderr
        assert len(messages(hook)) == 2 and len(mailbox.messages) == 2

        # The dead-man's switch saw every run begin and end, with the error as the body of a failure.
        pings = [(method, path) for method, path, _ in hook.requests if path.startswith("/ping/")]
        assert (
            pings
            == [("GET", "/ping/uuid/start"), ("POST", "/ping/uuid/fail")] * 3
            + [
                ("GET", "/ping/uuid/start"),
                ("GET", "/ping/uuid"),
            ]
            * 2
        )
        assert hook.bodies("/ping/uuid/fail")[0].startswith("creating a store folder failed: Not a directory")

        # status shows the last failure, and the volume is fine again but never drilled: yellow, exit 1.
        status = project.persist("status", "--format", "json")
        assert status.returncode == 1, status.stderr
        (row,) = [p for p in json.loads(status.stdout)["projects"] if p["project"] == project.name]
        (volume,) = row["volumes"]
        assert (volume["status"], volume["newest"], volume["failing"]) == ("yellow", "good-2", [])
        assert volume["last_failure"]["operation"] == "backup"


def test_a_down_that_keeps_the_volumes_because_its_backup_failed_is_told(
    project: ComposeProject, tmp_path: Path
) -> None:
    with webhook() as hook, smtp_server() as mailbox:
        project.write(notified(hook, mailbox))
        project.compose("up", "-d")
        project.compose("exec", "-T", "app", "sh", "-c", "echo precious > /data/file")
        down = project.persist("down", "-v", env=broken_store(tmp_path))
        assert down.returncode == 1, down.stderr
        kept = project.docker.run("volume", "inspect", f"{project.name}_data")
        assert kept.returncode == 0, "the volume was kept"
        (message,) = messages(hook)
        assert message["title"] == f"docker-persist: down of {project.name} failed"
        assert "Error: " in message["message"]


def test_a_target_that_cannot_be_reached_changes_nothing_but_is_counted(project: ComposeProject) -> None:
    dead = f"json://127.0.0.1:{free_port()}/hook"
    project.write(
        SERVICE
        + f"""volumes:
  data:
    x-persist: {{protect: false}}
x-persist:
  notify:
    - url: {dead}
      on: [success, failure]
"""
    )
    project.compose("up", "-d")
    done = project.persist("backup", "--name", "kept")
    assert done.returncode == 0, done.stderr
    assert f"could not deliver the message 'docker-persist: backup of {project.name} succeeded' to {dead}" in (
        done.stderr
    )
    assert "Snapshot kept" in done.stdout
    metrics = project.persist("metrics")
    assert metrics.returncode == 0, metrics.stderr
    assert f'docker_persist_notify_failures_total{{project="{project.name}"}} 1' in metrics.stdout.splitlines()
    checked = project.persist("check", "--format", "json")
    finding = [f for f in json.loads(checked.stdout)["findings"] if f["rule"] == "DP022"]
    assert len(finding) == 1 and finding[0]["severity"] == "warning" and "cannot be reached" in finding[0]["message"]


def test_a_stale_volume_under_schedule_is_told_once(project: ComposeProject, tmp_path: Path) -> None:
    with webhook() as hook, smtp_server() as mailbox:
        # A schedule that does not fall due now: the scheduler only watches the ages.
        project.write(notified(hook, mailbox, '  schedule: "0 0 1 1 *"\n  max_age: 1h\n'))
        project.compose("up", "-d")
        for _ in range(2):  # two scheduler runs, each looking once: one message
            run_scheduler_briefly(project, tmp_path)
        (message,) = messages(hook)
        assert message["title"] == f"docker-persist: snapshots of {project.name} are too old"
        assert "Too old: data: no snapshot holds it (max_age 1h)" in message["message"]
        assert mailbox.messages == []  # it listens for failures and recoveries only

        # check --notify sees the same, and says nothing new; after a backup and a drill, `recovered`.
        assert project.persist("check", "--notify").returncode == 0  # warnings only
        assert len(messages(hook)) == 1
        assert project.persist("backup").returncode == 0
        verified = project.persist("verify")
        assert verified.returncode == 0, verified.stderr
        project.persist("check", "--notify")
        titles = [m["title"] for m in messages(hook)]
        assert titles == [
            f"docker-persist: snapshots of {project.name} are too old",
            f"docker-persist: {project.name} recovered",
        ]


def run_scheduler_briefly(project: ComposeProject, tmp_path: Path) -> None:
    """Run `docker persist schedule` in the foreground until it has looked at the ages once, then stop it."""
    argv = ["docker", "persist", "schedule", "-f", str(project.file), "-p", project.name]
    environ = {**project.docker.env, "DOCKER_PERSIST_STORE": str(project.store)}
    log_path = tmp_path / f"schedule-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while "(UTC): data" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3)  # it looks once right after starting
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        finally:
            stop_process(process)
    output = log_path.read_text()
    assert "stopped" in output and "Traceback" not in output, output


def test_status_judges_fresh_stale_unverified_and_failing_volumes(project: ComposeProject, tmp_path: Path) -> None:
    project.write(
        """
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - fresh:/fresh
      - stale:/stale
      - unverified:/unverified
      - failing:/failing
volumes:
  fresh: {x-persist: {protect: false}}
  stale: {x-persist: {protect: false, max_age: 2s}}
  unverified: {x-persist: {protect: false}}
  failing: {x-persist: {protect: false}}
"""
    )
    project.compose("up", "-d")
    assert project.persist("backup", "stale").returncode == 0
    assert project.persist("backup", "fresh", "--name", "fresh-1").returncode == 0
    assert project.persist("verify", "fresh-1").returncode == 0
    assert project.persist("backup", "unverified").returncode == 0
    assert project.persist("backup", "failing", env=broken_store(tmp_path)).returncode == 1
    time.sleep(2.5)
    status = project.persist("status", "--format", "json")
    assert status.returncode == 1, status.stderr
    (row,) = [p for p in json.loads(status.stdout)["projects"] if p["project"] == project.name]
    judged = {v["volume"]: (v["status"], v["stale"], v["unverified"], v["failing"]) for v in row["volumes"]}
    assert judged == {
        "fresh": ("green", False, False, []),
        "stale": ("red", True, True, []),
        "unverified": ("yellow", False, True, []),
        "failing": ("red", True, True, ["backup"]),
    }
    table = project.persist("status")
    assert table.returncode == 1
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    lines = {row[2]: row[0] for row in rows if len(row) > 2 and row[1] == project.name}
    assert lines == {"fresh": "ok", "stale": "FAIL", "unverified": "warn", "failing": "FAIL"}
    assert re.search(r"failing: creating a store folder failed", table.stdout)


def test_metrics_answer_with_the_store_unreachable(project: ComposeProject, tmp_path: Path) -> None:
    project.write(SERVICE + "volumes:\n  data:\n    x-persist: {protect: false}\n")
    metrics = project.persist("metrics", env=broken_store(tmp_path))
    assert metrics.returncode == 0, metrics.stderr
    lines = metrics.stdout.splitlines()
    assert f'docker_persist_store_up{{project="{project.name}"}} 0' in lines
    assert f'docker_persist_volume_up{{project="{project.name}",volume="data"}} 0' in lines
