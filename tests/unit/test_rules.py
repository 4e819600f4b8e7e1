"""The `check` rules and the image table, on projects built from `docker compose config`-shaped dicts.

Golden files pin the findings of a few whole projects: `UPDATE_GOLDEN=1` rewrites them, and a
rewritten file must be read and judged before it is committed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest

from docker_persist.config.images import KNOWN_IMAGES, image_repository, lookup_image
from docker_persist.config.model import Project, build_project
from docker_persist.core.findings import SEVERITIES, Finding
from docker_persist.core.rules import DEFAULT_OPTIONS, RULES, CheckOptions, run_rules
from docker_persist.core.state import (
    ContainerMount,
    ContainerState,
    GuardState,
    LiveState,
    SnapshotInfo,
    VolumeState,
)
from docker_persist.units import Duration

GOLDEN = Path(__file__).parent / "golden" / "rules"
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
MIB = 1024 * 1024
ANON = "3f2a9c" + "0" * 58  # a 64-hex anonymous volume name


# --- building fixtures ----------------------------------------------------------------


def vol(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"type": "volume", "source": source, "target": target, **extra}


def anon(target: str, **extra: Any) -> dict[str, Any]:
    return {"type": "volume", "target": target, **extra}


def bind(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"type": "bind", "source": source, "target": target, **extra}


def tmpfs(target: str, **extra: Any) -> dict[str, Any]:
    return {"type": "tmpfs", "target": target, **extra}


def project(
    services: dict[str, Any], volumes: dict[str, Any] | None = None, x_persist: Any = None, name: str = "shop"
) -> Project:
    document: dict[str, Any] = {"name": name, "services": services}
    if volumes is not None:
        document["volumes"] = volumes
    if x_persist is not None:
        document["x-persist"] = x_persist
    return build_project(document, f"/srv/{name}")


def live(**fields: Any) -> LiveState:
    return LiveState(now=NOW, **fields)


def container(service: str, **fields: Any) -> ContainerState:
    defaults: dict[str, Any] = {"id": f"id-{service}", "name": f"shop-{service}-1", "image": "", "state": "running"}
    return ContainerState(service=service, **{**defaults, **fields})


def snapshot(name: str, age: datetime.timedelta, *volumes: str, verified: datetime.timedelta | None = None,
             ok: bool | None = None) -> SnapshotInfo:  # fmt: skip
    verified_at = NOW - verified if verified is not None else None
    return SnapshotInfo(name, NOW - age, volumes, verified_at=verified_at, verified_ok=ok)


def check(
    rule: str, proj: Project, state: LiveState | None = None, options: CheckOptions = DEFAULT_OPTIONS
) -> list[Finding]:
    return RULES[rule].check(proj, state or live(), options)


def rules_of(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def assert_golden(name: str, findings: list[Finding]) -> None:
    path = GOLDEN / f"{name}.json"
    actual = [f.as_dict() for f in findings]
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2) + "\n")
    assert actual == json.loads(path.read_text()), f"{path} differs; UPDATE_GOLDEN=1 rewrites it"


# --- whole projects -------------------------------------------------------------------


def well_annotated() -> tuple[Project, LiveState]:
    """Postgres on a named precious volume, stopped for backups, fresh verified snapshots, a guard."""
    proj = project(
        {
            "db": {
                "image": "postgres:16-alpine",
                "volumes": [vol("db_data", "/var/lib/postgresql/data")],
                "x-persist": {"consistency": "stop"},
                "depends_on": {"persist": {"condition": "service_started"}},
            },
            "persist": {"provider": {"type": "persist", "options": {"volumes": "db_data", "services": "db"}}},
            "web": {
                "image": "nginx:1.27",
                "volumes": [bind("/srv/shop/site", "/usr/share/nginx/html", read_only=True)],
                "tmpfs": ["/var/cache/nginx"],
            },
            "cache": {"image": "redis:7", "volumes": [vol("cache", "/data")]},
        },
        volumes={
            "db_data": {"name": "shop_db_data", "x-persist": {"protect": True, "restore": "latest"}},
            "cache": {"name": "shop_cache", "x-persist": False},
        },
        x_persist={"schedule": "0 3 * * *"},
    )
    state = live(
        containers=(
            container(
                "db",
                image="postgres:16-alpine",
                mounts=(ContainerMount("volume", "/var/lib/postgresql/data", name="shop_db_data"),),
                size_rw=2 * MIB,
                changes=("/run/postgresql", "/run/postgresql/.s.PGSQL.5432.lock"),
            ),
            container("web", image="nginx:1.27", size_rw=4096, changes=()),
        ),
        volumes={
            "shop_db_data": VolumeState("shop_db_data", "local"),
            "shop_cache": VolumeState("shop_cache", "local"),
        },
        image_volumes={"postgres:16-alpine": ("/var/lib/postgresql/data",), "nginx:1.27": (), "redis:7": ("/data",)},
        guards=(GuardState("guard1", "shop_db_data", "shop"),),
        snapshots=(
            snapshot("2026-11-26T030000Z-scheduled", 9 * HOUR, "db_data"),
            snapshot("2026-11-25T030000Z-scheduled", 33 * HOUR, "db_data", verified=26 * HOUR, ok=True),
        ),
        host_paths={"/srv/shop/site": "dir"},
    )
    return proj, state


def neglected() -> tuple[Project, LiveState]:
    """A stack with most of the failure modes at once."""
    proj = project(
        {
            "db": {"image": "docker.io/library/postgres:16", "volumes": [anon("/var/lib/postgresql/data")]},
            "mysql": {"image": "mysql:8.4", "volumes": [bind("/srv/shop/mysql", "/var/lib/mysql")]},
            "cache": {"image": "redis:7", "tmpfs": ["/data"]},
            "app": {
                "image": "ghcr.io/acme/shop:2",
                "privileged": True,
                "volumes": [
                    bind("/var/run/docker.sock", "/var/run/docker.sock", read_only=True),
                    bind("/srv/shop/app.conf", "/etc/shop/app.conf", read_only=True),
                    vol("uploads", "/srv/uploads"),
                ],
                "x-persist": {"paths": ["/srv/state"]},
            },
            "worker": {"image": "ghcr.io/acme/shop:2", "volumes": [vol("uploads", "/srv/uploads")]},
        },
        volumes={"uploads": {"name": "shop_uploads", "x-persist": {}}},
    )
    state = live(
        image_volumes={"ghcr.io/acme/shop:2": ("/srv/spool",), "redis:7": ("/data",)},
        host_paths={"/srv/shop/app.conf": "file", "/srv/shop/mysql": "dir"},
        volumes={"shop_uploads": VolumeState("shop_uploads", "local")},
        snapshots=(),
    )
    return proj, state


def test_well_annotated_project_has_no_findings() -> None:
    proj, state = well_annotated()
    assert run_rules(proj, state) == []
    for rule in RULES.values():
        assert rule.check(proj, state, DEFAULT_OPTIONS) == [], rule.id
    assert_golden("well_annotated", run_rules(proj, state))


def test_neglected_project_golden() -> None:
    proj, state = neglected()
    findings = run_rules(proj, state)
    assert set(rules_of(findings)) == {"DP001", "DP002", "DP005", "DP007", "DP008", "DP009", "DP010", "DP011",
                                       "DP012", "DP015"}  # fmt: skip
    assert_golden("neglected", findings)


def test_order_is_deterministic_and_by_severity_rule_service_volume_path() -> None:
    proj, state = neglected()
    findings = run_rules(proj, state)
    assert run_rules(proj, state) == findings
    # Not the order of the Compose file: the app service comes before the cache and db services there.
    reversed_project = dataclasses.replace(proj, services=tuple(reversed(proj.services)))
    assert [f.rule for f in run_rules(reversed_project, state)] == [f.rule for f in findings]
    keys = [(-SEVERITIES.index(f.severity), f.rule, f.service or "", f.volume or "", f.path or "") for f in findings]
    assert keys == sorted(keys)
    assert findings[0].severity == "error" and findings[-1].severity == "warning"


def test_every_finding_is_one_line_and_names_its_service() -> None:
    for proj, state in (neglected(), legacy()):
        for finding in run_rules(proj, state):
            assert "\n" not in finding.message and "\n" not in finding.fix
            assert finding.fix
            if finding.service:
                assert f"'{finding.service}'" in finding.message


def test_registry_ids_are_stable() -> None:
    assert list(RULES) == [f"DP{n:03d}" for n in range(1, 23)]
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id and rule.severity in SEVERITIES and rule.title


# --- images ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("postgres", "postgres"),
        ("postgres:16", "postgres"),
        ("docker.io/library/postgres:16-alpine@sha256:" + "ab" * 32, "postgres"),
        ("postgres@sha256:" + "ab" * 32, "postgres"),
        ("library/postgres:16", "postgres"),
        ("Postgres:16", "postgres"),
        ("ghcr.io/org/app:1", "org/app"),
        ("localhost:5000/team/db:2", "team/db"),
        ("localhost/db", "db"),
        ("registry.example.com:5000/postgres", "postgres"),
        ("index.docker.io/bitnami/redis:7.2", "bitnami/redis"),
        ("mcr.microsoft.com/mssql/server:2022-latest", "mssql/server"),
        ("mirror.gcr.io/library/postgres:16", "library/postgres"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("postgres:18", "postgres"),
        ("myorg/postgres:16", "postgres"),
        ("registry.example.com:5000/team/postgres:16", "postgres"),
        ("mirror.gcr.io/library/postgres:16", "postgres"),
        ("postgresql", "postgres"),
        ("postgis/postgis:16-3.4", "postgres"),
        ("pgvector/pgvector:pg16", "postgres"),
        ("bitnami/postgresql:16", "bitnami/postgresql"),
        ("docker.io/bitnamilegacy/postgresql:16", "bitnami/postgresql"),
        ("gitea/gitea:1.22", "gitea/gitea"),
        ("mcr.microsoft.com/mssql/server:2022-latest", "mssql/server"),
        ("vaultwarden/server:latest", "vaultwarden/server"),
        ("quay.io/minio/minio", "minio/minio"),
        ("docker.elastic.co/elasticsearch/elasticsearch:8.15.0", "elasticsearch"),
        ("opensearchproject/opensearch:2", "opensearchproject/opensearch"),
        ("grafana/grafana-oss:11", "grafana/grafana"),
        ("clickhouse/clickhouse-server:24", "clickhouse/clickhouse-server"),
        ("prom/prometheus", "prom/prometheus"),
        ("mariadb:11", "mariadb"),
        ("bitnami/nginx", None),  # bitnami: never the upstream entry's paths
        ("someone/server", None),  # `server` is ambiguous (mssql, vaultwarden)
        ("nginx:1.27", None),
        ("", None),
        (None, None),
    ],
)
def test_lookup_image(image: str | None, name: str | None) -> None:
    known = lookup_image(image)
    assert (known.name if known else None) == name


@pytest.mark.parametrize(
    ("image", "path"),
    [
        ("postgres", "/var/lib/postgresql/data"),
        ("postgres:18", "/var/lib/postgresql"),
        ("bitnami/postgresql", "/bitnami/postgresql"),
        ("mysql", "/var/lib/mysql"),
        ("mariadb", "/var/lib/mysql"),
        ("mongo", "/data/db"),
        ("mongo", "/data/configdb"),
        ("redis", "/data"),
        ("elasticsearch", "/usr/share/elasticsearch/data"),
        ("opensearchproject/opensearch", "/usr/share/opensearch/data"),
        ("rabbitmq", "/var/lib/rabbitmq"),
        ("gitea/gitea", "/data"),
        ("nextcloud", "/var/www/html"),
        ("influxdb", "/var/lib/influxdb2"),
        ("influxdb:1.8", "/var/lib/influxdb"),
        ("couchdb", "/opt/couchdb/data"),
        ("cassandra", "/var/lib/cassandra"),
        ("neo4j", "/data"),
        ("clickhouse/clickhouse-server", "/var/lib/clickhouse"),
        ("mcr.microsoft.com/mssql/server", "/var/opt/mssql"),
        ("minio/minio", "/data"),
        ("wordpress", "/var/www/html"),
        ("gitlab/gitlab-ce", "/var/opt/gitlab"),
        ("zookeeper", "/data"),
        ("quay.io/coreos/etcd", "/etcd-data"),
        ("vaultwarden/server", "/data"),
        ("grafana/grafana", "/var/lib/grafana"),
        ("prom/prometheus", "/prometheus"),
    ],
)
def test_known_images_cover_their_data_paths(image: str, path: str) -> None:
    known = lookup_image(image)
    assert known is not None and path in known.data_paths


def test_known_image_table_is_consistent() -> None:
    names = [k.name for k in KNOWN_IMAGES]
    assert len(names) == len(set(names))
    assert all(k.data_paths and all(p.startswith("/") for p in k.data_paths) for k in KNOWN_IMAGES)
    assert not lookup_image("nextcloud").database  # type: ignore[union-attr]
    assert lookup_image("mysql").database  # type: ignore[union-attr]


def test_dump_hook_writes_under_the_data_path() -> None:
    postgres = lookup_image("postgres")
    assert postgres is not None
    assert postgres.dump_hook("/var/lib/postgresql/data/") == (
        "sh -c 'pg_dumpall -U \"${POSTGRES_USER:-postgres}\" -f /var/lib/postgresql/data/docker-persist-dump.sql'"
    )
    assert lookup_image("neo4j").dump_hook("/data") is None  # type: ignore[union-attr]


# --- DP001 ----------------------------------------------------------------------------


def test_dp001_anonymous_volume_on_database_path() -> None:
    proj = project({"db": {"image": "postgres:16", "volumes": [anon("/var/lib/postgresql/data")]}})
    [finding] = check("DP001", proj)
    assert finding == Finding(
        "DP001",
        "error",
        "service 'db' (postgres): /var/lib/postgresql/data is on an anonymous volume",
        "mount a named volume there: `volumes: [db_data:/var/lib/postgresql/data]` "
        "and declare `db_data` under top-level `volumes:` with `x-persist: {}`",
        service="db",
        path="/var/lib/postgresql/data",
    )


@pytest.mark.parametrize(
    ("image", "service", "image_volumes", "path", "where"),
    [
        ("postgres:16", {}, {"postgres:16": ("/var/lib/postgresql/data",)}, "/var/lib/postgresql/data",
         "image declares VOLUME /var/lib/postgresql/data"),
        ("postgres:18", {}, {"postgres:18": ("/var/lib/postgresql",)}, "/var/lib/postgresql",
         "image declares VOLUME /var/lib/postgresql"),
        ("postgres:16", {}, {}, "/var/lib/postgresql/data", "anonymous volume or in the container layer"),
        ("acme/mysql:8", {}, {"acme/mysql:8": ()}, "/var/lib/mysql", "in the container's writable layer"),
        ("redis:7", {"tmpfs": ["/data"]}, {}, "/data", "is on tmpfs"),
        ("postgres:16", {"volumes": [vol("pg", "/var/lib/postgresql"), tmpfs("/var/lib/postgresql/data")]}, {},
         "/var/lib/postgresql/data", "is on tmpfs"),
        ("nextcloud:29", {"volumes": [tmpfs("/var/www")]}, {}, "/var/www/html", "is on tmpfs (mounted at /var/www)"),
        # A mount above an image VOLUME does not stop Docker from mounting an anonymous volume there.
        ("postgres:16", {"volumes": [vol("pg", "/var/lib")]}, {"postgres:16": ("/var/lib/postgresql/data",)},
         "/var/lib/postgresql/data", "the mount above it at /var/lib does not stop Docker from making one"),
        ("mongo:7", {"volumes": [vol("pg", "/data")]}, {"mongo:7": ("/data/db", "/data/configdb")}, "/data/db",
         "image declares VOLUME /data/db, and the mount above it at /data"),
    ],
)  # fmt: skip
def test_dp001_fires(image: str, service: dict[str, Any], image_volumes: dict[str, Any], path: str, where: str) -> None:
    proj = project({"db": {"image": image, **service}}, volumes={"pg": None})
    [finding] = check("DP001", proj, live(image_volumes=image_volumes))
    assert finding.path == path and where in finding.message and finding.severity == "error"


def test_dp001_live_anonymous_volume_is_named_in_the_message() -> None:
    proj = project({"db": {"image": "mongo:7"}})
    state = live(containers=(container("db", mounts=(ContainerMount("volume", "/data/db", name=ANON),)),))
    [finding] = check("DP001", proj, state)
    assert finding.message == (
        "service 'db' (mongo): /data/db is on anonymous volume 3f2a9c000000: "
        "nothing is mounted there in the Compose file"
    )


@pytest.mark.parametrize(
    ("image", "mounts"),
    [
        ("postgres:16", [vol("pg", "/var/lib/postgresql/data")]),
        ("postgres:18", [vol("pg", "/var/lib/postgresql")]),
        ("postgres:16", [vol("pg", "/var/lib")]),  # the image's VOLUMEs were not read
        ("postgres:16", [anon("/var/lib/postgresql"), vol("pg", "/var/lib/postgresql/data")]),
        ("mongo:7", [vol("pg", "/data/db"), tmpfs("/data/configdb")]),
        ("postgres:16", [bind("/srv/pg", "/var/lib/postgresql/data")]),  # DP010's
        ("nginx:1.27", [anon("/usr/share/nginx/html")]),
    ],
)
def test_dp001_silent(image: str, mounts: list[dict[str, Any]]) -> None:
    proj = project({"db": {"image": image, "volumes": mounts}}, volumes={"pg": None})
    state = live(image_volumes={"postgres:18": ("/var/lib/postgresql",), "mongo:7": ("/data/db", "/data/configdb")})
    assert check("DP001", proj, state) == []


# --- DP002 ----------------------------------------------------------------------------


def test_dp002_image_volume_with_nothing_mounted() -> None:
    proj = project({"app": {"image": "acme/app:1", "volumes": [vol("other", "/srv/other")]}}, volumes={"other": None})
    [finding] = check("DP002", proj, live(image_volumes={"acme/app:1": ("/srv/data", "/srv/other")}))
    assert (finding.severity, finding.service, finding.path) == ("warning", "app", "/srv/data")
    assert "declares VOLUME /srv/data" in finding.message and "ignore: [DP002]" in finding.fix


@pytest.mark.parametrize(
    ("image", "mounts"),
    [
        ("acme/app:1", [vol("data", "/srv/data")]),
        ("acme/app:1", [bind("/srv/shop/data", "/srv/data")]),
        ("acme/app:1", [anon("/srv/data")]),  # DP004's
        ("acme/app:1", [tmpfs("/srv/data")]),
        ("postgres:16", []),  # DP001's
        ("mongo:7", [vol("data", "/data/db")]),  # configdb is mongo's, and /data/db is safe
        ("unread/app:1", []),  # image not inspected
    ],
)
def test_dp002_silent(image: str, mounts: list[dict[str, Any]]) -> None:
    proj = project({"app": {"image": image, "volumes": mounts}}, volumes={"data": None})
    declared = {"acme/app:1": ("/srv/data",), "postgres:16": ("/var/lib/postgresql/data",),
                "mongo:7": ("/data/db", "/data/configdb")}  # fmt: skip
    assert check("DP002", proj, live(image_volumes=declared)) == []


def test_dp002_mount_above_the_image_volume_does_not_count() -> None:
    proj = project({"app": {"image": "acme/app:1", "volumes": [vol("data", "/srv")]}}, volumes={"data": None})
    [finding] = check("DP002", proj, live(image_volumes={"acme/app:1": ("/srv/data",)}))
    assert finding.path == "/srv/data"


def test_dp002_uses_the_live_image_of_a_built_service() -> None:
    proj = project({"app": {"build": {"context": "."}}})
    state = live(containers=(container("app", image="shop-app"),), image_volumes={"shop-app": ("/srv/data",)})
    assert [f.path for f in check("DP002", proj, state)] == ["/srv/data"]


# --- DP003 ----------------------------------------------------------------------------


def test_dp003_data_in_writable_layer() -> None:
    changes = ("/var", "/var/lib", "/var/lib/app", "/var/lib/app/db.sqlite", "/tmp/x", "/srv/a", "/srv/b", "/srv/c")
    state = live(containers=(container("app", size_rw=50 * MIB, changes=changes),))
    [finding] = check("DP003", project({"app": {"image": "acme/app"}}), state)
    assert finding.message == (
        "service 'app' (container shop-app-1): 50.0 MiB of data in the writable layer "
        "(e.g. /srv/a, /srv/b, /srv/c and 1 more); removing the container loses it"
    )
    assert finding.path == "/srv/a" and "docker diff shop-app-1" in finding.fix


def test_dp003_ignores_mount_point_stubs() -> None:
    # As docker diff on overlay2 reports them: the mount points (and their parents) show up as changes.
    changes = (
        "/data",
        "/done",
        "/etc",
        "/etc/app.conf",
        "/srv",
        "/srv/blob",
        "/var",
        "/var/run",
        "/var/run/docker.sock",
    )
    mounts = (ContainerMount("volume", "/data", name="shop_data"), ContainerMount("bind", "/etc/app.conf"),
              ContainerMount("bind", "/var/run/docker.sock"))  # fmt: skip
    state = live(containers=(container("app", size_rw=12 * MIB, changes=changes, mounts=mounts),))
    [finding] = check("DP003", project({"app": {"image": "acme/app"}}), state)
    assert "(e.g. /done, /srv/blob)" in finding.message


def test_dp003_unknown_changes_still_report_the_size() -> None:
    state = live(containers=(container("app", size_rw=2 * 1024 * MIB, changes=None),))
    [finding] = check("DP003", project({"app": {"image": "acme/app"}}), state)
    assert "2.0 GiB of data in the writable layer;" in finding.message and finding.path is None


@pytest.mark.parametrize(
    "fields",
    [
        {"size_rw": 50 * MIB, "changes": ("/tmp/a", "/var/log/x", "/var/cache/apt/y", "/root/.cache/pip/z", "/run/p")},
        {"size_rw": 50 * MIB, "changes": ()},
        {"size_rw": 5 * MIB, "changes": ("/srv/data/big",)},
        {"size_rw": None, "changes": ("/srv/data/big",)},
        {"size_rw": 50 * MIB, "changes": ("/srv/data/big",), "oneoff": True},
    ],
)
def test_dp003_silent(fields: dict[str, Any]) -> None:
    state = live(containers=(container("app", **fields),))
    assert check("DP003", project({"app": {"image": "acme/app"}}), state) == []


def test_dp003_threshold_is_an_option() -> None:
    state = live(containers=(container("app", size_rw=5 * MIB, changes=("/srv/data/big",)),))
    proj = project({"app": {"image": "acme/app"}})
    assert rules_of(check("DP003", proj, state, CheckOptions(layer_threshold=MIB))) == ["DP003"]


# --- DP004 ----------------------------------------------------------------------------


def test_dp004_declared_anonymous_volume() -> None:
    [finding] = check("DP004", project({"app": {"image": "acme/app", "volumes": [anon("/srv/uploads")]}}))
    assert finding.message == (
        "service 'app': /srv/uploads is on an anonymous volume; after `docker compose down` the next `up` "
        "starts with a new empty one and orphans this one"
    )


def test_dp004_live_anonymous_volume() -> None:
    mounts = (ContainerMount("volume", "/srv/spool", name=ANON), ContainerMount("volume", "/srv/db", name="shop_db"))
    proj = project({"app": {"image": "acme/app", "volumes": [vol("db", "/srv/db")]}}, volumes={"db": None})
    [finding] = check("DP004", proj, live(containers=(container("app", mounts=mounts),)))
    assert finding.path == "/srv/spool" and "anonymous volume 3f2a9c000000 (container shop-app-1)" in finding.message


def test_dp004_live_anonymous_volume_replaced_by_a_named_one() -> None:
    # The Compose file gained a named volume; the running container still has the data on the anonymous one.
    proj = project({"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")]}},
                   volumes={"db_data": None})  # fmt: skip
    mounts = (ContainerMount("volume", "/var/lib/postgresql/data", name=ANON),)
    [finding] = check("DP004", proj, live(containers=(container("db", mounts=mounts),)))
    assert "the Compose file now mounts volume 'db_data' there" in finding.message
    assert (finding.volume, finding.path) == ("db_data", "/var/lib/postgresql/data")


def test_dp004_live_anonymous_volume_of_a_database_is_reported_beside_dp001() -> None:
    # DP001 says the Compose file is wrong; DP004 says this volume holds data now, and how to copy it out.
    proj = project({"db": {"image": "postgres:16", "volumes": [anon("/var/lib/postgresql/data")]}})
    state = live(
        containers=(container("db", mounts=(ContainerMount("volume", "/var/lib/postgresql/data", name=ANON),)),)
    )
    assert rules_of(run_rules(proj, state)) == ["DP001", "DP004"]
    assert "docker cp shop-db-1:/var/lib/postgresql/data" in check("DP004", proj, state)[0].fix


def test_dp004_silent() -> None:
    # A declared anonymous volume on a database's path is DP001's; a named volume is fine; one-off containers do
    # not count; mongo's /data/configdb is silent while /data/db is on a named volume.
    proj = project({"db": {"image": "postgres:16", "volumes": [anon("/var/lib/postgresql/data")]},
                    "app": {"image": "acme/app", "volumes": [vol("data", "/srv/data")]},
                    "mongo": {"image": "mongo:7", "volumes": [vol("data", "/data/db")]}},
                   volumes={"data": None})  # fmt: skip
    state = live(
        containers=(
            container("app", mounts=(ContainerMount("volume", "/srv/data", name="shop_data"),)),
            container("app", name="shop-app-run-1", oneoff=True, mounts=(ContainerMount("volume", "/x", name=ANON),)),
            container("mongo", mounts=(ContainerMount("volume", "/data/configdb", name=ANON),)),
        ),
        image_volumes={"mongo:7": ("/data/db", "/data/configdb")},
    )
    assert check("DP004", proj, state) == []


# --- DP005 ----------------------------------------------------------------------------


def precious_db(volume_policy: Any = None, x_persist: Any = None) -> Project:
    return project(
        {"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")],
                "x-persist": {"consistency": "stop"}}},
        volumes={"db_data": {"name": "shop_db_data", "x-persist": volume_policy if volume_policy is not None else {}}},
        x_persist=x_persist,
    )  # fmt: skip


def test_dp005_no_snapshot() -> None:
    [finding] = check("DP005", precious_db(), live(snapshots=(snapshot("other", HOUR, "cache"),)))
    assert finding.message == (
        "volume 'db_data' (service 'db' at /var/lib/postgresql/data): precious, but no snapshot contains it"
    )
    assert (finding.severity, finding.service, finding.volume, finding.path) == (
        "warning", "db", "db_data", "/var/lib/postgresql/data")  # fmt: skip
    assert "docker persist backup db_data" in finding.fix


@pytest.mark.parametrize(
    ("volume_policy", "x_persist", "age", "limit"),
    [
        ({}, None, 8 * DAY, "7d"),
        ({}, {"schedule": "0 3 * * *"}, 30 * HOUR, "26h"),
        ({"schedule": "0 * * * *"}, None, 30 * HOUR, "26h"),
        ({"max_age": "2h"}, {"max_age": "30d"}, 3 * HOUR, "2h"),
        ({}, {"max_age": "1d"}, 25 * HOUR, "1d"),  # the limit as it is written
    ],
)
def test_dp005_stale_snapshot(volume_policy: Any, x_persist: Any, age: datetime.timedelta, limit: str) -> None:
    state = live(snapshots=(snapshot("old", age + DAY, "db_data"), snapshot("newest", age, "db_data")))
    [finding] = check("DP005", precious_db(volume_policy, x_persist), state)
    assert "newest snapshot 'newest' is" in finding.message and f"(limit {limit})" in finding.message


def test_dp005_unknown_snapshots_are_info() -> None:
    [finding] = check("DP005", precious_db(), live(snapshots=None))
    assert finding.severity == "info" and "snapshot status unknown" in finding.message


@pytest.mark.parametrize(
    ("volume_policy", "x_persist", "age"),
    [({}, None, 6 * DAY), ({}, {"schedule": "0 3 * * *"}, 25 * HOUR), ({"max_age": "30d"}, None, 20 * DAY)],
)
def test_dp005_silent(volume_policy: Any, x_persist: Any, age: datetime.timedelta) -> None:
    state = live(snapshots=(snapshot("newest", age, "db_data"),))
    assert check("DP005", precious_db(volume_policy, x_persist), state) == []
    not_precious = project({"db": {"image": "postgres:16", "volumes": [vol("d", "/var/lib/postgresql/data")]}},
                           volumes={"d": None})  # fmt: skip
    assert check("DP005", not_precious, live(snapshots=())) == []


# --- DP006 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshots", "problem"),
    [
        ((snapshot("a", DAY, "db_data"),), "no snapshot of it has ever passed verify"),
        ((snapshot("a", DAY, "db_data", verified=HOUR, ok=False),), "its newest snapshot 'a' failed verify"),
        ((snapshot("a", 50 * DAY, "db_data", verified=40 * DAY, ok=True), snapshot("b", DAY, "db_data")),
         "last passed verify 40d ago (limit 30d)"),
        ((snapshot("a", 5 * DAY, "db_data", verified=4 * DAY, ok=True),
          snapshot("b", DAY, "db_data", verified=HOUR, ok=False)), "its newest snapshot 'b' failed verify"),
    ],
)  # fmt: skip
def test_dp006_fires(snapshots: tuple[SnapshotInfo, ...], problem: str) -> None:
    [finding] = check("DP006", precious_db(), live(snapshots=snapshots))
    assert finding.severity == "warning" and problem in finding.message and "docker persist verify" in finding.fix


def test_dp006_verify_max_age_is_configurable() -> None:
    state = live(snapshots=(snapshot("a", 5 * DAY, "db_data", verified=4 * DAY, ok=True),))
    assert rules_of(check("DP006", precious_db({"verify_max_age": "2d"}), state)) == ["DP006"]
    options = CheckOptions(default_verify_max_age=Duration(days=1))
    assert rules_of(check("DP006", precious_db(), state, options)) == ["DP006"]


@pytest.mark.parametrize(
    "snapshots",
    [
        None,  # unknown: DP005 says so
        (),  # none: DP005 says so
        (snapshot("a", 5 * DAY, "db_data", verified=4 * DAY, ok=True), snapshot("b", HOUR, "db_data")),
        (snapshot("a", 5 * DAY, "db_data", verified=4 * DAY, ok=True),),
    ],
)
def test_dp006_silent(snapshots: tuple[SnapshotInfo, ...] | None) -> None:
    assert check("DP006", precious_db(), live(snapshots=snapshots)) == []


# --- DP007 ----------------------------------------------------------------------------


def test_dp007_docker_socket_even_read_only() -> None:
    mount = bind("/var/run/docker.sock", "/var/run/docker.sock", read_only=True)
    [finding] = check("DP007", project({"ui": {"image": "portainer/portainer-ce", "volumes": [mount]}}))
    assert finding.message == (
        "service 'ui' bind-mounts the Docker socket /var/run/docker.sock, read-only or not: "
        "it gives full control of the engine, i.e. root on the host"
    )
    assert (finding.severity, finding.path) == ("error", "/var/run/docker.sock")


@pytest.mark.parametrize(
    "source",
    ["/", "/etc", "/etc/nginx", "/root", "/root/.ssh", "/home", "/home/alice", "/home/alice/.ssh/id_ed25519",
     "/Users/bob/.aws", "/proc", "/sys/fs/cgroup", "/boot", "/var/lib/docker", "/var/lib/docker/volumes",
     "/run/user/1000/docker.sock"],
)  # fmt: skip
def test_dp007_sensitive_writable_bind(source: str) -> None:
    [finding] = check("DP007", project({"app": {"image": "acme/app", "volumes": [bind(source, "/host")]}}))
    assert finding.path == source and source in finding.message


@pytest.mark.parametrize(
    ("source", "read_only"),
    [("/etc/localtime", True), ("/", True), ("/srv/shop/data", False), ("/home/alice/projects/shop", False),
     ("/var/lib/dockerfiles", False), ("/etcetera", False)],
)  # fmt: skip
def test_dp007_silent(source: str, read_only: bool) -> None:
    proj = project({"app": {"image": "acme/app", "volumes": [bind(source, "/host", read_only=read_only)]}})
    assert check("DP007", proj) == []


# --- DP008 ----------------------------------------------------------------------------


def test_dp008_privileged_with_binds_is_an_error() -> None:
    proj = project({"app": {"image": "acme/app", "privileged": True, "volumes": [bind("/srv/shop/data", "/data")]}})
    [finding] = check("DP008", proj)
    assert finding.severity == "error" and "`privileged: true` and bind-mounts /srv/shop/data" in finding.message


def test_dp008_sys_admin_without_binds_is_a_warning() -> None:
    proj = project({"app": {"image": "acme/app", "cap_add": ["CAP_SYS_ADMIN"], "volumes": [anon("/x")]}})
    [finding] = check("DP008", proj)
    assert finding.severity == "warning" and "cap_add SYS_ADMIN" in finding.message


def test_dp008_silent() -> None:
    proj = project({"app": {"image": "acme/app", "cap_add": ["NET_ADMIN"], "volumes": [bind("/srv/x", "/x")]}})
    assert check("DP008", proj) == []


# --- DP009 ----------------------------------------------------------------------------


def test_dp009_single_file_bind() -> None:
    proj = project({"web": {"image": "nginx", "volumes": [bind("/srv/shop/nginx.conf", "/etc/nginx/nginx.conf")]}})
    [finding] = check("DP009", proj, live(host_paths={"/srv/shop/nginx.conf": "file"}))
    assert finding.message == (
        "service 'web': bind mount of the single file /srv/shop/nginx.conf at /etc/nginx/nginx.conf: "
        "editors that save by rename leave the container reading the old file"
    )
    assert "`/srv/shop`" in finding.fix and finding.path == "/srv/shop/nginx.conf"


def test_dp009_missing_bind_source() -> None:
    proj = project({"app": {"image": "acme/app", "volumes": [bind("/srv/shop/dtaa", "/data")]}})
    [finding] = check("DP009", proj, live(host_paths={"/srv/shop/dtaa": "missing"}))
    assert "does not exist on the host" in finding.message and "mkdir -p /srv/shop/dtaa" in finding.fix


@pytest.mark.parametrize(
    ("source", "kind"),
    [("/srv/shop/conf", "dir"), ("/srv/shop/unread.conf", None), ("/etc/localtime", "file"),
     ("/var/run/docker.sock", "file")],
)  # fmt: skip
def test_dp009_silent(source: str, kind: str | None) -> None:
    proj = project({"app": {"image": "acme/app", "volumes": [bind(source, "/x", read_only=True)]}})
    assert check("DP009", proj, live(host_paths={source: kind} if kind else {})) == []


# --- DP010 ----------------------------------------------------------------------------


def test_dp010_database_on_bind() -> None:
    proj = project({"db": {"image": "mariadb:11", "volumes": [bind("/srv/shop/mysql", "/var/lib/mysql")]}})
    [finding] = check("DP010", proj)
    assert finding.message.startswith("service 'db' (mariadb): /var/lib/mysql is a bind mount of /srv/shop/mysql")
    assert (finding.severity, finding.path) == ("warning", "/var/lib/mysql")
    assert "`volumes: [db_data:/var/lib/mysql]`" in finding.fix


@pytest.mark.parametrize(
    ("image", "mount"),
    [
        ("nextcloud:29", bind("/srv/shop/nc", "/var/www/html")),  # not a database
        ("mariadb:11", vol("db", "/var/lib/mysql")),
        ("mariadb:11", bind("/srv/shop/conf", "/etc/mysql/conf.d")),
    ],
)
def test_dp010_silent(image: str, mount: dict[str, Any]) -> None:
    proj = project({"db": {"image": image, "volumes": [mount, vol("db", "/var/lib/mysql")]}}, volumes={"db": None})
    assert check("DP010", proj) == []


# --- DP011 ----------------------------------------------------------------------------


def test_dp011_database_volume_shared_read_write() -> None:
    proj = project(
        {"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")]},
         "backup": {"image": "acme/backup", "volumes": [vol("db_data", "/data")]}},
        volumes={"db_data": None},
    )  # fmt: skip
    [finding] = check("DP011", proj)
    assert finding.severity == "error" and (finding.service, finding.volume) == ("db", "db_data")
    assert "services 'db' at /var/lib/postgresql/data, 'backup' at /data" in finding.message
    assert "`db_data:/data:ro` in 'backup'" in finding.fix


def test_dp011_shared_non_database_volume_is_a_warning() -> None:
    # postgres writes dumps to this volume, but its data files are elsewhere.
    proj = project(
        {"db": {"image": "postgres:16", "volumes": [vol("pg", "/var/lib/postgresql/data"), vol("dumps", "/dumps")]},
         "web": {"image": "acme/web", "volumes": [vol("dumps", "/srv/dumps")]}},
        volumes={"pg": None, "dumps": None},
    )  # fmt: skip
    [finding] = check("DP011", proj)
    assert finding.severity == "warning" and finding.volume == "dumps"


def test_dp011_silent() -> None:
    proj = project(
        {"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data"),
                                                    vol("db_data", "/mnt/again")]},
         "backup": {"image": "acme/backup", "volumes": [vol("db_data", "/data", read_only=True)]}},
        volumes={"db_data": None},
    )  # fmt: skip
    assert check("DP011", proj) == []


# --- DP012 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "where"),
    [
        ({"tmpfs": ["/srv"]}, "is on tmpfs (mounted at /srv)"),
        ({"volumes": [anon("/srv/state")]}, "is on an anonymous volume"),
        ({}, "is on no named volume"),
    ],
)
def test_dp012_precious_path_not_persisted(service: dict[str, Any], where: str) -> None:
    proj = project({"app": {"image": "acme/app", "x-persist": {"paths": ["/srv/state"]}, **service}})
    [finding] = check("DP012", proj)
    assert finding.message.startswith(f"service 'app': x-persist says /srv/state must persist, but it {where}")
    assert (finding.severity, finding.path) == ("error", "/srv/state")


@pytest.mark.parametrize(
    "service",
    [
        {"image": "acme/app", "volumes": [vol("state", "/srv")]},
        {"image": "acme/app", "volumes": [bind("/srv/shop/state", "/srv/state")]},
        {"image": "acme/app", "volumes": [tmpfs("/srv"), vol("state", "/srv/state")]},
        {"image": "postgres:16", "volumes": [anon("/var/lib/postgresql/data")]},  # DP001's
    ],
)
def test_dp012_silent(service: dict[str, Any]) -> None:
    paths = ["/var/lib/postgresql/data"] if service["image"].startswith("postgres") else ["/srv/state"]
    proj = project({"app": {**service, "x-persist": {"paths": paths}}}, volumes={"state": None})
    assert check("DP012", proj) == []


# --- DP013 ----------------------------------------------------------------------------


def test_dp013_precious_volume_nobody_mounts() -> None:
    proj = project({"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")]}},
                   volumes={"db_data": {"x-persist": {}}, "db-data": {"x-persist": {}}})  # fmt: skip
    [finding] = check("DP013", proj, live(snapshots=()))
    assert finding.message == "volume 'db-data' (mounted by no service): has x-persist, but no service mounts it"
    assert (finding.volume, finding.service) == ("db-data", None)


def test_dp013_provider_options_name_missing_things() -> None:
    proj = project(
        {"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")]},
         "persist": {"provider": {"type": "persist",
                                  "options": {"volumes": "db_data, dbdata", "services": ["db", "dbb"]}}}},
        volumes={"db_data": {"name": "shop_db_data"}},
    )  # fmt: skip
    findings = check("DP013", proj)
    assert [f.message for f in findings] == [
        "service 'persist' (persist provider): option volumes names 'dbdata', which the project has no volume called",
        "service 'persist' (persist provider): option services names 'dbb', which the project has no service called",
    ]


@pytest.mark.parametrize(
    ("snapshots", "problem"),
    [
        ((), "names a snapshot that does not exist"),
        ((snapshot("golden", DAY, "cache"),), "names a snapshot that does not contain it"),
    ],
)
def test_dp013_restore_names_a_missing_snapshot(snapshots: tuple[SnapshotInfo, ...], problem: str) -> None:
    [finding] = check("DP013", precious_db({"restore": "golden"}), live(snapshots=snapshots))
    assert f"x-persist restore: golden {problem}" in finding.message


@pytest.mark.parametrize(
    ("volume_policy", "snapshots"),
    [
        ({"restore": "golden"}, None),  # snapshots unknown
        ({"restore": "golden"}, (snapshot("golden", DAY, "db_data"),)),
        ({"restore": "latest"}, ()),
        ({"restore": "none"}, ()),
    ],
)
def test_dp013_silent(volume_policy: Any, snapshots: tuple[SnapshotInfo, ...] | None) -> None:
    proj, state = well_annotated()
    assert check("DP013", proj, state) == []
    assert check("DP013", precious_db(volume_policy), live(snapshots=snapshots)) == []


# --- DP014 ----------------------------------------------------------------------------


def test_dp014_external_volume_missing() -> None:
    proj = project({"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")]}},
                   volumes={"db_data": {"name": "prod_db", "external": True}})  # fmt: skip
    [finding] = check("DP014", proj)
    assert finding.message == (
        "volume 'db_data' (service 'db' at /var/lib/postgresql/data): external volume 'prod_db' does not exist, "
        "so `up` fails"
    )
    assert "docker volume create prod_db" in finding.fix
    assert check("DP014", proj, live(volumes={"prod_db": VolumeState("prod_db", "local")})) == []
    assert check("DP014", proj, live(), CheckOptions(engine_read=False)) == []  # check --static
    internal = project({"db": {"image": "postgres:16", "volumes": [vol("db_data", "/var/lib/postgresql/data")]}},
                       volumes={"db_data": None})  # fmt: skip
    assert check("DP014", internal) == []


# --- DP015 ----------------------------------------------------------------------------


def test_dp015_protected_volume_without_guard() -> None:
    state = live(volumes={"shop_db_data": VolumeState("shop_db_data", "local")})
    [finding] = check("DP015", precious_db(), state)
    assert finding.severity == "warning" and "'shop_db_data' has no guard" in finding.message
    assert "docker persist protect db_data" in finding.fix


def test_dp015_a_stopped_guard_is_no_guard_against_prune() -> None:
    exists = {"shop_db_data": VolumeState("shop_db_data", "local")}
    stopped = live(volumes=exists, guards=(GuardState("g", "shop_db_data", "shop", running=False),))
    [finding] = check("DP015", precious_db(), stopped)
    assert "not running" in finding.message and "docker container prune" in finding.message
    assert "docker persist protect db_data" in finding.fix


def test_dp015_silent() -> None:
    exists = {"shop_db_data": VolumeState("shop_db_data", "local")}
    guarded = live(volumes=exists, guards=(GuardState("g", "shop_db_data", "shop"),))
    assert check("DP015", precious_db(), guarded) == []
    assert check("DP015", precious_db({"protect": False}), live(volumes=exists)) == []
    assert check("DP015", precious_db(), live()) == []  # not created yet: `up` creates and guards it


# --- DP016 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "path", "hook"),
    [
        ("mongo:7", "/data/db", "mongodump --archive=/data/db/"),
        ("redis:7", "/data", "redis-cli SAVE"),
        ("neo4j:5", "/data", None),
    ],
)
def test_dp016_database_copied_live(image: str, path: str, hook: str | None) -> None:
    proj = project({"db": {"image": image, "volumes": [vol("db_data", path)]}}, volumes={"db_data": {"x-persist": {}}})
    [finding] = check("DP016", proj)
    assert (finding.severity, finding.volume, finding.path) == ("warning", "db_data", path)
    assert "`x-persist: {consistency: stop}`" in finding.fix
    assert (hook in finding.fix) if hook else ("pre" not in finding.fix)


@pytest.mark.parametrize(
    ("image", "path"),
    [("postgres:16", "/var/lib/postgresql/data"), ("mysql:8.4", "/var/lib/mysql"), ("mariadb:11", "/var/lib/mysql")],
)
def test_dp016_proposes_a_hot_dump_for_the_databases_it_can_dump(image: str, path: str) -> None:
    proj = project({"db": {"image": image, "volumes": [vol("db_data", path)]}}, volumes={"db_data": {"x-persist": {}}})
    [finding] = check("DP016", proj)
    assert "`x-persist: {dump: auto}`" in finding.fix and "consistency: stop" in finding.fix
    dumped = project({"db": {"image": image, "volumes": [vol("db_data", path)], "x-persist": {"dump": "auto"}}},
                     volumes={"db_data": {"x-persist": {}}})  # fmt: skip
    assert check("DP016", dumped) == []
    both = project(
        {"db": {"image": image, "volumes": [vol("db_data", path)], "x-persist": {"dump": {"also_volume": True}}}},
        volumes={"db_data": {"x-persist": {}}},
    )
    assert len(check("DP016", both)) == 1  # the files are still copied live


@pytest.mark.parametrize(
    ("service", "volume"),
    [
        ({"image": "postgres:16", "x-persist": {"consistency": "stop"}}, {"x-persist": {}}),
        ({"image": "postgres:16", "x-persist": {"consistency": "pause"}}, {"x-persist": {}}),
        ({"image": "postgres:16", "x-persist": {"pre": ["pg_dumpall -f /var/lib/postgresql/data/d.sql"]}},
         {"x-persist": {}}),
        ({"image": "postgres:16"}, {}),  # not precious
        ({"image": "nextcloud:29"}, {"x-persist": {}}),  # not a database
    ],
)  # fmt: skip
def test_dp016_silent(service: dict[str, Any], volume: dict[str, Any]) -> None:
    target = "/var/www/html" if service["image"].startswith("nextcloud") else "/var/lib/postgresql/data"
    proj = project({"db": {**service, "volumes": [vol("db_data", target)]}}, volumes={"db_data": volume})
    assert check("DP016", proj) == []


# --- DP017 ----------------------------------------------------------------------------


def test_dp017_unusable_encryption_is_an_error_naming_the_problem() -> None:
    proj = project({}, x_persist={"encrypt": {"recipients_file": "keys.txt"}})
    problem = "cannot read x-persist.encrypt.recipients_file /srv/shop/keys.txt: No such file or directory"
    [finding] = check("DP017", proj, options=CheckOptions(encrypt_problem=problem))
    assert finding.severity == "error" and problem in finding.message and "project 'shop'" in finding.message
    assert "age-keygen -y" in finding.fix


def test_dp017_silent_without_encrypt_or_without_a_problem() -> None:
    assert check("DP017", project({}, x_persist={"encrypt": {"recipients_file": "k"}})) == []
    assert check("DP017", project({}), options=CheckOptions(encrypt_problem="stale")) == []


# --- run_rules: ignore, disposable, order -------------------------------------------


def test_ignore_at_project_level() -> None:
    proj = project({"db": {"image": "postgres:16", "volumes": [anon("/var/lib/postgresql/data")]}},
                   x_persist={"ignore": ["DP001"]})  # fmt: skip
    assert run_rules(proj, live()) == []


def test_ignore_at_service_level() -> None:
    services = {
        "db": {
            "image": "postgres:16",
            "volumes": [anon("/var/lib/postgresql/data")],
            "x-persist": {"ignore": ["DP001"]},
        },
        "db2": {"image": "postgres:16", "volumes": [anon("/var/lib/postgresql/data")]},
    }
    assert [(f.rule, f.service) for f in run_rules(project(services), live())] == [("DP001", "db2")]


def test_ignore_at_mount_level() -> None:
    conf = bind("/srv/shop/app.conf", "/etc/app.conf", **{"x-persist": {"ignore": ["DP009"]}})
    other = bind("/srv/shop/other.conf", "/etc/other.conf")
    proj = project({"app": {"image": "acme/app", "volumes": [conf, other]}})
    state = live(host_paths={"/srv/shop/app.conf": "file", "/srv/shop/other.conf": "file"})
    assert [(f.rule, f.path) for f in run_rules(proj, state)] == [("DP009", "/srv/shop/other.conf")]


def test_ignore_on_a_mount_silences_volume_findings_about_it() -> None:
    mount = vol("db_data", "/var/lib/postgresql/data", **{"x-persist": {"ignore": ["DP015", "DP005"]}})
    proj = project({"db": {"image": "postgres:16", "volumes": [mount], "x-persist": {"consistency": "stop"}}},
                   volumes={"db_data": {"name": "shop_db_data"}})  # fmt: skip
    assert proj.volumes["db_data"].policy is not None  # the mount's x-persist made it precious
    state = live(volumes={"shop_db_data": VolumeState("shop_db_data", "local")}, snapshots=())
    assert run_rules(proj, state) == []


def test_disposable_volumes_and_mounts_are_silent() -> None:
    proj = project(
        {"a": {"image": "acme/app", "volumes": [vol("scratch", "/scratch"), anon("/spool", **{"x-persist": False})]},
         "b": {"image": "acme/app", "volumes": [vol("scratch", "/scratch")]},
         "cache": {"image": "redis:7", "volumes": [tmpfs("/data", **{"x-persist": False})]}},
        volumes={"scratch": {"x-persist": False}},
    )  # fmt: skip
    assert rules_of(RULES["DP011"].check(proj, live(), DEFAULT_OPTIONS)) == ["DP011"]  # the rule alone fires
    assert run_rules(proj, live()) == []


# --- golden: live state ---------------------------------------------------------------


def legacy() -> tuple[Project, LiveState]:
    """An app that writes to its layer and to anonymous volumes, with old, unverified snapshots."""
    proj = project(
        {
            "app": {"image": "acme/legacy:3", "volumes": [anon("/srv/uploads"), vol("data", "/srv/data")]},
            "db": {"image": "mongo:7", "volumes": [vol("mongo", "/data/db")], "x-persist": {"consistency": "stop"}},
            "ext": {"image": "acme/tool", "volumes": [vol("shared", "/shared")]},
        },
        volumes={
            "data": {"name": "shop_data", "x-persist": {"restore": "2026-10-01T000000Z-manual"}},
            "mongo": {"name": "shop_mongo", "x-persist": {"protect": False}},
            "shared": {"name": "team_shared", "external": True},
        },
        x_persist={"max_age": "2d"},
    )
    state = live(
        containers=(
            container(
                "app",
                image="acme/legacy:3",
                size_rw=300 * MIB,
                changes=("/var", "/var/lib", "/var/lib/legacy", "/var/lib/legacy/index.db", "/var/log/legacy.log"),
                mounts=(
                    ContainerMount("volume", "/srv/uploads", name=ANON),
                    ContainerMount("volume", "/srv/data", name="shop_data"),
                    ContainerMount("volume", "/srv/cache", name="9" * 64),
                ),
            ),
            container(
                "db",
                image="mongo:7",
                mounts=(
                    ContainerMount("volume", "/data/db", name="shop_mongo"),
                    ContainerMount("volume", "/data/configdb", name="a" * 64),
                ),
            ),
        ),
        volumes={"shop_data": VolumeState("shop_data", "local"), "shop_mongo": VolumeState("shop_mongo", "local")},
        image_volumes={"mongo:7": ("/data/db", "/data/configdb")},
        guards=(GuardState("g", "shop_data", "shop"),),
        snapshots=(
            snapshot("2026-11-20T030000Z-manual", 6 * DAY, "data", "mongo", verified=5 * DAY, ok=True),
            snapshot("2026-11-25T030000Z-pre-down", 33 * HOUR, "mongo", verified=HOUR, ok=False),
        ),
    )
    return proj, state


def test_legacy_project_golden() -> None:
    proj, state = legacy()
    findings = run_rules(proj, state)
    assert rules_of(findings) == ["DP013", "DP014", "DP003", "DP004", "DP004", "DP005", "DP006"]
    assert_golden("legacy", findings)


def test_unknown_snapshots_golden() -> None:
    proj, state = well_annotated()
    findings = run_rules(proj, dataclasses.replace(state, snapshots=None))
    assert [(f.rule, f.severity) for f in findings] == [("DP005", "info")]
    assert_golden("unknown_snapshots", findings)


# --- DP018 ----------------------------------------------------------------------------


def test_dp018_a_volume_that_holds_part_of_a_restore() -> None:
    state = live(volumes={"shop_db_data": VolumeState("shop_db_data", "local")})
    state = dataclasses.replace(state, incomplete={"shop_db_data": "before-upgrade"})
    [finding] = check("DP018", precious_db(), state)
    assert finding.severity == "error" and "part of snapshot 'before-upgrade'" in finding.message
    assert "docker persist restore before-upgrade --yes" in finding.fix
    assert check("DP018", precious_db(), live()) == []


# --- DP019, DP020 -----------------------------------------------------------------------


def test_dp019_a_damaged_snapshot() -> None:
    damaged = SnapshotInfo("broken", NOW, (), damaged="the manifest is not valid JSON")
    [finding] = check("DP019", precious_db(), live(snapshots=(damaged,)))
    assert "'broken' is damaged: the manifest is not valid JSON" in finding.message
    assert "docker persist forget broken" in finding.fix


def test_dp020_what_keep_forgets_next() -> None:
    snapshots = tuple(snapshot(f"s{n}", n * DAY, "db_data") for n in range(1, 5))
    [finding] = check("DP020", precious_db(x_persist={"keep": {"last": 2}}), live(snapshots=snapshots))
    assert finding.severity == "info" and "forgets 2 snapshot(s) at the next backup: 's3', 's4'" in finding.message
    assert check("DP020", precious_db(x_persist={"keep": {"last": 9}}), live(snapshots=snapshots)) == []
    assert check("DP020", precious_db(), live(snapshots=snapshots)) == []


# --- DP021 ----------------------------------------------------------------------------


def test_dp021_an_unannotated_database_volume_is_an_error_with_its_size() -> None:
    proj = project(
        {"db": {"image": "postgres:16", "volumes": [vol("pgdata", "/var/lib/postgresql/data")]}},
        {"pgdata": {}},
    )
    state = live(volumes={"shop_pgdata": VolumeState("shop_pgdata", "local", size=40 * 1024 * 1024)})
    [finding] = check("DP021", proj, state)
    assert finding.severity == "error" and finding.volume == "pgdata" and finding.service == "db"
    assert "holds 40.0 MiB of postgres database files, and no x-persist policy covers it" in finding.message
    assert "`docker compose down -v`" in finding.message and "x-persist: {}" in finding.fix
    [before_up] = check("DP021", proj, live())
    assert before_up.severity == "error" and "postgres database files (once created)" in before_up.message
    [static] = check("DP021", proj, live(), CheckOptions(engine_read=False))
    assert "holds postgres database files," in static.message


def test_dp021_other_unannotated_data_is_a_warning() -> None:
    proj = project({"app": {"image": "acme/app", "volumes": [vol("uploads", "/srv/uploads")]}}, {"uploads": {}})
    [finding] = check("DP021", proj, live(volumes={"shop_uploads": VolumeState("shop_uploads", "local")}))
    assert finding.severity == "warning" and "holds data, and no x-persist policy covers it" in finding.message


@pytest.mark.parametrize(
    "volume", [{"x-persist": {}}, {"x-persist": False}, {"external": True, "name": "shared"}], ids=str
)
def test_dp021_is_silent_for_covered_disposable_and_external_volumes(volume: dict[str, Any]) -> None:
    proj = project(
        {"db": {"image": "postgres:16", "volumes": [vol("pgdata", "/var/lib/postgresql/data")]}}, {"pgdata": volume}
    )
    assert check("DP021", proj, live()) == []


def test_dp021_writable_host_folders_are_warned_about_and_config_is_not() -> None:
    services = {
        "app": {
            "image": "acme/app",
            "volumes": [
                bind("/srv/shop/uploads", "/srv/uploads"),
                bind("/srv/shop/conf", "/etc/app", read_only=True),
                bind("/srv/shop/app.ini", "/etc/app.ini"),
                bind("/etc/ssl", "/etc/ssl"),  # DP007's
            ],
        },
        "db": {"image": "postgres:16", "volumes": [bind("/srv/shop/pg", "/var/lib/postgresql/data")]},  # DP010's
    }
    kinds = {"/srv/shop/uploads": "dir", "/srv/shop/conf": "dir", "/srv/shop/app.ini": "file", "/etc/ssl": "dir",
             "/srv/shop/pg": "dir"}  # fmt: skip
    [finding] = check("DP021", project(services), live(host_paths=kinds))
    assert (finding.severity, finding.service, finding.path) == ("warning", "app", "/srv/shop/uploads")
    assert "writes to host folder /srv/shop/uploads" in finding.message and ":ro" in finding.fix
    assert check("DP021", project(services), live()) == [], "a folder the host does not show is not reported"
    ignored = {**services, "app": {**services["app"], "x-persist": {"ignore": ["DP021"]}}}
    assert "DP021" not in rules_of(run_rules(project(ignored), live(host_paths=kinds)))
