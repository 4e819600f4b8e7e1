"""`docker persist schedule`: back up on x-persist.schedule in the foreground, or install a unit or crontab line.

The loop runs until SIGTERM or Ctrl-C, which stop it between runs, never during one.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_identity_flag,
    add_store_flag,
    identity_path,
    make_notifier,
    make_progress,
    make_workspace,
    open_project_store,
    precious_keys,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ConfigError, ExitStatus, PersistError, UsageError

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from docker_persist.config.model import Project
    from docker_persist.core.alerts import Outcome
    from docker_persist.core.scheduler import Actions, BackupDone, ScheduleGroup

CRON_MARK = "# docker-persist:"
WATCH_EVERY = 300.0  # seconds between looks at the snapshots' ages (a store listing) while the scheduler waits


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="Run every schedule once now, then exit")
    parser.add_argument(
        "--verify-every", type=int, default=0, metavar="int", help="Verify every Nth scheduled backup (0: never)"
    )
    parser.add_argument("--metrics-port", type=int, metavar="int", help="Serve Prometheus metrics on this port")
    parser.add_argument(
        "--metrics-address", default="127.0.0.1", metavar="string", help='Address for --metrics-port ("127.0.0.1")'
    )
    parser.add_argument("--install", metavar="string", help='Write a "systemd" unit or a "cron" line, and exit')
    parser.add_argument(
        "--system", action="store_true", help="With --install systemd: a system unit (the default as root)"
    )
    parser.add_argument("--user", action="store_true", help="With --install systemd: a user unit (the default)")
    parser.add_argument(
        "--apply", action="store_true", help="With --install: write the unit or the crontab lines (default: print them)"
    )
    add_identity_flag(parser)
    add_store_flag(parser)
    add_project_flags(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.core.scheduler import plan_groups

    command = f"{ROOT} schedule"
    if args.verify_every < 0:
        raise UsageError("--verify-every must be 0 (never) or more", command)
    if args.install not in (None, "systemd", "cron"):
        raise UsageError(f'invalid --install "{args.install}": expected "systemd" or "cron"', command)
    if args.system and args.user:
        raise UsageError("give --system or --user, not both", command)
    pending = PendingProject(context, args)
    project, files = pending.wait()
    groups = plan_groups(project)
    if args.install == "systemd":
        return install_systemd(args, context, project, files, pending.working_dir)
    if args.install == "cron":
        return install_cron(args, context, project, files, groups)
    return run_scheduler(args, context, pending, project, groups)


# --- the foreground loop ------------------------------------------------------------------


def run_scheduler(
    args: argparse.Namespace,
    context: Context,
    pending: PendingProject,
    project: Project,
    groups: list[ScheduleGroup],
) -> int:
    """Run the schedules (once with --once), serving metrics meanwhile if asked; one scheduler per project."""
    from docker_persist.actions.schedule import scheduler_lock, state_path

    path = state_path(context.env.environ, context.endpoint.host, project.name)
    with scheduler_lock(path, project.name).hold("schedule"):
        return _run_scheduler(args, context, pending, project, groups, path)


def _run_scheduler(
    args: argparse.Namespace,
    context: Context,
    pending: PendingProject,
    project: Project,
    groups: list[ScheduleGroup],
    path: str,
) -> int:
    from docker_persist.actions.schedule import read_state, write_state
    from docker_persist.core.scheduler import Clock, Scheduler

    stop = threading.Event()
    clock = Clock(now=lambda: datetime.datetime.now(datetime.timezone.utc), sleep=lambda seconds: _wait(stop, seconds))
    scheduler = Scheduler(
        groups,
        make_actions(args, context, pending, project),
        clock,
        read_state(path),
        make_log(context),
        verify_every=args.verify_every,
        on_change=lambda state: write_state(path, state),
    )
    for group in groups:
        scheduler.log(f"schedule {group.schedule.text!r} (UTC): {', '.join(group.volume_keys)}")
    with MetricsServer(args, context, project), StopOnSignals(stop):
        if args.once:
            results = scheduler.run_all()
            return ExitStatus.FAILED if any(r.failed or r.skipped for r in results) else ExitStatus.OK
        scheduler.run_forever(stop.is_set)
    scheduler.log("stopped")
    return ExitStatus.OK


def _wait(stop: threading.Event, seconds: float) -> None:
    stop.wait(seconds)


def make_log(context: Context) -> Callable[[str], None]:
    """Return a logger that writes time-stamped lines to stderr (journald and `docker logs` keep them)."""

    def log(message: str) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        context.env.stderr.write(f"{stamp} {message}\n")
        context.env.stderr.flush()

    return log


def make_actions(args: argparse.Namespace, context: Context, pending: PendingProject, project: Project) -> Actions:
    """Return the real backup, retention and verify, against the engine and the project's store, each telling the
    project's notify targets and ping URL how it went.

    A backup that finds the project busy is skipped at once (BusyError), never queued, and is no failure.
    """
    from docker_persist.core.scheduler import Actions

    real = ScheduledActions(args, context, pending, project)
    return Actions(backup=real.backup, forget=real.forget, verify=real.verify, guard=real.guard, watch=real.watch)


class ScheduledActions:
    """The scheduler's actions against the engine and the store, each recorded for notifications."""

    def __init__(self, args: argparse.Namespace, context: Context, pending: PendingProject, project: Project) -> None:
        self.args, self.context, self.pending, self.project = args, context, pending, project
        self.store = open_project_store(context, args, project)
        self.progress = make_progress(context)
        self.notifier = make_notifier(context, project)
        self.due = 0.0  # when `watch` next looks (time.monotonic())

    def told(self, outcome: Outcome) -> None:
        self._quietly(lambda: self.notifier.record(outcome))

    def ping(self, phase: str, body: str = "") -> None:
        self._quietly(lambda: self.notifier.ping(phase, body))

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as error:  # telling people never stops the scheduler
            make_log(self.context)(f"notify: {type(error).__name__}: {error}")

    def backup(self, keys: tuple[str, ...]) -> BackupDone:
        from docker_persist.actions.backup import BackupRequest, backup
        from docker_persist.core.alerts import Outcome
        from docker_persist.core.scheduler import BackupDone
        from docker_persist.errors import BusyError

        request = BackupRequest(volume_keys=keys, reason="scheduled")
        workspace = make_workspace(self.context, self.pending, self.project, self.progress)
        self.ping("start")
        try:
            result = backup(workspace, self.store, request, lock_timeout=0)
        except BusyError:
            raise
        except (PersistError, OSError) as error:
            self.told(Outcome("backup", keys, False, None, str(error)))
            self.ping("fail", str(error))
            raise
        finally:
            self.progress.done()
        self.told(Outcome("backup", keys, True, result.manifest.name))
        self.ping("success")
        self.due = 0.0  # look at the ages again now
        return BackupDone(result.manifest.name, result.seconds)

    def forget(self) -> int:
        from docker_persist.actions.forget import forget
        from docker_persist.core.alerts import Outcome

        keep = self.project.policy.keep
        if keep is None or keep.is_empty():
            return 0
        keys = precious_keys(self.project)  # as `backup` and `forget` by hand record it: per volume
        try:
            decisions = forget(self.store, self.project.name, keep, dry_run=False).decisions
        except (PersistError, OSError) as error:
            self.told(Outcome("forget", keys, False, None, str(error)))
            raise
        self.told(Outcome("forget", keys, True))
        return sum(1 for d in decisions if not d.keep)

    def verify(self, name: str) -> bool:
        from docker_persist.actions.verify import verify
        from docker_persist.core.alerts import Outcome

        try:
            identity = identity_path(self.context, self.args)
            workspace = make_workspace(self.context, self.pending, self.project, self.progress)
            results = verify(workspace, self.store, [name], identity)
        except (PersistError, OSError) as error:
            self.told(Outcome("verify", precious_keys(self.project), False, name, str(error)))
            raise
        finally:
            self.progress.done()
        keys = tuple(dict.fromkeys(key for _, v in results for key in v.volumes)) or precious_keys(self.project)
        failed = "; ".join(v.detail for _, v in results if not v.ok) or None
        self.told(Outcome("verify", keys, failed is None, name, failed))
        return failed is None

    def guard(self) -> list[str]:
        from docker_persist.actions.protect import protect
        from docker_persist.core.alerts import Outcome

        protected = [(v.key, v.name) for v in self.project.precious_volumes() if v.policy and v.policy.protect]
        existing = [(k, n) for k, n in protected if self.context.engine.inspect_volume(n) is not None]
        rows = protect(make_workspace(self.context, self.pending, self.project, self.progress), existing)
        lines = []
        for key, name, changed in rows:
            if changed:
                line = f"the guard of {name} was missing or stopped: put back"
                self.told(Outcome("guard", (key,), False, None, line, mended=True))
                lines.append(line)
        return lines

    def watch(self) -> None:
        """Every WATCH_EVERY seconds (and after each backup), tell of volumes whose snapshots grew too old."""
        import time

        from docker_persist.actions.catalog import read_catalog
        from docker_persist.cli.commands.base import snapshot_infos
        from docker_persist.core.status import project_staleness

        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + WATCH_EVERY
        snapshots = snapshot_infos(read_catalog(self.store, self.project.name))
        now = datetime.datetime.now(datetime.timezone.utc)
        self._quietly(lambda: self.notifier.staleness(project_staleness(self.project, snapshots, now)))


class StopOnSignals:
    """Within the block, SIGTERM and the first Ctrl-C set `stop` instead of interrupting; a second Ctrl-C does."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, object] = {}

    def __enter__(self) -> None:
        import signal

        if threading.current_thread() is not threading.main_thread():
            return

        def request_stop(signum: int, frame: object) -> None:
            self.stop.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, request_stop)

    def __exit__(self, *exc: object) -> None:
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class MetricsServer:
    """Within the block, serve GET /metrics on --metrics-address:--metrics-port in a thread (if a port is given)."""

    def __init__(self, args: argparse.Namespace, context: Context, project: Project) -> None:
        self.args = args
        self.context = context
        self.project = project
        self.server: ThreadingHTTPServer | None = None

    def __enter__(self) -> None:
        if self.args.metrics_port is None:
            return
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from docker_persist.cli.commands.metrics import project_metrics_text
        from docker_persist.core.metrics import CONTENT_TYPE

        # Its own store object: the scheduler's may hold the project lock, which metrics never need.
        store = open_project_store(self.context, self.args, self.project)
        project, environ, engine_host = self.project, self.context.env.environ, self.context.endpoint.host

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                try:
                    body, status, kind = (
                        project_metrics_text(store, project, environ, engine_host).encode(),
                        200,
                        CONTENT_TYPE,
                    )
                except (PersistError, OSError) as error:  # not the store (that is docker_persist_store_up 0)
                    body, status, kind = f"{error}\n".encode(), 500, "text/plain; charset=utf-8"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would drown the backup log

        try:
            self.server = ThreadingHTTPServer((self.args.metrics_address, self.args.metrics_port), Handler)
        except OSError as error:
            where = f"{self.args.metrics_address}:{self.args.metrics_port}"
            raise PersistError(f"cannot serve metrics on {where}: {error.strerror or error}") from error
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True).start()
        host, port = self.server.server_address[:2]
        make_log(self.context)(f"serving metrics on http://{host!s}:{port}/metrics")

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- --install ----------------------------------------------------------------------------


def docker_path(context: Context) -> str:
    """Return the absolute path of the docker CLI. Raise ConfigError if it is not on PATH."""
    import shutil

    found = shutil.which("docker", path=context.env.environ.get("PATH"))
    if found is None:
        raise ConfigError("cannot find the docker CLI on PATH, which the installed unit or crontab line runs")
    return os.path.abspath(found)


def project_argv(args: argparse.Namespace, context: Context, project: Project, files: Sequence[str]) -> list[str]:
    """Return the flags that name this project and its store from anywhere: absolute files, name, store."""
    argv: list[str] = []
    for file in files:
        if file != "-":
            argv += ["-f", os.path.abspath(file)]
    argv += ["-p", project.name]
    store = args.store or context.env.environ.get("DOCKER_PERSIST_STORE")
    if store:
        argv += ["--store", store]
    return argv


def systemd_quote(word: str) -> str:
    """Return `word` quoted for a systemd ExecStart= line ($ and % are literal only when doubled). Raise
    ConfigError for a line break, which would end the setting."""
    if "\n" in word or "\r" in word:
        raise ConfigError(f"a systemd unit cannot run {word!r}: it holds a line break")
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if escaped != word or not word or any(c.isspace() for c in word) else word


def systemd_path(path: str) -> str:
    """Return a path for a systemd setting that takes one path (WorkingDirectory=, EnvironmentFile=): as it is,
    quotes and spaces included, with % doubled. Raise ConfigError for a newline, which a unit file cannot hold."""
    if "\n" in path or "\r" in path:
        raise ConfigError(f"a systemd unit cannot name the path {path!r}: it holds a line break")
    return path.replace("%", "%%")


def render_unit(project: Project, argv: Sequence[str], working_dir: str, environment_file: str) -> str:
    """Return the text of a systemd service that runs the scheduler in the foreground.

    Credentials (an S3 store's keys, a restic password) come from `environment_file`, optional, never from the
    unit itself, which anyone who can run `systemctl cat` may read."""
    return (
        "[Unit]\n"
        f"Description=docker-persist scheduled backups of Compose project {project.name}\n"
        "After=docker.service network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"WorkingDirectory={systemd_path(working_dir)}\n"
        "# Credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...), one VAR=value a line, mode 600:\n"
        f"EnvironmentFile=-{systemd_path(environment_file)}\n"
        f"ExecStart={' '.join(systemd_quote(word) for word in argv)}\n"
        "Restart=on-failure\n"
        "RestartSec=30\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def install_systemd(
    args: argparse.Namespace, context: Context, project: Project, files: Sequence[str], working_dir: str
) -> int:
    """Print docker-persist-<project>.service (a user unit; a system unit with --system, or as root); with --apply,
    write it and say how to start it."""
    argv = [docker_path(context), "persist", "schedule", *project_argv(args, context, project, files)]
    if args.verify_every:
        argv += ["--verify-every", str(args.verify_every)]
        identity = identity_path(context, args)
        if identity:  # the drills of encrypted snapshots need it
            argv += ["--identity", os.path.abspath(os.path.expanduser(identity))]
    if args.metrics_port is not None:
        argv += ["--metrics-port", str(args.metrics_port), "--metrics-address", args.metrics_address]
    if args.system or (not args.user and os.geteuid() == 0):
        directory, systemctl, settings = "/etc/systemd/system", "systemctl", "/etc/docker-persist"
    else:
        home = context.env.environ.get("XDG_CONFIG_HOME") or os.path.join(
            context.env.environ.get("HOME") or os.path.expanduser("~"), ".config"
        )
        directory, systemctl = os.path.join(home, "systemd", "user"), "systemctl --user"
        settings = os.path.join(home, "docker-persist")
    unit = f"docker-persist-{project.name}.service"
    path = os.path.join(directory, unit)
    environment_file = os.path.join(settings, f"{project.name}.env")
    text = render_unit(project, argv, working_dir, environment_file)
    out = context.env.stdout
    credentials = (
        f"Credentials for an S3 store (AWS_ACCESS_KEY_ID=..., AWS_SECRET_ACCESS_KEY=...) go in {environment_file}, "
        "one VAR=value a line, readable by its owner only (chmod 600): never in the unit.\n"
    )
    if not args.apply:
        out.write(f"# {path}\n{text}\n")
        out.write(credentials)
        out.write("Write it there, or run again with --apply to write it.\n")
        return ExitStatus.OK
    try:
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        hint = " (a system unit needs root)" if directory.startswith("/etc/") else ""
        raise PersistError(f"cannot write {path}: {error.strerror or error}{hint}") from error
    out.write(f"Wrote {path}:\n\n{text}\n")
    out.write(credentials)
    out.write(f"Start it now and at boot with:\n  {systemctl} daemon-reload && {systemctl} enable --now {unit}\n")
    if not directory.startswith("/etc/"):
        out.write("To keep it running when you are logged out: loginctl enable-linger\n")
    return ExitStatus.OK


def render_cron_lines(
    args: argparse.Namespace, context: Context, project: Project, files: Sequence[str], groups: Sequence[ScheduleGroup]
) -> list[str]:
    """Return one crontab line per schedule, each running `docker persist backup` of its volumes."""
    flags = project_argv(args, context, project, files)
    docker = docker_path(context)
    lines = []
    for group in groups:
        argv = [docker, "persist", "backup", *group.volume_keys, *flags]
        # % ends the command in crontab: escape it.
        command = " ".join(shlex.quote(word) for word in argv).replace("%", "\\%")
        lines.append(f"{group.schedule.text} {command} {CRON_MARK}{project.name}")
    return lines


def install_cron(
    args: argparse.Namespace,
    context: Context,
    project: Project,
    files: Sequence[str],
    groups: Sequence[ScheduleGroup],
) -> int:
    """Print the crontab lines; with --apply, replace this project's lines in the user's crontab."""
    lines = render_cron_lines(args, context, project, files, groups)
    out = context.env.stdout
    out.write("# cron runs in the system time zone; `docker persist schedule` reads schedules as UTC.\n")
    out.write("# cron gives a command no environment of yours: an S3 store's credentials go in the docker-persist\n"
              "# user's ~/.aws/credentials (read by the S3 client), never in the crontab line.\n")  # fmt: skip
    out.write("".join(f"{line}\n" for line in lines))
    if not args.apply:
        out.write("Add these lines with `crontab -e`, or run again with --apply to install them.\n")
        return ExitStatus.OK
    from docker_persist.host.process import read_crontab, write_crontab

    current = read_crontab()
    kept = [line for line in current if not line.endswith(f"{CRON_MARK}{project.name}")]
    write_crontab([*kept, *lines])
    out.write(f"Installed {len(lines)} line(s) in the crontab of this user (replacing {len(current) - len(kept)}).\n")
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
