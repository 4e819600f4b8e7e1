"""Building the model from `docker compose config` output."""

from __future__ import annotations

from typing import Any

import pytest

from docker_persist.config.model import (
    EncryptPolicy,
    KeepPolicy,
    Mount,
    ProjectPolicy,
    ServicePolicy,
    VolumePolicy,
    build_project,
    parse_size,
)
from docker_persist.errors import ConfigError
from docker_persist.units import Duration, parse_duration

DOCUMENT: dict[str, Any] = {
    "name": "shop",
    "services": {
        "db": {
            "image": "postgres:16",
            "x-persist": {
                "consistency": "stop",
                "pre": "pg_dumpall -f /dump.sql",
                "paths": ["/var/lib/postgresql/data"],
            },
            "volumes": [
                {"type": "volume", "source": "db_data", "target": "/var/lib/postgresql/data", "volume": {}},
                {"type": "volume", "target": "/scratch"},
                {"type": "bind", "source": "/srv/conf", "target": "/conf", "read_only": True},
                {"type": "volume", "source": "uploads", "target": "/uploads", "x-persist": {"ignore": ["DP011"]}},
            ],
            "tmpfs": ["/run:size=64m"],
            "cap_add": ["cap_sys_admin"],
            "depends_on": {"persist": {"condition": "service_started"}},
        },
        "persist": {"provider": {"type": "persist", "options": {"volumes": "db_data"}}},
    },
    "volumes": {
        "db_data": {"name": "shop_db_data", "x-persist": {"restore": "latest", "max_age": "26h"}},
        "uploads": {"name": "shop_uploads"},
        "cache": {"name": "shop_cache", "x-persist": False},
        "ext": {"name": "shared", "external": True, "x-persist": True},
    },
    "x-persist": {
        "compression": "gzip",
        "keep": {"last": 7, "daily": 7},
        "on_down": "refuse",
        "ignore": ["DP009"],
        "encrypt": {"recipients": ["age1example"], "recipients_file": "keys/backup.txt"},
    },
}


def test_build_project() -> None:
    project = build_project(DOCUMENT, "/srv/shop")
    assert project.name == "shop"
    assert project.policy == ProjectPolicy(
        compression="gzip",
        keep=KeepPolicy(last=7, daily=7),
        on_down="refuse",
        ignore=("DP009",),
        encrypt=EncryptPolicy(recipients=("age1example",), recipients_file="/srv/shop/keys/backup.txt"),
    )
    db = project.service("db")
    assert db is not None
    assert db.policy == ServicePolicy(
        consistency="stop", pre=("pg_dumpall -f /dump.sql",), paths=("/var/lib/postgresql/data",)
    )
    assert db.mounts == (
        Mount("volume", "/var/lib/postgresql/data", "db_data"),
        Mount("volume", "/scratch"),
        Mount("bind", "/conf", "/srv/conf", read_only=True),
        Mount("volume", "/uploads", "uploads", precious=True, ignore=("DP011",), policy=VolumePolicy()),
        Mount("tmpfs", "/run"),
    )
    assert db.mounts[1].is_anonymous and not db.mounts[0].is_anonymous
    assert db.cap_add == ("SYS_ADMIN",)
    assert db.depends_on == ("persist",)
    persist = project.service("persist")
    assert persist is not None and persist.provider == "persist"
    assert persist.provider_options == {"volumes": "db_data"}


def test_volume_policies() -> None:
    volumes = build_project(DOCUMENT, "/srv/shop").volumes
    assert volumes["db_data"].policy == VolumePolicy(restore="latest", max_age=Duration(hours=26))
    # A mount's own `x-persist` marks its volume precious, with the defaults.
    assert volumes["uploads"].policy == VolumePolicy()
    assert volumes["cache"].policy is None and volumes["cache"].disposable
    assert volumes["ext"].external and volumes["ext"].name == "shared" and volumes["ext"].policy == VolumePolicy()
    project = build_project(DOCUMENT, "/srv/shop")
    assert [v.key for v in project.precious_volumes()] == ["db_data", "uploads", "ext"]
    assert [s.name for s in project.services_using("db_data")] == ["db"]


def test_mount_policy_applies_when_the_volume_has_none() -> None:
    document = {
        "name": "p",
        "services": {"a": {"volumes": [
            {"type": "volume", "source": "data", "target": "/d", "x-persist": {"restore": "latest", "protect": False}},
        ]}},
        "volumes": {"data": {"name": "p_data"}, "other": {"name": "p_other", "x-persist": {"restore": "s1"}}},
    }  # fmt: skip
    volumes = build_project(document, "/").volumes
    assert volumes["data"].policy == VolumePolicy(protect=False, restore="latest")
    # The top-level volume's own x-persist wins over a mount's.
    document["services"]["a"]["volumes"].append(
        {"type": "volume", "source": "other", "target": "/o", "x-persist": {"restore": "latest"}}
    )
    assert build_project(document, "/").volumes["other"].policy == VolumePolicy(restore="s1")


def test_unannotated_project_has_defaults() -> None:
    project = build_project({"name": "p", "services": {"a": {"image": "x"}}}, "/")
    assert project.policy == ProjectPolicy()
    assert project.precious_volumes() == []
    assert project.services[0].policy is None


def test_volume_name_defaults_to_project_prefix() -> None:
    project = build_project({"name": "p", "volumes": {"data": None}}, "/")
    assert project.volumes["data"].name == "p_data"


def test_project_without_name() -> None:
    with pytest.raises(ConfigError):
        build_project({"services": {}}, "/")


DURATIONS = [
    ("26h", Duration(hours=26)),
    ("7d", Duration(days=7)),
    ("2w", Duration(weeks=2)),
    ("1w2d", Duration(weeks=1, days=2)),
    ("90min", Duration(minutes=90)),
    ("45s", Duration(seconds=45)),
    ("1d12h", Duration(days=1, hours=12)),
    ("6mo", Duration(months=6)),
    ("1y6mo", Duration(years=1, months=6)),
]


@pytest.mark.parametrize(("text", "duration"), DURATIONS)
def test_parse_duration(text: str, duration: Duration) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize("text", ["", "3 days", "7", "h", "0d", "1d1w", "-1d", "1.5h", "90m", "6m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("10MB", 10_000_000), ("10M", 10_000_000), ("512k", 512_000), ("1GiB", 1 << 30),
     ("1.5m", 1_500_000), ("10MiB", 10 << 20)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10XB", "-1", "1 2"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_precious_binds_are_backed_up_as_bind_parts_under_a_stable_key() -> None:
    from docker_persist.config.model import bind_key, build_project

    document = {
        "name": "shop",
        "services": {
            "app": {
                "image": "acme/app",
                "volumes": [
                    {"type": "bind", "source": "/srv/shop/uploads", "target": "/u", "x-persist": {}},
                    {"type": "bind", "source": "/srv/shop/a b", "target": "/ab", "x-persist": {}},
                    {"type": "bind", "source": "/srv/shop/a-b", "target": "/a-b", "x-persist": {}},
                    {"type": "bind", "source": "/srv/shop/conf", "target": "/etc/app"},
                ],
            },
            "worker": {
                "image": "acme/app",
                "volumes": [{"type": "bind", "source": "/srv/shop/uploads", "target": "/u"}],
            },
        },
    }
    project = build_project(document, "/srv/shop")
    binds = project.precious_binds()
    assert len(binds) == 3 and (binds[0].key, binds[0].bind_source) == ("bind-uploads", "/srv/shop/uploads")
    assert binds[1].key == "bind-a-b" and binds[2].key.startswith("bind-a-b-"), "one slug, two keys"
    assert binds[0].driver_opts == {"type": "none", "o": "bind", "device": "/srv/shop/uploads"}
    assert binds[0].name.startswith("docker-persist-bind-") and binds[0].policy is not None
    assert project.precious_binds() == binds, "the same keys and scratch names every time"
    assert bind_key("/srv/shop", "/var/lib/data") == "bind-var-lib-data"
    assert bind_key("/srv/shop", "/srv/shop") == "bind-root"
