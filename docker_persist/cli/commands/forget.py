"""`docker persist forget [NAME...] [--keep-...]`: remove snapshots by name, or by a policy applied per volume."""

from __future__ import annotations

import argparse
import json

from docker_persist.cli.commands.base import (
    Command,
    PendingProject,
    add_format_flag,
    add_store_flag,
    check_format,
    open_project_store,
    reported,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UsageError

UNITS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=argparse.SUPPRESS)
    for unit in UNITS:
        parser.add_argument(
            f"--keep-{unit}",
            type=int,
            metavar="int",
            help=f"Keep the {unit} N snapshots (-1: all)"
            if unit == "last"
            else f"Keep the newest snapshot of each of the last N {unit} periods",
        )
    parser.add_argument(
        "--keep-within", metavar="string", help="Keep every snapshot within this time of the newest (e.g. 30d, 1y6mo)"
    )
    parser.add_argument("--dry-run", action="store_true", help="Show what would be removed; remove nothing")
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.actions.forget import forget, forget_names
    from docker_persist.config.model import KeepPolicy

    output = check_format(args, "forget")
    flags = {unit: getattr(args, f"keep_{unit}") for unit in UNITS}
    policy = KeepPolicy(**flags, within=args.keep_within)
    if args.names and not policy.is_empty():
        raise UsageError("give snapshot names or --keep-* options, not both", f"{ROOT} forget")
    project = PendingProject(context, args).wait_for_store()
    store = open_project_store(context, args, project)
    if args.names:
        removed_names = forget_names(store, project.name, args.names, args.dry_run)
        if output == "json":
            document = {"dry_run": args.dry_run, "removed": removed_names}
            context.env.stdout.write(json.dumps(document, indent=2) + "\n")
        else:
            verb = "Would remove" if args.dry_run else "Removed"
            context.env.stdout.write("".join(f"{verb} {name}\n" for name in removed_names))
        return ExitStatus.OK
    if policy.is_empty() and project.policy.keep is not None:
        policy = project.policy.keep  # no --keep-* flags: the project's x-persist.keep
    if args.dry_run:
        result = forget(store, project.name, policy, args.dry_run)
    else:
        with reported(context, project, "forget", ()):
            result = forget(store, project.name, policy, args.dry_run)
    decisions = result.decisions
    if output == "json":
        rows = [{"name": d.snapshot.name, "keep": d.keep, "reasons": list(d.reasons)} for d in decisions]
        damaged = [{"name": d.name, "problem": d.problem} for d in result.damaged]
        document = {"dry_run": args.dry_run, "snapshots": rows, "damaged": damaged}
        context.env.stdout.write(json.dumps(document, indent=2) + "\n")
        return ExitStatus.FAILED if result.damaged else ExitStatus.OK
    removed = [d for d in decisions if not d.keep]
    for decision in decisions:
        verdict = "keep  " if decision.keep else ("would remove" if args.dry_run else "remove")
        reasons = f"  ({', '.join(decision.reasons)})" if decision.reasons else ""
        context.env.stdout.write(f"{verdict:<12} {decision.snapshot.name}{reasons}\n")
    verb = "would remove" if args.dry_run else "removed"
    context.env.stdout.write(f"{len(decisions) - len(removed)} kept, {len(removed)} {verb}\n")
    for damaged_snapshot in result.damaged:
        context.env.stderr.write(
            f"damaged, left alone: {damaged_snapshot.name}: {damaged_snapshot.problem}; "
            f"remove it with `docker persist forget {damaged_snapshot.name}`\n"
        )
    return ExitStatus.FAILED if result.damaged else ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="[OPTIONS] [NAME...]")
