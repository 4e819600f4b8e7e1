"""Load a logical dump into a volume: a container of the service's image, started on the volume, fed the dump.

Restore and verify share it. The container is one of docker-persist's helpers (labelled with the
project, so a run killed with -9 leaves nothing the next run does not remove): the service's image,
environment, command and entrypoint, its bind mounts and file secrets read-only, the volume at the
service's data path, and no network but the loopback. It is
started, waited for until the database accepts the restore (the dump spec's `ready` script), fed the
dump on stdin through `docker exec`, then stopped with the image's own stop signal, so that the
database writes everything down, and removed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from docker_persist.config.model import Project
from docker_persist.core.dumps import DumpSpec, dump_for_volume, dumped_volume
from docker_persist.engine import LABEL_PROJECT, LABEL_ROLE, ContainerSpec, Engine, VolumeMount
from docker_persist.errors import ConfigError, PersistError

if TYPE_CHECKING:
    from docker_persist.actions.common import Workspace
    from docker_persist.core.manifest import Manifest, VolumeRecord
    from docker_persist.store import Store

READY_TIMEOUT = 300.0  # seconds a database may take to start on an empty volume (initdb, init scripts)
READY_POLL = 1.0  # seconds between two asks
STOP_TIMEOUT = 300  # seconds the database gets to stop once loaded, before it is killed
# The official images run what is here on a fresh database: left out, the load alone makes the database.
INIT_SCRIPTS = "/docker-entrypoint-initdb.d"


class DumpLoadError(PersistError):
    """The database did not start, or its restore command failed."""


def tail(stream: Iterable[bytes], keep: int = 65536) -> str:
    """Read a command's output to its end; return its last `keep` bytes as text (a chatty restore stays small)."""
    tail = bytearray()
    for chunk in stream:
        tail += chunk
        del tail[: max(0, len(tail) - keep)]
    return tail.decode(errors="replace")


_HASHES = re.compile(r"(SCRAM-SHA-256\$\S+|md5[0-9a-f]{32}|\*[0-9A-F]{40})")


def redact(text: str) -> str:
    """Return a database's error text fit for a log, a manifest or a message: without psql's echo of the failing
    statement (LINE n: ..., which may hold a role's password hash), MySQL's `near '...'` context, or any
    password hash."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("LINE ") or (stripped and set(stripped) <= {"^"}):
            continue
        kept.append(re.sub(r" near '.*", " near (statement left out)", line))
    return _HASHES.sub("(hash)", "\n".join(kept))


def _last_lines(text: str, count: int = 5) -> str:
    return "\n".join(redact(text).strip().splitlines()[-count:])


def load_dump(
    engine: Engine,
    project: Project,
    spec: DumpSpec,
    volume: str,
    dump: Iterable[bytes],
    say: Callable[[str], None],
    then: Callable[[str], None] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> None:
    """Start a container of the spec's service on the (empty) `volume`, load `dump` into it, run `then` with the
    container's ID while the database still runs (a drill's verify command), then stop and remove it.

    Raise DumpLoadError if the database does not come up or the restore command fails; IntegrityError from the
    dump's source.
    """
    service = project.service(spec.service)
    if service is None or not service.image:
        raise ConfigError(f"service {spec.service!r} names no image: a dump is loaded into a container of its image")
    container_spec = ContainerSpec(
        image=service.image,
        command=service.command or (),
        entrypoint=service.entrypoint,
        labels={LABEL_ROLE: "helper", LABEL_PROJECT: project.name},
        # copy_up: a fresh volume takes the owner and mode of the image's data folder, as Compose's would.
        mounts=(VolumeMount(volume, spec.target, copy_up=True),),
        env=dict(service.environment),
        # Its configuration and secrets (a POSTGRES_PASSWORD_FILE), read-only: host folders and files it binds.
        binds=tuple(
            (m.source, m.target)
            for m in service.mounts
            if m.type == "bind" and m.source and not m.target.startswith(INIT_SCRIPTS)
        )
        + service.secrets,
        user=service.user,
        loopback=True,
    )
    container = engine.create_container(None, container_spec)
    try:
        engine.start_container(container)
        say(f"{spec.service}: waiting for the database to start on {volume}")
        wait_ready(engine, container, spec, ready_timeout)
        say(f"{spec.service}: loading the dump")
        with engine.exec_stream(container, ("sh", "-c", spec.restore), stdin=dump) as stream:
            said = tail(stream)
            result = stream.result()
        if result.code != 0:
            raise DumpLoadError(
                f"loading the dump of service {spec.service!r} failed (exit {result.code}): "
                f"{_last_lines(result.stderr or said) or 'it said nothing'}"
            )
        if then is not None:
            then(container)
        # The image's stop signal, and time to shut down cleanly (a checkpoint of all that was loaded).
        engine.stop_container(container, timeout=STOP_TIMEOUT)
    finally:
        engine.remove_container(container, force=True)


def load_snapshot_dump(
    ws: Workspace,
    store: Store,
    source: str,
    manifest: Manifest,
    record: VolumeRecord,
    identities: Sequence[Any],
    volume: str,
    crash: str,
    then: Callable[[str], None] | None = None,
) -> DumpSpec:
    """Load the dump part `record` of a snapshot of project `source` into the empty `volume` (load_dump), the
    part checked as it is read (iter_dump), with progress; `crash` names the crash point reached after each
    chunk (see host/faults.py). Return the dump's spec. Raise ConfigError when no service of the project
    dumps the volume the record stands for."""
    from docker_persist.actions.catalog import iter_dump
    from docker_persist.actions.common import expect
    from docker_persist.host.faults import crash_point

    key = dumped_volume(record.key)
    spec = dump_for_volume(ws.project, key)
    if spec is None:  # resolve_restore refuses it first; the Compose file may have changed since
        raise ConfigError(
            f"snapshot {manifest.name!r} holds a dump of volume {key!r}, and no service of project "
            f"{ws.project.name!r} sets x-persist.dump for it: add it, or restore the volume from a snapshot of "
            "its files"
        )
    label = f"{crash.split(':', maxsplit=1)[0]} {record.key}"  # "restore db_data.dump", "verify db_data.dump"
    expect(ws.progress, label, record.bytes)

    def dump() -> Iterator[bytes]:
        for chunk in iter_dump(store, source, manifest, record, identities):
            ws.progress(label, len(chunk))
            yield chunk
            crash_point(crash)

    load_dump(ws.engine, ws.project, spec, volume, dump(), ws.say, then)
    return spec


def wait_ready(engine: Engine, container: str, spec: DumpSpec, timeout: float) -> None:
    """Ask the spec's ready script in the container until it exits 0. Raise DumpLoadError if the container
    stops, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        status = engine.inspect_container(container)
        if not status.running:
            raise DumpLoadError(f"the database of service {spec.service!r} stopped while starting ({status.status})")
        with engine.exec_stream(container, ("sh", "-c", spec.ready)) as stream:
            said = tail(stream)
            result = stream.result()
        if result.code == 0:
            return
        said = result.stderr or said
        if time.monotonic() > deadline:
            raise DumpLoadError(
                f"the database of service {spec.service!r} was not ready within {timeout:.0f} s: "
                f"{_last_lines(said) or 'its ready check said nothing'}"
            )
        time.sleep(READY_POLL)
