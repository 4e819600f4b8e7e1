"""`docker persist metrics [--textfile PATH]`: per-volume freshness metrics in Prometheus' text format."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import Command, PendingProject, add_store_flag, open_project_store
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, PersistError

if TYPE_CHECKING:
    from docker_persist.config.model import Project
    from docker_persist.store import Store


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument(
        "--textfile",
        metavar="string",
        help="Write the metrics to this file atomically, for node_exporter's textfile collector (e.g. *.prom)",
    )
    add_store_flag(parser)
    add_project_flags(parser)


def project_metrics_text(store: Store, project: Project, environ: Mapping[str, str], engine_host: str) -> str:
    """Return the project's metrics, from its manifests, the scheduler's state file and the alert state, as
    exposition text. Never blind: a store that cannot be listed gives `docker_persist_store_up 0` and every
    volume `docker_persist_volume_up 0`, with the series that need no store, rather than an error."""
    import datetime

    from docker_persist.actions.alerts import alerts_path, read_alerts
    from docker_persist.actions.catalog import Catalog, read_catalog
    from docker_persist.actions.schedule import read_state, state_path
    from docker_persist.cli.commands.base import precious_keys, snapshot_infos
    from docker_persist.core.metrics import ProjectMetrics, collect_metrics, render_metrics
    from docker_persist.core.status import volume_status

    now = datetime.datetime.now(datetime.timezone.utc)
    state = read_state(state_path(environ, engine_host, project.name))
    alerts = read_alerts(alerts_path(environ, engine_host, project.name))
    try:
        catalog, store_up = read_catalog(store, project.name), True
    except PersistError:
        catalog, store_up = Catalog((), ()), False
    keys = precious_keys(project)
    infos = snapshot_infos(catalog)
    up = {key: store_up and not volume_status(project.name, key, infos, now, project=project).stale for key in keys}
    volumes = collect_metrics(project.name, keys, catalog.manifests, state.failures, state.durations, up,
                              deduplicated=store.deduplicates)  # fmt: skip
    summary = ProjectMetrics(project.name, store_up, len(catalog.damaged), alerts.notify_failures)
    return render_metrics(volumes, now, [summary])


def run(args: argparse.Namespace, context: Context) -> int:
    project, _ = PendingProject(context, args).wait()
    store = open_project_store(context, args, project)
    text = project_metrics_text(store, project, context.env.environ, context.endpoint.host)
    if args.textfile:
        from docker_persist.host.files import write_atomically

        try:
            write_atomically(args.textfile, text.encode(), mode=0o644)  # node_exporter reads it
        except OSError as error:
            raise PersistError(f"cannot write the metrics to {args.textfile}: {error.strerror or error}") from error
        context.env.stderr.write(f"Wrote the metrics of project {project.name} to {args.textfile}\n")
    else:
        context.env.stdout.write(text)
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
