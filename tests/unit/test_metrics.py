"""Metrics: collected from manifests and the scheduler's counters, rendered in the exposition format."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import TYPE_CHECKING

from docker_persist.core.manifest import Manifest, Verification, VolumeRecord
from docker_persist.core.metrics import collect_metrics, escape_label, render_metrics
from docker_persist.host.files import write_atomically
from docker_persist.units import Duration

if TYPE_CHECKING:
    from docker_persist.config.model import Project

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 1, 2, 0, 0, tzinfo=UTC)


def record(key: str, size: int, kind: str = "volume") -> VolumeRecord:
    return VolumeRecord(key=key, source=f"p_{key}", driver="local", driver_opts={}, labels={}, file=f"{key}.tar.zst",
                        compression="zstd", archive_sha256="0" * 64, archive_bytes=size // 2,
                        content_digest="sha256:" + "0" * 64, bytes=size, files=1, directories=1, symlinks=0,
                        entries=2, root=None, kind=kind)  # fmt: skip


def manifest(name: str, hours_ago: int, *records: VolumeRecord, verified: tuple[bool, ...] = ()) -> Manifest:
    created = NOW - datetime.timedelta(hours=hours_ago)
    verifications = tuple(
        Verification(at=created + datetime.timedelta(minutes=10 + i), ok=ok, detail="", volumes=("db",))
        for i, ok in enumerate(verified)
    )
    return Manifest(name=name, project="p", created=created, tool_version="0", reason="scheduled",
                    volumes=records, verifications=verifications)  # fmt: skip


def test_latest_snapshot_per_volume() -> None:
    manifests = [
        manifest("new", 1, record("db", 2000)),
        manifest("old", 30, record("db", 1000), record("files", 500), verified=(False, True)),
        manifest("down", 2, record("layer", 10, kind="container-layer")),
    ]
    db, cache, files = collect_metrics("p", ["db", "cache"], manifests, {"db": 2}, {"db": 1.5})
    assert (db.volume, db.snapshots, db.bytes, db.stored_bytes) == ("db", 2, 2000, 1000)
    assert db.last_success == NOW - datetime.timedelta(hours=1)
    assert (db.failures, db.duration) == (2, 1.5)
    assert db.last_verify == NOW - datetime.timedelta(hours=30) + datetime.timedelta(minutes=11)
    assert db.last_verify_ok is True
    assert (cache.volume, cache.snapshots, cache.last_success, cache.duration) == ("cache", 0, None, None)
    assert (files.volume, files.last_verify) == ("files", None)  # the drill covered db only


def test_render_exposition_format() -> None:
    manifests = [manifest("a", 2, record("db", 2000), verified=(False,))]
    text = render_metrics(collect_metrics("p", ["db", "cache"], manifests, {}, {}), NOW)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert "# TYPE docker_persist_backup_failures_total counter" in lines
    assert "# TYPE docker_persist_last_success_timestamp_seconds gauge" in lines
    stamp = int((NOW - datetime.timedelta(hours=2)).timestamp())
    assert f'docker_persist_last_success_timestamp_seconds{{project="p",volume="db"}} {stamp}' in lines
    assert 'docker_persist_latest_snapshot_age_seconds{project="p",volume="db"} 7200' in lines
    assert 'docker_persist_backup_bytes{project="p",volume="db"} 2000' in lines
    assert 'docker_persist_last_verify_success{project="p",volume="db"} 0' in lines
    assert 'docker_persist_backup_failures_total{project="p",volume="cache"} 0' in lines
    assert 'docker_persist_snapshots{project="p",volume="cache"} 0' in lines
    # Never backed up, no duration measured: no sample, rather than a made-up one.
    assert not any(line.startswith("docker_persist_last_success_timestamp_seconds{") and "cache" in line
                   for line in lines)  # fmt: skip
    assert not any(line.startswith("docker_persist_last_backup_duration_seconds{") for line in lines)
    assert all(
        line.startswith(("# HELP docker_persist_", "# TYPE docker_persist_", "docker_persist_")) for line in lines
    )


def test_label_values_are_escaped() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "docker_persist.prom"
    path.write_text("old\n")
    write_atomically(str(path), b"new\n", mode=0o644)
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["docker_persist.prom"]  # no temp file left behind


# --- never blind -----------------------------------------------------------------------------


def _project() -> Project:
    from docker_persist.config.model import Project, ProjectPolicy, Volume, VolumePolicy

    volumes = {
        "db": Volume("db", "p_db", policy=VolumePolicy()),
        "files": Volume("files", "p_files", policy=VolumePolicy()),
    }
    return Project("p", "/w", (), volumes, ProjectPolicy(max_age=Duration(hours=26)))


def test_an_unreachable_store_still_answers_with_every_series_it_can(tmp_path: Path) -> None:
    from docker_persist.cli.commands.metrics import project_metrics_text
    from docker_persist.store import open_store

    (tmp_path / "file").write_text("not a folder")
    store = open_store(str(tmp_path / "file" / "store"), {"HOME": str(tmp_path)})
    environ = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    text = project_metrics_text(store, _project(), environ, "unix:///x")
    assert 'docker_persist_store_up{project="p"} 0' in text.splitlines()
    assert 'docker_persist_volume_up{project="p",volume="db"} 0' in text.splitlines()
    assert 'docker_persist_volume_up{project="p",volume="files"} 0' in text.splitlines()
    assert 'docker_persist_backup_failures_total{project="p",volume="db"} 0' in text.splitlines()
    assert 'docker_persist_notify_failures_total{project="p"} 0' in text.splitlines()


def test_a_damaged_manifest_is_counted_and_the_rest_still_shown(tmp_path: Path) -> None:
    from docker_persist.cli.commands.metrics import project_metrics_text
    from docker_persist.core.manifest import dump_manifest
    from docker_persist.store import open_store

    store = open_store(str(tmp_path / "store"), {"HOME": str(tmp_path)})
    fresh = Manifest(name="fresh", project="p", created=datetime.datetime.now(UTC) - datetime.timedelta(hours=1),
                     tool_version="0", reason="manual", volumes=(record("db", 100),))  # fmt: skip
    with store.lock("p"):
        store.begin("p", "fresh").publish(dump_manifest(fresh))
        store.begin("p", "broken").publish(b"{not json")
    environ = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    lines = project_metrics_text(store, _project(), environ, "unix:///x").splitlines()
    assert 'docker_persist_store_up{project="p"} 1' in lines
    assert 'docker_persist_snapshots_damaged{project="p"} 1' in lines
    assert 'docker_persist_volume_up{project="p",volume="db"} 1' in lines
    assert 'docker_persist_volume_up{project="p",volume="files"} 0' in lines  # no snapshot holds it
    assert any(
        line.startswith('docker_persist_last_success_timestamp_seconds{project="p",volume="db"}') for line in lines
    )


def test_a_folder_part_in_a_restic_store_has_no_stored_size_of_its_own() -> None:
    import dataclasses

    tree = dataclasses.replace(record("db", 2000), file="db.tree", compression="none", archive_bytes=0)
    (db,) = collect_metrics("p", ["db"], [manifest("new", 1, tree)], {}, {})
    assert (db.bytes, db.stored_bytes) == (2000, None)
    assert "docker_persist_backup_stored_bytes{" not in render_metrics([db], NOW)


def test_a_tar_part_in_a_restic_store_has_no_stored_size_either() -> None:
    """restic shares its chunks between snapshots: the tar's own size is not what the repository holds for it."""
    (db,) = collect_metrics("p", ["db"], [manifest("new", 1, record("db", 2000))], {}, {}, deduplicated=True)
    assert (db.bytes, db.stored_bytes) == (2000, None)
    (native,) = collect_metrics("p", ["db"], [manifest("new", 1, record("db", 2000))], {}, {})
    assert native.stored_bytes is not None and native.stored_bytes > 0
