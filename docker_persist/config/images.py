"""Well-known stateful images: where they keep their data, and whether they are databases.

Pure: a table and two parsing functions. `check` uses it to know that `postgres` keeps its
data in /var/lib/postgresql/data even when the Compose file says nothing about it.
"""

from __future__ import annotations

import dataclasses
import re

_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_DIGEST = re.compile(r"@[A-Za-z0-9_+.-]+:[0-9a-fA-F]+$")
# Bitnami's images keep their data under /bitnami/<name>, not where the upstream image does,
# so a bitnami image we do not list must not fall back to the upstream entry.
_BITNAMI_NAMESPACES = {"bitnami": "bitnami", "bitnamilegacy": "bitnami", "bitnamisecure": "bitnami"}


@dataclasses.dataclass(frozen=True)
class KnownImage:
    """A well-known stateful image.

    `data_paths` are where the image keeps its data, most usual first. Where there is more
    than one they are alternatives (postgres 17 and older use /var/lib/postgresql/data, 18
    uses /var/lib/postgresql) or one main path plus one that is usually empty (mongo's
    /data/configdb): the data is safe when any of them is on a named volume. `database`
    means its files must not be copied while it writes (it needs `consistency: stop` or a
    dump `pre` hook). `dump_command` is such a hook; `{path}` in it stands for the data path
    the dump is written under, so that the snapshot holds it.
    """

    name: str
    data_paths: tuple[str, ...]
    database: bool
    dump_command: str | None = None

    def dump_hook(self, path: str) -> str | None:
        """Return the dump command that writes under `path`, or None if none is known."""
        return self.dump_command.replace("{path}", path.rstrip("/")) if self.dump_command else None


_PG_DUMP = "sh -c 'pg_dumpall -U \"${POSTGRES_USER:-postgres}\" -f {path}/docker-persist-dump.sql'"
_MYSQL_DUMP = (
    'sh -c \'mysqldump --all-databases --single-transaction -uroot -p"$MYSQL_ROOT_PASSWORD"'
    " > {path}/docker-persist-dump.sql'"
)
_MARIADB_DUMP = (
    'sh -c \'mariadb-dump --all-databases --single-transaction -uroot -p"$MARIADB_ROOT_PASSWORD"'
    " > {path}/docker-persist-dump.sql'"
)
_MONGO_DUMP = "mongodump --archive={path}/docker-persist-dump.archive"
_REDIS_DUMP = "redis-cli SAVE"

DUMPABLE = ("postgres", "mysql", "mariadb")  # the images whose dump `x-persist.dump: auto` knows (core/dumps.py)

KNOWN_IMAGES: tuple[KnownImage, ...] = (
    KnownImage("postgres", ("/var/lib/postgresql/data", "/var/lib/postgresql"), True, _PG_DUMP),
    KnownImage("mysql", ("/var/lib/mysql",), True, _MYSQL_DUMP),
    KnownImage("mariadb", ("/var/lib/mysql",), True, _MARIADB_DUMP),
    KnownImage("mongo", ("/data/db", "/data/configdb"), True, _MONGO_DUMP),
    KnownImage("redis", ("/data",), True, _REDIS_DUMP),
    KnownImage("valkey/valkey", ("/data",), True, "valkey-cli SAVE"),
    KnownImage("elasticsearch", ("/usr/share/elasticsearch/data",), True),
    KnownImage("opensearchproject/opensearch", ("/usr/share/opensearch/data",), True),
    KnownImage("rabbitmq", ("/var/lib/rabbitmq",), True),
    KnownImage("gitea/gitea", ("/data",), False),
    KnownImage("nextcloud", ("/var/www/html",), False),
    KnownImage("influxdb", ("/var/lib/influxdb2", "/var/lib/influxdb"), True),
    KnownImage("couchdb", ("/opt/couchdb/data",), True),
    KnownImage("cassandra", ("/var/lib/cassandra",), True),
    KnownImage("neo4j", ("/data",), True),
    KnownImage("clickhouse/clickhouse-server", ("/var/lib/clickhouse",), True),
    KnownImage("mssql/server", ("/var/opt/mssql",), True),
    KnownImage("minio/minio", ("/data",), False),
    KnownImage("wordpress", ("/var/www/html",), False),
    KnownImage("gitlab/gitlab-ce", ("/var/opt/gitlab",), True),
    KnownImage("gitlab/gitlab-ee", ("/var/opt/gitlab",), True),
    KnownImage("zookeeper", ("/data", "/datalog"), True),
    KnownImage("etcd", ("/etcd-data", "/var/lib/etcd"), True),
    KnownImage("vaultwarden/server", ("/data",), True),  # SQLite: a live copy may be torn
    KnownImage("grafana/grafana", ("/var/lib/grafana",), True),  # SQLite
    KnownImage("prom/prometheus", ("/prometheus",), True),
    KnownImage("bitnami/postgresql", ("/bitnami/postgresql", "/bitnami/postgresql/data"), True),
    KnownImage("bitnami/mysql", ("/bitnami/mysql/data",), True),
    KnownImage("bitnami/mariadb", ("/bitnami/mariadb/data",), True),
    KnownImage("bitnami/mongodb", ("/bitnami/mongodb",), True),
    KnownImage("bitnami/redis", ("/bitnami/redis/data",), True),
    KnownImage("bitnami/rabbitmq", ("/bitnami/rabbitmq/mnesia",), True),
    KnownImage("bitnami/elasticsearch", ("/bitnami/elasticsearch/data",), True),
    KnownImage("bitnami/minio", ("/bitnami/minio/data",), False),
    KnownImage("bitnami/etcd", ("/bitnami/etcd",), True),
    KnownImage("bitnami/zookeeper", ("/bitnami/zookeeper",), True),
    KnownImage("bitnami/wordpress", ("/bitnami/wordpress",), False),
)

# Other names for a table entry, matched on the full repository or its last component.
_ALIASES = {
    "postgresql": "postgres",
    "postgis": "postgres",
    "timescaledb": "postgres",
    "pgvector": "postgres",
    "mysql-server": "mysql",
    "percona-server": "mysql",
    "mongodb": "mongo",
    "mongodb-community-server": "mongo",
    "mongodb-enterprise-server": "mongo",
    "redis-stack": "redis",
    "redis-stack-server": "redis",
    "bitwardenrs/server": "vaultwarden/server",
    "grafana-oss": "grafana/grafana",
    "grafana-enterprise": "grafana/grafana",
    "yandex/clickhouse-server": "clickhouse/clickhouse-server",
    "opensearch": "opensearchproject/opensearch",
}


def _build_indexes() -> tuple[dict[str, KnownImage], dict[str, KnownImage]]:
    by_repository = {image.name: image for image in KNOWN_IMAGES}
    by_repository.update({alias: by_repository[name] for alias, name in _ALIASES.items()})
    # The last component of each upstream name ("gitea" for gitea/gitea), unless two entries
    # share it ("server": mssql/server and vaultwarden/server), which would be a guess.
    seen: dict[str, list[KnownImage]] = {}
    for repository, image in by_repository.items():
        if not repository.startswith("bitnami/"):
            seen.setdefault(repository.rsplit("/", 1)[-1], []).append(image)
    by_last = {last: images[0] for last, images in seen.items() if len({i.name for i in images}) == 1}
    return by_repository, by_last


_BY_REPOSITORY, _BY_LAST_COMPONENT = _build_indexes()


def image_repository(image: str) -> str:
    """Given an image reference, return its repository without registry, tag or digest.

    `docker.io/library/postgres:16-alpine@sha256:...` gives `postgres`, `ghcr.io/org/app:1`
    gives `org/app`, `localhost:5000/team/db:2` gives `team/db`.
    """
    reference = _DIGEST.sub("", image.strip().lower())
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        reference = reference[:colon]
    parts = reference.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, parts = parts[0], parts[1:]
        if registry in _DOCKER_HUB and len(parts) > 1 and parts[0] == "library":
            parts = parts[1:]
    elif len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def lookup_image(image: str | None) -> KnownImage | None:
    """Given an image reference, return its KnownImage, or None if it is not a well-known one.

    The full repository is matched first (`gitea/gitea`, `bitnami/postgresql`), then its last
    component (`myorg/postgres` is postgres), except under Bitnami's namespaces.
    """
    if not image or not image.strip():
        return None
    repository = image_repository(image)
    namespace, _, last = repository.rpartition("/")
    top = namespace.split("/", 1)[0]
    if top in _BITNAMI_NAMESPACES:
        return _BY_REPOSITORY.get(f"{_BITNAMI_NAMESPACES[top]}/{last}")
    return _BY_REPOSITORY.get(repository) or _BY_LAST_COMPONENT.get(last)
