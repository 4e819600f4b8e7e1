"""Docker's global flags, and the argv the Docker CLI hands a plugin.

The Docker CLI runs a plugin as ``docker-persist [GLOBAL FLAGS] persist ARGS...``;
standalone it is ``docker-persist [GLOBAL FLAGS] ARGS...``. This module splits the
global flags off and drops the ``persist`` word. It is pure: no I/O, and it imports only
GlobalOptions (from host.dockerconfig, which every command loads anyway), because it runs on
every start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docker_persist.errors import UsageError
from docker_persist.host.dockerconfig import GlobalOptions

PLUGIN_NAME = "persist"

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


# flag -> (field, takes a value)
LONG_FLAGS: dict[str, tuple[str, bool]] = {
    "--context": ("context", True),
    "--host": ("hosts", True),
    "--config": ("config", True),
    "--debug": ("debug", False),
    "--log-level": ("log_level", True),
    "--tls": ("tls", False),
    "--tlsverify": ("tlsverify", False),
    "--tlscacert": ("tlscacert", True),
    "--tlscert": ("tlscert", True),
    "--tlskey": ("tlskey", True),
}
SHORT_FLAGS: dict[str, str] = {"-c": "--context", "-H": "--host", "-D": "--debug", "-l": "--log-level"}

_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def parse_bool(flag: str, text: str) -> bool:
    """Return a boolean flag's `--flag=TEXT` as pflag reads it. Raise UsageError for anything else."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f'invalid argument "{text}" for "{flag}" flag: expected true or false')


# One branch per shape of flag the Docker CLI accepts (pflag's grammar), in the order it tries them.
def split_global_flags(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:  # noqa: PLR0912
    """Given the plugin's argv (without the program name), return the global options and the rest.

    Global flags are read up to the first non-flag word. A leading ``persist`` word, as the
    Docker CLI passes it, is dropped. Raise UsageError for an unknown global flag, a flag
    missing its value, or both ``--context`` and ``--host``.
    """
    values: dict[str, Any] = {}
    hosts: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.partition("=")
        if not name.startswith("--") and len(name) > 2:
            # pflag shorthand with an attached value: -cNAME, -Hunix:///x, -ldebug
            name, inline, eq = arg[:2], arg[2:], "="
        long = SHORT_FLAGS.get(name, name)
        if long not in LONG_FLAGS:
            # Not a global flag: the subcommand's own flags start here (e.g. `--help`).
            break
        field, takes_value = LONG_FLAGS[long]
        if takes_value:
            if eq:
                value = inline
            elif index + 1 < len(argv):
                index += 1
                value = argv[index]
            else:
                raise UsageError(f"flag needs an argument: {arg}")
            if field == "hosts":
                hosts.append(value)
            else:
                values[field] = value
        else:
            values[field] = parse_bool(long, inline) if eq else True
        index += 1
    rest = list(argv[index:])
    if rest and rest[0] == PLUGIN_NAME:
        rest = rest[1:]

    level = values.get("log_level")
    if level is not None and level not in LOG_LEVELS:
        raise UsageError(f'invalid argument "{level}" for "-l, --log-level" flag: not a valid log level: {level}')
    if hosts and values.get("context"):
        raise UsageError("conflicting options: cannot specify both --host and --context")
    if len(hosts) > 1:
        raise UsageError("specify only one -H")
    options = GlobalOptions(hosts=tuple(hosts), **values)
    return options, rest
