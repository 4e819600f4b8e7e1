"""A real PostgreSQL 15 (built locally by the test bed), end to end: backup under writes, a guarded
`docker compose down -v`, `docker persist up` restoring, and restore by name."""

from __future__ import annotations

import json
import time

from tests.engine.conftest import ComposeProject, DockerCLI

STACK = """
name: {project}
services:
  persist:
    provider:
      type: persist
  db:
    image: docker-persist-test/postgres:15
    network_mode: none
    depends_on: [persist]
    volumes:
      - pgdata:/var/lib/postgresql/data
    healthcheck: {test: ["CMD", "pg_isready", "-q"], interval: 1s, timeout: 3s, retries: 60, start_period: 20s}
    x-persist:
      consistency: stop
      verify: "test -f /var/lib/postgresql/data/PG_VERSION"
volumes:
  pgdata:
    x-persist: {restore: latest}
"""


def psql(project: ComposeProject, sql: str) -> str:
    done = project.compose("exec", "-T", "db", "psql", "-U", "postgres", "-Atc", sql)
    return done.stdout.strip()


def rows(project: ComposeProject) -> int:
    return int(psql(project, "select count(*) from t"))


def compose(project: ComposeProject, *args: str) -> None:
    done = project.docker.run(
        "compose",
        "--project-directory",
        str(project.directory),
        "-f",
        str(project.file),
        "-p",
        project.name,
        *args,
        env={"DOCKER_PERSIST_STORE": str(project.store)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_postgres_survives_down_v_and_restores_by_name(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(STACK)
    compose(project, "up", "-d", "--wait")
    psql(project, "create table t (id serial primary key, at timestamptz default now())")
    # A writer inserts rows while the backup runs; `consistency: stop` stops the database for the copy.
    db = project.compose("ps", "-q", "db").stdout.strip()
    docker.run(
        "exec",
        "-d",
        db,
        "sh",
        "-c",
        "while true; do psql -U postgres -qc 'insert into t default values' || exit 0; sleep 0.02; done",
        check=True,
    )
    time.sleep(1.5)
    done = project.persist("backup", "--name", "mid")
    assert done.returncode == 0, done.stdout + done.stderr
    compose(project, "up", "-d", "--wait")  # the stop ended the writer; the database itself is back
    at_snapshot = rows(project)
    assert at_snapshot > 10
    psql(project, "insert into t default values; insert into t default values")
    later = rows(project)

    # A plain `docker compose down -v`: the provider saves the data first.
    compose(project, "down", "-v")
    assert docker.run("volume", "inspect", f"{project.name}_pgdata").returncode != 0
    # `docker persist up` restores the latest snapshot (the pre-down one) and Postgres starts cleanly.
    up = project.persist("up", "-d", "--wait")
    assert up.returncode == 0, up.stdout + up.stderr
    assert rows(project) == later
    logs = project.compose("logs", "db").stdout
    assert "database system was not properly shut down" not in logs

    # Restore by name: back to the count at the `mid` snapshot.
    restored = project.persist("restore", "mid", "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    compose(project, "up", "-d", "--wait")
    assert rows(project) == at_snapshot
    verified = project.persist("verify", "mid", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["results"][0]["ok"] is True
