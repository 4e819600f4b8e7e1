"""`docker persist init`: add x-persist to the project where Compose reads it from every shell.

With one Compose file of the user's own, it shows a diff that adds the x-persist keys to that
file (every comment, blank line and key order kept) and asks before writing it. With
--override, or when that file cannot take the keys, or the user says no, it writes
compose.persist.yaml (the Compose provider and the keys) and names it in the project's .env as
COMPOSE_FILE, which `docker compose` reads on every run in the project directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
from typing import TYPE_CHECKING, NamedTuple

from docker_persist.cli.commands.base import Command
from docker_persist.cli.context import Context
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.cli.projectflags import add_project_flags
from docker_persist.errors import ConfigError, ExitStatus, PersistError, UsageError

if TYPE_CHECKING:
    from docker_persist.config.editing import ComposeFiles, InitPlan
    from docker_persist.config.model import Project
    from docker_persist.config.project import ComposeOptions

OVERRIDE = "compose.persist.yaml"
PROVIDER_SERVICE = "persist"


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument(
        "--override",
        action="store_true",
        help=f"Leave the Compose files as they are: write {OVERRIDE} and set COMPOSE_FILE in .env",
    )
    parser.add_argument(
        "--output",
        metavar="string",
        help=f"Where to write the override (default: {OVERRIDE} in the project directory); implies --override",
    )
    parser.add_argument("--dry-run", action="store_true", help="Show the changes, and write nothing")
    parser.add_argument("-y", "--yes", action="store_true", help="Write the changes without asking")
    parser.add_argument("--force", action="store_true", help="Replace an existing override file without asking")
    add_project_flags(parser)


class _Init:
    """One run of init: the project as the user's own files define it, and what init adds to it."""

    def __init__(self, context: Context, args: argparse.Namespace, options: ComposeOptions, cwd: str) -> None:
        from docker_persist.config.editing import plan_init, resolve_compose_files
        from docker_persist.config.project import load_document, parse_compose_yaml
        from docker_persist.host.process import start_compose_config

        self.context, self.args, self.options, self.cwd = context, args, options, cwd
        self.out, self.err = context.env.stdout, context.env.stderr
        self.reported = False
        found = resolve_compose_files(options, context.env.environ, cwd)
        if "-" in found.files:
            raise UsageError("init writes the project's files, so it cannot take a Compose file from standard "
                             "input (-f -)", f"{ROOT} init")  # fmt: skip
        if not found.files:
            raise ConfigError(
                "no Compose file here or in a parent folder (compose.yaml, compose.yml, docker-compose.yml, "
                "docker-compose.yaml): run init in the project folder, or pass -f"
            )
        self.found: ComposeFiles = found
        self.target = os.path.abspath(args.output) if args.output else os.path.join(found.working_dir, OVERRIDE)
        real = os.path.realpath(self.target)
        self.user_files = [f for f in found.files if os.path.realpath(f) != real]
        self.in_use = len(self.user_files) < len(found.files)
        if not self.user_files:
            raise ConfigError(f"{self.show(self.target)} is the project's only Compose file: init annotates "
                              "your own Compose files, so name them with -f")  # fmt: skip
        # What init proposes comes from the user's own files only, never from an override it wrote.
        argv = options._replace(files=tuple(self.user_files)).to_argv()
        document = parse_compose_yaml(
            start_compose_config(context.docker_config, argv, context.env.environ, cwd).result()
        )
        self.project: Project = load_document(document, found.working_dir)
        self.plan: InitPlan = plan_init(self.project, document)

    # --- helpers ---

    def show(self, path: str) -> str:
        """Return `path` as the user would type it here: relative under the current folder."""
        relative = os.path.relpath(path, self.cwd)
        return path if relative.startswith("..") else relative

    def terminal(self) -> bool:
        return self.context.env.stderr_isatty and bool(getattr(self.context.env.stdin, "isatty", lambda: False)())

    def ask(self, question: str) -> bool:
        self.err.write(f"{question} [y/N] ")
        self.err.flush()
        return self.context.env.stdin.readline().strip().lower() in ("y", "yes")

    def report_plan(self) -> None:
        """Print what init decided for each volume and service, and why (once)."""
        if self.reported:
            return
        self.reported = True
        stops = dict(self.plan.stopped)
        for decision in self.plan.decisions:
            if decision.verdict == "precious":
                self.out.write(f"volume {decision.key}: precious ({decision.reason})\n")
            elif decision.verdict == "disposable":
                self.out.write(f"volume {decision.key}: disposable, x-persist: false ({decision.reason})\n")
        for service, why in stops.items():
            self.out.write(f"service {service}: {why}\n")
        self.report_undecided()

    def report_undecided(self) -> None:
        for decision in self.plan.decisions:
            if decision.verdict == "undecided":
                self.out.write(f"volume {decision.key}: left without x-persist ({decision.reason}): give it "
                               "`x-persist: {}` to back it up, or `x-persist: false` if disposable\n")  # fmt: skip

    def next_steps(self, flags: list[str]) -> None:
        tail = "".join(f" {shlex.quote(f)}" for f in flags)
        self.out.write(
            "Next:\n"
            f"  docker persist check{tail}      # what is still at risk\n"
            f"  docker persist up{tail} -d      # create, restore and guard the precious volumes, then start\n"
            f"  docker persist backup{tail}     # a first snapshot\n"
        )

    def counted(self) -> str:
        """Return "x-persist for 2 volumes and 1 service", or "" if the plan adds no key."""
        volumes = sum(1 for a in self.plan.annotations if a.section == "volumes")
        services = len(self.plan.stopped)
        parts = [f"{volumes} volume{'s' * (volumes != 1)}"] if volumes else []
        parts += [f"{services} service{'s' * (services != 1)}"] if services else []
        return f"x-persist for {' and '.join(parts)}" if parts else ""

    # --- the modes ---

    def override_reason(self) -> str | None:
        """Return why init writes the override rather than edit the user's file, or None to edit it."""
        from docker_persist.config.editing import is_init_override

        if self.args.override or self.args.output:
            return ""
        if self.in_use:
            return f"{self.show(self.target)} is already one of the project's Compose files ({self.found.source})"
        existing = _read(self.target)
        if existing is not None and is_init_override(existing):
            return (f"{self.show(self.target)} exists (an earlier `docker persist init` wrote it); delete it and run "
                    "init again to put the keys in your own Compose file instead")  # fmt: skip
        if len(self.user_files) > 1:
            names = ", ".join(self.show(f) for f in self.user_files)
            return f"the project has {len(self.user_files)} Compose files ({names})"
        return None

    def edit(self) -> int:
        """Add the keys to the user's one Compose file: show the diff, ask, write. Fall back to the override."""
        from docker_persist.config.editing import CannotEditError, insert_keys, unified_diff

        path = self.user_files[0]
        name = self.show(path)
        try:
            text = _read(path)
            if text is None:
                raise CannotEditError(f"{name} cannot be read as UTF-8 text")
            new = insert_keys(text, self.plan.annotations, name)
            if new != text and not (os.access(path, os.W_OK) and os.access(os.path.dirname(path), os.W_OK)):
                raise CannotEditError(f"{name} or its folder is not writable")
        except CannotEditError as error:
            self.err.write(f"{name} is left as it is: {error}. init writes {OVERRIDE} and COMPOSE_FILE "
                           "in .env instead.\n")  # fmt: skip
            return self.override(ask=False)
        if new == text:
            self.out.write(f"No changes: {name} has x-persist for every volume init can decide on.\n")
            self.report_undecided()
            return ExitStatus.OK
        self.out.write(unified_diff(text, new, name))
        self.report_plan()
        if self.args.dry_run:
            self.err.write("Dry run: nothing was written.\n")
            return ExitStatus.OK
        if not self.args.yes:
            if not self.terminal():
                raise PersistError(
                    f"there is no terminal to ask on, so nothing was written: pass --yes to write these changes "
                    f"to {name}, or --dry-run to only show them (--override leaves {name} as it is and writes "
                    f"{OVERRIDE} and COMPOSE_FILE in .env instead)"
                )
            if not self.ask(f"Write these changes to {name}?"):
                self.err.write(f"{name} was not changed.\n")
                return self.override(ask=True)
        if _read(path) != text:
            raise PersistError(f"{name} changed while init was working, so nothing was written: run init again")
        _write(path, new)
        self.out.write(f"Wrote {name}: {self.counted()}. Compose and every docker persist command read it there, "
                       "in every shell.\n")  # fmt: skip
        self.next_steps(list(self.options.to_argv()))
        self.out.write(f"For a plain `docker compose down -v` to back up first, add the Compose provider (Compose "
                       f"2.36+): docker persist init --override (it writes {OVERRIDE}, named in .env).\n")  # fmt: skip
        return ExitStatus.OK

    def override_changes(self) -> _OverrideChanges:
        """Return the override and the env file as they are, and as init would write them."""
        from docker_persist.config.editing import render_override, set_dotenv

        provider = next((s.name for s in self.project.services if s.provider == "persist"), None)
        if provider is not None:
            self.err.write(f"The project has a persist provider service ({provider}) already; the override adds "
                           "the rest.\n")  # fmt: skip
        override = render_override(self.project, self.plan, provider or PROVIDER_SERVICE, provider is None)
        existing = _read(self.target)
        if existing is None and os.path.exists(self.target):
            raise PersistError(f"{self.show(self.target)} exists and is not UTF-8 text: move it away, or pass --output")
        separator, base = self.found.separator, self.found.working_dir
        entries = [os.path.relpath(f, base) for f in [*self.user_files, self.target]]
        if any(separator in entry for entry in entries):
            raise ConfigError(f"a Compose file's path holds the COMPOSE_PATH_SEPARATOR {separator!r}: {entries}")
        env_path = self.found.env_file
        env_text = _read(env_path)
        if env_text is None and os.path.exists(env_path):
            raise PersistError(f"{self.show(env_path)} is not UTF-8 text, so init cannot set COMPOSE_FILE in it")
        value = separator.join(entries)
        comment = f"{ROOT} init: Compose reads these files, the x-persist override too, on every run in this folder"
        new_env, old_value = set_dotenv(env_text, "COMPOSE_FILE", value, comment)
        return _OverrideChanges(existing, override, env_path, env_text, new_env, value, old_value)

    def same_files(self, value: str) -> bool:
        """Return True if a COMPOSE_FILE value names the files init would name, in the same order."""
        base, separator = self.found.working_dir, self.found.separator
        files = [os.path.normpath(os.path.join(base, e)) for e in value.split(separator) if e]
        return files == [*self.user_files, self.target]

    def override(self, ask: bool) -> int:
        """Write the override and COMPOSE_FILE in the env file; ask first if told to, or if it replaces something."""
        changes = self.override_changes()
        target, env_name = self.show(self.target), self.show(changes.env_path)
        write_override = changes.existing != changes.override
        write_env = changes.old_value is None or not self.same_files(changes.old_value)
        if not write_override and not write_env:
            self.out.write(f"No changes: {target} and COMPOSE_FILE in {env_name} are up to date.\n")
            self.report_undecided()
            return ExitStatus.OK
        from docker_persist.config.editing import unified_diff

        if write_override:
            self.out.write(unified_diff(changes.existing, changes.override, target))
        if write_env:
            self.out.write(unified_diff(changes.env_text, changes.new_env, env_name))
        self.report_plan()
        if self.args.dry_run:
            self.err.write("Dry run: nothing was written.\n")
            return ExitStatus.OK
        replaces = []
        if write_override and changes.existing is not None and not self.args.force:
            replaces.append(f"{target} exists and differs from what init writes (--force replaces it)")
        if write_env and changes.old_value is not None:
            replaces.append(f"{env_name} sets COMPOSE_FILE={changes.old_value} already")
        if (ask or replaces) and not self.args.yes:
            if not self.terminal():
                why = "".join(f"{r}, and " for r in replaces)
                raise PersistError(
                    f"{why}there is no terminal to ask on, so nothing was written: pass --yes to write the changes "
                    f"above (or set COMPOSE_FILE={changes.value} in {env_name} yourself)"
                )
            question = (f"Leave your Compose files as they are, and write {target} and COMPOSE_FILE in {env_name} "
                        "instead?" if ask else f"Write these changes to {target} and {env_name}?")  # fmt: skip
            if not self.ask(question):
                self.err.write("Nothing was written.\n")
                return ExitStatus.FAILED
        if write_override:
            _write(self.target, changes.override)
            keys = f" and {self.counted()}" if self.counted() else "; the x-persist keys are in your own files"
            self.out.write(f"Wrote {target}: the docker-persist Compose provider (Compose 2.36+){keys}.\n")
        if write_env:
            _write(changes.env_path, changes.new_env)
            self.report_env(changes)
        self.report_flags()
        return ExitStatus.OK

    def report_env(self, changes: _OverrideChanges) -> None:
        base = self.found.working_dir
        how = "Created" if changes.env_text is None else "Updated"
        count = "all" if len(self.user_files) > 1 else "both"
        where = "this folder" if base == self.cwd else self.show(base)
        self.out.write(f"{how} {self.show(changes.env_path)}: COMPOSE_FILE={changes.value}, so docker compose and "
                       f"docker persist read {count} files in every shell, run in {where} without -f.\n")  # fmt: skip

    def report_flags(self) -> None:
        shell = self.context.env.environ.get("COMPOSE_FILE")
        if shell is not None and not self.same_files(shell):
            self.err.write(f"COMPOSE_FILE={shell} is set in this shell, and wins over "
                           f"{self.show(self.found.env_file)}: unset COMPOSE_FILE.\n")  # fmt: skip
        flags = list(self.options.to_argv())
        if self.found.source == "-f":
            if not self.in_use:
                flags += ["-f", self.show(self.target)]
            self.out.write(f"You name the Compose files with -f, and then Compose ignores COMPOSE_FILE: add "
                           f"-f {self.show(self.target)}, or leave -f out.\n")  # fmt: skip
        self.next_steps(flags)


class _OverrideChanges(NamedTuple):
    existing: str | None  # the override file now (None: none)
    override: str  # the override file init writes
    env_path: str
    env_text: str | None  # the env file now (None: none)
    new_env: str  # the env file with COMPOSE_FILE set
    value: str  # COMPOSE_FILE
    old_value: str | None  # COMPOSE_FILE in the env file now (None: unset)


def _read(path: str) -> str | None:
    """Return the text of a file, line endings as they are; None if it is missing or not UTF-8."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: str, text: str) -> None:
    """Replace the file at `path` (through a symlink) atomically, keeping its mode and, as root, its owner."""
    from docker_persist.host.files import write_atomically

    real = os.path.realpath(path)
    try:
        stat: os.stat_result | None = os.stat(real)
    except FileNotFoundError:
        stat = None
    if stat is not None:
        mode = stat.st_mode & 0o7777
    else:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        write_atomically(real, text.encode("utf-8"), mode=mode)
    except OSError as error:
        raise PersistError(f"cannot write {path}: {error.strerror or error}") from error
    if stat is not None:
        written = os.stat(real)
        if (written.st_uid, written.st_gid) != (stat.st_uid, stat.st_gid):
            with contextlib.suppress(OSError):  # only root may give a file away; a group, only to a member
                os.chown(real, stat.st_uid, stat.st_gid)


def run(args: argparse.Namespace, context: Context) -> int:
    from docker_persist.cli.projectflags import compose_options_from_args
    from docker_persist.config.project import ComposeOptions

    options = (context.compose_options or ComposeOptions()).merged(compose_options_from_args(args))
    init = _Init(context, args, options, os.getcwd())
    reason = init.override_reason()
    if reason is None:
        return init.edit()
    if reason:
        init.err.write(
            f"Using {init.show(init.target)} and COMPOSE_FILE in {init.show(init.found.env_file)}: {reason}.\n"
        )
    return init.override(ask=False)


COMMAND = Command(add_arguments=add_arguments, run=run)
