"""`docker persist completion bash|zsh|fish`: print the shell completion script; and the `__complete` protocol.

Both come from the command registry and the commands' own argparse parsers, so that they never drift
from what the commands accept:

- the scripts hold the commands and each command's flags, so that those complete without starting
  docker-persist; for everything else (flag values, snapshot names, volume names) they ask it;
- they ask through cobra's completion protocol, which the Docker CLI also speaks to its plugins:
  `docker-persist __complete [persist] WORD... CURRENT` prints a candidate a line (`value<TAB>description`;
  `__completeNoDesc` leaves the descriptions out), then `:N`, N being cobra's directive (4: no file
  completion; 16: directories only; 0: the shell's default, files). So `docker persist <TAB>` completes
  through Docker's own completion (`docker completion bash|zsh|fish`, or the bash script Docker ships).

Snapshot names come from the project's store, read as `docker persist snapshots` reads it; volume and
service names from the project. A failure there offers nothing: completion never prints an error.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from docker_persist.cli.commands import COMMANDS
from docker_persist.cli.commands.base import Command
from docker_persist.cli.globalflags import LOG_LEVELS, LONG_FLAGS, PLUGIN_NAME, SHORT_FLAGS
from docker_persist.cli.helpformat import ROOT, DockerArgumentParser
from docker_persist.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from docker_persist.cli.context import Context
    from docker_persist.cli.environment import Environment

PROGRAM = "docker-persist"

Candidates = list[tuple[str, str]]  # (value, description)

# cobra's ShellCompDirective bits.
DEFAULT = 0  # the shell's own completion (files) when there is no candidate
NO_FILES = 4
DIRECTORIES = 16

# What the value of a flag, or an argument, is.
FILES = "files"
DIRS = "dirs"
SNAPSHOTS = "snapshots"
VOLUMES = "volumes"
SERVICES = "services"
COMMAND_NAMES = "commands"

# Flags whose values are files, folders, or names from the project; every other value flag offers the
# words its help quotes ("pretty" or "json"), or nothing.
VALUE_KINDS: Mapping[str, str] = {
    "--file": FILES,
    "--env-file": FILES,
    "--identity": FILES,
    "--textfile": FILES,
    "--output": FILES,
    "--tlscacert": FILES,
    "--tlscert": FILES,
    "--tlskey": FILES,
    "--project-directory": DIRS,
    "--config": DIRS,
    "--store": DIRS,
    "--volume": VOLUMES,
    "--service": SERVICES,
}
COMMAND_VALUE_KINDS: Mapping[tuple[str, str], str] = {("copy", "--to"): DIRS}

# A command's arguments, by the metavar its parser gives them ("up|down" offers its words).
ARGUMENT_KINDS: Mapping[str, str] = {"NAME": SNAPSHOTS, "VOLUME": VOLUMES}

HELP_SUMMARY = "Help about any command"

# What the Docker CLI's own help says of its global flags.
GLOBAL_HELP: Mapping[str, str] = {
    "--config": "Location of client config files",
    "--context": "Name of the context to use to connect to the daemon",
    "--debug": "Enable debug mode",
    "--host": "Daemon socket to connect to",
    "--log-level": 'Set the logging level ("debug", "info", "warn", "error", "fatal")',
    "--tls": "Use TLS; implied by --tlsverify",
    "--tlscacert": "Trust certs signed only by this CA",
    "--tlscert": "Path to TLS certificate file",
    "--tlskey": "Path to TLS key file",
    "--tlsverify": "Use TLS and verify the remote",
}


class Flag(NamedTuple):
    """One flag of a command: its spellings, whether it takes a value, its help line, and what its value is."""

    options: tuple[str, ...]
    takes_value: bool
    help: str
    kind: str | None = None  # FILES, DIRS, SNAPSHOTS, ... or None
    words: tuple[str, ...] = ()


class Spec(NamedTuple):
    """What completion knows of a command: its flags, and what its arguments are and how many it takes."""

    name: str
    summary: str
    flags: tuple[Flag, ...]
    argument: str | None = None  # SNAPSHOTS, VOLUMES, COMMAND_NAMES, ... or None
    argument_words: tuple[str, ...] = ()
    max_arguments: int | None = 0  # None: any number


def _quoted_words(text: str) -> tuple[str, ...]:
    """Return the values a help line offers in quotes before its default: `"pretty" or "json" (default ...)`."""
    words = re.findall(r'"([^"\s]+)"', text.split("(default", maxsplit=1)[0])
    return tuple(words) if len(words) >= 2 else ()


def _flag(action: argparse.Action, command: str | None) -> Flag:
    options = tuple(action.option_strings)
    long = next((o for o in options if o.startswith("--")), options[0])
    takes_value = action.nargs != 0
    kind = COMMAND_VALUE_KINDS.get((command or "", long), VALUE_KINDS.get(long)) if takes_value else None
    words: tuple[str, ...] = ()
    if takes_value and kind is None:
        words = tuple(str(c) for c in action.choices) if action.choices else _quoted_words(action.help or "")
    return Flag(options, takes_value, (action.help or "").split("\n")[0], kind, words)


def parser_spec(name: str, summary: str, parser: DockerArgumentParser) -> Spec:
    """Return the completion spec of a command from its argparse parser."""
    flags = tuple(_flag(a, name) for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS)
    positionals = [a for a in parser._actions if not a.option_strings]
    if not positionals:
        return Spec(name, summary, flags)
    metavar = str(positionals[0].metavar or positionals[0].dest)
    words = tuple(metavar.split("|")) if "|" in metavar else ()
    limit: int | None = 0
    for action in positionals:
        if action.nargs in ("*", "+", argparse.REMAINDER):
            limit = None
            break
        limit = (limit or 0) + (action.nargs if isinstance(action.nargs, int) else 1)
    return Spec(name, summary, flags, ARGUMENT_KINDS.get(metavar), words, limit)


def command_spec(name: str) -> Spec | None:
    """Return the spec of a registered command (`help` included), or None."""
    if name == "help":
        return Spec("help", HELP_SUMMARY, (), COMMAND_NAMES, (), 1)
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    command = entry.load()
    spec = parser_spec(entry.name, entry.summary, command.make_parser(entry.name, entry.summary))
    if command.passthrough:
        spec = _with_compose_flags(spec)
    return spec


def _with_compose_flags(spec: Spec) -> Spec:
    """Add to `up` and `down` the flags of `docker compose up|down`, which they pass on (and up's services)."""
    from docker_persist.core.composeargs import SUBCOMMAND_FLAGS, SUBCOMMAND_SHORT

    table = SUBCOMMAND_FLAGS.get(spec.name)
    if table is None:
        return spec
    known = {o for f in spec.flags for o in f.options}
    shorts = {long: short for short, long in SUBCOMMAND_SHORT.get(spec.name, {}).items()}
    extra = tuple(
        Flag(
            ((f"-{shorts[name]}",) if name in shorts else ()) + (f"--{name}",),
            takes,
            f"docker compose {spec.name} --{name}",
        )
        for name, takes in table.items()
        if f"--{name}" not in known
    )
    argument = SERVICES if spec.name == "up" else spec.argument
    return spec._replace(flags=spec.flags + extra, argument=argument, max_arguments=None if argument else 0)


def listed_commands() -> list[tuple[str, str]]:
    """Return (name, summary) of the commands completion offers: those help lists, and `help`."""
    return [(e.name, e.summary) for e in COMMANDS.values() if e.listed] + [("help", HELP_SUMMARY)]


def root_flags() -> tuple[Flag, ...]:
    """Return the flags that may come before the command: Docker's global flags and Compose's project flags."""
    from docker_persist.cli.projectflags import add_project_flags

    shorts = {long: short for short, long in SHORT_FLAGS.items()}
    flags = [
        Flag(("-h", "--help"), False, "Print usage"),
        Flag(("-v", "--version"), False, "Print version information"),
    ]
    for long, (_, takes_value) in LONG_FLAGS.items():
        options = (shorts[long], long) if long in shorts else (long,)
        words = LOG_LEVELS if long == "--log-level" else ()
        flags.append(Flag(options, takes_value, GLOBAL_HELP.get(long, ""), VALUE_KINDS.get(long), words))
    project = argparse.ArgumentParser(add_help=False)
    add_project_flags(project)
    flags += [_flag(a, None) for a in project._actions if a.option_strings]
    return tuple(flags)


def all_specs() -> list[Spec]:
    """Return the spec of every command completion offers, in help's order."""
    specs = [command_spec(name) for name, _ in listed_commands()]
    return [s for s in specs if s is not None]


# --- the __complete protocol ---------------------------------------------------------------------


class Answer(NamedTuple):
    """Candidates (value, description) for the word being completed, and cobra's directive."""

    candidates: Candidates
    directive: int = NO_FILES


def _value_flag(flags: Sequence[Flag], word: str) -> Flag | None:
    return next((f for f in flags if word in f.options and f.takes_value), None)


def _split_words(words: Sequence[str], flags: Sequence[Flag]) -> tuple[list[str], list[str], int]:
    """Return (the flags with their values, the arguments, the index after the first argument) of `words`."""
    flag_words: list[str] = []
    arguments: list[str] = []
    index = 0
    first_end = len(words)
    while index < len(words):
        word = words[index]
        if word == "--":
            arguments += words[index + 1 :]
            break
        if word.startswith("-") and word != "-":
            flag_words.append(word)
            if _value_flag(flags, word) is not None and index + 1 < len(words):
                index += 1
                flag_words.append(words[index])
        else:
            if not arguments:
                first_end = index + 1
            arguments.append(word)
        index += 1
    return flag_words, arguments, first_end


def _pending_flag(words: Sequence[str], flags: Sequence[Flag]) -> Flag | None:
    """Return the flag whose value comes next, if `words` end with a flag that takes one (`--format`)."""
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            return None
        flag = _value_flag(flags, word) if word.startswith("-") else None
        if flag is not None:
            if index + 1 == len(words):
                return flag
            index += 1
        index += 1
    return None


def complete(words: Sequence[str], env: Environment) -> Answer:
    """Return what may come in place of the last of `words` (the words after the program name)."""
    *before, current = list(words) or [""]
    if before[:1] == [PLUGIN_NAME]:
        before = before[1:]
    roots = root_flags()
    root_words, arguments, first_end = _split_words(before, roots)
    if not arguments:
        return _complete_flag_or_value(roots, None, before, current, listed_commands, env, ())
    spec = command_spec(arguments[0])
    if spec is None:
        return Answer([])
    rest = before[first_end:]
    flag_words, given, _ = _split_words(rest, spec.flags)

    def arguments_of() -> Candidates:
        if spec.max_arguments is not None and len(given) >= spec.max_arguments:
            return []
        if spec.argument == COMMAND_NAMES:
            return listed_commands()
        if spec.argument_words:
            return [(w, "") for w in spec.argument_words]
        if spec.argument is None:
            return []
        return _project_values(spec, spec.argument, root_words, flag_words, env)

    return _complete_flag_or_value(spec.flags, spec, rest, current, arguments_of, env, root_words)


def _complete_flag_or_value(
    flags: Sequence[Flag],
    spec: Spec | None,
    before: Sequence[str],
    current: str,
    arguments: Callable[[], Candidates],
    env: Environment,
    root_words: Sequence[str],
) -> Answer:
    """Complete a flag's value (`--flag VALUE` or `--flag=VALUE`), a flag, or else an argument."""
    prefix = ""
    flag = _pending_flag(before, flags)
    if flag is None and current.startswith("--") and "=" in current:
        name, _, _ = current.partition("=")
        flag = _value_flag(flags, name)
        prefix = name + "="
    if flag is not None:
        answer = _flag_values(flag, spec, before[:-1] if not prefix else before, env, root_words)
        return Answer([(prefix + v, d) for v, d in answer.candidates], answer.directive)
    if current.startswith("-"):
        return Answer([(o, f.help) for f in flags for o in f.options])
    return Answer(arguments())


def _flag_values(
    flag: Flag, spec: Spec | None, before: Sequence[str], env: Environment, root_words: Sequence[str]
) -> Answer:
    if flag.kind == FILES:
        return Answer([], DEFAULT)
    if flag.kind == DIRS:
        return Answer([], DIRECTORIES)
    if flag.kind in (SNAPSHOTS, VOLUMES, SERVICES) and spec is not None:
        flag_words, _, _ = _split_words(before, spec.flags)
        return Answer(_project_values(spec, flag.kind, root_words, flag_words, env))
    return Answer([(w, "") for w in flag.words])


def _project_values(
    spec: Spec, kind: str, root_words: Sequence[str], flag_words: Sequence[str], env: Environment
) -> Candidates:
    """Return the project's snapshot, volume or service names; nothing if they cannot be read."""
    try:
        return _read_project_values(spec, kind, root_words, flag_words, env)
    except Exception:  # completion offers nothing rather than fail
        return []


def _read_project_values(
    spec: Spec, kind: str, root_words: Sequence[str], flag_words: Sequence[str], env: Environment
) -> Candidates:
    """Load the project as the command would (its flags, and the flags before it), and read the names."""
    from docker_persist.cli.commands.base import PendingProject, open_project_store
    from docker_persist.cli.context import Context
    from docker_persist.cli.globalflags import split_global_flags
    from docker_persist.core.composeargs import split_project_flags

    global_options, project_words = split_global_flags([*root_words, spec.name])
    compose_options, _ = split_project_flags(project_words)
    entry = COMMANDS[spec.name]
    parser = entry.load().make_parser(entry.name, entry.summary)
    args, _ = parser.parse_known_args(list(flag_words))
    context = Context(env=env, options=global_options, compose_options=compose_options)
    project, _ = PendingProject(context, args).wait()
    if kind == VOLUMES:
        return [(v.key, v.name) for v in project.volumes.values()]
    if kind == SERVICES:
        return [(s.name, s.image or "") for s in project.services]
    from docker_persist.actions.catalog import read_catalog
    from docker_persist.core.manifest import format_datetime

    store = open_project_store(context, args, project)
    catalog = read_catalog(store, getattr(args, "from_project", None) or project.name)
    found = [(m.name, f"{format_datetime(m.created)} {m.reason}".strip()) for m in catalog.manifests]
    return found + [(d.name, "damaged") for d in catalog.damaged]


def run_complete(words: Sequence[str], env: Environment, descriptions: bool = True) -> int:
    """`docker-persist __complete WORD... CURRENT`: print the candidates and cobra's directive; always exit 0.

    Global flags given before `__complete` are not used: the Docker CLI passes none, and the words may hold them.
    """
    try:
        answer = complete(words, env)
    except Exception:
        answer = Answer([])
    current = words[-1] if words else ""
    lines = []
    for value, description in answer.candidates:
        if not value.startswith(current):
            continue
        text = " ".join(description.split())
        lines.append(f"{value}\t{text}" if descriptions and text else value)
    env.stdout.write("".join(f"{line}\n" for line in lines) + f":{answer.directive}\n")
    return ExitStatus.OK


# --- the scripts --------------------------------------------------------------------------------


def _value_options(specs: Sequence[Spec], roots: Sequence[Flag]) -> list[str]:
    """Return every spelling of every flag that takes a value, so that the scripts can step over its value."""
    found: list[str] = []
    for flag in [*roots, *(f for s in specs for f in s.flags)]:
        if flag.takes_value:
            found += [o for o in flag.options if o not in found]
    return found


def _options(flags: Sequence[Flag]) -> str:
    return " ".join(o for f in flags for o in f.options)


def bash_script() -> str:
    """Return the bash completion script for `docker-persist`."""
    specs = all_specs()
    roots = root_flags()
    cases = "\n".join(f"        {s.name}) flags={_options(s.flags)!r} ;;" for s in specs)
    commands = " ".join(name for name, _ in listed_commands())
    value_options = " ".join(_value_options(specs, roots))
    return f"""# bash completion for docker-persist                          -*- shell-script -*-
# Generated by `docker-persist completion bash`. Load it in this shell:
#   source <(docker-persist completion bash)
# or for every new shell (bash-completion loads it on demand):
#   docker-persist completion bash > ~/.local/share/bash-completion/completions/docker-persist
# `docker persist` completes through the Docker CLI's own completion, which asks docker-persist itself.

__docker_persist_value_options=' {value_options} '

# Ask docker-persist for the candidates of the current word (cobra's __complete protocol).
__docker_persist_ask() {{
    local out directive line
    local -a lines
    out=$("$__docker_persist_program" __completeNoDesc "$@" 2>/dev/null)
    mapfile -t lines <<<"$out"
    directive=0
    if [[ ${{#lines[@]}} -gt 0 && ${{lines[${{#lines[@]}}-1]}} == :* ]]; then
        directive=${{lines[${{#lines[@]}}-1]#:}}
        unset 'lines[${{#lines[@]}}-1]'
    fi
    COMPREPLY=()
    for line in "${{lines[@]}}"; do
        [[ -n $line && $line == "$cur"* ]] && COMPREPLY+=("$line")
    done
    if [[ ${{#COMPREPLY[@]}} -eq 0 ]]; then
        if (( directive & {DIRECTORIES} )); then
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        elif (( ! (directive & {NO_FILES}) )); then
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
    fi
}}

_docker_persist() {{
    local cur prev words cword
    if declare -F _get_comp_words_by_ref >/dev/null; then
        _get_comp_words_by_ref -n =: cur prev words cword
    else
        cur=${{COMP_WORDS[COMP_CWORD]}}
        prev=${{COMP_WORDS[COMP_CWORD-1]}}
        words=("${{COMP_WORDS[@]}}")
        cword=$COMP_CWORD
    fi
    local __docker_persist_program=${{words[0]}}
    local i word command="" flags=""
    for ((i = 1; i < cword; i++)); do
        word=${{words[i]}}
        if [[ $__docker_persist_value_options == *" $word "* ]]; then
            ((i++))
        elif [[ $word != -* ]]; then
            command=$word
            break
        fi
    done
    if [[ -z $command ]]; then
        if [[ $cur == -* && $cur != *=* ]]; then
            mapfile -t COMPREPLY < <(compgen -W {_options(roots)!r} -- "$cur")
        elif [[ $__docker_persist_value_options == *" $prev "* || $cur == *=* ]]; then
            __docker_persist_ask "${{words[@]:1:cword-1}}" "$cur"
        else
            mapfile -t COMPREPLY < <(compgen -W {commands!r} -- "$cur")
        fi
        return 0
    fi
    case $command in
{cases}
    esac
    if [[ $cur == -* && $cur != *=* && $__docker_persist_value_options != *" $prev "* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
    else
        __docker_persist_ask "${{words[@]:1:cword-1}}" "$cur"
    fi
    if declare -F __ltrim_colon_completions >/dev/null; then
        __ltrim_colon_completions "$cur"
    fi
    return 0
}}

complete -F _docker_persist docker-persist
"""


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_items(pairs: Sequence[tuple[str, str]]) -> str:
    return " ".join(_zsh_quote(f"{name.replace(':', chr(92) + ':')}:{' '.join(text.split())}") for name, text in pairs)


def zsh_script() -> str:
    """Return the zsh completion script for `docker-persist`."""
    specs = all_specs()
    roots = root_flags()
    cases = "\n".join(
        f"    ({s.name}) flags=({_zsh_items([(o, f.help) for f in s.flags for o in f.options])}) ;;" for s in specs
    )
    value_options = " ".join(_zsh_quote(o) for o in _value_options(specs, roots))
    return f"""#compdef docker-persist
# zsh completion for docker-persist. Generated by `docker-persist completion zsh`.
# Load it in this shell:
#   source <(docker-persist completion zsh)
# or for every new shell, into a folder of $fpath:
#   docker-persist completion zsh > "${{fpath[1]}}/_docker-persist"
# `docker persist` completes through the Docker CLI's own completion, which asks docker-persist itself.

# Ask docker-persist for the candidates of the current word (cobra's __complete protocol).
__docker_persist_ask() {{
  local out directive=0 line value
  local -a lines candidates
  out=$("${{words[1]}}" __complete "$@" 2>/dev/null)
  lines=("${{(@f)out}}")
  if [[ ${{lines[-1]}} == :* ]]; then
    directive=${{lines[-1]#:}}
    lines=("${{(@)lines[1,-2]}}")
  fi
  for line in "${{lines[@]}}"; do
    [[ -z $line ]] && continue
    value=${{line%%$'\\t'*}}
    if [[ $line == *$'\\t'* ]]; then
      candidates+=("${{value//:/\\\\:}}:${{line#*$'\\t'}}")
    else
      candidates+=("${{value//:/\\\\:}}")
    fi
  done
  if (( ${{#candidates}} )); then
    _describe -t values 'value' candidates
  elif (( directive & {DIRECTORIES} )); then
    _files -/
  elif (( ! (directive & {NO_FILES}) )); then
    _files
  fi
}}

_docker_persist() {{
  local -a commands root_flags flags value_options
  commands=({_zsh_items(listed_commands())})
  root_flags=({_zsh_items([(o, f.help) for f in roots for o in f.options])})
  value_options=({value_options})
  local i word command cur=${{words[CURRENT]}} prev=${{words[CURRENT-1]}}
  for ((i = 2; i < CURRENT; i++)); do
    word=${{words[i]}}
    if (( ${{value_options[(Ie)$word]}} )); then
      ((i++))
    elif [[ $word != -* ]]; then
      command=$word
      break
    fi
  done
  if [[ -z $command ]]; then
    if [[ $cur == -* && $cur != *=* ]]; then
      _describe -t options 'option' root_flags
    elif (( ${{value_options[(Ie)$prev]}} )) || [[ $cur == *=* ]]; then
      __docker_persist_ask "${{(@)words[2,CURRENT-1]}}" "$cur"
    else
      _describe -t commands 'docker-persist command' commands
    fi
    return
  fi
  case $command in
{cases}
    (*) flags=() ;;
  esac
  if [[ $cur == -* && $cur != *=* ]] && (( ! ${{value_options[(Ie)$prev]}} )); then
    _describe -t options 'option' flags
  else
    __docker_persist_ask "${{(@)words[2,CURRENT-1]}}" "$cur"
  fi
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _docker_persist "$@"
else
  compdef _docker_persist docker-persist
fi
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_flag(condition: str, flag: Flag) -> str:
    parts = [f"complete -c {PROGRAM} -n {_fish_quote(condition)}"]
    for option in flag.options:
        if option.startswith("--"):
            parts.append(f"-l {option[2:]}")
        else:
            parts.append(f"-s {option[1:]}")
    if flag.kind == FILES:
        parts.append("-r -F")
    elif flag.kind == DIRS:
        parts.append("-x -a '(__fish_complete_directories (commandline -ct))'")
    elif flag.kind is not None:
        parts.append("-x -a '(__docker_persist_values)'")
    elif flag.takes_value:
        parts.append(f"-x -a {_fish_quote(' '.join(flag.words))}" if flag.words else "-x")
    parts.append(f"-d {_fish_quote(' '.join(flag.help.split()))}")
    return " ".join(parts)


def fish_script() -> str:
    """Return the fish completion script for `docker-persist`."""
    specs = all_specs()
    roots = root_flags()
    value_options = " ".join(_fish_quote(o) for o in _value_options(specs, roots))
    lines = [f"complete -c {PROGRAM} -f"]
    for name, summary in listed_commands():
        lines.append(f"complete -c {PROGRAM} -n __docker_persist_using -a {name} -d {_fish_quote(summary)}")
    lines += [_fish_flag("__docker_persist_using", f) for f in roots]
    for spec in specs:
        condition = f"__docker_persist_using {spec.name}"
        lines += [_fish_flag(condition, f) for f in spec.flags]
        if spec.argument == COMMAND_NAMES:
            names = " ".join(name for name, _ in listed_commands())
            lines.append(f"complete -c {PROGRAM} -n {_fish_quote(condition)} -a {_fish_quote(names)}")
        elif spec.argument_words:
            words = " ".join(spec.argument_words)
            lines.append(f"complete -c {PROGRAM} -n {_fish_quote(condition)} -a {_fish_quote(words)}")
        elif spec.argument is not None:
            lines.append(f"complete -c {PROGRAM} -n {_fish_quote(condition)} -a '(__docker_persist_values)'")
    completions = "\n".join(lines)
    return f"""# fish completion for docker-persist. Generated by `docker-persist completion fish`.
# Load it in this shell:
#   docker-persist completion fish | source
# or for every new shell:
#   docker-persist completion fish > ~/.config/fish/completions/docker-persist.fish
# `docker persist` completes through the Docker CLI's own completion, which asks docker-persist itself.

set -g __docker_persist_value_options {value_options}

# Print the command being completed (the first word that is neither a flag nor a flag's value).
function __docker_persist_command
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l skip 0
    for token in $tokens
        if test $skip -eq 1
            set skip 0
        else if contains -- $token $__docker_persist_value_options
            set skip 1
        else if not string match -q -- '-*' $token
            echo $token
            return 0
        end
    end
    return 1
end

# With no argument: true before the command. With one: true if that is the command.
function __docker_persist_using
    set -l command (__docker_persist_command)
    if test (count $argv) -eq 0
        test -z "$command"
    else
        test "$command" = "$argv[1]"
    end
end

# Ask docker-persist for snapshot, volume and service names (cobra's __complete protocol).
function __docker_persist_values
    set -l tokens (commandline -opc)
    set -l program $tokens[1]
    set -e tokens[1]
    command $program __complete $tokens (commandline -ct) 2>/dev/null | string match -v -r '^:[0-9]+$'
end

{completions}
"""


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}


# --- the command ----------------------------------------------------------------------------------

EPILOG = """\
The script completes docker-persist's commands and flags, snapshot names (restore, verify, forget, pin,
copy) and volume names (backup, protect, unprotect, restore --volume), read from the project in the
current folder as `docker persist snapshots` reads it.

Load it in the current shell:
  bash:  source <(docker-persist completion bash)
  zsh:   source <(docker-persist completion zsh)
  fish:  docker-persist completion fish | source

Load it in every new shell:
  bash:  docker-persist completion bash > ~/.local/share/bash-completion/completions/docker-persist
  zsh:   docker-persist completion zsh > "${fpath[1]}/_docker-persist"
  fish:  docker-persist completion fish > ~/.config/fish/completions/docker-persist.fish

`docker persist <TAB>` needs none of this: the Docker CLI's own completion (`docker completion
bash|zsh|fish`, or the bash completion Docker packages ship) asks the plugin for its candidates
(`docker-persist __complete ...`, cobra's protocol) and gets the same answers."""


def add_arguments(parser: DockerArgumentParser) -> None:
    parser.add_argument("shell", nargs="?", metavar="bash|zsh|fish", help=argparse.SUPPRESS)


def run(args: argparse.Namespace, context: Context) -> int:
    command = f"{ROOT} completion"
    if args.shell is None:
        raise UsageError(f'"{command}" requires exactly 1 argument: bash, zsh or fish.', command)
    if args.shell not in SCRIPTS:
        raise UsageError(f'invalid argument "{args.shell}" for "{command}": expected bash, zsh or fish', command)
    context.env.stdout.write(SCRIPTS[args.shell]())
    return ExitStatus.OK


COMMAND = Command(add_arguments=add_arguments, run=run, usage="bash|zsh|fish", epilog=EPILOG)
