"""`docker persist check`: audit the project and the live engine for every way data is lost or exposed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_layer_threshold_flag,
    add_store_flag,
    check_format,
    layer_threshold,
    read_live_state,
    store_url,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.config.model import Project

if TYPE_CHECKING:
    from docker_persist.core.state import LiveState
from docker_persist.errors import ConfigError, ExitStatus, UsageError

FORMATS = ("pretty", "json", "sarif")


def add_arguments(parser: DockerArgumentParser) -> None:
    add_project_flags(parser)
    add_format_flag(parser, FORMATS)
    add_store_flag(parser)
    parser.add_argument(
        "--severity",
        default="error",
        metavar="string",
        help='Exit 1 on findings this severe or worse: "error", "warning", "info" (default "error")',
    )
    add_layer_threshold_flag(parser, "counts as data at risk")
    parser.add_argument("--static", action="store_true", help="Check the Compose files only; do not read the engine")
    parser.add_argument(
        "--notify",
        action="store_true",
        help="Tell x-persist.notify of volumes whose snapshots grew too old (once), or are fresh again",
    )


def run(args: argparse.Namespace, context: Context) -> int:
    output = check_format(args, "check", FORMATS)
    if args.notify and args.static:
        raise UsageError("--notify needs the snapshots: it cannot be used with --static", f"{ROOT} check")
    if args.severity not in ("error", "warning", "info"):
        raise UsageError(f'invalid --severity "{args.severity}": expected error, warning or info', f"{ROOT} check")
    # Compose takes ~60 ms: start it, then import and reach the engine while it works.
    pending = PendingProject(context, args)
    import yaml  # noqa: F401 - imported now, while Compose runs

    from docker_persist.cli.report import render_json, render_pretty, render_sarif
    from docker_persist.config.schema import load_schema
    from docker_persist.core.findings import severity_rank
    from docker_persist.core.rules import RULES, CheckOptions, run_rules
    from docker_persist.engine.livestate import static_state

    load_schema()
    threshold = layer_threshold(args)
    if not args.static:
        context.engine.api_version  # noqa: B018 - negotiate while Compose runs
    project, files = pending.wait()
    state = static_state() if args.static else read_live_state(context, args, project, threshold)
    options = CheckOptions(
        layer_threshold=threshold,
        engine_read=not args.static,
        encrypt_problem=encrypt_problem(project, store_url(context, args, project)),
        notify_problems=notify_problems(project, reach=not args.static),
    )
    findings = run_rules(project, state, options)
    if args.notify:
        tell_staleness(context, project, state)

    out = context.env.stdout
    if output == "json":
        out.write(render_json(project.name, findings))
    elif output == "sarif":
        rules = {rule.id: (rule.title, rule.severity) for rule in RULES.values()}
        out.write(render_sarif(findings, rules, files, project.working_dir))
    else:
        out.write(render_pretty(project.name, findings, colour=context.env.stdout_isatty))
    failing = [f for f in findings if severity_rank(f.severity) >= severity_rank(args.severity)]
    return ExitStatus.FAILED if failing else ExitStatus.OK


def tell_staleness(context: Context, project: Project, state: LiveState) -> None:
    """Send `stale` (and `recovered`) notifications for the project's volumes, by the snapshots `state` holds."""
    from docker_persist.cli.commands.base import make_notifier
    from docker_persist.core.status import project_staleness

    if state.snapshots is None:
        context.env.stderr.write("docker-persist: check --notify: no store could be read: the ages are not known\n")
        return
    make_notifier(context, project).staleness(project_staleness(project, state.snapshots, state.now))


def notify_targets(project: Project) -> list[tuple[str, str]]:
    """Return (where, URL) for every notify target and the ping URL of the project, each URL once."""
    found: dict[str, str] = {}
    for target in project.policy.notify:
        found.setdefault(target.url, "x-persist.notify target")
    for volume in [*project.precious_volumes(), *project.precious_binds()]:
        for target in (volume.policy.notify if volume.policy else None) or ():
            found.setdefault(target.url, f"x-persist.notify target of volume '{volume.key}'")
    if project.policy.ping:
        found.setdefault(project.policy.ping, "x-persist.ping")
    return [(where, url) for url, where in found.items()]


def notify_problems(project: Project, reach: bool) -> tuple[tuple[str, str, str, str], ...]:
    """Return (where, masked URL, severity, problem) for each target Apprise cannot read (an error), and, with
    `reach`, each webhook or ping whose host does not answer on its port (a warning)."""
    targets = notify_targets(project)
    if not targets:
        return ()
    from docker_persist.host.notify import masked, unreachable, url_problem

    problems = []
    for where, url in targets:
        problem = None if where == "x-persist.ping" else url_problem(url)
        if problem is not None:
            problems.append((where, masked(url), "error", f"cannot be used ({problem})"))
        elif reach and (why := unreachable(url)) is not None:
            problems.append((where, masked(url), "warning", f"cannot be reached ({why})"))
    return tuple(problems)


def encrypt_problem(project: Project, store: str | None = None) -> str | None:
    """Return why x-persist.encrypt cannot be used (recipients that cannot be loaded, or a restic `store`),
    or None (also when there is no encrypt)."""
    if project.policy.encrypt is None:
        return None
    if store is not None and store.startswith("restic:"):
        return (
            "a restic repository is always encrypted with its password, and age would leave restic nothing to "
            "deduplicate; remove x-persist.encrypt, or keep snapshots in another store"
        )
    from docker_persist.streams.encryption import load_recipients

    try:
        load_recipients(project.policy.encrypt)
    except ConfigError as error:
        return str(error)
    return None


COMMAND = Command(
    add_arguments=add_arguments,
    run=run,
)
