"""`docker persist status`: one screen of every project docker-persist knows on this engine, volume by volume.

The projects are: the one here (if there is a Compose file), those whose volumes the engine
guards, those the store holds snapshots of, and those with a scheduler or alert state for this
engine; only the one named, with -p. For each volume: the newest snapshot and its age, the newest passing verify and its
age, the guard, the last failure, and the scheduler's next run. Exit 1 when any volume is not
green: past an age limit, failing, its newest drill failed, or its guard gone.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import TYPE_CHECKING, Any

from docker_persist.cli.commands.base import Command, add_format_flag, add_store_flag, check_format
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ConfigError, ExitStatus, PersistError

if TYPE_CHECKING:
    from docker_persist.config.model import Project
    from docker_persist.core.scheduler import ScheduleState
    from docker_persist.core.state import GuardState, SnapshotInfo
    from docker_persist.core.status import VolumeStatus
    from docker_persist.store import Store

_COLOURS = {"green": "\033[32m", "yellow": "\033[33m", "red": "\033[31m"}


def add_arguments(parser: DockerArgumentParser) -> None:
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def _here(context: Context, args: argparse.Namespace) -> tuple[Project | None, str | None]:
    """Return the project of the Compose file here (or named by -f), None when there is none; and the project
    named by -p (or COMPOSE_PROJECT_NAME), the only one to show then."""
    from docker_persist.cli.commands.base import PendingProject

    pending = PendingProject(context, args)
    if pending.pending is None:
        return None, pending.name
    project = pending.wait()[0]
    return project, pending.name and project.name


def _guards(context: Context) -> tuple[list[GuardState] | None, str | None]:
    try:
        return context.engine.list_guards(), None
    except PersistError as error:
        return None, str(error)


def _next_run(state: ScheduleState, project: Project | None, key: str) -> datetime.datetime | None:
    """Return when the project's scheduler (its `state`) next backs up `key` (None: no scheduler)."""
    from docker_persist.core.cron import parse_cron

    texts: list[str] = list(state.last_runs)
    if project is not None:
        volume = project.volumes.get(key)
        text = (volume.policy.schedule if volume and volume.policy else None) or project.policy.schedule
        texts = [" ".join(text.split())] if text else []
    upcoming = []
    for text in texts:
        last = state.last_runs.get(text)
        if last is None:
            continue
        try:
            upcoming.append(parse_cron(text).next_after(last))
        except ConfigError:
            continue
    return min(upcoming, default=None)


def _known_projects(context: Context, here: Project | None, store: Store, guards: list[GuardState] | None) -> list[str]:
    """Return the projects docker-persist knows on this engine: the one here, the guarded ones, those in the
    store, those with a scheduler or alert state; in that order, each once."""
    names: dict[str, None] = {here.name: None} if here is not None else {}
    for guard in guards or ():
        names.setdefault(guard.project, None)
    try:
        for name in store.list_projects():
            names.setdefault(name, None)
    except PersistError as error:
        context.env.stderr.write(f"docker-persist: cannot list the projects in {store.url}: {error}\n")
    from docker_persist.host.paths import engine_state_projects

    environ, host = context.env.environ, context.endpoint.host
    stated = engine_state_projects(environ, "alerts", host) | engine_state_projects(environ, "schedule", host)
    for name in sorted(stated):
        names.setdefault(name, None)
    return list(names)


def collect(context: Context, args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[VolumeStatus]]:
    """Return a row per project (name, store, error) and the status of each of their volumes."""
    from docker_persist.actions.alerts import alerts_path, read_alerts
    from docker_persist.actions.catalog import read_catalog
    from docker_persist.actions.schedule import read_state, state_path
    from docker_persist.cli.commands.base import open_project_store, precious_keys, snapshot_infos
    from docker_persist.core.alerts import PROJECT_WIDE
    from docker_persist.core.dumps import volume_of
    from docker_persist.core.status import volume_status
    from docker_persist.store import open_store

    now = datetime.datetime.now(datetime.timezone.utc)
    here, only = _here(context, args)
    default_store = open_store(args.store or context.env.environ.get("DOCKER_PERSIST_STORE"), context.env.environ)
    guards, engine_error = _guards(context)
    if engine_error is not None:
        context.env.stderr.write(f"docker-persist: cannot read the guards: {engine_error}\n")
    names = [only] if only is not None else _known_projects(context, here, default_store, guards)
    rows: list[dict[str, Any]] = []
    statuses: list[VolumeStatus] = []
    for name in names:
        project = here if here is not None and here.name == name else None
        store: Store = open_project_store(context, args, project) if project is not None else default_store
        snapshots: tuple[SnapshotInfo, ...] = ()
        stored: list[str] = []  # the keys of the volumes and binds its snapshots hold (not layers, not anonymous)
        problem = None
        try:
            catalog = read_catalog(store, name)
            snapshots = snapshot_infos(catalog)
            stored = [volume_of(v) for m in catalog.manifests for v in m.volumes
                      if v.kind in ("volume", "bind", "dump")]  # fmt: skip
        except PersistError as error:
            problem = f"cannot read the snapshots in {store.url}: {error}"
        alerts = read_alerts(alerts_path(context.env.environ, context.endpoint.host, name))
        schedule = read_state(state_path(context.env.environ, context.endpoint.host, name))
        project_guards = [g for g in guards or () if g.project == name]
        if project is not None:  # what the Compose file marks precious now (a volume it dropped is no concern)
            keys = list(precious_keys(project))
        else:  # known only by what the engine, the store and the state say
            keys = [*stored, *(_key_of(name, g.volume, project) for g in project_guards)]
            keys += [v for v, _ in alerts.failing if v != PROJECT_WIDE]
        wide = sorted(op for v, op in alerts.failing if v == PROJECT_WIDE)
        if wide and problem is None:
            failure = next(f for (v, op), f in alerts.failing.items() if v == PROJECT_WIDE)
            problem = f"failing: {', '.join(wide)} ({failure.error})"
        rows.append({"project": name, "store": store.url, "error": problem})
        for key in dict.fromkeys(keys):
            statuses.append(
                volume_status(
                    name,
                    key,
                    snapshots,
                    now,
                    project=project,
                    guard=_guard_of(name, key, project, project_guards, guards is not None),
                    alerts=alerts,
                    next_run=_next_run(schedule, project, key),
                )
            )
    return rows, statuses


def _key_of(project_name: str, volume: str, project: Project | None) -> str:
    """Return the key of the engine volume `volume`: by the project's model, else Compose's `<project>_<key>`."""
    if project is not None:
        for candidate in [*project.volumes.values(), *project.precious_binds()]:
            if candidate.name == volume:
                return candidate.key
    return volume.removeprefix(f"{project_name}_")


def _guard_of(name: str, key: str, project: Project | None, guards: list[GuardState], engine_read: bool) -> bool | None:
    """Return whether the volume has a running guard: None when it is not protected, or the engine was not read."""
    if not engine_read:
        return None
    if project is not None:
        volume = project.volumes.get(key)
        if volume is None or volume.policy is None or not volume.policy.protect:
            return None
        return any(g.volume == volume.name and g.running for g in guards)
    held = [g for g in guards if _key_of(name, g.volume, None) == key]
    return any(g.running for g in held) if held else None


def _age(now: datetime.datetime, moment: datetime.datetime | None) -> str:
    from docker_persist.core.status import format_age

    return "-" if moment is None else format_age(now - moment)


def _document(status: VolumeStatus, now: datetime.datetime) -> dict[str, Any]:
    from docker_persist.core.manifest import format_datetime

    def when(moment: datetime.datetime | None) -> str | None:
        return format_datetime(moment) if moment else None

    failure = status.last_failure
    return {
        "project": status.project,
        "volume": status.volume,
        "status": status.colour,
        "newest": status.newest.name if status.newest else None,
        "newest_at": when(status.newest.created if status.newest else None),
        "max_age": str(status.max_age),
        "stale": status.stale,
        "verified": status.verified.name if status.verified else None,
        "verified_at": when(status.verified_at),
        "verify_max_age": str(status.verify_max_age),
        "unverified": status.unverified,
        "verify_failed": status.verify_failed,
        "guard": status.guard,
        "failing": list(status.failing),
        "last_failure": None
        if failure is None
        else {"at": when(failure.at), "operation": status.last_operation, "error": failure.error},
        "next_run": when(status.next_run),
    }


_STATES = {"green": "ok", "yellow": "warn", "red": "FAIL"}


def render_table(statuses: list[VolumeStatus], now: datetime.datetime, colour: bool) -> str:
    """Return the status table, one line a volume, coloured by its state on a terminal."""
    table = [("STATE", "PROJECT", "VOLUME", "NEWEST SNAPSHOT", "AGE", "VERIFIED", "GUARD", "LAST FAILURE", "NEXT RUN")]
    for status in statuses:
        newest = status.newest
        verified = "failed" if status.verify_failed else _age(now, status.verified_at)
        failure = status.last_failure
        last = "-" if failure is None else f"{_age(now, failure.at)} ago: {status.last_operation}"
        if status.failing:
            last += " (failing)"
        guard = {None: "-", True: "yes", False: "MISSING"}[status.guard]
        upcoming = status.next_run
        when = "-" if upcoming is None else (f"in {_age(upcoming, now)}" if upcoming > now else "due")
        table.append((_STATES[status.colour], status.project, status.volume, newest.name if newest else "none",
                      _age(now, newest.created if newest else None), verified, guard, last, when))  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = []
    for index, line in enumerate(table):
        text = "   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        state = statuses[index - 1].colour if index else None
        lines.append(f"{_COLOURS[state]}{text}\033[0m" if colour and state else text)
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, context: Context) -> int:
    output = check_format(args, "status")
    rows, statuses = collect(context, args)
    now = datetime.datetime.now(datetime.timezone.utc)
    healthy = all(s.colour == "green" for s in statuses) and not any(r["error"] for r in rows)
    out = context.env.stdout
    if output == "json":
        document = {
            "ok": healthy,
            "projects": [
                {**row, "volumes": [_document(s, now) for s in statuses if s.project == row["project"]]} for row in rows
            ],
        }
        out.write(json.dumps(document, indent=2) + "\n")
        return ExitStatus.OK if healthy else ExitStatus.FAILED
    if not rows:
        out.write("docker-persist knows no project on this engine: no Compose file here, no guards, no snapshots.\n")
        return ExitStatus.OK
    if statuses:
        out.write(render_table(statuses, now, colour=context.env.stdout_isatty))
    for row in rows:
        if row["error"]:
            out.write(f"{row['project']}: {row['error']}\n")
        elif not any(s.project == row["project"] for s in statuses):
            out.write(f"{row['project']}: no volume of it is known here: its snapshots are not in {row['store']} "
                      "(give its store with --store), and the engine guards none of its volumes\n")  # fmt: skip
    for status in statuses:
        if status.last_failure is not None and status.failing:
            out.write(f"{status.project}/{status.volume}: {status.last_failure.error}\n")
    if not healthy:
        out.write("\nNot all green: `docker persist check` says why and what to do.\n")
    return ExitStatus.OK if healthy else ExitStatus.FAILED


COMMAND = Command(add_arguments=add_arguments, run=run)
