"""The up and down planners: pure functions of the project and the live state."""

from __future__ import annotations

import datetime
from typing import Any

from docker_persist.config.model import build_project
from docker_persist.core.planner import Loss, UpStep, is_ephemeral_path, plan_down, plan_up, skipped_by_backup
from docker_persist.core.state import ContainerMount, ContainerState, GuardState, LiveState, SnapshotInfo, VolumeState

NOW = datetime.datetime(2026, 11, 26, 15, 0, tzinfo=datetime.timezone.utc)
ANON = "a" * 64
MB = 1_000_000

DOCUMENT: dict[str, Any] = {
    "name": "shop",
    "services": {
        "db": {"image": "postgres:16", "volumes": [
            {"type": "volume", "source": "db_data", "target": "/var/lib/postgresql/data"},
            {"type": "volume", "target": "/scratch"},
        ]},
        "web": {"image": "nginx", "volumes": [
            {"type": "volume", "source": "cache", "target": "/cache"},
            {"type": "volume", "source": "logs", "target": "/logs"},
        ]},
    },
    "volumes": {
        "db_data": {"name": "shop_db_data", "x-persist": {"restore": "latest"}},
        "cache": {"name": "shop_cache", "x-persist": False},
        "logs": {"name": "shop_logs"},
        "shared": {"name": "shared", "external": True, "x-persist": True},
    },
}  # fmt: skip
PROJECT = build_project(DOCUMENT, "/srv/shop")


def state(**changes: Any) -> LiveState:
    return LiveState(now=NOW, **changes)


def volume(name: str, size: int | None = 5 * MB) -> VolumeState:
    return VolumeState(name=name, driver="local", size=size)


def container(service: str, mounts: tuple[ContainerMount, ...] = (), size_rw: int = 0,
              changes: tuple[str, ...] | None = None) -> ContainerState:  # fmt: skip
    return ContainerState(id=service * 8, name=f"shop-{service}-1", service=service, image="x", state="running",
                          mounts=mounts, size_rw=size_rw, changes=changes)  # fmt: skip


def test_up_on_a_fresh_engine_creates_restores_and_protects() -> None:
    plan = plan_up(PROJECT, state(snapshots=(SnapshotInfo("s1", NOW, ("db_data",)),)))
    assert plan.steps == (
        UpStep("create", "shop_db_data", "db_data", "driver local"),
        UpStep("restore", "shop_db_data", "db_data", "snapshot 's1' (latest) into the empty volume"),
        UpStep("protect", "shop_db_data", "db_data", "add an engine guard"),
        # An external volume is never created, but it is protected.
        UpStep("protect", "shared", "shared", "add an engine guard"),
    )


def test_up_is_idempotent_once_everything_is_there() -> None:
    live = state(
        volumes={"shop_db_data": volume("shop_db_data"), "shared": volume("shared")},
        guards=(GuardState("g1", "shop_db_data", "shop"), GuardState("g2", "shared", "shop")),
        snapshots=(SnapshotInfo("s1", NOW, ("db_data",)),),
    )
    assert plan_up(PROJECT, live).steps == ()


def test_up_never_restores_into_a_volume_with_data() -> None:
    live = state(
        volumes={"shop_db_data": volume("shop_db_data", size=1)}, snapshots=(SnapshotInfo("s", NOW, ("db_data",)),)
    )
    assert [s.action for s in plan_up(PROJECT, live).steps if s.key == "db_data"] == ["protect"]


def test_up_restores_into_an_existing_empty_volume() -> None:
    live = state(
        volumes={"shop_db_data": volume("shop_db_data", size=0)}, snapshots=(SnapshotInfo("s", NOW, ("db_data",)),)
    )
    assert [s.action for s in plan_up(PROJECT, live).steps if s.key == "db_data"] == ["restore", "protect"]


def test_up_with_no_snapshot_restores_nothing() -> None:
    assert "restore" not in [s.action for s in plan_up(PROJECT, state(snapshots=())).steps]


def test_up_with_unknown_snapshots_says_so() -> None:
    step = next(s for s in plan_up(PROJECT, state()).steps if s.action == "restore")
    assert "if any" in step.detail


def test_down_without_v_keeps_named_volumes_but_loses_anonymous_and_layer_data() -> None:
    live = state(
        volumes={"shop_db_data": volume("shop_db_data"), ANON: volume(ANON, 2 * MB)},
        containers=(
            container("db", (ContainerMount("volume", "/scratch", ANON),), size_rw=50 * MB, changes=("/srv/data",)),
            container("web", size_rw=50 * MB, changes=("/tmp/x", "/var/log/nginx/access.log")),
        ),
    )
    plan = plan_down(PROJECT, live, remove_volumes=False, layer_threshold=10 * MB)
    assert plan.losses == (
        Loss("anonymous-volume", ANON, None, "db", "/scratch", 2 * MB, False, "backup"),
        Loss("container-layer", "shop-db-1", None, "db", None, 50 * MB, False, "backup"),
    )
    assert plan.release_guards == ()


def test_down_v_loses_named_volumes_except_external_ones() -> None:
    live = state(
        volumes={n: volume(n) for n in ("shop_db_data", "shop_cache", "shop_logs", "shared")},
        guards=(GuardState("g", "shop_db_data", "shop"),),
    )
    plan = plan_down(PROJECT, live, remove_volumes=True, layer_threshold=10 * MB)
    assert [(loss.key, loss.precious, loss.action) for loss in plan.losses] == [
        ("db_data", True, "backup"),
        ("cache", False, "allow"),  # x-persist: false
        ("logs", False, "backup"),  # unannotated data is still data
    ]
    assert plan.losses[0].service == "db" and plan.losses[0].path == "/var/lib/postgresql/data"
    assert plan.release_guards == ("shop_db_data",)
    assert [loss.key for loss in plan.to_back_up] == ["db_data", "logs"]


def test_down_refuse_policy() -> None:
    refusing = build_project({**DOCUMENT, "x-persist": {"on_down": "refuse"}}, "/")
    live = state(volumes={"shop_db_data": volume("shop_db_data")}, guards=(GuardState("g", "shop_db_data", "shop"),))
    plan = plan_down(refusing, live, remove_volumes=True, layer_threshold=10 * MB)
    assert [loss.action for loss in plan.refused] == ["refuse"]
    assert plan.release_guards == ()


def test_down_with_a_small_layer_loses_nothing() -> None:
    live = state(containers=(container("db", size_rw=3 * MB, changes=("/srv/x",)),))
    assert plan_down(PROJECT, live, remove_volumes=False, layer_threshold=10 * MB).losses == ()


def test_ephemeral_paths() -> None:
    assert is_ephemeral_path("/tmp") and is_ephemeral_path("/var/log/x") and is_ephemeral_path("/run/lock")
    assert not is_ephemeral_path("/tmpdata") and not is_ephemeral_path("/var/lib/x") and not is_ephemeral_path("/")


def test_a_backup_names_what_it_leaves_out_and_why() -> None:
    document = {
        "name": "shop",
        "services": {
            "app": {
                "image": "acme/app",
                "volumes": [
                    {"type": "bind", "source": "/srv/shop/uploads", "target": "/srv/uploads"},
                    {"type": "bind", "source": "/srv/shop/conf", "target": "/etc/app", "read_only": True},
                    {"type": "volume", "source": "cache", "target": "/cache"},
                    {"type": "volume", "source": "media", "target": "/media"},
                    {"type": "volume", "source": "scratch", "target": "/scratch"},
                ],
            },
            "db": {"image": "postgres:16", "volumes": [{"type": "volume", "source": "db", "target": "/var/lib/pg"}]},
        },
        "volumes": {"cache": {"x-persist": False}, "media": {}, "scratch": {"x-persist": {}}, "db": {"x-persist": {}}},
    }
    project = build_project(document, "/srv/shop")
    bind = "a bind-mounted host folder: back it up on the host, or move it into a named volume"
    assert skipped_by_backup(project, ["db", "scratch"]) == [
        ("/srv/shop/uploads (app:/srv/uploads)", bind),
        ("volume media", "not marked with x-persist"),
    ]
    assert skipped_by_backup(project, ["db"], ["db"]) == []
    assert ("volume scratch", "not named on the command line") in skipped_by_backup(project, ["db"])
