"""`docker persist plan up|down [-v]`: print what `up` or `down` would do, and change nothing."""

from __future__ import annotations

import argparse
import dataclasses
import json

from docker_persist.cli.commands.base import (
    Command,
    add_format_flag,
    add_layer_threshold_flag,
    add_store_flag,
    check_format,
    layer_threshold,
    load_project,
    read_live_state,
)
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.progress import format_bytes
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.core.planner import DownPlan, UpPlan, plan_down, plan_up
from docker_persist.errors import ExitStatus, UsageError

ACTIONS = {"backup": "back up first", "refuse": "REFUSE (on_down: refuse)", "allow": "allowed, not backed up"}


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("operation", metavar="up|down", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("-v", "--volumes", action="store_true", help="For down: plan `down -v`, which removes volumes")
    add_layer_threshold_flag(parser, "counts as data at risk")
    add_store_flag(parser)
    add_project_flags(parser)
    add_format_flag(parser)


def render_up(plan: UpPlan) -> str:
    """Return the up plan as text."""
    lines = [f"Plan for `up` of project {plan.project}:"]
    for number, step in enumerate(plan.steps, start=1):
        lines.append(f"  {number}. {step.action:<8} {step.volume} ({step.key}): {step.detail}")
    lines.append(f"  {len(plan.steps) + 1}. run      docker compose up")
    return "\n".join(lines) + "\n"


def render_down(plan: DownPlan) -> str:
    """Return the down plan as text: the loss set with sizes, and what on_down does about it."""
    flag = " -v" if plan.remove_volumes else ""
    lines = [f"Plan for `down{flag}` of project {plan.project} (on_down: {plan.on_down}):"]
    if not plan.losses:
        lines.append("  Nothing would be lost.")
    else:
        lines.append("  Would be lost:")
        for loss in plan.losses:
            where = f"{loss.service}:{loss.path}" if loss.service and loss.path else (loss.service or "")
            label = f"{loss.name} ({loss.key})" if loss.key else loss.name
            precious = " precious" if loss.precious else ""
            size = format_bytes(loss.size) if loss.size is not None else "?"
            lines.append(f"    {loss.kind:<17} {label}  {where}  {size}{precious}  -> {ACTIONS[loss.action]}")
    steps = []
    if plan.refused:
        steps.append("refuse: exit 1 and change nothing (use --force, or set on_down: backup)")
    else:
        if plan.to_back_up:
            steps.append(f"take snapshot <timestamp>-pre-down of {len(plan.to_back_up)} item(s)")
        if plan.release_guards:
            steps.append(f"release the guards of {', '.join(plan.release_guards)}")
        steps.append(f"run docker compose down{flag}")
    lines.append("  Steps:")
    lines += [f"    {n}. {text}" for n, text in enumerate(steps, start=1)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, context: Context) -> int:

    output = check_format(args, "plan")
    if args.operation not in ("up", "down"):
        raise UsageError('"docker persist plan" requires "up" or "down"', f"{ROOT} plan")
    if args.volumes and args.operation == "up":
        raise UsageError("-v/--volumes only applies to `plan down`", f"{ROOT} plan")
    threshold = layer_threshold(args)
    project, _ = load_project(context, args)
    state = read_live_state(context, args, project, threshold, with_sizes=True)
    plan: UpPlan | DownPlan
    if args.operation == "up":
        plan = plan_up(project, state)
        text = render_up(plan)
    else:
        plan = plan_down(project, state, remove_volumes=args.volumes, layer_threshold=threshold)
        text = render_down(plan)
    if output == "json":
        context.env.stdout.write(json.dumps({"operation": args.operation, **dataclasses.asdict(plan)}, indent=2) + "\n")
    else:
        context.env.stdout.write(text)
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="up|down [OPTIONS]")
