"""Logical dumps: which services are dumped, which volume each dump stands for, and the commands.

Pure. `x-persist.dump: auto` takes the commands of a known image: PostgreSQL (`pg_dumpall`, read
back by `psql`) and MySQL or MariaDB (`mysqldump`/`mariadb-dump --single-transaction`, read back
by `mysql`/`mariadb`). Each is a POSIX shell script run in the container with `sh -c`, so the
credentials are read inside the container, from the variables the official images take
(POSTGRES_USER and POSTGRES_PASSWORD, MYSQL_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD, and their
*_FILE secrets), into the environment of the client (PGPASSWORD, MYSQL_PWD): never into an
argv, a log or a manifest. Anything else takes `{command, restore, ready}`.

A dump part is a snapshot record of kind `dump` keyed `<volume>.dump`: the dump of the database
whose files are on that volume.
"""

from __future__ import annotations

import dataclasses

from docker_persist.config.images import DUMPABLE, lookup_image
from docker_persist.config.model import Project, Service
from docker_persist.core.manifest import Manifest, VolumeRecord
from docker_persist.errors import ConfigError

DUMP_SUFFIX = ".dump"  # a dump record's key: the volume's key and this

_PG_CREDENTIALS = (
    'u="${POSTGRES_USER:-postgres}"; '
    'if [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ]; then '
    'PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE"); export PGPASSWORD; '
    'elif [ -n "${POSTGRES_PASSWORD:-}" ]; then PGPASSWORD=$POSTGRES_PASSWORD; export PGPASSWORD; fi; '
)
# --clean --if-exists: the dump drops what it re-creates, so it loads into the cluster a fresh
# container initialises (whose POSTGRES_DB exists already). Loading it, the two lines for the
# connecting superuser itself are left out: it cannot drop itself, and it exists. The filter works on
# bytes (LC_ALL=C, -a: a LATIN1 row is a line like any other), and its own exit status is checked,
# since sh has no pipefail: a filter that died would end the load early, and psql would take it for
# the end of the data.
_PG_DUMP = _PG_CREDENTIALS + 'exec pg_dumpall -U "$u" --clean --if-exists --quote-all-identifiers'
_PG_RESTORE = (
    _PG_CREDENTIALS
    + 'q=$(printf \'%s\' "$u" | sed \'s/"/""/g\'); st=$(mktemp) || exit 1; '
    + '{ LC_ALL=C grep -a -v -x -F -e "DROP ROLE IF EXISTS \\"$q\\";" -e "CREATE ROLE \\"$q\\";"; echo $? >"$st"; } '
    + '| psql -X -q -v ON_ERROR_STOP=1 -o /dev/null -U "$u" -d postgres; rc=$?; '
    + 'f=$(cat "$st"); rm -f "$st"; '
    + 'if [ "$f" != 0 ] && [ "$f" != 1 ]; then echo "docker-persist: filtering the dump failed ($f)" >&2; exit 1; fi; '
    + 'exit "$rc"'
)
# The official image's first start runs a temporary server on the socket alone (listen_addresses
# empty) for its init scripts: ready means the real one.
_PG_READY = (
    _PG_CREDENTIALS
    + 'pg_isready -q -U "$u" -d postgres && '
    + '[ -n "$(psql -X -A -t -q -U "$u" -d postgres -c "show listen_addresses")" ]'
)

_MY_CREDENTIALS = (
    'p="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"; '
    'for f in "${MARIADB_ROOT_PASSWORD_FILE:-}" "${MYSQL_ROOT_PASSWORD_FILE:-}"; do '
    'if [ -n "$f" ] && [ -r "$f" ]; then p=$(cat "$f"); break; fi; done; '
    "MYSQL_PWD=$p; export MYSQL_PWD; "
)
_MY_DUMP = (
    _MY_CREDENTIALS
    + "if command -v mariadb-dump >/dev/null 2>&1; then c=mariadb-dump; else c=mysqldump; fi; "
    + 'exec "$c" -uroot --single-transaction --all-databases --routines --events --triggers --flush-privileges '
    + "--add-drop-database"
)
_MY_RESTORE = (
    _MY_CREDENTIALS + "if command -v mariadb >/dev/null 2>&1; then exec mariadb -uroot; else exec mysql -uroot; fi"
)
# The official images' first start runs a temporary server with --skip-networking for their init.
_MY_READY = (
    _MY_CREDENTIALS
    + "if command -v mariadb >/dev/null 2>&1; then c=mariadb; else c=mysql; fi; "
    + '[ "$("$c" -uroot -N -B -e "select @@skip_networking")" = 0 ]'
)

_KNOWN: dict[str, tuple[str, str, str]] = {
    "postgres": (_PG_DUMP, _PG_RESTORE, _PG_READY),
    "mysql": (_MY_DUMP, _MY_RESTORE, _MY_READY),
    "mariadb": (_MY_DUMP, _MY_RESTORE, _MY_READY),
}
assert tuple(_KNOWN) == DUMPABLE, "the images check and init propose dump: auto for are those it knows"


@dataclasses.dataclass(frozen=True)
class DumpSpec:
    """How one service's database is dumped and loaded, and where its files are."""

    service: str
    volume: str  # the key of the volume the dump stands for
    target: str  # where the service mounts it
    command: str
    restore: str
    ready: str
    also_volume: bool = False

    @property
    def key(self) -> str:
        return dump_key(self.volume)


def dump_key(volume: str) -> str:
    """Return the record key of the dump that stands for volume `volume`."""
    return f"{volume}{DUMP_SUFFIX}"


def dumped_volume(key: str) -> str:
    """Return the volume key a dump record's key stands for."""
    return key.removesuffix(DUMP_SUFFIX)


def volume_of(record: VolumeRecord) -> str:
    """Return the key of the volume a snapshot record stands for: its own, or for a dump the volume dumped."""
    return dumped_volume(record.key) if record.kind == "dump" else record.key


def volumes_held(manifest: Manifest) -> tuple[str, ...]:
    """Return the keys of the volumes a snapshot holds a copy of, once each (files or dump alike), in its order."""
    return tuple(dict.fromkeys(volume_of(record) for record in manifest.volumes))


def dump_spec(project: Project, service: Service) -> DumpSpec | None:
    """Return how the service is dumped, None if its x-persist sets no dump.

    Raise ConfigError when the commands or the volume cannot be told: an image with no known dump
    and no `command`, or no single volume the dump stands for.
    """
    policy = service.policy.dump if service.policy else None
    if policy is None:
        return None
    known = lookup_image(service.image)
    commands = _KNOWN.get(known.name) if known is not None else None
    command = policy.command or (commands[0] if commands else None)
    restore = policy.restore or (commands[1] if commands else None)
    ready = policy.ready or (commands[2] if commands else "true")
    if command is None or restore is None:
        missing = "command" if command is None else "restore"
        raise ConfigError(
            f"service {service.name!r}: x-persist.dump has no {missing}, and image {service.image!r} is not one "
            "whose dump docker-persist knows (PostgreSQL, MySQL, MariaDB): write dump: {command: ..., restore: ...}"
        )
    volumes = [m for m in service.mounts if m.type == "volume" and m.source]
    if policy.volume is not None:
        chosen = [m for m in volumes if m.source == policy.volume]
    else:
        paths = known.data_paths if known is not None else ()
        chosen = [m for m in volumes if m.target.rstrip("/") in paths] or (volumes if len(volumes) == 1 else [])
    if len(chosen) != 1 or chosen[0].source not in project.volumes:
        names = ", ".join(str(m.source) for m in volumes) or "none"
        raise ConfigError(
            f"service {service.name!r}: x-persist.dump needs the named volume its database files are on "
            f"(the service mounts: {names}): say which with dump: {{volume: KEY}}"
        )
    mount = chosen[0]
    assert mount.source is not None
    return DumpSpec(service.name, mount.source, mount.target, command, restore, ready, policy.also_volume)


def dump_specs(project: Project) -> list[DumpSpec]:
    """Return the dump of every service that sets one. Raise ConfigError as dump_spec does, or when two
    services dump into one volume."""
    specs = [spec for service in project.services if (spec := dump_spec(project, service)) is not None]
    volumes = [s.volume for s in specs]
    twice = next((v for v in volumes if volumes.count(v) > 1), None)
    if twice is not None:
        raise ConfigError(f"two services dump volume {twice!r}: a volume holds one database")
    clash = next((s for s in specs if s.key in project.volumes), None)
    if clash is not None:
        raise ConfigError(f"volume {clash.key!r} has the name the dump of volume {clash.volume!r} is kept under: "
                          "rename one of them")  # fmt: skip
    return specs


def dump_for_volume(project: Project, volume: str) -> DumpSpec | None:
    """Return the dump that stands for volume `volume`, or None."""
    return next((s for s in dump_specs(project) if s.volume == volume), None)
