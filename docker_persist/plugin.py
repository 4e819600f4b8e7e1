"""The Docker CLI plugin shim: the metadata answer, then hand over to `cli.main`.

Kept tiny on purpose: the Docker CLI starts the plugin twice per command, once only
to read this metadata, so this path must import neither `docker` nor `yaml`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from docker_persist import __version__

# Written out rather than json.dumps'd: importing json costs this path a third of its time.
METADATA_JSON = f"""{{
  "SchemaVersion": "0.1.0",
  "Vendor": "docker-persist",
  "Version": "{__version__}",
  "ShortDescription": "Keep volume data safe: snapshots, guards and checks",
  "URL": "https://github.com/docker-persist/docker-persist"
}}
"""


def run(argv: Sequence[str] | None = None) -> int:
    """Run the plugin with `argv` (default: sys.argv[1:]) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["docker-cli-plugin-metadata"]:
        sys.stdout.write(METADATA_JSON)
        return 0
    from docker_persist.cli.main import main

    return main(args)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(run())
