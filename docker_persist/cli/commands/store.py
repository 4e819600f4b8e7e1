"""`docker persist store init|check URL`: create a restic repository, or have restic check one."""

from __future__ import annotations

import argparse

from docker_persist.cli.commands.base import Command
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.errors import ConfigError, ExitStatus


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("action", choices=("init", "check"), help="init: create the repository; check: restic check")
    parser.add_argument("url", nargs="?", help="restic:REPOSITORY (default: $DOCKER_PERSIST_STORE)")
    parser.add_argument(
        "--read-data-subset",
        metavar="string",
        help="with check: also read this share of the data back (restic's syntax: 1/5, 10%%, 500M)",
    )


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.store import open_store
    from docker_persist.store.restic import ResticStore

    url = args.url or context.env.environ.get("DOCKER_PERSIST_STORE")
    if not url:
        raise ConfigError(f"name the store: docker persist store {args.action} restic:REPOSITORY")
    if not url.startswith("restic:"):
        raise ConfigError(
            f"{url!r} is not a restic store: `store {args.action}` is for restic:REPOSITORY (other stores need "
            "neither: a folder or bucket is used as it is)"
        )
    if args.read_data_subset and args.action != "check":
        raise ConfigError("--read-data-subset goes with `store check`")
    store = open_store(url, context.env.environ)
    assert isinstance(store, ResticStore)
    if args.action == "init":
        store.init()
        context.env.stdout.write(f"Created the restic repository {store.url}.\n")
        return ExitStatus.OK
    report = store.check(args.read_data_subset)
    context.env.stdout.write(report if report.endswith("\n") or not report else report + "\n")
    context.env.stdout.write(f"restic check passed on {store.url}.\n")
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
