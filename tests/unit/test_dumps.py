"""Logical dumps: which service and volume, which commands (pure), and backup, restore and verify of a dump on the
in-memory engine and store, where the database is a fake that keeps what it was fed."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from docker_persist.actions.backup import BackupRequest, DumpFailedError, backup
from docker_persist.actions.catalog import read_manifest
from docker_persist.actions.common import IntegrityError
from docker_persist.actions.dumps import DumpLoadError
from docker_persist.actions.restore import RestoreRequest, restore
from docker_persist.actions.verify import verify
from docker_persist.config.model import DumpPolicy, Mount, Project, Service, ServicePolicy, Volume, VolumePolicy
from docker_persist.core.dumps import dump_for_volume, dump_key, dump_spec, dump_specs, dumped_volume
from docker_persist.engine.memory import MemContainer
from docker_persist.errors import ConfigError
from tests.unit.fakes import PROJECT, VOLUME, Bed, make_bed


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("docker_persist.actions.dumps.READY_POLL", 0.0)


DUMP = b"CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (2), (3);\n" * 1000


def db_project(image: str = "postgres:16", dump: DumpPolicy | None = None, target: str = "/var/lib/postgresql/data",
               extra: tuple[Mount, ...] = ()) -> Project:  # fmt: skip
    service = Service(
        name="app",
        image=image,
        mounts=(Mount(type="volume", target=target, source="data"), *extra),
        policy=ServicePolicy(dump=dump or DumpPolicy(), verify="check-rows"),
        environment={"POSTGRES_PASSWORD": "pw"},
    )
    volumes = {"data": Volume("data", VOLUME, policy=VolumePolicy()), "logs": Volume("logs", "shop_logs")}
    return Project(PROJECT, "/srv/shop", (service,), volumes)


# --- which dump, which volume (pure) ----------------------------------------------------------------


def test_auto_takes_the_known_image_s_commands_and_the_volume_on_its_data_path() -> None:
    extra = (Mount(type="volume", target="/logs", source="logs"),)
    spec = dump_spec(db_project(extra=extra), db_project(extra=extra).services[0])
    assert spec is not None
    assert (spec.service, spec.volume, spec.target, spec.key) == (
        "app",
        "data",
        "/var/lib/postgresql/data",
        "data.dump",
    )
    assert "pg_dumpall" in spec.command and "psql" in spec.restore and "pg_isready" in spec.ready
    for script in (spec.command, spec.restore, spec.ready):
        assert "pw" not in script and "$POSTGRES_PASSWORD" in script  # read inside the container, never inlined
    mysql = db_project("mariadb:11", target="/var/lib/mysql")
    my = dump_spec(mysql, mysql.services[0])
    assert my is not None and "--single-transaction" in my.command and "MYSQL_PWD" in my.command


def test_explicit_commands_and_volume() -> None:
    policy = DumpPolicy(command="my-dump", restore="my-load", volume="data", also_volume=True)
    project = db_project("acme/custom:1", policy, target="/srv")
    spec = dump_spec(project, project.services[0])
    assert spec is not None
    assert (spec.command, spec.restore, spec.ready, spec.also_volume) == ("my-dump", "my-load", "true", True)


@pytest.mark.parametrize(
    ("image", "policy", "target", "message"),
    [
        ("acme/custom:1", DumpPolicy(), "/srv", "has no command, and image 'acme/custom:1' is not one"),
        ("acme/custom:1", DumpPolicy(command="x"), "/srv", "has no restore"),
        ("postgres:16", DumpPolicy(volume="nope"), "/var/lib/postgresql/data", "say which with dump: {volume: KEY}"),
    ],
)
def test_what_cannot_be_told_is_a_config_error(image: str, policy: DumpPolicy, target: str, message: str) -> None:
    project = db_project(image, policy, target)
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        dump_spec(project, project.services[0])


def test_a_service_with_two_volumes_and_no_data_path_must_say_which() -> None:
    extra = (Mount(type="volume", target="/logs", source="logs"),)
    project = db_project("acme/custom:1", DumpPolicy(command="d", restore="r"), "/srv", extra)
    with pytest.raises(ConfigError, match="the service mounts: data, logs"):
        dump_spec(project, project.services[0])


def test_two_services_dumping_one_volume_are_refused() -> None:
    project = db_project()
    twin = dataclasses.replace(project.services[0], name="twin")
    with pytest.raises(ConfigError, match="two services dump volume 'data'"):
        dump_specs(dataclasses.replace(project, services=(*project.services, twin)))


def test_keys() -> None:
    assert dump_key("db_data") == "db_data.dump"
    assert dumped_volume("db_data.dump") == "db_data"
    assert dumped_volume("db_data") == "db_data"
    assert dump_for_volume(db_project(), "data") is not None
    assert dump_for_volume(db_project(), "logs") is None


# --- backup, restore and verify on the in-memory engine ---------------------------------------------


class FakeDatabase:
    """What exec'd commands see: the dump script prints DUMP, the restore script keeps its stdin, the ready script
    fails `not_ready` times first, the verify command checks what was loaded."""

    def __init__(self, dump: bytes = DUMP, code: int = 0) -> None:
        self.dump, self.code = dump, code
        self.loaded: dict[str, bytes] = {}  # container -> what its restore read
        self.not_ready = 2
        self.calls: list[tuple[str, str]] = []

    def __call__(self, container: MemContainer, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, bytes, str]:
        script = argv[-1]
        kind = ("dump" if "pg_dumpall" in script else "restore" if "psql -X -q" in script
                else "ready" if "pg_isready" in script else script)  # fmt: skip
        self.calls.append((container.name, kind))
        if kind == "dump":
            return self.code, self.dump, "pg_dumpall: error: boom" if self.code else ""
        if kind == "restore":
            assert stdin is not None
            self.loaded[container.id] = stdin
            return 0, b"", ""
        if kind == "ready":
            self.not_ready -= 1
            return (1, b"", "no response") if self.not_ready >= 0 else (0, b"", "")
        if kind == "check-rows":
            return (0, b"", "") if self.loaded.get(container.id) == DUMP else (1, b"", "rows missing")
        return 127, b"", f"{script}: not found"


def held(bed: Bed, path: str) -> bytes | None:
    """Return the content of a file of the project's volume, None if it has none."""
    node = bed.engine.volumes[VOLUME].files.get(path)
    return None if node is None else bytes(node.data)


def dump_bed(tmp_path: Path, database: FakeDatabase) -> Bed:
    bed = make_bed(tmp_path)
    bed.project = db_project()
    bed.compose.project = bed.project
    bed.engine.images.add("postgres:16")
    bed.engine.on_exec_stream = database
    return bed


def test_backup_streams_the_dump_of_the_running_service_and_copies_nothing(tmp_path: Path) -> None:
    database = FakeDatabase()
    bed = dump_bed(tmp_path, database)
    starts = [c.starts for c in bed.engine.containers.values()]
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="hot")).manifest
    (record,) = manifest.volumes
    assert (record.key, record.kind, record.file, record.bytes) == ("data.dump", "dump", "data.dump.sql.zst", len(DUMP))
    assert record.content_digest == "sha256:" + hashlib.sha256(DUMP).hexdigest()
    assert sorted(bed.store.snapshots[PROJECT]["hot"]) == ["data.dump.sql.zst", "manifest.json"]
    assert [c.starts for c in bed.engine.containers.values()] == starts and bed.app() == "running"
    app = bed.engine.containers[next(iter(bed.engine.containers))].name
    # It waits until the database answers (it may be initialising), then dumps.
    assert database.calls == [(app, "ready"), (app, "ready"), (app, "ready"), (app, "dump")]


def test_also_volume_saves_the_files_beside_the_dump(tmp_path: Path) -> None:
    bed = dump_bed(tmp_path, FakeDatabase())
    service = dataclasses.replace(bed.project.services[0], policy=ServicePolicy(dump=DumpPolicy(also_volume=True)))
    bed.project = dataclasses.replace(bed.project, services=(service,))
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="both")).manifest
    assert sorted((r.key, r.kind) for r in manifest.volumes) == [("data", "volume"), ("data.dump", "dump")]


@pytest.mark.parametrize(
    ("dump", "code", "message"),
    [(DUMP, 1, r"failed \(exit 1\): pg_dumpall: error: boom"), (b"", 0, "printed nothing"),
     (b"partial", 137, r"exit 137, killed")],
)  # fmt: skip
def test_a_failed_dump_publishes_nothing(tmp_path: Path, dump: bytes, code: int, message: str) -> None:
    bed = dump_bed(tmp_path, FakeDatabase(dump, code))
    with pytest.raises(DumpFailedError, match=message):
        backup(bed.workspace(), bed.store, BackupRequest(name="bad"))
    assert bed.store.snapshots.get(PROJECT, {}) == {} and bed.store.pending == {}


def test_a_stopped_service_has_its_files_copied(tmp_path: Path) -> None:
    bed = dump_bed(tmp_path, FakeDatabase())
    for container in bed.engine.containers.values():
        container.state = "exited"
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="cold")).manifest
    assert [(r.key, r.kind) for r in manifest.volumes] == [("data", "volume")]


def test_restore_loads_the_dump_into_a_fresh_volume_through_a_container_of_the_image(tmp_path: Path) -> None:
    database = FakeDatabase()
    bed = dump_bed(tmp_path, database)
    backup(bed.workspace(), bed.store, BackupRequest(name="hot"))
    database.not_ready, database.calls = 2, []
    result = restore(bed.workspace(), bed.store, RestoreRequest("hot"))
    assert result.volumes == (("data", VOLUME),)
    assert list(database.loaded.values()) == [DUMP]
    assert [kind for _, kind in database.calls] == ["ready", "ready", "ready", "restore"]  # waited until it answered
    assert result.undo is not None  # what the volume held was saved first, as files
    undo = read_manifest(bed.store, PROJECT, result.undo)
    assert [(r.key, r.kind) for r in undo.volumes] == [("data", "volume")]
    assert held(bed, "notes.txt") is None  # made again from the dump alone
    assert bed.leftovers() == []
    assert bed.app() == "running"


def test_restore_prefers_the_files_and_takes_the_dump_when_asked(tmp_path: Path) -> None:
    database = FakeDatabase()
    bed = dump_bed(tmp_path, database)
    service = dataclasses.replace(bed.project.services[0], policy=ServicePolicy(dump=DumpPolicy(also_volume=True)))
    bed.project = dataclasses.replace(bed.project, services=(service,))
    backup(bed.workspace(), bed.store, BackupRequest(name="both"))
    restore(bed.workspace(), bed.store, RestoreRequest("both"))
    assert database.loaded == {}
    assert held(bed, "notes.txt") == b"precious data\n"
    restore(bed.workspace(), bed.store, RestoreRequest("both", dump=True))
    assert list(database.loaded.values()) == [DUMP]


def test_a_tampered_dump_is_refused_before_the_volume_is_touched(tmp_path: Path) -> None:
    bed = dump_bed(tmp_path, FakeDatabase())
    backup(bed.workspace(), bed.store, BackupRequest(name="hot"))
    part = bed.store.snapshots[PROJECT]["hot"]
    part["data.dump.sql.zst"] = part["data.dump.sql.zst"][:-10] + b"0123456789"
    with pytest.raises(IntegrityError):
        restore(bed.workspace(), bed.store, RestoreRequest("hot"))
    assert held(bed, "notes.txt") == b"precious data\n"
    assert bed.app() == "running"


def test_a_restore_command_that_fails_leaves_the_volume_marked(tmp_path: Path) -> None:
    database = FakeDatabase()
    bed = dump_bed(tmp_path, database)
    backup(bed.workspace(), bed.store, BackupRequest(name="hot"))

    def failing(container: MemContainer, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, bytes, str]:
        if "psql -X -q" in argv[-1]:
            return 3, b"", "ERROR:  syntax error at line 7"
        return database(container, argv, stdin)

    bed.engine.on_exec_stream = failing
    with pytest.raises(DumpLoadError, match="syntax error at line 7"):
        restore(bed.workspace(), bed.store, RestoreRequest("hot"))
    from docker_persist.engine.markers import incomplete_volumes

    assert incomplete_volumes(bed.engine, PROJECT) == {VOLUME: "hot"}
    assert not [c for c in bed.engine.containers.values() if c.labels.get("io.docker-persist.role") == "helper"]
    bed.engine.on_exec_stream = database
    restore(bed.workspace(), bed.store, RestoreRequest("hot"))  # running it again finishes it
    assert incomplete_volumes(bed.engine, PROJECT) == {}


def test_a_snapshot_s_dump_needs_a_service_that_dumps_that_volume(tmp_path: Path) -> None:
    bed = dump_bed(tmp_path, FakeDatabase())
    backup(bed.workspace(), bed.store, BackupRequest(name="hot"))
    plain = dataclasses.replace(bed.project.services[0], policy=ServicePolicy())
    bed.project = dataclasses.replace(bed.project, services=(plain,))
    with pytest.raises(ConfigError, match=r"no service of project 'shop' sets x-persist\.dump for it"):
        restore(bed.workspace(), bed.store, RestoreRequest("hot"))


def test_verify_loads_the_dump_on_a_scratch_volume_and_runs_the_verify_command_there(tmp_path: Path) -> None:
    database = FakeDatabase()
    bed = dump_bed(tmp_path, database)
    backup(bed.workspace(), bed.store, BackupRequest(name="hot"))
    ((_, result),) = verify(bed.workspace(), bed.store, ["hot"])
    assert result.ok, result.detail
    assert "verify command passed (check-rows)" in result.detail
    assert result.volumes == ("data",)
    assert bed.leftovers() == []
    assert held(bed, "notes.txt") == b"precious data\n"  # the drill never touches the volume


def test_errors_keep_no_statement_echo_nor_password_hash() -> None:
    from docker_persist.actions.dumps import redact

    psql = (
        'psql:<stdin>:36: ERROR:  syntax error at or near "ALTR"\n'
        "LINE 1: ALTER ROLE \"postgres\" WITH PASSWORD 'SCRAM-SHA-256$4096:abc=$def:ghi=';\n"
        "        ^\n"
    )
    assert redact(psql) == 'psql:<stdin>:36: ERROR:  syntax error at or near "ALTR"'
    mysql = "ERROR 1064 (42000) at line 7: syntax; check the manual near 'IDENTIFIED BY PASSWORD '*0123' at line 1"
    assert redact(mysql) == "ERROR 1064 (42000) at line 7: syntax; check the manual near (statement left out)"
    assert redact("md5" + "0" * 32) == "(hash)"
