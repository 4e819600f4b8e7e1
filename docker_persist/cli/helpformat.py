"""Argument parsing with Docker's help style and Docker's usage errors."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import NoReturn

from docker_persist.errors import UsageError

ROOT = "docker persist"


class DockerArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError and formats help as the Docker CLI does."""

    def __init__(self, command: str, summary: str, usage: str = "[OPTIONS]", epilog: str = "") -> None:
        super().__init__(prog=command, add_help=False, allow_abbrev=False)
        self.command = command
        self.summary = summary
        self.usage_tail = usage
        self.docker_epilog = epilog
        self._args: list[str] = []
        self.add_argument("-h", "--help", action="store_true", help="Print usage")

    def error(self, message: str) -> NoReturn:
        """Raise argparse's complaint as the Docker CLI (cobra and pflag) words it; main adds "See '... --help'"."""
        raise UsageError(self.docker_message(message), command=self.command)

    def docker_message(self, message: str) -> str:
        """Return argparse's error `message` in the Docker CLI's words, e.g. `flag needs an argument: --name`."""
        if message.startswith("unrecognized arguments: "):
            return self._unrecognized(message.removeprefix("unrecognized arguments: ").split())
        if message.startswith("the following arguments are required: "):
            names = message.removeprefix("the following arguments are required: ").split(", ")
            flags = [_flag_name(n.split("/")[-1]) for n in names if n.startswith("-")]
            if flags:
                return "required flag(s) " + ", ".join(f'"{f}"' for f in flags) + " not set"
            return f'"{self.command}" requires at least {len(names)} argument{"s" if len(names) > 1 else ""}.'
        if message.startswith("one of the arguments "):
            names = message.removeprefix("one of the arguments ").removesuffix(" is required").split()
            group = " ".join(_flag_name(n.split("/")[-1]) for n in names)
            return f"at least one of the flags in the group [{group}] is required"
        match = re.fullmatch(r"argument (?P<name>[^:]+): (?P<detail>.*)", message, re.DOTALL)
        action = self._action_named(match["name"]) if match else None
        if match is None or action is None:
            return message
        return self._argument_message(action, match["detail"])

    def _argument_message(self, action: argparse.Action, detail: str) -> str:
        """Return the Docker wording of argparse's complaint `detail` about one argument."""
        flag = action.option_strings
        subject = f'"{_flag_label(action)}" flag' if flag else f'"{self.command}"'
        if flag and detail.startswith("expected "):
            return f"flag needs an argument: {self._typed(action)}"
        choice = re.match(r"invalid choice: (?P<value>.*?) \(choose from (?P<choices>.*)\)$", detail, re.DOTALL)
        if choice:
            expected = ", ".join(f'"{c}"' for c in (action.choices or ()))
            return f'invalid argument "{_unquote(choice["value"])}" for {subject}: expected one of {expected}'
        invalid = re.match(r"invalid (?P<type>\S+) value: (?P<value>.*)$", detail, re.DOTALL)
        if invalid:
            kind = {"int": "an integer", "float": "a number"}.get(invalid["type"], f"a valid {invalid['type']}")
            return f'invalid argument "{_unquote(invalid["value"])}" for {subject}: expected {kind}'
        explicit = re.match(r"ignored explicit argument (?P<value>.*)$", detail, re.DOTALL)
        if explicit:
            return self._explicit_value(action, _unquote(explicit["value"]), subject)
        together = re.match(r"not allowed with argument (?P<other>.*)$", detail, re.DOTALL)
        if together:
            group = f"[{_flag_name(flag[-1])} {_flag_name(together['other'].split('/')[-1])}]"
            return f"if any flags in the group {group} are set none of the others can be; {group} were all set"
        return f"invalid argument for {subject}: {detail}"

    def _explicit_value(self, action: argparse.Action, value: str, subject: str) -> str:
        """Return the message for a value given to a flag that takes none.

        In `-yz` argparse reads z as -y's value; pflag reads it as the next shorthand, which it does not know.
        """
        shorts = [o for o in action.option_strings if not o.startswith("--")]
        typed = [a for a in self._args for s in shorts if a == s + value]
        if typed:
            return unknown_flag(typed[0], self._takes_value_by_short())
        return f'invalid argument "{value}" for {subject}: the flag takes no value'

    def _action_named(self, name: str) -> argparse.Action | None:
        """Return the action argparse calls `name` in its messages ("-n/--name", or a positional's metavar)."""
        for action in self._actions:
            names = ["/".join(action.option_strings)] if action.option_strings else [str(action.metavar), action.dest]
            if name in names:
                return action
        return None

    def _typed(self, action: argparse.Action) -> str:
        """Return the flag as the user typed it, in pflag's words: `--name`, or `'n' in -n` for a shorthand."""
        args = self._args[: self._args.index("--")] if "--" in self._args else self._args
        shorts = [o for o in action.option_strings if not o.startswith("--")]
        for index, arg in enumerate(args):
            missing = index + 1 == len(args) or args[index + 1].startswith("-")
            if arg in action.option_strings and arg.startswith("--") and missing:
                return arg
            if missing and any(
                arg.startswith("-") and not arg.startswith("--") and arg.endswith(s[1:]) for s in shorts
            ):
                return f"'{arg[-1]}' in {arg}"
        longs = [o for o in action.option_strings if o.startswith("--")]
        return longs[0] if longs else f"'{shorts[0][1:]}' in {shorts[0]}"

    def _unrecognized(self, words: Sequence[str]) -> str:
        """Return the message for arguments argparse did not take: an unknown flag first, else too many arguments."""
        flags = [w for w in words if w.startswith("-") and w != "-" and not _is_number(w)]
        if flags:
            return unknown_flag(flags[0], self._takes_value_by_short())
        limit = 0
        for action in self._actions:
            if not action.option_strings:
                if action.nargs in ("*", "+", argparse.REMAINDER):
                    return f'"{self.command}": unexpected argument "{words[0]}"'
                limit += action.nargs if isinstance(action.nargs, int) else 1
        if limit == 0:
            return f'"{self.command}" accepts no arguments.'
        return f'"{self.command}" requires at most {limit} argument{"s" if limit > 1 else ""}.'

    def _takes_value_by_short(self) -> dict[str, bool]:
        return {o[1:]: a.nargs != 0 for a in self._actions for o in a.option_strings if not o.startswith("--")}

    def format_help(self) -> str:
        lines = [f"Usage:  {self.command} {self.usage_tail}".rstrip(), "", self.summary, ""]
        rows = [
            (_format_flag(a), a.help or "") for a in self._actions if a.option_strings and a.help != argparse.SUPPRESS
        ]
        if rows:
            lines.append("Options:")
            lines += _columns(rows)
            lines.append("")
        if self.docker_epilog:
            lines += [self.docker_epilog, ""]
        return "\n".join(lines)

    def parse_command_args(self, args: Sequence[str], passthrough: bool = False) -> argparse.Namespace:
        """Parse `args`; a `-h/--help` anywhere wins over every other error.

        With passthrough, arguments this parser does not know are kept in `.passthrough`
        (for `docker compose`) instead of being refused.
        """
        if "-h" in args or "--help" in args:
            namespace = argparse.Namespace(help=True)
            return namespace
        args = self._booleans(args)
        self._args = args  # for error messages that name the flag as it was typed
        if passthrough:
            parsed, rest = self.parse_known_args(args)
            parsed.passthrough = rest
            return parsed
        # Flags between and after arguments, as pflag takes them: `backup a --name x b`.
        try:
            return self.parse_intermixed_args(args)
        except TypeError:  # argparse cannot intermix with a REMAINDER argument; no command has one today
            return self.parse_args(args)

    def _booleans(self, args: Sequence[str]) -> list[str]:
        """Return `args` with `--flag=true|false` of a boolean flag (as pflag takes it) written as argparse takes it."""
        from docker_persist.cli.globalflags import parse_bool

        switches = {
            option: action
            for action in self._actions
            if action.nargs == 0 and action.const is True and action.default is False
            for option in action.option_strings
            if option.startswith("--")
        }
        result: list[str] = []
        for index, arg in enumerate(args):
            if arg == "--":
                return result + list(args[index:])
            name, eq, value = arg.partition("=")
            if eq and name in switches:
                try:
                    if parse_bool(_flag_label(switches[name]), value):
                        result.append(name)
                except UsageError as error:
                    error.command = self.command
                    raise
                continue
            result.append(arg)
        return result


def unknown_flag(arg: str, shorts: dict[str, bool] | None = None) -> str:
    """Return pflag's message for an unknown flag: `unknown flag: --x`, or `unknown shorthand flag: 'x' in -x`.

    `shorts` maps the known shorthand letters to whether they take a value: in `-vx` the unknown one is x.
    """
    if arg.startswith("--"):
        return f"unknown flag: {arg.partition('=')[0]}"
    for letter in arg[1:]:
        if letter not in (shorts or {}):
            return f"unknown shorthand flag: {letter!r} in {arg}"
        if (shorts or {})[letter]:
            break  # the rest of the word is this flag's value
    return f"unknown shorthand flag: {arg[1]!r} in {arg}"


def _flag_label(action: argparse.Action) -> str:
    """Return a flag as pflag names it in messages: "-n, --name", or "--name"."""
    shorts = [o for o in action.option_strings if not o.startswith("--")]
    longs = [o for o in action.option_strings if o.startswith("--")]
    return ", ".join(([shorts[0]] if shorts else []) + ([longs[0]] if longs else []))


def _flag_name(option: str) -> str:
    return option.lstrip("-")


def _unquote(text: str) -> str:
    """Return a value argparse quoted with repr() as it was typed."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        import ast

        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text[1:-1]
        return str(value)
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format_flag(action: argparse.Action) -> str:
    shorts = [o for o in action.option_strings if not o.startswith("--")]
    longs = [o for o in action.option_strings if o.startswith("--")]
    text = (f"{shorts[0]}, " if shorts else "    ") + (longs[0] if longs else "")
    if action.nargs != 0:
        text += f" {action.metavar or 'string'}"
    return text


def _columns(rows: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(left) for left, _ in rows)
    return [f"  {left.ljust(width)}   {right}".rstrip() for left, right in rows]


def format_command_list(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Return the "Commands:" block rows, aligned as the Docker CLI aligns them."""
    width = max(11, max(len(name) for name, _ in rows) + 1)
    return [f"  {name.ljust(width)}{summary}" for name, summary in rows]
