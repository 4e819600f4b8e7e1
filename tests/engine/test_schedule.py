"""The scheduler and metrics through the real CLI: scheduled backups, retention, and a metrics scrape over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.bed.seaweed import free_ports, stop_process
from tests.engine.conftest import ComposeProject
from tests.engine.test_snapshots import ONE_VOLUME

SCHEDULED = (
    ONE_VOLUME
    + """
x-persist:
  schedule: "* * * * *"
  keep:
    last: 2
"""
)


def sample(text: str, metric: str, project: str, volume: str = "data") -> float | None:
    """Return the value of one sample in exposition text, or None."""
    pattern = rf'^docker_persist_{metric}\{{project="{re.escape(project)}",volume="{volume}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_scheduled_backups_retention_and_metrics(project: ComposeProject, tmp_path: Path) -> None:
    project.write(SCHEDULED)
    project.compose("up", "-d")
    project.compose("exec", "-T", "app", "sh", "-c", "echo hello > /data/file")
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}

    for _ in range(3):
        done = project.persist("schedule", "--once", "--verify-every", "3", env=env)
        assert done.returncode == 0, done.stderr
    assert "verify of" in done.stderr and ": ok" in done.stderr  # the third backup was drilled

    listed = project.persist("snapshots", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    names = [row["name"] for row in json.loads(listed.stdout)["snapshots"]]
    assert len(names) == 2 and all("scheduled" in name for name in names), names  # retention kept two of three

    metrics = project.persist("metrics", env=env)
    assert metrics.returncode == 0, metrics.stderr
    assert sample(metrics.stdout, "snapshots", project.name) == 2
    assert sample(metrics.stdout, "backup_failures_total", project.name) == 0
    assert sample(metrics.stdout, "last_verify_success", project.name) == 1
    assert (sample(metrics.stdout, "last_backup_duration_seconds", project.name) or -1) >= 0
    stamp = sample(metrics.stdout, "last_success_timestamp_seconds", project.name)
    assert stamp is not None and abs(time.time() - stamp) < 600

    textfile = tmp_path / "node" / "docker_persist.prom"
    textfile.parent.mkdir()
    written = project.persist("metrics", "--textfile", str(textfile), env=env)
    assert written.returncode == 0, written.stderr
    assert sample(textfile.read_text(), "snapshots", project.name) == 2

    # The foreground loop serves the same metrics over HTTP, and SIGTERM stops it cleanly.
    (port,) = free_ports(1)
    argv = ["docker", "persist", "schedule", "--metrics-port", str(port), "-f", str(project.file), "-p", project.name]
    environ = {**project.docker.env, "DOCKER_PERSIST_STORE": str(project.store), **env}
    log = (tmp_path / "schedule.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    try:
        body = scrape(f"http://127.0.0.1:{port}/metrics", process)
        assert sample(body, "snapshots", project.name) == 2
        assert "# TYPE docker_persist_backup_failures_total counter" in body
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        stop_process(process)
        log.close()
    output = (tmp_path / "schedule.log").read_text()
    assert "stopped" in output, output
    assert "Traceback" not in output


def scrape(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """Return the body at `url`, retrying while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return str(response.read().decode())
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_install_systemd_and_cron_print_what_they_write(project: ComposeProject, tmp_path: Path) -> None:
    project.write(SCHEDULED)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    printed = project.persist("schedule", "--install", "systemd", "--user", env=env)
    unit = tmp_path / "config" / "systemd" / "user" / f"docker-persist-{project.name}.service"
    assert printed.returncode == 0 and "--apply" in printed.stdout and not unit.exists(), "like cron: printed only"
    done = project.persist("schedule", "--install", "systemd", "--user", "--apply", env=env)
    assert done.returncode == 0, done.stderr
    text = unit.read_text()
    assert text in printed.stdout
    assert str(unit) in done.stdout and text in done.stdout
    assert "Type=simple" in text and "Restart=on-failure" in text
    assert f"persist schedule -f {project.file} -p {project.name}" in text

    cron = project.persist("schedule", "--install", "cron")
    assert cron.returncode == 0, cron.stderr
    line = rf"^\* \* \* \* \* /\S+/docker persist backup data -f {project.file} -p {project.name} "
    assert re.search(line, cron.stdout, re.MULTILINE), cron.stdout
