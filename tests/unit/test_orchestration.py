"""The actions layer (backup, restore, down, up, quiesce, verify, copy, pin, forget), driven on the in-memory
engine and store, and the Compose provider's pure decisions.

Every test asserts on what the fakes hold afterwards (the files of each volume, the snapshots in the
store, the state of each container, the journal), and on the exact error a refusal raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from docker_persist.actions import backup as backup_module
from docker_persist.actions.backup import BackupRequest, backup, select_volumes
from docker_persist.actions.catalog import list_manifests, read_manifest, volume_read_digest
from docker_persist.actions.common import IntegrityError, Workspace
from docker_persist.actions.copy import copy_snapshot
from docker_persist.actions.down import DownRequest, down
from docker_persist.actions.forget import forget, forget_names
from docker_persist.actions.pin import set_pinned
from docker_persist.actions.protect import protect
from docker_persist.actions.quiesce import (
    HookFailedError,
    QuiescePlan,
    RestartFailedError,
    plan_quiesce,
    quiesced,
    unescape_compose,
)
from docker_persist.actions.recover import UnfinishedOperationError
from docker_persist.actions.restore import RestoreRequest, restore
from docker_persist.actions.up import prepare_volumes
from docker_persist.actions.verify import verify
from docker_persist.cli.provider import (
    METADATA,
    Invocation,
    Messages,
    read_parent_invocation,
    removes_volumes,
    split_provider_args,
)
from docker_persist.config.model import (
    KeepPolicy,
    Mount,
    Project,
    ProjectPolicy,
    Service,
    ServicePolicy,
    Volume,
    VolumePolicy,
)
from docker_persist.core.composeargs import parse_compose_command
from docker_persist.core.manifest import Manifest, ServiceRecord, automatic_name, dump_manifest
from docker_persist.core.planner import DEFAULT_LAYER_THRESHOLD
from docker_persist.core.state import LiveState
from docker_persist.engine import COMPOSE_PROJECT, COMPOSE_SERVICE, COMPOSE_VOLUME, EngineConflictError
from docker_persist.engine.markers import incomplete_volumes, mark_incomplete
from docker_persist.engine.memory import MemContainer, MemoryEngine, Node
from docker_persist.errors import ConfigError, PersistError, SnapshotNotFoundError, UnsafeOperationError
from docker_persist.host.journal import LOCK_TOKEN_ENV, Journal
from docker_persist.store import SnapshotExistsError
from docker_persist.store.memory import MemoryStore
from docker_persist.streams.compression import iter_decompressed
from docker_persist.units import format_bytes
from tests.unit.fakes import PROJECT, VOLUME, Bed, FakeCompose, make_bed, make_project

Files = dict[str, tuple[object, ...]]
LOGS = "shop_logs"
CACHE = "shop_cache"
QUIESCING = ("exec_in_container", "stop_container", "start_container", "pause_container", "unpause_container")
DESTRUCTIVE = ("remove_container", "remove_volume", "create_volume", "stop_container", "extract_volume_archive")


# --- helpers -----------------------------------------------------------------------------------------


def reproject(bed: Bed, project: Project) -> Bed:
    """Return the bed with another project (the same engine, store and journal)."""
    return dataclasses.replace(bed, project=project, compose=FakeCompose(bed.engine, project))


def with_policy(bed: Bed, consistency: str, pre: Sequence[str] = (), post: Sequence[str] = ()) -> Bed:
    """Return the bed with the app service's x-persist replaced."""
    service = dataclasses.replace(bed.project.services[0], policy=ServicePolicy(consistency, tuple(pre), tuple(post)))
    return reproject(bed, dataclasses.replace(bed.project, services=(service,)))


def with_on_down(bed: Bed, on_down: str) -> Bed:
    return reproject(bed, dataclasses.replace(bed.project, policy=ProjectPolicy(on_down=on_down)))


def make_multi_bed(tmp_path: Path) -> Bed:
    """Three volumes: `data` and `logs` precious, `cache` not; `app` mounts data and cache, `worker` logs."""
    bed = make_bed(tmp_path)
    volumes = {
        "data": bed.project.volumes["data"],
        "logs": Volume(key="logs", name=LOGS, policy=VolumePolicy()),
        "cache": Volume(key="cache", name=CACHE),
    }
    app = Service(
        "app", "app-image", (Mount("volume", "/data", "data"), Mount("volume", "/cache", "cache")), policy=None
    )
    worker = Service("worker", "app-image", (Mount("volume", "/logs", "logs"),))
    for key, name in (("logs", LOGS), ("cache", CACHE)):
        bed.engine.add_volume(name, {COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: key})
        bed.engine.write(name, f"{key}.txt", f"{key} content\n".encode())
    container(bed, "app").mounts[CACHE] = "/cache"
    bed.engine.add_compose_container(PROJECT, "worker", {LOGS: "/logs"})
    return reproject(bed, Project(PROJECT, "/srv/shop", (app, worker), volumes))


def container(bed: Bed, service: str) -> MemContainer:
    (found,) = [c for c in bed.engine.containers.values() if c.labels.get(COMPOSE_SERVICE) == service]
    return found


def state_of(bed: Bed, service: str) -> str:
    return container(bed, service).state


def snapshot_names(bed: Bed) -> list[str]:
    return bed.store.list_snapshots(PROJECT)


def manifests(bed: Bed, reason: str | None = None) -> list[Manifest]:
    return [m for m in list_manifests(bed.store, PROJECT) if reason is None or m.reason == reason]


def files_of_snapshot(bed: Bed, name: str, key: str = "data") -> Files:
    """Restore one volume of a snapshot aside, into a new volume, and return its files."""
    aside = f"aside-{name}-{key}"
    restore(bed.workspace(), bed.store, RestoreRequest(name, (key,), to=aside))
    files = bed.engine.files(aside)
    del bed.engine.volumes[aside]
    return files


def part_members(bed: Bed, name: str, filename: str, compression: str = "zstd") -> dict[str, bytes | None]:
    """Decompress a stored part and return its tar entries (name -> data for files, None otherwise)."""
    stored = bed.store.snapshots[PROJECT][name][filename]
    data = b"".join(iter_decompressed(compression, iter([stored])))
    members: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            extracted = archive.extractfile(member) if member.isreg() else None
            members[member.name] = extracted.read() if extracted is not None else None
    return members


def spy_reads(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record (volume, the app's state) each time a volume is read through the engine."""
    seen: list[tuple[str, str]] = []
    original = bed.engine.volume_archive

    def spying(volume: str, project: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        seen.append((volume, bed.app()))
        return original(volume, project)

    monkeypatch.setattr(bed.engine, "volume_archive", spying)
    return seen


def record_exec(engine: MemoryEngine, results: dict[str, tuple[int, str]] | None = None) -> list[str]:
    """Make exec in a container log `service: command` and answer from `results` (default: exit 0)."""
    log: list[str] = []

    def on_exec(target: MemContainer, command: str) -> tuple[int, str]:
        log.append(f"{target.labels.get(COMPOSE_SERVICE)}: {command}")
        return (results or {}).get(command, (0, ""))

    engine.on_exec = on_exec
    return log


def quiescing(engine: MemoryEngine) -> list[str]:
    return [call for call in engine.calls if call in QUIESCING]


def touched(engine: MemoryEngine) -> list[str]:
    return [call for call in engine.calls if call in DESTRUCTIVE]


def live(bed: Bed, threshold: int = DEFAULT_LAYER_THRESHOLD) -> Callable[[], LiveState]:
    def read() -> LiveState:
        return LiveState(
            now=datetime.datetime.now(datetime.timezone.utc),
            containers=tuple(bed.engine.list_project_containers(PROJECT, changes_above=threshold)),
            volumes=bed.engine.list_volumes(with_sizes=True),
            guards=tuple(bed.engine.list_guards(PROJECT)),
        )

    return read


def compose_down(bed: Bed, volumes: bool, calls: list[dict[str, str]] | None = None) -> Callable[[dict[str, str]], int]:
    """What `docker compose down [-v]` does to the engine: remove the project's containers, then (with -v) its
    volumes; exit 1 when the engine refuses to remove one."""

    def run(environ: dict[str, str]) -> int:
        if calls is not None:
            calls.append(environ)
        for c in list(bed.engine.containers.values()):
            if c.labels.get(COMPOSE_PROJECT) == PROJECT:
                bed.engine.remove_container(c.id)
        if volumes:
            for name, volume in list(bed.engine.volumes.items()):
                if volume.labels.get(COMPOSE_PROJECT) == PROJECT:
                    try:
                        bed.engine.remove_volume(name)
                    except EngineConflictError:
                        return 1
        return 0

    return run


def remove_project(bed: Bed) -> None:
    """What `docker compose down -v` left: no container and no volume of the project."""
    for c in list(bed.engine.containers.values()):
        bed.engine.remove_container(c.id)
    bed.engine.remove_volume(VOLUME)


def empty_volume(bed: Bed) -> None:
    """What `docker compose up` makes before the provider runs: the volume, empty, and no container yet."""
    for c in list(bed.engine.containers.values()):
        bed.engine.remove_container(c.id)
    bed.engine.volumes[VOLUME].files = {".": Node("dir", 0o755)}


def tamper(bed: Bed, name: str, **changes: object) -> None:
    """Rewrite a snapshot's manifest with its first volume record changed."""
    manifest = read_manifest(bed.store, PROJECT, name)
    record = dataclasses.replace(manifest.volumes[0], **changes)  # type: ignore[arg-type]
    bed.store.replace_manifest(PROJECT, name, dump_manifest(dataclasses.replace(manifest, volumes=(record,))))


class Clock:
    """A stand-in for now_utc: starts at `start` and moves `step` at each reading."""

    def __init__(self, step: datetime.timedelta) -> None:
        self.now = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
        self.step = step

    def __call__(self) -> datetime.datetime:
        value = self.now
        self.now += self.step
        return value


def use_clock(monkeypatch: pytest.MonkeyPatch, step: datetime.timedelta) -> Clock:
    clock = Clock(step)
    monkeypatch.setattr(backup_module, "now_utc", clock)
    return clock


def changed_after_base(bed: Bed) -> tuple[Files, Files]:
    """Take snapshot `base`, then change the data (a file added, one deleted, one edited): (base, changed)."""
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    bed.engine.write(VOLUME, "added", b"only after base\n")
    del bed.engine.volumes[VOLUME].files["notes.txt"]
    bed.engine.write(VOLUME, "dir/big", b"edited\n", mode=0o600)
    return base, bed.engine.files(VOLUME)


# --- backup ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "services", "expected"),
    [
        ((), (), ["data", "logs"]),  # every precious volume, never the others
        (("cache",), (), ["cache"]),  # named, precious or not
        (("shop_logs",), (), ["logs"]),  # by the engine's name
        ((), ("worker",), ["logs"]),  # the volumes a service mounts
        (("logs",), ("app",), ["logs", "data", "cache"]),
    ],
)
def test_backup_publishes_one_part_per_selected_volume(
    tmp_path: Path, keys: tuple[str, ...], services: tuple[str, ...], expected: list[str]
) -> None:
    bed = make_multi_bed(tmp_path)
    result = backup(bed.workspace(), bed.store, BackupRequest(volume_keys=keys, services=services, name="s"))
    assert [v.key for v in result.manifest.volumes] == expected
    parts = [f"{k}.tar.zst" for k in expected] + [f"{k}.index.zst" for k in expected]
    assert sorted(bed.store.snapshots[PROJECT]["s"]) == sorted(["manifest.json", *parts])
    assert bed.store.pending == {}


def test_backup_manifest_describes_what_the_volume_holds(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    held = volume_read_digest(bed.engine, PROJECT, VOLUME)
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="base")).manifest
    assert (manifest.name, manifest.project, manifest.reason, manifest.pinned) == ("base", PROJECT, "manual", False)
    assert manifest.services == (ServiceRecord("app", "none"),)
    (record,) = manifest.volumes
    part = bed.store.snapshots[PROJECT]["base"]["data.tar.zst"]
    assert (record.key, record.source, record.kind, record.file, record.compression) == (
        "data",
        VOLUME,
        "volume",
        "data.tar.zst",
        "zstd",
    )
    assert record.labels == {COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: "data"}
    assert record.archive_bytes == len(part) and record.archive_sha256 == hashlib.sha256(part).hexdigest()
    assert record.content_digest == held.digest
    assert (record.files, record.directories, record.symlinks, record.entries) == (2, 2, 0, 4)
    assert record.bytes == len(b"precious data\n") + 256 * 400
    assert record.root is not None and (record.root.mode, record.root.uid, record.root.gid) == (0o755, 0, 0)
    # The part holds the volume's files, and nothing else.
    members = part_members(bed, "base", "data.tar.zst")
    assert members == {
        ".": None,
        "./dir": None,
        "./dir/big": bytes(range(256)) * 400,
        "./notes.txt": b"precious data\n",
    }
    # The manifest in the store is the one returned.
    assert read_manifest(bed.store, PROJECT, "base") == manifest


def test_backup_content_digest_changes_with_the_content(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    first = backup(bed.workspace(), bed.store, BackupRequest(name="one")).manifest.volumes[0]
    bed.engine.volumes[VOLUME].files["notes.txt"].mode = 0o600  # metadata only
    second = backup(bed.workspace(), bed.store, BackupRequest(name="two")).manifest.volumes[0]
    assert first.content_digest != second.content_digest
    assert second.content_digest == volume_read_digest(bed.engine, PROJECT, VOLUME).digest


@pytest.mark.parametrize(("compression", "suffix"), [("gzip", ".tar.gz"), ("none", ".tar"), ("zstd", ".tar.zst")])
def test_backup_compression_override_round_trips(tmp_path: Path, compression: str, suffix: str) -> None:
    bed = make_bed(tmp_path)
    base = bed.engine.files(VOLUME)
    record = backup(bed.workspace(), bed.store, BackupRequest(name="c", compression=compression)).manifest.volumes[0]
    assert (record.file, record.compression) == (f"data{suffix}", compression)
    assert part_members(bed, "c", record.file, compression)["./notes.txt"] == b"precious data\n"
    assert files_of_snapshot(bed, "c") == base


@pytest.mark.parametrize(
    ("consistency", "during", "calls"),
    [
        ("stop", "exited", ["stop_container", "start_container"]),
        ("pause", "paused", ["pause_container", "unpause_container"]),
        ("none", "running", []),
    ],
)
def test_backup_quiesces_by_consistency_and_brings_the_service_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, consistency: str, during: str, calls: list[str]
) -> None:
    bed = make_bed(tmp_path, consistency=consistency)
    starts = container(bed, "app").starts
    seen = spy_reads(bed, monkeypatch)
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="q")).manifest
    assert seen == [(VOLUME, during)]
    assert quiescing(bed.engine) == calls
    assert bed.app() == "running"
    assert container(bed, "app").starts == starts + (1 if consistency == "stop" else 0)
    assert manifest.services == (ServiceRecord("app", consistency),)
    record = bed.journal.read()
    assert (record.stopped, record.paused, record.operation) == ([], [], None)


def test_backup_without_quiesce_leaves_the_service_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = with_policy(make_bed(tmp_path), "stop", pre=["dump"])
    log = record_exec(bed.engine)
    seen = spy_reads(bed, monkeypatch)
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="q", quiesce=False)).manifest
    assert seen == [(VOLUME, "running")]
    assert log == [] and quiescing(bed.engine) == []
    assert manifest.services == ()


def test_backup_runs_hooks_around_the_stop_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = with_policy(make_bed(tmp_path), "stop", pre=["pg_dump -f $$HOME/dump"], post=["rm dump"])
    log = record_exec(bed.engine)
    seen = spy_reads(bed, monkeypatch)
    manifest = backup(bed.workspace(), bed.store, BackupRequest(name="h")).manifest
    assert log == ["app: pg_dump -f $HOME/dump", "app: rm dump"]  # `$$` is how `compose config` prints `$`
    assert quiescing(bed.engine) == ["exec_in_container", "stop_container", "start_container", "exec_in_container"]
    assert seen == [(VOLUME, "exited")]
    assert manifest.services == (ServiceRecord("app", "stop", ("pg_dump -f $$HOME/dump",), ("rm dump",)),)


def test_a_failing_pre_hook_aborts_the_backup_with_nothing_published(tmp_path: Path) -> None:
    bed = with_policy(make_bed(tmp_path), "stop", pre=["dump"], post=["cleanup"])
    output = "\n".join(f"line {n}" for n in range(1, 8))
    log = record_exec(bed.engine, {"dump": (3, output)})
    with pytest.raises(HookFailedError) as failed:
        backup(bed.workspace(), bed.store, BackupRequest(name="h"))
    assert str(failed.value) == (
        "pre hook of service 'app' exited 3: dump\n  line 3\n  line 4\n  line 5\n  line 6\n  line 7"
    )
    assert "stop_container" not in bed.engine.calls  # the hook runs before the stop; it failed, so no stop
    assert log == ["app: dump", "app: cleanup"]  # post hooks still run
    assert bed.app() == "running"
    assert snapshot_names(bed) == [] and bed.store.pending == {}
    assert bed.journal.read().is_empty()


def test_a_failing_post_hook_fails_the_backup_after_the_service_is_back(tmp_path: Path) -> None:
    bed = with_policy(make_bed(tmp_path), "stop", post=["cleanup"])
    record_exec(bed.engine, {"cleanup": (1, "")})
    with pytest.raises(HookFailedError, match=r"^post hook of service 'app' exited 1: cleanup$"):
        backup(bed.workspace(), bed.store, BackupRequest(name="h"))
    assert bed.app() == "running"
    assert snapshot_names(bed) == [] and bed.store.pending == {}


def test_a_failure_while_reading_restarts_the_service_and_publishes_nothing(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    bed.engine.fail_next["volume_archive"] = PersistError("the engine went away")
    with pytest.raises(PersistError, match="the engine went away"):
        backup(bed.workspace(), bed.store, BackupRequest(name="r"))
    assert bed.app() == "running"
    assert snapshot_names(bed) == [] and bed.store.pending == {}
    assert bed.journal.read().is_empty()


def test_a_store_that_fails_to_publish_leaves_nothing_and_the_service_running(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, consistency="pause")
    bed.store.fail_next["publish"] = PersistError("no space left on device")
    with pytest.raises(PersistError, match="no space left"):
        backup(bed.workspace(), bed.store, BackupRequest(name="r"))
    assert bed.app() == "running"
    assert snapshot_names(bed) == [] and bed.store.pending == {}


def test_backup_to_an_existing_name_raises_and_publishes_nothing(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    before = dict(bed.store.snapshots[PROJECT]["base"])
    bed.engine.write(VOLUME, "notes.txt", b"newer\n")
    bed.engine.calls.clear()
    with pytest.raises(SnapshotExistsError) as refused:
        backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    assert str(refused.value) == "snapshot 'base' already exists in project 'shop': choose another --name"
    assert bed.store.snapshots[PROJECT] == {"base": before}
    assert bed.store.pending == {}
    assert "stop_container" not in bed.engine.calls and bed.app() == "running"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (BackupRequest(name="../escape"), "invalid snapshot name '../escape'"),
        (BackupRequest(volume_keys=("nope",)), "project 'shop' has no volume 'nope' (volumes: data)"),
        (BackupRequest(services=("db",)), "project 'shop' has no service 'db'"),
    ],
)
def test_backup_refuses_bad_input_before_touching_anything(
    tmp_path: Path, request_: BackupRequest, message: str
) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    with pytest.raises(ConfigError) as refused:
        backup(bed.workspace(), bed.store, request_)
    assert str(refused.value).startswith(message)
    assert bed.engine.calls == [] and snapshot_names(bed) == []


def test_backup_of_a_project_without_precious_volumes_is_a_config_error(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    plain = dataclasses.replace(bed.project.volumes["data"], policy=None)
    bed = reproject(bed, dataclasses.replace(bed.project, volumes={"data": plain}))
    with pytest.raises(ConfigError, match=r"^nothing to back up: no volume of project 'shop' is marked with x-persist"):
        backup(bed.workspace(), bed.store, BackupRequest())
    assert select_volumes(bed.project, ["data"]) == [plain]  # named, it is backed up


def test_automatic_names_are_unique_within_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = make_bed(tmp_path)
    clock = use_clock(monkeypatch, datetime.timedelta(0))
    first = backup(bed.workspace(), bed.store, BackupRequest()).manifest
    second = backup(bed.workspace(), bed.store, BackupRequest()).manifest
    scheduled = backup(bed.workspace(), bed.store, BackupRequest(reason="scheduled")).manifest
    stamp = automatic_name(clock.now, "manual")
    assert stamp == "2026-03-01T120000Z-manual"
    assert (first.name, second.name) == (stamp, f"{stamp}-2")
    assert (scheduled.name, scheduled.reason) == ("2026-03-01T120000Z-scheduled", "scheduled")
    assert first.created == clock.now


def test_a_pinned_backup_outlives_retention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = make_bed(tmp_path)
    use_clock(monkeypatch, datetime.timedelta(hours=1))
    assert backup(bed.workspace(), bed.store, BackupRequest(name="keep-me", pin=True)).manifest.pinned
    for name in ("old", "new"):
        backup(bed.workspace(), bed.store, BackupRequest(name=name))
    result = forget(bed.store, PROJECT, KeepPolicy(last=1), dry_run=False)
    assert sorted(d.snapshot.name for d in result.decisions if not d.keep) == ["old"]
    assert snapshot_names(bed) == ["keep-me", "new"]
    with pytest.raises(UnsafeOperationError, match="snapshot 'keep-me' is pinned: unpin it first"):
        forget_names(bed.store, PROJECT, ["new", "keep-me"], dry_run=False)
    assert snapshot_names(bed) == ["keep-me", "new"]  # nothing removed, not even `new`
    assert set_pinned(bed.store, PROJECT, ["keep-me", "new"], pinned=False) == [("keep-me", True), ("new", False)]
    assert forget_names(bed.store, PROJECT, ["keep-me"], dry_run=False) == ["keep-me"]
    assert snapshot_names(bed) == ["new"]


def test_backup_refuses_a_volume_that_holds_part_of_a_restore(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    mark_incomplete(bed.engine, VOLUME, PROJECT, "base")
    with pytest.raises(UnfinishedOperationError, match=r"^volume shop_data holds part of snapshot 'base'"):
        backup(bed.workspace(), bed.store, BackupRequest(name="after"))
    assert snapshot_names(bed) == [] and bed.store.pending == {}


# --- quiesce -----------------------------------------------------------------------------------------


def two_services(tmp_path: Path) -> Bed:
    """`app` (stop, hooks a-pre/a-post) and `worker` (pause, hooks w-pre/w-post) both mount `data`; `idle`
    mounts nothing."""
    bed = make_bed(tmp_path)
    data = (Mount("volume", "/data", "data"),)
    services = (
        Service("app", "app-image", data, policy=ServicePolicy("stop", ("a-pre",), ("a-post",))),
        Service("idle", "app-image", (), policy=ServicePolicy("stop")),
        Service("worker", "app-image", data, policy=ServicePolicy("pause", ("w-pre",), ("w-post",))),
    )
    bed.engine.add_compose_container(PROJECT, "worker", {VOLUME: "/data"})
    return reproject(bed, dataclasses.replace(bed.project, services=services))


def test_plan_quiesce_covers_the_services_that_mount_the_volumes_in_file_order(tmp_path: Path) -> None:
    bed = two_services(tmp_path)
    assert plan_quiesce(bed.project, ["data"]) == [
        QuiescePlan("app", "stop", ("a-pre",), ("a-post",)),
        QuiescePlan("worker", "pause", ("w-pre",), ("w-post",)),
    ]
    assert plan_quiesce(bed.project, ["other"]) == []
    no_policy = make_multi_bed(tmp_path / "multi").project  # app has no x-persist at all
    assert plan_quiesce(no_policy, ["cache"]) == [QuiescePlan("app", "none")]
    assert unescape_compose("echo $$HOME $PATH") == "echo $HOME $PATH"


def test_quiesced_runs_pre_hooks_stops_pauses_then_undoes_in_reverse(tmp_path: Path) -> None:
    bed = two_services(tmp_path)
    log = record_exec(bed.engine)
    app, worker = container(bed, "app"), container(bed, "worker")
    plans = plan_quiesce(bed.project, ["data"])
    with quiesced(bed.engine, PROJECT, plans, bed.said.append, bed.journal):
        assert (app.state, worker.state) == ("exited", "paused")
        assert (bed.journal.read().stopped, bed.journal.read().paused) == ([app.id], [worker.id])
        assert log == ["app: a-pre", "worker: w-pre"]
    assert log == ["app: a-pre", "worker: w-pre", "app: a-post", "worker: w-post"]
    assert quiescing(bed.engine) == [
        "exec_in_container",
        "exec_in_container",
        "stop_container",
        "pause_container",
        "unpause_container",  # undone in reverse
        "start_container",
        "exec_in_container",
        "exec_in_container",
    ]
    assert (app.state, worker.state) == ("running", "running")
    assert bed.journal.read().is_empty()
    assert bed.said == [
        "app: pre hook: a-pre",
        "worker: pre hook: w-pre",
        "app: stopping 1 container(s)",
        "worker: pausing 1 container(s)",
        "worker: unpaused again",
        "app: started again",
        "app: post hook: a-post",
        "worker: post hook: w-post",
    ]


def test_quiesced_with_consistency_none_only_runs_hooks(tmp_path: Path) -> None:
    bed = with_policy(make_bed(tmp_path), "none", pre=["sync"], post=["done"])
    log = record_exec(bed.engine)
    with quiesced(bed.engine, PROJECT, plan_quiesce(bed.project, ["data"]), bed.said.append, bed.journal):
        assert bed.app() == "running"
    assert log == ["app: sync", "app: done"]
    assert quiescing(bed.engine) == ["exec_in_container", "exec_in_container"]


def test_a_failing_pre_hook_of_the_second_service_stops_nothing(tmp_path: Path) -> None:
    bed = two_services(tmp_path)
    log = record_exec(bed.engine, {"w-pre": (2, "no")})
    body: list[str] = []
    with (
        pytest.raises(HookFailedError, match=r"^pre hook of service 'worker' exited 2: w-pre\n  no$"),
        quiesced(bed.engine, PROJECT, plan_quiesce(bed.project, ["data"]), bed.said.append, bed.journal),
    ):
        body.append("ran")
    assert body == []
    assert "stop_container" not in bed.engine.calls and "pause_container" not in bed.engine.calls
    assert log == ["app: a-pre", "worker: w-pre", "app: a-post", "worker: w-post"]
    assert (state_of(bed, "app"), state_of(bed, "worker")) == ("running", "running")


@pytest.mark.parametrize("error", [PersistError("store full"), KeyboardInterrupt()])
def test_quiesced_brings_services_back_when_the_body_fails(tmp_path: Path, error: BaseException) -> None:
    bed = two_services(tmp_path)
    log = record_exec(bed.engine)
    with (
        pytest.raises(type(error)) as raised,
        quiesced(bed.engine, PROJECT, plan_quiesce(bed.project, ["data"]), bed.said.append, bed.journal),
    ):
        raise error
    assert raised.value is error
    assert getattr(error, "__notes__", []) == []
    assert (state_of(bed, "app"), state_of(bed, "worker")) == ("running", "running")
    assert log[-2:] == ["app: a-post", "worker: w-post"]
    assert bed.journal.read().is_empty()


def test_a_service_that_does_not_come_back_is_an_error(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    app = container(bed, "app")
    app.start_fails = True
    with (
        pytest.raises(RestartFailedError) as failed,
        quiesced(bed.engine, PROJECT, plan_quiesce(bed.project, ["data"]), bed.said.append, bed.journal),
    ):
        pass
    assert str(failed.value) == (
        f"service 'app' did not come back: POST /containers/{app.id}/start: the container cannot start"
    )
    assert app.state == "exited"
    assert bed.journal.read().stopped == [app.id]  # the next command starts it again
    app.start_fails = False
    backup(bed.workspace(), bed.store, BackupRequest(name="next"))
    assert app.state == "running" and bed.journal.read().is_empty()


def test_a_restart_failure_is_added_to_the_first_error_never_in_its_place(tmp_path: Path) -> None:
    bed = with_policy(make_bed(tmp_path), "stop", post=["post"])
    log = record_exec(bed.engine)
    container(bed, "app").start_fails = True
    error = PersistError("store full")
    with (
        pytest.raises(PersistError) as raised,
        quiesced(bed.engine, PROJECT, plan_quiesce(bed.project, ["data"]), bed.said.append, bed.journal),
    ):
        raise error
    assert raised.value is error
    notes = getattr(error, "__notes__", [])
    assert len(notes) == 2
    assert notes[0].startswith("service 'app' did not come back: POST /containers/")
    assert log == []
    # Its post hook cannot run in a container that is not running: that is said too.
    assert notes[1] == f"post hook of 'app': Container {container(bed, 'app').id} is not running"


def test_a_hook_of_a_service_that_is_not_running_fails(tmp_path: Path) -> None:
    bed = with_policy(make_bed(tmp_path), "stop", pre=["dump"])
    container(bed, "app").state = "exited"
    with (
        pytest.raises(HookFailedError, match=r"^pre hook of service 'app' cannot run: the service is not running$"),
        quiesced(bed.engine, PROJECT, plan_quiesce(bed.project, ["data"]), bed.said.append, bed.journal),
    ):
        pass
    assert bed.app() == "exited"  # not started by the undo: it was not running


def test_a_stopped_service_is_neither_stopped_nor_started(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    container(bed, "app").state = "exited"
    backup(bed.workspace(), bed.store, BackupRequest(name="cold"))
    assert bed.app() == "exited"
    assert quiescing(bed.engine) == []


# --- restore -----------------------------------------------------------------------------------------


def test_restore_replaces_the_volume_exactly(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    base, changed = changed_after_base(bed)
    assert "added" in changed and "notes.txt" not in changed
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert bed.engine.files(VOLUME) == base  # the added file gone, the deleted one back, the edited one as it was
    assert result.volumes == (("data", VOLUME),)
    assert result.manifest.name == "base" and not result.finished
    assert bed.journal.read().is_empty()
    assert incomplete_volumes(bed.engine, PROJECT) == {} and bed.leftovers() == []
    # The volume is Compose's again: created with the project's labels.
    assert bed.engine.volumes[VOLUME].labels == {COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: "data"}


def test_restore_publishes_the_undo_snapshot_before_removing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])
    _, changed = changed_after_base(bed)
    seen: list[tuple[str, list[str], str]] = []

    def spy(method: str) -> None:
        original = getattr(bed.engine, method)

        def spying(*args: object, **kwargs: object) -> object:
            undo = [m.name for m in manifests(bed, "pre-restore")]
            seen.append((method, undo, bed.app()))
            return original(*args, **kwargs)

        monkeypatch.setattr(bed.engine, method, spying)

    for method in ("remove_container", "remove_volume"):
        spy(method)
    undo_began: list[str] = []
    begin = bed.store.begin

    def spying_begin(project: str, name: str) -> object:
        undo_began.append(bed.app())
        return begin(project, name)

    monkeypatch.setattr(bed.store, "begin", spying_begin)
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    (undo,) = manifests(bed, "pre-restore")
    assert result.undo == undo.name and undo.name.endswith("-pre-restore") and undo.automatic
    assert undo_began == ["exited"]  # the services are stopped first, then the undo snapshot is taken
    assert seen and all(names == [undo.name] for _, names, _ in seen)
    assert seen[0][0] == "remove_container"
    assert bed.guarded()
    assert files_of_snapshot(bed, undo.name) == changed


def test_restore_starts_again_the_services_that_were_running(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    changed_after_base(bed)
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert result.restarted == ("app",)
    assert bed.compose.calls == [["up", "--detach", "--no-deps", "app"]]
    assert bed.app() == "running"


def test_restore_leaves_a_stopped_service_stopped(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    base, _ = changed_after_base(bed)
    container(bed, "app").state = "exited"
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert result.restarted == ()
    assert bed.compose.calls == [["create", "--no-recreate", "app"]]  # its container is back, not started
    assert bed.app() == "created"
    assert bed.engine.files(VOLUME) == base


def test_restore_into_an_empty_volume_takes_no_undo_snapshot(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    bed.engine.volumes[VOLUME].files = {".": Node("dir", 0o755)}
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert result.undo is None and manifests(bed, "pre-restore") == []
    assert bed.engine.files(VOLUME) == base


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"content_digest": "sha256:" + "0" * 64},
            "snapshot 'base': the content of data.tar.zst does not match the content digest its manifest records: "
            "the archive or the manifest was changed",
        ),
        (
            {"entries": 5},
            "snapshot 'base': data.tar.zst holds 4 entries, its manifest says 5: the archive or the manifest was "
            "changed",
        ),
    ],
)
def test_a_tampered_manifest_is_refused_before_the_service_is_stopped(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    bed = make_bed(tmp_path)
    _, changed = changed_after_base(bed)
    tamper(bed, "base", **changes)
    bed.engine.calls.clear()
    with pytest.raises(IntegrityError) as refused:
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert str(refused.value) == message
    assert touched(bed.engine) == []
    assert bed.app() == "running" and container(bed, "app").starts == 1
    assert bed.engine.files(VOLUME) == changed
    assert snapshot_names(bed) == ["base"]  # no undo snapshot
    assert bed.journal.read().is_empty()


def test_a_changed_archive_is_refused_before_the_service_is_stopped(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    _, changed = changed_after_base(bed)
    part = bytearray(bed.store.snapshots[PROJECT]["base"]["data.tar.zst"])
    part[-1] ^= 0xFF
    bed.store.snapshots[PROJECT]["base"]["data.tar.zst"] = bytes(part)
    bed.engine.calls.clear()
    with pytest.raises(IntegrityError, match=r"^snapshot 'base': data\.tar\.zst"):
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert touched(bed.engine) == [] and bed.app() == "running"
    assert bed.engine.files(VOLUME) == changed and snapshot_names(bed) == ["base"]


def test_restore_to_a_new_volume_leaves_the_project_alone(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    base, changed = changed_after_base(bed)
    bed.engine.calls.clear()
    result = restore(bed.workspace(), bed.store, RestoreRequest("base", ("data",), to="copy"))
    assert bed.engine.files("copy") == base
    assert bed.engine.files(VOLUME) == changed
    assert bed.engine.volumes["copy"].labels == {}  # claims no Compose project
    assert (result.volumes, result.undo, result.restarted) == ((("data", "copy"),), None, ())
    assert "stop_container" not in bed.engine.calls and bed.app() == "running"
    assert bed.compose.calls == [] and manifests(bed, "pre-restore") == []


def test_restore_to_a_volume_of_another_project_needs_force(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    base, _ = changed_after_base(bed)
    bed.engine.add_volume("other_data", {COMPOSE_PROJECT: "other", COMPOSE_VOLUME: "data"})
    bed.engine.write("other_data", "theirs", b"not ours\n")
    theirs = bed.engine.files("other_data")
    with pytest.raises(ConfigError, match=r"^volume 'other_data' belongs to Compose project 'other'"):
        restore(bed.workspace(), bed.store, RestoreRequest("base", ("data",), to="other_data"))
    assert bed.engine.files("other_data") == theirs
    result = restore(bed.workspace(), bed.store, RestoreRequest("base", ("data",), to="other_data", force=True))
    assert bed.engine.files("other_data") == base
    assert result.undo is not None and files_of_snapshot(bed, result.undo) == theirs


def test_restore_to_needs_a_single_volume(tmp_path: Path) -> None:
    bed = make_multi_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="both"))
    with pytest.raises(ConfigError, match=r"^--to restores one volume: choose it with --volume$"):
        restore(bed.workspace(), bed.store, RestoreRequest("both", to="copy"))
    assert "copy" not in bed.engine.volumes


def test_a_snapshot_volume_the_project_lacks_is_a_config_error(tmp_path: Path) -> None:
    bed = make_multi_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="both"))
    single = reproject(bed, make_project())  # the same engine and store; the project has `data` only
    bed.engine.calls.clear()
    with pytest.raises(ConfigError) as refused:
        restore(single.workspace(), single.store, RestoreRequest("both"))
    assert str(refused.value) == (
        "snapshot 'both' holds volume 'logs', which project 'shop' does not have: restore it into a volume of your "
        "choice with --volume logs --to NEW_VOLUME (Compose would name it shop_logs)"
    )
    assert touched(bed.engine) == [] and state_of(bed, "app") == "running"
    assert snapshot_names(bed) == ["both"]
    # Its own volume alone, or the other one into a new volume, is fine.
    restore(single.workspace(), single.store, RestoreRequest("both", ("data",)))
    restore(single.workspace(), single.store, RestoreRequest("both", ("logs",), to="logs_copy"))
    assert bed.engine.files("logs_copy") == bed.engine.files(LOGS)


def test_restore_of_an_unknown_snapshot_or_volume(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    with pytest.raises(SnapshotNotFoundError) as missing:
        restore(bed.workspace(), bed.store, RestoreRequest("bsae"))
    assert str(missing.value) == "no snapshot named 'bsae' in project 'shop'; did you mean 'base'?"
    with pytest.raises(ConfigError) as unknown:
        restore(bed.workspace(), bed.store, RestoreRequest("base", ("nope",)))
    assert str(unknown.value) == "snapshot 'base' has no volume 'nope' (it holds: data)"
    assert touched(bed.engine) == []


def test_restore_after_down_v_creates_the_volume_for_compose(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    remove_project(bed)
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert bed.engine.files(VOLUME) == base
    assert bed.engine.volumes[VOLUME].labels == {COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: "data"}
    assert (result.undo, result.restarted) == (None, ())


# --- down --------------------------------------------------------------------------------------------


def test_down_v_backs_up_then_releases_the_guard_then_runs_compose(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])
    before = bed.engine.files(VOLUME)
    digest = volume_read_digest(bed.engine, PROJECT, VOLUME).digest
    seen: list[tuple[list[str], bool]] = []
    environs: list[dict[str, str]] = []
    run = compose_down(bed, volumes=True, calls=environs)

    def compose(environ: dict[str, str]) -> int:
        seen.append(([m.reason for m in manifests(bed)], bed.guarded()))
        return run(environ)

    result = down(bed.workspace(), bed.store, DownRequest(remove_volumes=True), live(bed), compose)
    assert seen == [(["pre-down"], False)]  # the snapshot exists, and the guard is gone, before compose runs
    assert LOCK_TOKEN_ENV in environs[0]  # the provider that compose runs shares the lock
    assert result.compose_code == 0 and result.released == (VOLUME,)
    assert VOLUME not in bed.engine.volumes
    snapshot = result.snapshot
    assert snapshot is not None and snapshot.reason == "pre-down" and snapshot.name.endswith("-pre-down")
    assert [(v.key, v.content_digest) for v in snapshot.volumes] == [("data", digest)]
    assert bed.journal.read().is_empty()
    restore(bed.workspace(), bed.store, RestoreRequest(snapshot.name))
    assert bed.engine.files(VOLUME) == before


def test_down_without_v_backs_up_nothing_and_keeps_the_guards(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])
    result = down(bed.workspace(), bed.store, DownRequest(remove_volumes=False), live(bed), compose_down(bed, False))
    assert (result.snapshot, result.released, result.compose_code) == (None, (), 0)
    assert result.plan is not None and result.plan.losses == ()
    assert snapshot_names(bed) == [] and bed.guarded() and VOLUME in bed.engine.volumes


def test_down_with_an_unreadable_command_line_backs_up_but_releases_nothing(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])
    result = down(bed.workspace(), bed.store, DownRequest(remove_volumes=None, wrapper=False), live(bed))
    assert result.snapshot is not None and [v.key for v in result.snapshot.volumes] == ["data"]
    assert result.released == () and bed.guarded()
    assert result.plan is not None and result.plan.release_guards == (VOLUME,)
    # Compose's own `down -v` then fails on the guarded volume: it is kept.
    assert compose_down(bed, volumes=True)({}) == 1
    assert VOLUME in bed.engine.volumes


def test_a_failed_compose_down_gets_the_guards_back(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])

    def failing(environ: dict[str, str]) -> int:
        assert not bed.guarded()
        return 17

    result = down(bed.workspace(), bed.store, DownRequest(remove_volumes=True), live(bed), failing)
    assert (result.compose_code, result.released) == (17, (VOLUME,))
    assert bed.guarded() and bed.journal.read().is_empty()


@pytest.mark.parametrize(("wrapper", "instead"), [(True, "pass --force"), (False, "run `docker persist down --force`")])
def test_on_down_refuse_refuses_before_anything(tmp_path: Path, wrapper: bool, instead: str) -> None:
    bed = with_on_down(make_bed(tmp_path), "refuse")
    protect(bed.workspace(), [("data", VOLUME)])
    size = format_bytes(len(b"precious data\n") + 256 * 400)
    ran: list[dict[str, str]] = []
    with pytest.raises(UnsafeOperationError) as refused:
        down(bed.workspace(), bed.store, DownRequest(True, wrapper=wrapper), live(bed), compose_down(bed, True, ran))
    assert str(refused.value) == (
        "refusing `down -v` (x-persist on_down is refuse): it would destroy\n"
        f"  named-volume data (app:/data), {size}\n"
        f"Back up first (docker persist backup), or {instead} to go ahead."
    )
    assert ran == [] and snapshot_names(bed) == [] and bed.guarded() and bed.app() == "running"
    assert bed.journal.read().is_empty()
    # Without -v nothing is lost: nothing to refuse.
    assert down(bed.workspace(), bed.store, DownRequest(False), live(bed)).snapshot is None


def test_down_force_goes_ahead_where_on_down_refuses(tmp_path: Path) -> None:
    """README: "`refuse`: exit 1 and list what would be lost (`--force` goes ahead)"; the CLI's --force: "Go ahead
    where on_down says refuse (no backup of those)". Going ahead with `down -v` removes the volume, so its guard
    must be released like any volume being removed (down.py step 3)."""
    bed = with_on_down(make_bed(tmp_path), "refuse")
    protect(bed.workspace(), [("data", VOLUME)])
    result = down(bed.workspace(), bed.store, DownRequest(True, force=True), live(bed), compose_down(bed, True))
    assert result.snapshot is None  # no backup of those
    assert result.released == (VOLUME,)
    assert result.compose_code == 0 and VOLUME not in bed.engine.volumes


def test_on_down_allow_releases_without_a_snapshot(tmp_path: Path) -> None:
    bed = with_on_down(make_bed(tmp_path), "allow")
    protect(bed.workspace(), [("data", VOLUME)])
    result = down(bed.workspace(), bed.store, DownRequest(True), live(bed), compose_down(bed, True))
    assert (result.snapshot, result.released, result.compose_code) == (None, (VOLUME,), 0)
    assert snapshot_names(bed) == [] and VOLUME not in bed.engine.volumes


def test_a_disposable_volume_is_never_refused(tmp_path: Path) -> None:
    bed = with_on_down(make_bed(tmp_path), "refuse")
    disposable = dataclasses.replace(bed.project.volumes["data"], policy=None, disposable=True)
    bed = reproject(bed, dataclasses.replace(bed.project, volumes={"data": disposable}))
    result = down(bed.workspace(), bed.store, DownRequest(True), live(bed), compose_down(bed, True))
    assert result.snapshot is None and result.compose_code == 0 and VOLUME not in bed.engine.volumes


def test_down_quiesces_the_service_while_it_backs_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    seen = spy_reads(bed, monkeypatch)
    states: list[str] = []

    def compose(environ: dict[str, str]) -> int:
        states.append(bed.app())
        return 0

    result = down(bed.workspace(), bed.store, DownRequest(True), live(bed), compose)
    assert seen == [(VOLUME, "exited")] and states == ["running"]
    assert result.snapshot is not None and result.snapshot.services == (ServiceRecord("app", "stop"),)


def test_down_saves_anonymous_volumes_even_without_v(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    anonymous = "ab" * 32
    bed.engine.add_volume(anonymous)
    bed.engine.write(anonymous, "cache.db", b"anonymous data\n")
    container(bed, "app").mounts[anonymous] = "/var/lib/cache"
    files = bed.engine.files(anonymous)
    result = down(bed.workspace(), bed.store, DownRequest(False), live(bed))
    assert result.snapshot is not None
    (record,) = result.snapshot.volumes
    assert (record.key, record.kind, record.source) == ("anon-app-var-lib-cache", "anonymous-volume", anonymous)
    assert result.released == ()
    # It has no volume of its own to go back to: only --to restores it.
    with pytest.raises(ConfigError, match="has no volume of its own to go back to: restore it with --to NEW_VOLUME"):
        restore(bed.workspace(), bed.store, RestoreRequest(result.snapshot.name, (record.key,)))
    assert files_of_snapshot(bed, result.snapshot.name, record.key) == files


def test_down_saves_writable_layer_data_but_not_ephemeral_paths(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    container(bed, "app").layer = {"/srv/upload.bin": b"u" * 100, "/tmp/junk": b"j" * 50}
    result = down(bed.workspace(), bed.store, DownRequest(False, layer_threshold=10), live(bed, threshold=10))
    assert result.snapshot is not None
    (record,) = result.snapshot.volumes
    assert (record.key, record.kind) == ("layer-app", "container-layer")
    files = files_of_snapshot(bed, result.snapshot.name, "layer-app")
    assert files["srv/upload.bin"][-1] == b"u" * 100
    assert not any(path.startswith("tmp") for path in files)


def test_the_provider_inside_the_wrappers_down_takes_no_second_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])
    provided: list[object] = []

    def compose(environ: dict[str, str]) -> int:
        # Compose runs the provider, a child process that inherits the wrapper's hold of the lock.
        child = Journal(bed.journal.path, environ, PROJECT)
        monkeypatch.setattr(child, "inherited", lambda: True)  # in-process, the parent check cannot pass
        workspace = Workspace(bed.engine, bed.project, child)
        provided.append(down(workspace, bed.store, DownRequest(None, wrapper=False), live(bed)))
        return compose_down(bed, True)(environ)

    result = down(bed.workspace(), bed.store, DownRequest(True), live(bed), compose)
    (inner,) = provided
    assert isinstance(inner, type(result))
    assert (inner.inherited, inner.snapshot, inner.plan, inner.released) == (True, None, None, (VOLUME,))
    assert len(manifests(bed, "pre-down")) == 1 and VOLUME not in bed.engine.volumes


# --- up ----------------------------------------------------------------------------------------------


def annotated(bed: Bed, restore_: str = "none") -> Bed:
    data = dataclasses.replace(
        bed.project.volumes["data"],
        labels={"tier": "gold"},
        driver_opts={"type": "tmpfs"},
        policy=VolumePolicy(restore=restore_),
    )
    return reproject(bed, dataclasses.replace(bed.project, volumes={"data": data}))


def test_up_creates_annotated_volumes_for_compose_and_guards_them(tmp_path: Path) -> None:
    bed = annotated(make_bed(tmp_path))
    remove_project(bed)
    result = prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert [(s.action, s.volume) for s in result.done] == [("create", VOLUME), ("protect", VOLUME)]
    volume = bed.engine.volumes[VOLUME]
    assert volume.labels == {"tier": "gold", COMPOSE_PROJECT: PROJECT, COMPOSE_VOLUME: "data"}
    assert (volume.driver, volume.options) == ("local", {"type": "tmpfs"})
    assert bed.engine.files(VOLUME) == {".": ("dir", 0o755, 0, 0, b"")}
    assert bed.guarded()
    # Idempotent: nothing left to do.
    assert prepare_volumes(bed.workspace(), bed.store, live(bed)).done == ()


def test_up_restores_latest_into_the_volume_it_creates(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="latest")
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    remove_project(bed)
    result = prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert [s.action for s in result.done] == ["create", "restore", "protect"]
    assert bed.engine.files(VOLUME) == base
    assert bed.guarded() and incomplete_volumes(bed.engine, PROJECT) == {} and bed.journal.read().is_empty()


def test_up_restores_latest_into_an_empty_volume_compose_made(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="latest")
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    empty_volume(bed)
    result = prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert [s.action for s in result.done] == ["restore", "protect"]
    assert bed.engine.files(VOLUME) == base


@pytest.mark.parametrize(
    "content",
    [
        {"empty-file": Node("file")},
        {"empty-dir": Node("dir", 0o755)},
        {"link": Node("symlink", 0o777, target="/nowhere")},
        {"notes.txt": Node("file", data=b"data\n")},
    ],
)
def test_up_never_restores_over_a_volume_holding_anything(tmp_path: Path, content: dict[str, Node]) -> None:
    bed = make_bed(tmp_path, restore="latest")
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    empty_volume(bed)
    bed.engine.volumes[VOLUME].files.update(content)
    before = bed.engine.files(VOLUME)
    bed.engine.calls.clear()
    result = prepare_volumes(bed.workspace(), bed.store, live(bed))
    skipped = [s for s in result.done if s.action == "skip"]
    if content != {"notes.txt": Node("file", data=b"data\n")}:  # its size is 0: planned, then found not empty
        assert [s.detail for s in skipped] == ["it holds data: never restored over"]
    assert bed.engine.files(VOLUME) == before
    assert "extract_volume_archive" not in bed.engine.calls and "remove_volume" not in bed.engine.calls


def test_up_latest_is_never_an_undo_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = make_bed(tmp_path, restore="latest")
    use_clock(monkeypatch, datetime.timedelta(minutes=1))
    base, _ = changed_after_base(bed)
    restore(bed.workspace(), bed.store, RestoreRequest("base"))  # its undo snapshot is newer than base
    (undo,) = manifests(bed, "pre-restore")
    assert undo.created > read_manifest(bed.store, PROJECT, "base").created
    empty_volume(bed)
    prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert bed.engine.files(VOLUME) == base


def test_up_with_no_snapshot_yet_leaves_the_volume_empty(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="latest")
    remove_project(bed)
    result = prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert [(s.action, s.detail) for s in result.done if s.action == "skip"] == [
        ("skip", "no snapshot holds it yet: it starts empty")
    ]
    assert bed.engine.files(VOLUME) == {".": ("dir", 0o755, 0, 0, b"")}


def test_up_restores_a_named_snapshot_rather_than_the_latest(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="golden")
    backup(bed.workspace(), bed.store, BackupRequest(name="golden"))
    golden = bed.engine.files(VOLUME)
    bed.engine.write(VOLUME, "later", b"newer\n")
    backup(bed.workspace(), bed.store, BackupRequest(name="later"))
    remove_project(bed)
    prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert bed.engine.files(VOLUME) == golden


def test_up_refuses_a_named_restore_the_store_lacks_before_creating_anything(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="golden")
    backup(bed.workspace(), bed.store, BackupRequest(name="golded"))
    remove_project(bed)
    bed.engine.calls.clear()
    with pytest.raises(SnapshotNotFoundError) as refused:
        prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert str(refused.value) == (
        "volumes.data.x-persist.restore names a snapshot the store (memory://test) does not have: no snapshot "
        "named 'golden' in project 'shop'; did you mean 'golded'?; nothing was created"
    )
    assert VOLUME not in bed.engine.volumes and "create_volume" not in bed.engine.calls
    assert not bed.guarded()


def test_up_refuses_a_named_restore_that_is_damaged(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="golden")
    bed.store.snapshots[PROJECT] = {"golden": {"manifest.json": b"{not json"}}
    remove_project(bed)
    with pytest.raises(SnapshotNotFoundError, match=r"^volumes\.data\.x-persist\.restore names snapshot 'golden', "):
        prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert VOLUME not in bed.engine.volumes


def test_a_failed_up_restore_empties_the_volume_again(tmp_path: Path) -> None:
    bed = make_bed(tmp_path, restore="latest")
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    empty_volume(bed)
    bed.engine.fail_next["extract_volume_archive"] = PersistError("disk full")
    with pytest.raises(PersistError) as failed:
        prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert str(failed.value) == "disk full"
    assert getattr(failed.value, "__notes__", []) == [
        f"volume {VOLUME} is empty again; `docker persist up` restores it again"
    ]
    assert bed.engine.files(VOLUME) == {".": ("dir", 0o755, 0, 0, b"")}
    assert incomplete_volumes(bed.engine, PROJECT) == {} and bed.journal.read().is_empty()
    prepare_volumes(bed.workspace(), bed.store, live(bed))
    assert bed.engine.files(VOLUME) == base


# --- verify and copy ---------------------------------------------------------------------------------


def test_verify_records_a_passing_drill_and_leaves_nothing(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    ((name, verification),) = verify(bed.workspace(), bed.store, ["base"])
    assert (name, verification.ok, verification.volumes) == ("base", True, ("data",))
    assert verification.detail == "data: 2 files, digest matches"
    assert read_manifest(bed.store, PROJECT, "base").last_verification == verification
    assert bed.leftovers() == [] and sorted(bed.engine.volumes) == [VOLUME]


def test_verify_records_a_failing_drill(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    tamper(bed, "base", content_digest="sha256:" + "1" * 64)
    ((_, verification),) = verify(bed.workspace(), bed.store, ["base"])
    assert not verification.ok
    assert re.fullmatch(
        r"volume 'docker-persist-verify-[0-9a-f]{12}': the restored content does not match snapshot 'base'",
        verification.detail,
    )
    last = read_manifest(bed.store, PROJECT, "base").last_verification
    assert last is not None and not last.ok
    assert bed.leftovers() == [] and sorted(bed.engine.volumes) == [VOLUME]


def test_copy_is_byte_for_byte_and_refuses_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    target = MemoryStore("offsite")
    copied = copy_snapshot(bed.store, target, PROJECT, "base", lambda label, size: None)
    assert copied == read_manifest(bed.store, PROJECT, "base")
    assert target.snapshots[PROJECT]["base"] == bed.store.snapshots[PROJECT]["base"]
    with pytest.raises(SnapshotExistsError, match=r"^memory://offsite already has snapshot 'base' of project 'shop'$"):
        copy_snapshot(bed.store, target, PROJECT, "base", lambda label, size: None)
    bed.store.snapshots[PROJECT]["base"]["data.tar.zst"] += b"junk"
    elsewhere = MemoryStore("elsewhere")
    with pytest.raises(IntegrityError, match=r"does not match its manifest: not copied$"):
        copy_snapshot(bed.store, elsewhere, PROJECT, "base", lambda label, size: None)
    assert elsewhere.list_snapshots(PROJECT) == [] and elsewhere.pending == {}


# --- the Compose provider's decisions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--project-name=shop", "up", "persist"], ("shop", "up", {}, "persist")),
        (["--project-name", "shop", "down", "persist"], ("shop", "down", {}, "persist")),  # before Compose 2.40
        (
            ["--project-name=shop", "up", "--size=1", "--flag", "persist"],
            ("shop", "up", {"size": "1", "flag": ""}, "persist"),
        ),
        (["metadata"], (None, "metadata", {}, None)),
        (["up", "persist"], (None, "up", {}, "persist")),
    ],
)
def test_split_provider_args(args: list[str], expected: tuple[object, ...]) -> None:
    assert split_provider_args(args) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["docker", "compose", "down"], False),
        (["docker", "compose", "down", "-v"], True),
        (["docker", "compose", "down", "--volumes"], True),
        (["docker", "compose", "down", "--volume"], True),  # Compose's deprecated spelling
        (["docker", "compose", "down", "-vt0"], True),
        (["docker", "compose", "down", "-t", "0", "--remove-orphans"], False),
        (["docker", "compose", "down", "--volumes=false"], False),
        (["docker", "compose", "down", "-v", "--volumes=false"], False),  # the last one wins
        (["docker", "--context", "prod", "compose", "-p", "shop", "-f", "a.yml", "down", "-v"], True),
        (["docker-compose", "-p", "shop", "down", "-v"], True),  # standalone
        (["docker", "compose", "down", "-v", "--bogus"], None),  # a flag this version does not know
        (["docker", "compose", "down", "--volumes=maybe"], None),
        (["docker", "compose", "up", "-d"], None),  # not a down
        (["docker", "compose"], None),
    ],
)
def test_removes_volumes_reads_the_parent_command_line(argv: list[str], expected: bool | None) -> None:
    assert removes_volumes(Invocation("/srv/shop", parse_compose_command(argv))) is expected


def test_removes_volumes_is_unknown_without_an_invocation() -> None:
    assert removes_volumes(None) is None


def test_invocation_options_are_the_project_flags_given_to_compose() -> None:
    argv = ["docker", "compose", "-p", "shop", "-f", "a.yml", "-f", "b.yml", "--profile", "x", "down"]
    options = Invocation(None, parse_compose_command(argv)).options
    assert (options.project_name, options.files, options.profiles) == ("shop", ("a.yml", "b.yml"), ("x",))


def test_read_parent_invocation_reads_a_live_process(tmp_path: Path) -> None:
    expected = [sys.executable, "-c", "import sys; sys.stdin.read()", "compose", "-p", "shop", "down", "-v"]
    child = subprocess.Popen(expected, stdin=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")[:-1] != [a.encode() for a in expected]:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        invocation = read_parent_invocation(child.pid)
    finally:
        child.communicate(b"")
    assert invocation is not None
    assert invocation.cwd == os.path.realpath(tmp_path)
    assert removes_volumes(invocation) is True  # `-c VALUE` is the Docker CLI's --context
    assert invocation.options.project_name == "shop"


def test_read_parent_invocation_of_a_process_that_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert read_parent_invocation(child.pid) is None


def test_provider_messages_are_json_lines() -> None:
    stream = io.StringIO()
    messages = Messages(stream)
    messages.info("volumes ready")
    messages.send("error", 'refusing "down -v"')
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"type": "info", "message": "volumes ready"},
        {"type": "error", "message": 'refusing "down -v"'},
    ]
    assert set(METADATA) == {"description", "up", "down"}
    assert METADATA["up"] == {"parameters": []} and METADATA["down"] == {"parameters": []}
