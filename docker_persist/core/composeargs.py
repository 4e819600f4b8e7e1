"""Docker Compose's command line, read the way Compose (cobra and pflag) reads it.

One reader for every place that must know what a Compose command line says: the Compose
provider (which reads its parent `docker compose down` from /proc to learn whether `-v` was
given) and the `up`/`down` wrappers (which pass the rest of their line to Compose).

The grammar, as pflag parses it:

- `--name value` and `--name=value` for flags that take a value; `--name`, `--name=true` and
  `--name=false` (also 1, 0, t, f, T, F, TRUE, FALSE, True, False) for booleans;
- shorthands combine: `-vt0` is `-v -t 0`, `-v=false` sets a boolean shorthand, and a shorthand
  that takes a value takes the rest of its word (`-t10`) or the next word (`-t 10`);
- `--` ends the flags; a lone `-` is an argument;
- the Docker CLI's global flags come before the `compose` word, Compose's own global flags
  before the subcommand (they do not mix with it), and a subcommand's flags may come before,
  between or after its arguments;
- deprecated spellings are normalized as Compose does: `--volume` is `--volumes` on down, and
  `--y` is `--yes` on up; Compose's `--workdir` is `--project-directory`.

The flag tables are those of Docker CLI 28 and Compose 2.40.3. A flag not in them is reported
in `unknown`, not guessed at: the provider then treats a `down` as destructive for the backup
but never releases guards, and the wrappers ask Compose itself whether the line is valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from docker_persist.config.project import ComposeOptions
from docker_persist.errors import UsageError

# name -> takes a value; shorthands map to names.
DOCKER_FLAGS = {
    "config": True, "context": True, "debug": False, "host": True, "log-level": True,
    "tls": False, "tlscacert": True, "tlscert": True, "tlskey": True, "tlsverify": False,
}  # fmt: skip
DOCKER_SHORT = {"c": "context", "D": "debug", "H": "host", "l": "log-level"}

COMPOSE_FLAGS = {
    "all-resources": False, "ansi": True, "compatibility": False, "dry-run": False, "env-file": True,
    "file": True, "help": False, "no-ansi": False, "parallel": True, "profile": True, "progress": True,
    "project-directory": True, "project-name": True, "verbose": False, "version": False, "workdir": True,
}  # fmt: skip
COMPOSE_SHORT = {"f": "file", "h": "help", "p": "project-name", "v": "version"}

PROJECT_FLAGS = {"env-file": True, "file": True, "profile": True, "project-directory": True, "project-name": True}
PROJECT_SHORT = {"f": "file", "p": "project-name"}

SUBCOMMAND_FLAGS: dict[str, dict[str, bool]] = {
    "down": {"dry-run": False, "help": False, "remove-orphans": False, "rmi": True, "timeout": True, "volumes": False},
    "up": {
        "abort-on-container-exit": False, "abort-on-container-failure": False, "always-recreate-deps": False,
        "attach": True, "attach-dependencies": False, "build": False, "detach": False, "dry-run": False,
        "exit-code-from": True, "force-recreate": False, "help": False, "menu": False, "no-attach": True,
        "no-build": False, "no-color": False, "no-deps": False, "no-log-prefix": False, "no-recreate": False,
        "no-start": False, "pull": True, "quiet-build": False, "quiet-pull": False, "remove-orphans": False,
        "renew-anon-volumes": False, "scale": True, "timeout": True, "timestamps": False, "wait": False,
        "wait-timeout": True, "watch": False, "yes": False,
    },
}  # fmt: skip
SUBCOMMAND_SHORT: dict[str, dict[str, str]] = {
    "down": {"h": "help", "t": "timeout", "v": "volumes"},
    "up": {"V": "renew-anon-volumes", "d": "detach", "h": "help", "t": "timeout", "w": "watch", "y": "yes"},
}
ALIASES: dict[str, dict[str, str]] = {
    "compose": {"workdir": "project-directory"},
    "down": {"volume": "volumes"},
    "up": {"y": "yes"},
}

_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


@dataclasses.dataclass
class FlagSet:
    """What one part of a command line set: flag name -> the values given, in order."""

    values: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    unknown: list[str] = dataclasses.field(default_factory=list)  # flags this table does not know
    problems: list[str] = dataclasses.field(default_factory=list)  # e.g. a flag without its value

    def last(self, name: str) -> str | None:
        """Return the last value given for `name`, or None."""
        values = self.values.get(name)
        return values[-1] if values else None

    def boolean(self, name: str) -> bool | None:
        """Return a boolean flag's value (None if not given or not a boolean word)."""
        value = self.last(name)
        if value is None:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        return None

    @property
    def readable(self) -> bool:
        """Return True if every flag was known and well formed."""
        return not self.unknown and not self.problems


@dataclasses.dataclass
class ComposeCommand:
    """A Compose command line, read."""

    docker: FlagSet  # the Docker CLI's global flags (before `compose`)
    compose: FlagSet  # Compose's global flags (before the subcommand)
    subcommand: str | None
    flags: FlagSet  # the subcommand's flags
    arguments: list[str]  # the subcommand's arguments (services)

    @property
    def readable(self) -> bool:
        """Return True if the whole line was read without a doubt."""
        return self.docker.readable and self.compose.readable and self.flags.readable and self.subcommand is not None

    def removes_volumes(self) -> bool | None:
        """For `down`: True if -v/--volumes is in effect, False if not, None if the line cannot be read."""
        if self.subcommand != "down" or not self.readable:
            return None
        value = self.flags.boolean("volumes")
        if self.flags.last("volumes") is not None and value is None:
            return None
        return bool(value)


def parse_flags(
    words: Sequence[str],
    flags: Mapping[str, bool],
    short: Mapping[str, str],
    aliases: Mapping[str, str] | None = None,
    interspersed: bool = True,
    stop_at_unknown: bool = False,
) -> tuple[FlagSet, list[str]]:
    """Read pflag-style flags from `words`; return them and the arguments.

    Without `interspersed`, reading stops at the first argument, which starts the rest; with
    `stop_at_unknown`, it stops at the first flag not in the table too.
    """
    result = FlagSet()
    arguments: list[str] = []
    aliases = aliases or {}
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            arguments += words[index:]
            break
        if not word.startswith("-") or word == "-":
            if not interspersed:
                arguments += words[index - 1 :]
                break
            arguments.append(word)
            continue
        if word.startswith("--"):
            name, equals, value = word[2:].partition("=")
            name = aliases.get(name, name)
            if name not in flags:
                if stop_at_unknown:
                    arguments += words[index - 1 :]
                    break
                result.unknown.append(word)
                continue
            if flags[name]:
                if not equals:
                    if index >= len(words):
                        result.problems.append(f"flag needs an argument: --{name}")
                        break
                    value = words[index]
                    index += 1
                result.values.setdefault(name, []).append(value)
            else:
                result.values.setdefault(name, []).append(value if equals else "true")
            continue
        if stop_at_unknown and short.get(word[1]) not in flags:
            arguments += words[index - 1 :]
            break
        index = _read_shorthands(word, words, index, flags, short, result)
    return result, arguments


def _read_shorthands(
    word: str,
    words: Sequence[str],
    index: int,
    flags: Mapping[str, bool],
    short: Mapping[str, str],
    result: FlagSet,
) -> int:
    """Read a word of shorthands (`-vt0`, `-v=false`); return the index of the next word."""
    letters = word[1:]
    while letters:
        letter, letters = letters[0], letters[1:]
        name = short.get(letter)
        if name is None or name not in flags:
            result.unknown.append(f"-{letter}")
            return index
        if letters.startswith("="):
            result.values.setdefault(name, []).append(letters[1:])
            return index
        if flags[name]:
            if letters:
                result.values.setdefault(name, []).append(letters)
            elif index < len(words):
                result.values.setdefault(name, []).append(words[index])
                index += 1
            else:
                result.problems.append(f"flag needs an argument: '{letter}' in -{letter}")
            return index
        result.values.setdefault(name, []).append("true")
    return index


def parse_compose_command(argv: Sequence[str]) -> ComposeCommand:
    """Read the argv of a Compose process: `docker-compose [docker flags] compose [compose flags] SUB ...`
    as the Docker CLI runs the plugin, or `docker-compose [compose flags] SUB ...` standalone."""
    words = list(argv[1:])
    docker = FlagSet()
    if "compose" in words:
        docker, rest = parse_flags(words, DOCKER_FLAGS, DOCKER_SHORT, interspersed=False)
        if rest[:1] == ["compose"]:
            words = rest[1:]
        else:  # `compose` was a flag's value, not the plugin's word: read the line as standalone
            docker = FlagSet()
    compose, rest = parse_flags(words, COMPOSE_FLAGS, COMPOSE_SHORT, ALIASES["compose"], interspersed=False)
    if not rest:
        return ComposeCommand(docker, compose, None, FlagSet(), [])
    return parse_subcommand(rest[0], rest[1:], docker, compose)


def parse_subcommand(
    subcommand: str, words: Sequence[str], docker: FlagSet | None = None, compose: FlagSet | None = None
) -> ComposeCommand:
    """Read the words after a Compose subcommand (its flags and arguments)."""
    table = SUBCOMMAND_FLAGS.get(subcommand)
    if table is None:
        unknown = FlagSet(unknown=[w for w in words if w.startswith("-") and w != "-"])
        arguments = [w for w in words if not w.startswith("-") or w == "-"]
        return ComposeCommand(docker or FlagSet(), compose or FlagSet(), subcommand, unknown, arguments)
    flags, arguments = parse_flags(words, table, SUBCOMMAND_SHORT[subcommand], ALIASES.get(subcommand))
    return ComposeCommand(docker or FlagSet(), compose or FlagSet(), subcommand, flags, arguments)


def project_options(flags: FlagSet) -> ComposeOptions:
    """Return the project flags (files, name, directory, profiles, env files) a FlagSet holds."""
    return ComposeOptions(
        files=tuple(flags.values.get("file", ())),
        project_name=flags.last("project-name"),
        project_directory=flags.last("project-directory") or flags.last("workdir"),
        profiles=tuple(flags.values.get("profile", ())),
        env_files=tuple(flags.values.get("env-file", ())),
    )


def split_project_flags(argv: Sequence[str]) -> tuple[ComposeOptions, list[str]]:
    """Split Compose's project flags off the front of `argv` (`docker persist -f x.yml check`).

    Raise UsageError for a flag without its value.
    """
    flags, rest = parse_flags(argv, PROJECT_FLAGS, PROJECT_SHORT, interspersed=False, stop_at_unknown=True)
    if flags.problems:
        raise UsageError(flags.problems[0])
    return project_options(flags), rest
