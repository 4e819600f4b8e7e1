"""The command line: one `main` that maps every error to an exit code.

Subcommands live in `docker_persist.cli.commands`, one small module each, and are listed
in the explicit registry there. Nothing below `main` exits or prints tracebacks.
"""

from __future__ import annotations

from collections.abc import Sequence

from docker_persist import __version__
from docker_persist.cli.commands import COMMANDS, Entry
from docker_persist.cli.context import Context
from docker_persist.cli.environment import Environment
from docker_persist.cli.globalflags import split_global_flags
from docker_persist.cli.helpformat import ROOT, format_command_list, unknown_flag
from docker_persist.errors import ExitStatus, PersistError, UsageError

SUMMARY = "Keep Docker volume data safe: snapshots, guards and checks for Compose projects"


def format_root_help() -> str:
    """Return `docker persist --help`."""
    lines = [
        f"Usage:  {ROOT} [OPTIONS] COMMAND",
        "",
        SUMMARY,
        "",
        "Options:",
        "  -h, --help      Print usage",
        "  -v, --version   Print version information and quit",
        "",
        "Commands:",
        *format_command_list([(c.name, c.summary) for c in COMMANDS.values() if c.listed]),
        "",
        f"Run '{ROOT} COMMAND --help' for more information on a command.",
        "",
    ]
    return "\n".join(lines)


def configure_logging(env: Environment, debug: bool, level: str | None) -> None:
    """Send docker-persist's log records to stderr at the level the global flags ask for."""
    import logging  # not at module level: it costs `version` 15 ms of start-up

    log = logging.getLogger("docker_persist")
    name = "debug" if debug else (level or "warn")
    numeric = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}.get(name, logging.ERROR)
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s %(message)s"
            if numeric > logging.DEBUG
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    )
    log.handlers[:] = [handler]
    log.setLevel(numeric)
    log.propagate = False


def run_command(args: Sequence[str], env: Environment) -> int:
    """Parse `args` (without the program name) and run the subcommand; return its exit code."""
    options, rest = split_global_flags(args)
    if options.debug or options.log_level:
        configure_logging(env, options.debug, options.log_level)
    if rest[:1] in (["__complete"], ["__completeNoDesc"]):
        # The shell-completion protocol of cobra, which the Docker CLI speaks to plugins.
        from docker_persist.cli.commands.completion import run_complete

        return run_complete(rest[1:], env, descriptions=rest[0] == "__complete")
    if not rest or rest[0] in ("-h", "--help"):
        env.stdout.write(format_root_help())
        return ExitStatus.OK
    if rest[0] == "help":
        return _help(rest[1:], env)
    if rest[0] in ("-v", "--version"):
        env.stdout.write(f"docker-persist version {__version__}\n")
        return ExitStatus.OK
    compose_options = None
    if rest[0].startswith("-"):
        from docker_persist.core.composeargs import split_project_flags

        compose_options, rest = split_project_flags(rest)
        if not rest:
            raise UsageError("a command is required after the project flags")
    name, command_args = rest[0], rest[1:]
    entry = find_entry(name)
    command = entry.load()
    parser = command.make_parser(entry.name, entry.summary)
    parsed = parser.parse_command_args(command_args, passthrough=command.passthrough)
    if parsed.help:
        env.stdout.write(parser.format_help())
        return ExitStatus.OK
    return command.run(parsed, Context(env=env, options=options, compose_options=compose_options))


def find_entry(name: str) -> Entry:
    """Return the registered command `name`. Raise UsageError, with the nearest listed command, if there is none."""
    entry = COMMANDS.get(name)
    if entry is not None:
        return entry
    if name.startswith("-"):
        raise UsageError(unknown_flag(name, {"h": False, "v": False}))
    import difflib

    close = difflib.get_close_matches(name, [c.name for c in COMMANDS.values() if c.listed], n=1)
    hint = f"\n\nDid you mean this?\n\t{close[0]}" if close else ""
    raise UsageError(f"unknown command: {ROOT} {name}{hint}")


def _help(topics: Sequence[str], env: Environment) -> int:
    """`docker persist help [COMMAND]`: the root help, or the command's own, as `COMMAND --help` prints it."""
    if not topics or topics[0] in ("-h", "--help"):
        env.stdout.write(format_root_help())
        return ExitStatus.OK
    if len(topics) > 1:
        raise UsageError(f'"{ROOT} help" accepts at most 1 argument.')
    entry = find_entry(topics[0])
    env.stdout.write(entry.load().make_parser(entry.name, entry.summary).format_help())
    return ExitStatus.OK


def _handle_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so stopped services come back and staging is cleaned."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)


def _notes(error: BaseException) -> str:
    """Return what was added to an error as it unwound (what putting things back found), a line each."""
    notes = getattr(error, "__notes__", None) or []
    return "".join(f"  {note}\n" for note in notes)


def main(args: Sequence[str], env: Environment | None = None) -> int:
    """Run docker-persist with `args` and return the exit code: 0 ok, 1 failed, 2 usage, 130 interrupted."""
    env = env or Environment()
    _handle_sigterm()
    try:
        return run_command(args, env)
    except UsageError as error:
        env.stderr.write(f"{error}\nSee '{error.command} --help'.\n")
        return error.exit_status
    except PersistError as error:
        env.stderr.write(f"Error: {error}\n{_notes(error)}")
        return error.exit_status
    except KeyboardInterrupt as interrupt:
        env.stderr.write(f"Interrupted.\n{_notes(interrupt)}")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # `docker persist snapshots | head` is not an error.
        return ExitStatus.OK
