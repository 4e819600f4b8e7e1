"""`docker persist init`: write compose.persist.yaml, an override that adds the provider and a starter x-persist."""

from __future__ import annotations

import argparse
import os
from typing import Any

from docker_persist.cli.commands.base import Command, PendingProject
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ExitStatus, UnsafeOperationError

OVERRIDE = "compose.persist.yaml"
PROVIDER_SERVICE = "persist"


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument(
        "--output",
        metavar="string",
        help=f"Where to write the override (default: {OVERRIDE} beside the first Compose file)",
    )
    parser.add_argument("--force", action="store_true", help="Replace an existing override file")
    add_project_flags(parser)


def starter_override(project: Any) -> dict[str, Any]:
    """Return the override: the provider service, the depends_on edges, and x-persist for what is not annotated."""
    from docker_persist.config.images import lookup_image

    services: dict[str, Any] = {PROVIDER_SERVICE: {"provider": {"type": "persist"}}}
    volumes: dict[str, Any] = {}
    for service in project.services:
        if service.provider is not None:
            continue
        named = [m.source for m in service.mounts if m.type == "volume" and m.source]
        if not named:
            continue
        entry: dict[str, Any] = {"depends_on": [PROVIDER_SERVICE]}
        known = lookup_image(service.image)
        if known is not None and known.database and service.policy is None:
            entry["x-persist"] = {"consistency": "stop"}
        services[service.name] = entry
        for key in named:
            volume = project.volumes.get(key)
            if volume is not None and volume.policy is None and not volume.disposable and not volume.external:
                volumes[key] = {"x-persist": {}}
    document: dict[str, Any] = {"services": services}
    if volumes:
        document["volumes"] = volumes
    return document


def run(args: argparse.Namespace, context: Context) -> int:
    import yaml

    pending = PendingProject(context, args)
    project, files = pending.wait()
    base = os.path.dirname(files[0]) if files and files[0] != "-" else project.working_dir
    target = args.output or os.path.join(base, OVERRIDE)
    if os.path.exists(target) and not args.force:
        raise UnsafeOperationError(f"{target} exists: pass --force to replace it")
    if any(s.provider == "persist" for s in project.services):
        context.env.stderr.write("The project already has a persist provider service; the override adds the rest.\n")
    document = starter_override(project)
    header = (
        "# Written by `docker persist init`: the docker-persist Compose provider, which backs up\n"
        "# x-persist volumes before `docker compose down -v` and restores them on `up`.\n"
        "# Your own Compose file is left untouched. Review the x-persist keys below.\n"
    )
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(header + yaml.safe_dump(document, sort_keys=False))
    names = [os.path.relpath(f, base) for f in files if f != "-"] or ["compose.yaml"]
    chain = " -f ".join([*names, os.path.relpath(target, base)])
    separator = os.pathsep
    context.env.stdout.write(
        f"Wrote {target}.\nUse it with:\n  docker compose -f {chain} up -d\n"
        f"or once for this shell:\n  export COMPOSE_FILE={separator.join([*names, os.path.relpath(target, base)])}\n"
    )
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run)
