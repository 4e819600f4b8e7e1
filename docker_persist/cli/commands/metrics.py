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
    """Return the project's metrics, from its manifests and the scheduler's state file, as exposition text."""
    import datetime

    from docker_persist.actions.catalog import list_manifests
    from docker_persist.actions.schedule import read_state, state_path
    from docker_persist.core.metrics import collect_metrics, render_metrics

    state = read_state(state_path(environ, engine_host, project.name))
    keys = [v.key for v in project.precious_volumes()]
    volumes = collect_metrics(project.name, keys, list_manifests(store, project.name), state.failures, state.durations)
    return render_metrics(volumes, datetime.datetime.now(datetime.timezone.utc))


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
