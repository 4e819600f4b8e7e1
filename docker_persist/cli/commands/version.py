"""`docker persist version`: the plugin, engine and Compose versions."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from docker_persist import __version__
from docker_persist.cli.commands.base import Command, add_format_flag, check_format
from docker_persist.cli.context import Context
from docker_persist.errors import ExitStatus, PersistError
from docker_persist.host.process import ComposeVersion, find_compose_version


def _tar_reader() -> str:
    """Return "c" if the content digest's compiled reader loads (core/archive.py uses it then), else "python".

    Imported here on its own: core.archive costs ~30 ms to import, which `version` need not pay."""
    try:
        from docker_persist.core import _tarscan  # noqa: F401
    except ImportError:
        return "python"
    return "c"


def add_arguments(parser: Any) -> None:
    add_format_flag(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    output = check_format(args, "version")
    endpoint = context.endpoint
    # Ask Compose and the engine at once: each costs a round trip of tens of milliseconds.
    docker_config = context.docker_config
    composes: list[ComposeVersion] = []
    thread = threading.Thread(target=lambda: composes.append(find_compose_version(docker_config, context.env.environ)))
    thread.start()
    engine_error: PersistError | None = None
    try:
        engine = context.engine.version()
    except PersistError as error:
        engine, engine_error = None, error
    finally:
        thread.join()
    compose = composes[0]

    report: dict[str, Any] = {
        "Plugin": {
            "Version": __version__,
            "Python": sys.version.split()[0],
            "Frozen": bool(getattr(sys, "frozen", False)),
            # "c" when the digest's per-entry reader is the compiled one (core/_tarscan.c); "python" is slower
            "TarReader": _tar_reader(),
        },
        "Engine": None,
        "Context": {"Name": endpoint.context, "Host": endpoint.host, "ChosenBy": endpoint.source},
        "Compose": {"Version": compose.version, "Path": compose.path} if compose.version else None,
    }
    if engine is not None:
        report["Engine"] = {
            "Version": engine.version,
            "ApiVersion": engine.api_version,
            "MinApiVersion": engine.min_api_version,
            "Os": engine.os,
            "Arch": engine.arch,
        }
    out = context.env.stdout
    if output == "json":
        if engine_error is not None:
            report["Engine"] = {"Error": str(engine_error)}
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write("Plugin:\n")
        out.write(f" Version:      {__version__}\n")
        out.write(f" Python:       {report['Plugin']['Python']}\n")
        out.write(f" Tar reader:   {report['Plugin']['TarReader']}\n")
        out.write(f" Context:      {endpoint.context} ({endpoint.host})\n")
        if engine is not None:
            out.write("Engine:\n")
            out.write(f" Version:      {engine.version}\n")
            out.write(f" API version:  {engine.api_version} (minimum version {engine.min_api_version})\n")
            out.write(f" OS/Arch:      {engine.os}/{engine.arch}\n")
        out.write("Compose:\n")
        if compose.version:
            out.write(f" Version:      {compose.version}\n")
            out.write(f" Path:         {compose.path}\n")
        else:
            out.write(f" Version:      not found ({compose.problem})\n")
    if engine_error is not None:
        context.env.stderr.write(f"Error: {engine_error}\n")
        return ExitStatus.FAILED
    return ExitStatus.OK


COMMAND = Command(
    add_arguments=add_arguments,
    run=run,
)
