"""What a subcommand is: its help text, its flags, and the function that runs it."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from docker_persist.actions.alerts import Notifier
    from docker_persist.actions.catalog import Catalog
    from docker_persist.actions.common import Workspace
    from docker_persist.cli.progress import Progress
    from docker_persist.config.model import Project
    from docker_persist.config.project import ComposeOptions
    from docker_persist.core.state import LiveState, SnapshotInfo
    from docker_persist.host.journal import Journal
    from docker_persist.store import Store

FORMATS = ("pretty", "json")


class Command(NamedTuple):
    """A subcommand. `run` returns the exit code; it raises PersistError to fail.

    Its name and summary live in the registry (`commands.COMMANDS`), which help reads
    without importing the command.
    """

    add_arguments: Callable[[DockerArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int]
    usage: str = "[OPTIONS]"
    passthrough: bool = False  # unknown arguments go to `docker compose`, in args.passthrough
    epilog: str = ""

    def make_parser(self, name: str, summary: str) -> DockerArgumentParser:
        """Return the parser for this subcommand, with Docker-style help."""
        parser = DockerArgumentParser(f"{ROOT} {name}", summary, self.usage, self.epilog)
        self.add_arguments(parser)
        return parser


def add_layer_threshold_flag(parser: DockerArgumentParser, meaning: str) -> None:
    """Add `--layer-threshold SIZE`: writable-layer data above it `meaning` (see layer_threshold)."""
    from docker_persist.core.planner import DEFAULT_LAYER_THRESHOLD
    from docker_persist.units import format_bytes

    default = format_bytes(DEFAULT_LAYER_THRESHOLD).replace(" ", "").replace(".0", "")
    parser.add_argument(
        "--layer-threshold",
        metavar="string",
        help=f"Writable-layer data above this size {meaning} (default {default})",
    )


def layer_threshold(args: argparse.Namespace) -> int:
    """Return --layer-threshold in bytes (the default: planner.DEFAULT_LAYER_THRESHOLD). Raise ConfigError if bad."""
    from docker_persist.config.model import parse_size
    from docker_persist.core.planner import DEFAULT_LAYER_THRESHOLD

    return parse_size(args.layer_threshold) if args.layer_threshold else DEFAULT_LAYER_THRESHOLD


def add_format_flag(parser: DockerArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    """Add `--format pretty|json`, for commands whose output is data."""
    choices = " or ".join(f'"{f}"' for f in formats)
    parser.add_argument(
        "--format", default="pretty", metavar="string", help=f'Format the output: {choices} (default "pretty")'
    )


def check_format(args: argparse.Namespace, command: str, formats: tuple[str, ...] = FORMATS) -> str:
    """Return the validated `--format` value. Raise UsageError for an unknown one."""
    value: str = args.format
    if value not in formats:
        expected = ", ".join(f'"{f}"' for f in formats)
        raise UsageError(f'invalid --format "{value}": expected one of {expected}', command=f"{ROOT} {command}")
    return value


class PendingProject:
    """A project whose `docker compose config` runs in the background; `wait()` returns the model."""

    def __init__(
        self,
        context: Context,
        args: argparse.Namespace | None,
        options: ComposeOptions | None = None,
        cwd: str | None = None,
    ) -> None:
        import os

        from docker_persist.cli.projectflags import compose_options_from_args
        from docker_persist.config.project import ComposeOptions, find_project_files
        from docker_persist.host.process import start_compose_config

        if options is None:
            given = compose_options_from_args(args) if args is not None else ComposeOptions()
            options = (context.compose_options or ComposeOptions()).merged(given)
        self.options = options
        self.context = context
        cwd = cwd or os.getcwd()
        self.files = find_project_files(options, context.env.environ, cwd)
        self.name = options.project_name or context.env.environ.get("COMPOSE_PROJECT_NAME") or None
        # With no Compose file, Compose could only refuse: wait() and wait_for_store() say what to do.
        self.pending = (
            start_compose_config(context.docker_config, options.to_argv(), context.env.environ, cwd)
            if self.files
            else None
        )
        first = self.files[0] if self.files and self.files[0] != "-" else None
        directory = options.project_directory or (os.path.dirname(first) if first else cwd)
        self.working_dir = os.path.abspath(os.path.join(cwd, directory))

    def wait(self) -> tuple[Project, list[str]]:
        """Return the project and the files Compose read.

        Raise ConfigError if Compose rejects the project or its x-persist is invalid.
        """
        from docker_persist.config.project import load_document, parse_compose_yaml

        if self.pending is None:
            raise ConfigError(
                "no Compose file here (compose.yaml, docker-compose.yml, ...): run this in the project's folder, "
                "or point at the file with -f"
                + (
                    "; snapshots, restore --to, verify, forget and pin also work with the project's name alone: "
                    "-p NAME (and --store URL), which `docker persist projects` lists"
                    if self.name is None
                    else ""
                )
            )
        return load_document(parse_compose_yaml(self.pending.result()), self.working_dir), self.files

    def wait_for_store(self, read_only: bool = False) -> Project:
        """Return the project for a command that needs only its name and snapshots (snapshots, restore --to,
        verify, forget, pin, ls, diff), also when the Compose file is gone.

        With no Compose file: a bare project named by -p (or COMPOSE_PROJECT_NAME): no services, no
        volumes. With an invalid x-persist, a `read_only` command (one that changes no volume and no
        snapshot) gets the project without it, and a warning; the others are refused, as by wait().
        Raise ConfigError if there is neither a Compose file nor a project name, or if Compose
        rejects the file.
        """
        import logging

        from docker_persist.config.model import Project, build_project
        from docker_persist.config.project import parse_compose_yaml

        if self.pending is None:
            if self.name is None:
                raise ConfigError(
                    "no Compose file here, and no project named: run this in the project's folder, or name the "
                    "project with -p NAME (and --store URL if its snapshots are not in the default store); "
                    "`docker persist projects --store URL` lists the projects a store holds"
                )
            return Project(name=self.name, working_dir=self.working_dir, services=(), volumes={})
        try:
            return self.wait()[0]
        except ConfigError as error:
            if not read_only or not str(error).startswith("invalid x-persist"):
                raise
            logging.getLogger(__name__).warning("%s\n(ignored: this command needs only the project's snapshots)", error)
            return build_project(_without_x_persist(parse_compose_yaml(self.pending.result())), self.working_dir)


def _without_x_persist(document: Any) -> Any:
    """Return a parsed Compose document with every `x-persist` key left out, at any depth."""
    if isinstance(document, dict):
        return {key: _without_x_persist(value) for key, value in document.items() if key != "x-persist"}
    if isinstance(document, list):
        return [_without_x_persist(item) for item in document]
    return document


def load_project(context: Context, args: argparse.Namespace) -> tuple[Project, list[str]]:
    """Load the project named by the Compose project flags; return it and the files Compose read.

    Raise ConfigError if Compose rejects the project or its x-persist is invalid.
    """
    return PendingProject(context, args).wait()


def add_store_flag(parser: DockerArgumentParser) -> None:
    """Add `--store URL`."""
    parser.add_argument(
        "--store",
        metavar="string",
        help="Snapshot store: a path, file:///path or s3://bucket/prefix (default: $DOCKER_PERSIST_STORE, "
        "then x-persist.store, then ~/.local/share/docker-persist/snapshots)",
    )


def add_identity_flag(parser: DockerArgumentParser, short: bool = True) -> None:
    """Add `-i/--identity FILE`, the age private key that opens encrypted snapshots (no -i: `short=False`)."""
    parser.add_argument(
        *(["-i"] if short else []),
        "--identity",
        metavar="string",
        help="age identity file (private key) for encrypted snapshots (default: $DOCKER_PERSIST_IDENTITY)",
    )


def identity_path(context: Context, args: argparse.Namespace) -> str | None:
    """Return the identity file: --identity, then $DOCKER_PERSIST_IDENTITY, else None."""
    from docker_persist.streams.encryption import identity_file

    return identity_file(getattr(args, "identity", None), context.env.environ)


def store_url(context: Context, args: argparse.Namespace, project: Project) -> str | None:
    """Return the snapshot store's URL: --store, then DOCKER_PERSIST_STORE, then x-persist.store (None: the default)."""
    return getattr(args, "store", None) or context.env.environ.get("DOCKER_PERSIST_STORE") or project.policy.store


def open_project_store(context: Context, args: argparse.Namespace, project: Project) -> Store:
    """Return the snapshot store: --store, then DOCKER_PERSIST_STORE, then x-persist.store, then the default.

    A restic store takes x-persist.store_password_file when the environment gives restic no password.
    """
    from docker_persist.store import open_store

    url = store_url(context, args, project)
    return open_store(url, context.env.environ, project.policy.store_password_file)


def make_progress(context: Context) -> Progress:
    """Return the progress reporter: live on a terminal (one that moves its cursor: not TERM=dumb), silent otherwise."""
    from docker_persist.cli.progress import Progress

    live = context.env.stderr_isatty and context.env.environ.get("TERM") != "dumb"
    return Progress(context.env.stderr, enabled=live)


def compose_runner(
    context: Context, pending: PendingProject, journal: Journal | None = None
) -> Callable[[Sequence[str]], None]:
    """Return a function that runs `docker compose` for this project, against the same engine.

    With the project's journal, Compose (and the provider it runs) shares this process's hold of
    the project lock.
    """
    from docker_persist.errors import PersistError
    from docker_persist.host.process import run_docker_compose

    def run(args: Sequence[str]) -> None:
        environ = journal.child_environ(context.env.environ) if journal is not None else context.env.environ
        code = run_docker_compose(context.options.to_argv(), pending.options.to_argv(), args, environ)
        if code != 0:
            raise PersistError(f"`docker compose {' '.join(args)}` failed (exit {code})")

    return run


def check_compose_line(context: Context, pending: PendingProject, subcommand: str, args: Sequence[str]) -> None:
    """Raise UsageError, with Compose's own message, if `docker compose SUBCOMMAND ARGS` would be refused.

    The wrappers call it before they touch anything, so a typo in a pass-through flag costs nothing.
    """
    from docker_persist.host.process import check_compose_arguments

    message = check_compose_arguments(
        context.docker_config, pending.options.to_argv(), subcommand, args, context.env.environ
    )
    if message is not None:
        raise UsageError(f"docker compose {subcommand} refuses this command line, so nothing was done: {message}",
                         f"{ROOT} {subcommand}")  # fmt: skip


def make_workspace(context: Context, pending: PendingProject, project: Project, progress: Progress) -> Workspace:
    """Return the workspace an action works in: this engine, the project, its journal, Compose, the progress."""
    from docker_persist.actions.common import Workspace

    journal = project_journal(context, project)
    runner = compose_runner(context, pending, journal)
    return Workspace(context.engine, project, journal, runner, progress.say, progress)


def read_snapshot_infos(
    context: Context, args: argparse.Namespace, project: Project
) -> tuple[SnapshotInfo, ...] | None:
    """Return what `check` and `plan` need to know of the project's snapshots; None if the store cannot be read."""
    from docker_persist.errors import PersistError

    try:
        from docker_persist.actions.catalog import read_catalog

        catalog = read_catalog(open_project_store(context, args, project), project.name)
    except PersistError:
        return None
    return snapshot_infos(catalog)


def snapshot_infos(catalog: Catalog) -> tuple[SnapshotInfo, ...]:
    """Return what the pure core needs to know of each snapshot of a catalog, damaged ones included."""
    import datetime

    from docker_persist.core.dumps import volumes_held
    from docker_persist.core.state import SnapshotInfo

    infos = []
    for manifest in catalog.manifests:
        last = manifest.last_verification  # the latest drill of this snapshot, passed or not
        infos.append(
            SnapshotInfo(
                name=manifest.name,
                created=manifest.created,
                # A dump stands for its volume: the volume is backed up, as check, status and metrics see it.
                volumes=volumes_held(manifest),
                verified_at=last.at if last is not None else None,
                verified_ok=last.ok if last is not None else None,
                reason=manifest.reason,
                pinned=manifest.pinned,
            )
        )
    epoch = datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    infos += [SnapshotInfo(d.name, epoch, (), damaged=d.problem) for d in catalog.damaged]
    return tuple(infos)


def project_journal(context: Context, project: Project) -> Journal:
    """Return the journal of interrupted work for this project on this engine."""
    from docker_persist.host.journal import Journal

    return Journal.for_project(context.env.environ, context.endpoint.host, project.name)


def read_live_state(
    context: Context, args: argparse.Namespace, project: Project, layer_threshold: int, with_sizes: bool = False
) -> LiveState:
    """Return the project's live state, with its snapshots' freshness read from the store."""
    from docker_persist.engine.livestate import gather_live_state

    snapshots = read_snapshot_infos(context, args, project)
    return gather_live_state(
        project, context.engine, context.endpoint, layer_threshold, with_sizes=with_sizes, snapshots=snapshots
    )


# --- telling people ------------------------------------------------------------------------


class Report:
    """What a reported operation says about itself while it runs: its volumes, its snapshot, and a failure
    that is not an exception (a verify that found a difference)."""

    def __init__(self, volumes: Sequence[str]) -> None:
        self.volumes: tuple[str, ...] = tuple(volumes)
        self.snapshot: str | None = None
        self.error: str | None = None


def make_notifier(context: Context, project: Project) -> Notifier:
    """Return the notifier of the project: its state beside the scheduler's, its log on stderr."""
    from docker_persist.actions.alerts import Notifier

    def log(message: str) -> None:
        context.env.stderr.write(f"docker-persist: notify: {message}\n")
        context.env.stderr.flush()

    return Notifier(project, context.endpoint.host, context.env.environ, log, context.notify_sender)


def precious_keys(project: Project) -> tuple[str, ...]:
    """Return the keys of the project's precious volumes and precious binds, as snapshots name them."""
    return tuple(v.key for v in [*project.precious_volumes(), *project.precious_binds()])


@contextlib.contextmanager
def reported(
    context: Context, project: Project, operation: str, volumes: Sequence[str], *, ping: bool = False
) -> Iterator[Report]:
    """Within the block, run `operation`; then record how it ended, tell the project's notify targets of a
    change, and (with `ping`) ping x-persist.ping before and after. An exception in the block is a failure
    (a refusal by design, UnsafeOperationError, and a usage error are not) and is raised on. Nothing here
    raises: telling people never changes the result."""
    from docker_persist.core.alerts import Outcome
    from docker_persist.errors import BusyError, PersistError, UnsafeOperationError

    notifier = make_notifier(context, project)
    report = Report(volumes or precious_keys(project))
    if ping:
        _quietly(context, lambda: notifier.ping("start"))
    try:
        yield report
    except (UnsafeOperationError, UsageError, BusyError):  # a refusal, a typo, or another run's turn: no failure
        raise
    except (PersistError, OSError) as error:
        text = str(error) or type(error).__name__
        _quietly(context, lambda: notifier.record(Outcome(operation, report.volumes, False, report.snapshot, text)))
        if ping:
            _quietly(context, lambda: notifier.ping("fail", text))
        raise
    outcome = Outcome(operation, report.volumes, report.error is None, report.snapshot, report.error)
    _quietly(context, lambda: notifier.record(outcome))
    if ping:
        _quietly(context, lambda: notifier.ping("success" if report.error is None else "fail", report.error or ""))


def _quietly(context: Context, action: Callable[[], object]) -> None:
    """Run `action`; a bug in telling people is printed, never raised."""
    try:
        action()
    except Exception as error:  # see `reported`
        context.env.stderr.write(f"docker-persist: notify: {type(error).__name__}: {error}\n")
