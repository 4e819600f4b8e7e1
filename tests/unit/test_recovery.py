"""Crash-safe recovery, against the in-memory engine and store: kill -9 at every step, then the next command.

Each test arms one crash point (host/faults.py), runs an operation until it dies there, and
puts back exactly what the dead process left. The next command must then find the data old or
new (never half), the services running, the guards in place, nothing left behind, and an undo
snapshot of whatever a restore replaced.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docker_persist.actions.backup import BackupRequest, backup
from docker_persist.actions.catalog import list_manifests
from docker_persist.actions.down import DownRequest, down
from docker_persist.actions.protect import protect
from docker_persist.actions.recover import UnfinishedOperationError, abandon, recover
from docker_persist.actions.restore import RestoreRequest, restore
from docker_persist.actions.up import prepare_volumes
from docker_persist.actions.verify import verify
from docker_persist.core.state import LiveState
from docker_persist.engine.livestate import static_state
from docker_persist.engine.markers import incomplete_volumes
from docker_persist.errors import PersistError
from tests.unit.fakes import PROJECT, VOLUME, Bed, make_bed

RESTORE_POINTS = [
    "restore:planned",
    "restore:stopped",
    "restore:undo-taken",
    "restore:containers-removed",
    "restore:replacing",
    "restore:volume-created",
    "restore:extracting",
    "restore:volume-replaced",
    "restore:replaced",
]
# Where a killed restore has destroyed data it has not put back: only that restore may go on.
UNFINISHED = {"restore:replacing", "restore:volume-created", "restore:extracting"}
# Where it has put everything back: what is left is to start the services.
DONE = {"restore:volume-replaced", "restore:replaced"}


def prepared(tmp_path: Path) -> tuple[Bed, dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
    """A guarded project with a snapshot `base`, whose data then changed: (bed, base files, changed files)."""
    bed = make_bed(tmp_path)
    ws = bed.workspace()
    protect(ws, [("data", VOLUME)])
    backup(ws, bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    bed.engine.write(VOLUME, "added", b"only in the changed data\n")
    bed.engine.write(VOLUME, "notes.txt", b"edited\n", mode=0o600)
    return bed, base, bed.engine.files(VOLUME)


def undo_snapshots(bed: Bed) -> list[str]:
    return [m.name for m in list_manifests(bed.store, PROJECT) if m.reason == "pre-restore"]


def files_of_snapshot(bed: Bed, name: str) -> dict[str, tuple[object, ...]]:
    """Restore a snapshot aside, into a new volume, and return its files."""
    restore(bed.workspace(), bed.store, RestoreRequest(name, ("data",), to=f"aside-{name}"))
    files = bed.engine.files(f"aside-{name}")
    del bed.engine.volumes[f"aside-{name}"]
    return files


def assert_settled(bed: Bed) -> None:
    assert bed.app() == "running"
    assert bed.guarded()
    assert bed.journal.read().operation is None and not bed.journal.read().stopped
    assert bed.leftovers() == []
    assert incomplete_volumes(bed.engine, PROJECT) == {}


@pytest.mark.parametrize("point", RESTORE_POINTS)
def test_a_restore_killed_at_each_step_is_finished_by_running_it_again(tmp_path: Path, point: str) -> None:
    bed, base, changed = prepared(tmp_path)
    with bed.crash_at(point) as reached:
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert reached == [point]
    result = restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert bed.engine.files(VOLUME) == base
    assert_settled(bed)
    # The undo snapshot taken before anything was replaced holds the changed data. A restore killed
    # before it was done is taken over, undo snapshot and all; one killed once done was done, and
    # the run again is a restore of its own (of the restored data: a second undo snapshot).
    undo = undo_snapshots(bed)
    assert len(undo) == (2 if point in DONE else 1)
    assert files_of_snapshot(bed, undo[0]) == changed
    assert result.undo == undo[-1]


@pytest.mark.parametrize("point", RESTORE_POINTS)
def test_after_a_killed_restore_another_command_recovers_or_refuses(tmp_path: Path, point: str) -> None:
    bed, base, changed = prepared(tmp_path)
    with bed.crash_at(point):
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    if point in UNFINISHED:
        with pytest.raises(UnfinishedOperationError) as refused:
            backup(bed.workspace(), bed.store, BackupRequest(name="after"))
        assert "restore base" in str(refused.value) and "recover --abandon" in str(refused.value)
        assert bed.app() != "running"  # nothing starts on a half-restored volume
        assert "after" not in bed.store.list_snapshots(PROJECT)
        with pytest.raises(UnfinishedOperationError):
            prepare_volumes(bed.workspace(), bed.store, static_state)
        return
    backup(bed.workspace(), bed.store, BackupRequest(name="after"))
    assert bed.engine.files(VOLUME) == (base if point in DONE else changed)
    assert_settled(bed)


def test_an_undo_snapshot_that_fails_takes_the_restore_back(tmp_path: Path) -> None:
    """The store fills up while the undo snapshot is written: nothing was replaced, the service runs again,
    no record is left, and the next command is not blocked."""
    bed, _, changed = prepared(tmp_path)
    bed.store.fail_next["publish"] = PersistError("no space left on the store's disk")
    with pytest.raises(PersistError, match="no space left") as failed:
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    assert "nothing was changed" in " ".join(getattr(failed.value, "__notes__", []))
    assert bed.engine.files(VOLUME) == changed
    assert undo_snapshots(bed) == []
    assert_settled(bed)
    backup(bed.workspace(), bed.store, BackupRequest(name="after"))


def test_a_restore_refused_into_a_new_volume_leaves_no_record(tmp_path: Path) -> None:
    bed, _, _ = prepared(tmp_path)
    bed.engine.fail_next["extract_volume_archive"] = PersistError("tar: File name too long")
    with pytest.raises(PersistError, match="File name too long"):
        restore(bed.workspace(), bed.store, RestoreRequest("base", ("data",), to="fresh"))
    assert "fresh" not in bed.engine.volumes
    assert bed.journal.read().operation is None
    backup(bed.workspace(), bed.store, BackupRequest(name="after"))  # not blocked


def test_abandon_leaves_the_volumes_as_they_are_and_unblocks(tmp_path: Path) -> None:
    bed, _, _ = prepared(tmp_path)
    with bed.crash_at("restore:extracting"):
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    partial = bed.engine.files(VOLUME)
    operation = abandon(bed.workspace())
    assert operation is not None and operation.snapshot == "base" and operation.undo
    assert bed.engine.files(VOLUME) == partial
    assert bed.journal.read().operation is None and incomplete_volumes(bed.engine, PROJECT) == {}
    recover(bed.workspace())  # nothing left to refuse


def test_restoring_the_undo_snapshot_takes_an_unfinished_restore_back(tmp_path: Path) -> None:
    bed, _, changed = prepared(tmp_path)
    with bed.crash_at("restore:extracting"):
        restore(bed.workspace(), bed.store, RestoreRequest("base"))
    (undo,) = undo_snapshots(bed)
    restore(bed.workspace(), bed.store, RestoreRequest(undo))
    assert bed.engine.files(VOLUME) == changed
    assert undo_snapshots(bed) == [undo]  # no snapshot of the half-restored volume
    assert_settled(bed)


BACKUP_POINTS = ["backup:quiesced", "backup:parts-written", "backup:published"]


@pytest.mark.parametrize("point", BACKUP_POINTS)
def test_a_backup_killed_at_each_step(tmp_path: Path, point: str) -> None:
    bed = make_bed(tmp_path, consistency="stop")
    before = bed.engine.files(VOLUME)
    with bed.crash_at(point) as reached:
        backup(bed.workspace(), bed.store, BackupRequest(name="k"))
    assert reached == [point]
    # Killed while `consistency: stop` held it, or once it had started it again and published.
    assert bed.app() == ("running" if point == "backup:published" else "exited")
    again = backup(bed.workspace(), bed.store, BackupRequest(name="k2"))
    assert bed.app() == "running"
    assert bed.engine.files(VOLUME) == before
    assert ("k" in bed.store.list_snapshots(PROJECT)) is (point == "backup:published")
    assert again.manifest.name in bed.store.list_snapshots(PROJECT)
    assert bed.journal.read().stopped == []


UP_POINTS = ["up:extracting", "up:restored"]


@pytest.mark.parametrize("point", UP_POINTS)
def test_an_up_restore_killed_at_each_step_is_redone_by_the_next_up(tmp_path: Path, point: str) -> None:
    bed = make_bed(tmp_path, restore="latest")
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    base = bed.engine.files(VOLUME)
    # The volume is gone (down -v): `up` makes it again and restores the latest snapshot into it.
    for container in list(bed.engine.containers.values()):
        bed.engine.remove_container(container.id)
    bed.engine.remove_volume(VOLUME)

    def state() -> LiveState:
        return LiveState(
            now=static_state().now,
            volumes=bed.engine.list_volumes(with_sizes=True),
            guards=tuple(bed.engine.list_guards(PROJECT)),
        )

    with bed.crash_at(point) as reached:
        prepare_volumes(bed.workspace(), bed.store, state)
    assert reached == [point]
    if point == "up:extracting":
        assert incomplete_volumes(bed.engine, PROJECT) == {VOLUME: "base"}
    prepare_volumes(bed.workspace(), bed.store, state)
    assert bed.engine.files(VOLUME) == base
    assert bed.guarded() and bed.journal.read().operation is None
    assert incomplete_volumes(bed.engine, PROJECT) == {} and bed.leftovers() == []


def test_a_killed_verify_leaves_a_scratch_volume_that_the_next_command_removes(tmp_path: Path) -> None:
    bed = make_bed(tmp_path)
    backup(bed.workspace(), bed.store, BackupRequest(name="base"))
    with bed.crash_at("verify:extracting"):
        verify(bed.workspace(), bed.store, ["base"])
    assert any(v.startswith("docker-persist-verify-") for v in bed.engine.volumes)
    backup(bed.workspace(), bed.store, BackupRequest(name="next"))
    assert bed.leftovers() == []


@pytest.mark.parametrize("point", ["down:backed-up", "down:guards-released"])
def test_a_killed_down_gets_its_guards_back(tmp_path: Path, point: str) -> None:
    bed = make_bed(tmp_path)
    protect(bed.workspace(), [("data", VOLUME)])

    def state() -> LiveState:
        return LiveState(
            now=static_state().now,
            containers=tuple(bed.engine.list_project_containers(PROJECT)),
            volumes=bed.engine.list_volumes(with_sizes=True),
            guards=tuple(bed.engine.list_guards(PROJECT)),
        )

    with bed.crash_at(point) as reached:
        down(bed.workspace(), bed.store, DownRequest(remove_volumes=True), state)
    assert reached == [point]
    assert any(m.reason == "pre-down" for m in list_manifests(bed.store, PROJECT))
    recover(bed.workspace())
    assert bed.guarded() and bed.journal.read().operation is None


def test_a_volume_whose_files_outlive_it_is_replaced_not_merged(tmp_path: Path) -> None:
    """A volume bound to a host folder keeps its files when removed and created again: the restore
    empties it first, and reads it back to prove it holds the snapshot and nothing else."""
    bed = make_bed(tmp_path)
    engine = bed.engine
    for container in list(engine.containers.values()):
        engine.remove_container(container.id)
    del engine.volumes[VOLUME]
    engine.create_volume(VOLUME, "local", {"type": "none", "o": "bind", "device": "/srv/data"}, {})
    engine.write(VOLUME, "kept.txt", b"v1\n")
    engine.write(VOLUME, "gone.txt", b"deleted later\n")
    engine.add_compose_container(PROJECT, "app", {VOLUME: "/data"})
    backup(bed.workspace(), bed.store, BackupRequest(name="s1"))
    base = engine.files(VOLUME)
    engine.write(VOLUME, "kept.txt", b"v2\n")
    del engine.volumes[VOLUME].files["gone.txt"]
    engine.write(VOLUME, "new", b"added after s1\n")
    restore(bed.workspace(), bed.store, RestoreRequest("s1"))
    assert engine.files(VOLUME) == base
    assert "empty_volume" in engine.calls


def test_one_folder_part_check_is_kept_the_largest_into_a_volume_the_engine_empties() -> None:
    """A restore keeps one folder part's check to move it into its volume (restic then restores it once): the
    largest of those going into a volume the engine really empties; none for tar parts, for a volume whose
    files outlive it, or for a store that restores no folder."""
    import dataclasses

    from docker_persist.actions.restore import _kept_check
    from docker_persist.core.manifest import VolumeRecord
    from docker_persist.core.operations import Target

    def record(key: str, size: int, file: str) -> VolumeRecord:
        return VolumeRecord(key=key, source=key, driver="local", driver_opts={}, labels={}, file=file,
                            compression="none", archive_sha256="0" * 64, archive_bytes=0,
                            content_digest="sha256:" + "0" * 64, bytes=size, files=1, directories=1, symlinks=0,
                            entries=2, root=None)  # fmt: skip

    records = {
        "small": record("small", 10, "small.tree"),
        "big": record("big", 1000, "big.tree"),
        "huge-tar": record("huge-tar", 10**9, "huge-tar.tar.zst"),
        "bound": record("bound", 10**8, "bound.tree"),
    }
    targets = {key: Target(key, key, "data") for key in records}
    targets["bound"] = dataclasses.replace(targets["bound"], driver_opts={"type": "none", "o": "bind", "device": "/x"})
    assert targets["bound"].outlives
    every = list(targets.values())
    assert _kept_check(every, records, folders=True) is targets["big"]
    assert _kept_check([targets["small"], targets["huge-tar"]], records, folders=True) is targets["small"]
    assert _kept_check([targets["huge-tar"], targets["bound"]], records, folders=True) is None
    assert _kept_check(every, records, folders=False) is None
    assert _kept_check([], records, folders=True) is None
