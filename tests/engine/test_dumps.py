"""Hot database dumps, through the real CLI and a real PostgreSQL 15: rows inserted all through the backup, no
restart and no failed query, a transaction-consistent dump, restored and drilled; failed dumps publish nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

from tests.engine.conftest import ComposeProject

STACK = """
name: {project}
services:
  db:
    image: docker-persist-test/postgres:15
    network_mode: none
    environment:
      POSTGRES_PASSWORD: s3cret-pw
    volumes:
      - pgdata:/var/lib/postgresql/data
    healthcheck: {test: ["CMD", "pg_isready", "-q"], interval: 1s, timeout: 3s, retries: 60, start_period: 20s}
    x-persist:
      DUMP
      verify: test "$(psql -U postgres -d app -Atc 'select count(*) = max(id) from t')" = t
volumes:
  pgdata:
    x-persist: {protect: false}
"""


def stack(dump: str = "dump: auto") -> str:
    return STACK.replace("DUMP", dump)


def psql(project: ComposeProject, sql: str, database: str = "app") -> str:
    done = project.compose("exec", "-T", "db", "psql", "-U", "postgres", "-d", database, "-Atc", sql)
    return done.stdout.strip()


def started_at(project: ComposeProject) -> str:
    container = project.compose("ps", "-q", "db").stdout.strip()
    return project.docker.run("inspect", "-f", "{{.State.StartedAt}}", container, check=True).stdout.strip()


def snapshots(project: ComposeProject) -> list[str]:
    listed = project.persist("snapshots", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return [row["name"] for row in json.loads(listed.stdout)["snapshots"]]


def backup_under_writes(
    project: ComposeProject, insert_loop: str, count: Callable[[], str]
) -> tuple[subprocess.CompletedProcess[str], int, int]:
    """Run `docker persist backup --name hot` while a client in the db service runs `insert_loop` (one row per
    transaction, printing FAILED for a failed query); return the backup, and the row counts just before and
    just after it. Assert that it succeeded, that no query failed, and that rows were written meanwhile."""
    writer = subprocess.Popen(
        [*project.docker_compose_argv(), "exec", "-T", "db", "sh", "-c", insert_loop],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=project.docker.env,
    )  # fmt: skip
    try:
        time.sleep(2)
        rows_before = int(count())
        done = project.persist("backup", "--name", "hot")
        rows_after = int(count())
        time.sleep(1)
    finally:
        writer.terminate()
        output, _ = writer.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "FAILED" not in output, output  # no query failed during the dump
    assert rows_before > 0 and rows_after > rows_before, (rows_before, rows_after)
    return done, rows_before, rows_after


def test_a_hot_dump_is_consistent_restores_and_drills(project: ComposeProject) -> None:
    project.write(stack())
    project.compose("up", "-d", "--wait")
    psql(project, "create database app", database="postgres")
    psql(project, "create table t (id bigserial primary key, at timestamptz default clock_timestamp())")
    before = started_at(project)

    # A client inserting a row every few milliseconds, one transaction each, all through the backup.
    insert = 'while true; do psql -U postgres -d app -qc "insert into t default values" || echo FAILED; done'
    done, rows_before, rows_after = backup_under_writes(
        project, insert, lambda: psql(project, "select count(*) from t")
    )
    assert started_at(project) == before  # never stopped, paused or restarted

    # The snapshot holds the dump (a part of kind dump), not the volume's files.
    part = project.store / project.name / "hot" / "pgdata.dump.sql.zst"
    assert part.is_file()
    manifest = json.loads((project.store / project.name / "hot" / "manifest.json").read_text())
    assert [(v["key"], v["kind"]) for v in manifest["volumes"]] == [("pgdata.dump", "dump")]
    assert "s3cret-pw" not in (project.store / project.name / "hot" / "manifest.json").read_text()

    # The drill loads it into a scratch database and runs the verify command there.
    verified = project.persist("verify", "hot", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    (result,) = json.loads(verified.stdout)["results"]
    assert result["ok"] and "verify command passed" in result["detail"], result

    # Restore in place: the volume is made again from the dump, and the service runs on it.
    restored = project.persist("restore", "hot", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "Undo snapshot: " in restored.stdout
    project.compose("up", "-d", "--wait")
    count, highest = (int(x) for x in psql(project, "select count(*), max(id) from t").split("|"))
    # Transaction-consistent: every row up to the newest the dump saw, none missing (one writer: ids are gapless).
    assert count == highest, (count, highest)
    assert rows_before <= count <= rows_after, (rows_before, count, rows_after)
    # The role's password came back with the cluster; the tool never printed it.
    assert "s3cret-pw" not in restored.stdout + restored.stderr + done.stdout + done.stderr


def test_a_failing_dump_fails_the_backup_and_publishes_nothing(project: ComposeProject) -> None:
    project.write(stack())
    project.compose("up", "-d", "--wait")
    cases = {
        # A wrong password, over TCP where the image asks for one.
        'dump: {command: "PGPASSWORD=wrong pg_dumpall -h 127.0.0.1 -U postgres"}': "password authentication failed",
        "dump: {command: no-such-dump-tool, restore: cat}": "not found",
        "dump: {command: 'echo partial; kill -9 $$', restore: cat}": "killed",
        "dump: {command: 'true', restore: cat}": "printed nothing",
    }
    for dump, said in cases.items():
        project.write(stack(dump))
        failed = project.persist("backup", "--name", "broken")
        assert failed.returncode == 1, (dump, failed.stdout, failed.stderr)
        assert said in failed.stderr, (dump, failed.stderr)
        assert "wrong" not in failed.stderr.replace("PGPASSWORD=wrong", "")  # the stderr of the tool, not argv
        assert snapshots(project) == [], dump
        assert not (project.store / project.name / "broken").exists()


def test_a_stopped_service_has_its_files_copied_instead(project: ComposeProject) -> None:
    project.write(stack())
    project.compose("up", "-d", "--wait")
    project.compose("stop", "db")
    done = project.persist("backup", "--name", "cold")
    assert done.returncode == 0, done.stderr
    assert "db is not running: its volume pgdata is copied instead of dumped" in done.stderr
    manifest = json.loads((project.store / project.name / "cold" / "manifest.json").read_text())
    assert [(v["key"], v["kind"]) for v in manifest["volumes"]] == [("pgdata", "volume")]


def test_a_dump_restore_killed_midway_is_marked_and_finished_by_running_it_again(project: ComposeProject) -> None:
    project.write(stack())
    project.compose("up", "-d", "--wait")
    psql(project, "create database app", database="postgres")
    psql(project, "create table t (id bigserial primary key, at timestamptz default clock_timestamp())")
    psql(project, "insert into t select from generate_series(1, 5000)")
    assert project.persist("backup", "--name", "base").returncode == 0
    psql(project, "insert into t select from generate_series(1, 100)")

    killed = project.persist("restore", "base", "--yes", env={"DOCKER_PERSIST_CRASH_AT": "restore:extracting"})
    assert killed.returncode == 255, killed.stdout + killed.stderr  # the docker CLI, when its plugin is killed
    # Half-loaded: marked on the engine, and the service is not started on it.
    checked = project.persist("check", "--format", "json")
    assert "DP018" in {f["rule"] for f in json.loads(checked.stdout)["findings"]}
    helpers = project.docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.project={project.name}",
                                 "--filter", "label=io.docker-persist.role=helper").stdout.split()  # fmt: skip
    assert helpers, "the database the dump was loading into is left running"

    again = project.persist("restore", "base", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    project.compose("up", "-d", "--wait")
    assert psql(project, "select count(*), max(id) from t") == "5000|5000"
    left = project.docker.run("ps", "-aq", "--filter", f"label=io.docker-persist.project={project.name}",
                              "--filter", "label=io.docker-persist.role=helper").stdout.split()  # fmt: skip
    assert left == []


def test_a_backup_killed_after_its_dump_publishes_nothing(project: ComposeProject) -> None:
    project.write(stack())
    project.compose("up", "-d", "--wait")
    killed = project.persist("backup", "--name", "cut", env={"DOCKER_PERSIST_CRASH_AT": "backup:dumped"})
    assert killed.returncode == 255, killed.stdout + killed.stderr  # the docker CLI, when its plugin is killed
    assert snapshots(project) == []
    done = project.persist("backup", "--name", "whole")
    assert done.returncode == 0, done.stderr
    assert snapshots(project) == ["whole"]


MARIADB = """
name: {project}
services:
  db:
    image: docker-persist-test/mariadb:10.11
    network_mode: none
    environment:
      MARIADB_ROOT_PASSWORD: "it's-s3cret"
    volumes:
      - dbdata:/var/lib/mysql
    healthcheck:
      test: ["CMD-SHELL", "MYSQL_PWD=\\"$$MARIADB_ROOT_PASSWORD\\" mariadb -uroot -e 'select 1'"]
      interval: 1s
      timeout: 3s
      retries: 60
    x-persist:
      dump: auto
      verify: >-
        test "$(MYSQL_PWD="$$MARIADB_ROOT_PASSWORD" mariadb -uroot -N
        -e 'select count(*) = max(id) from app.t')" = 1
volumes:
  dbdata:
    x-persist: {protect: false}
"""


def sql(project: ComposeProject, statement: str) -> str:
    done = project.compose("exec", "-T", "db", "sh", "-c",
                           f'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N -B -e "{statement}"')  # fmt: skip
    return done.stdout.strip()


def test_a_hot_mariadb_dump_is_consistent_restores_and_drills(project: ComposeProject) -> None:
    project.write(MARIADB)
    project.compose("up", "-d", "--wait")
    sql(project, "create database app; create table app.t (id bigint auto_increment primary key, at datetime(6))")
    before = started_at(project)
    insert = ('export MYSQL_PWD="$MARIADB_ROOT_PASSWORD"; while true; do '
              'mariadb -uroot -e "insert into app.t (at) values (now(6))" || echo FAILED; done')  # fmt: skip
    _, rows_before, rows_after = backup_under_writes(
        project, insert, lambda: sql(project, "select count(*) from app.t")
    )
    assert started_at(project) == before
    assert "it's-s3cret" not in (project.store / project.name / "hot" / "manifest.json").read_text()

    verified = project.persist("verify", "hot", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    (result,) = json.loads(verified.stdout)["results"]
    assert result["ok"] and "verify command passed" in result["detail"], result

    restored = project.persist("restore", "hot", "--yes")
    assert restored.returncode == 0, restored.stderr
    project.compose("up", "-d", "--wait")
    count, highest = (int(x) for x in sql(project, "select count(*), max(id) from app.t").split())
    assert count == highest, (count, highest)  # one transaction's view: no row missing
    assert rows_before <= count <= rows_after, (rows_before, count, rows_after)
