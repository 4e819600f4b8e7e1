"""Docker's global flags and the argv the Docker CLI hands the plugin."""

from __future__ import annotations

import pytest

from docker_persist.cli.globalflags import split_global_flags
from docker_persist.errors import UsageError
from docker_persist.host.dockerconfig import GlobalOptions


@pytest.mark.parametrize(
    ("argv", "options", "rest"),
    [
        ([], GlobalOptions(), []),
        (["persist", "version"], GlobalOptions(), ["version"]),
        (["version"], GlobalOptions(), ["version"]),
        (["--context", "prod", "persist", "version"], GlobalOptions(context="prod"), ["version"]),
        (["--context=prod", "persist", "version"], GlobalOptions(context="prod"), ["version"]),
        (["-c", "prod", "persist", "version"], GlobalOptions(context="prod"), ["version"]),
        (["-cprod", "persist", "version"], GlobalOptions(context="prod"), ["version"]),
        (["-H", "unix:///x.sock", "persist"], GlobalOptions(hosts=("unix:///x.sock",)), []),
        (["--host=tcp://1.2.3.4:2375", "persist"], GlobalOptions(hosts=("tcp://1.2.3.4:2375",)), []),
        (["-Htcp://h:1", "persist"], GlobalOptions(hosts=("tcp://h:1",)), []),
        (["--config", "/c", "persist", "x"], GlobalOptions(config="/c"), ["x"]),
        (["-D", "persist", "x"], GlobalOptions(debug=True), ["x"]),
        (["--debug=false", "persist", "x"], GlobalOptions(debug=False), ["x"]),
        (["-l", "debug", "persist", "x"], GlobalOptions(log_level="debug"), ["x"]),
        (["--log-level=error", "persist", "x"], GlobalOptions(log_level="error"), ["x"]),
        (["--tls", "persist"], GlobalOptions(tls=True), []),
        (["--tlsverify", "persist"], GlobalOptions(tlsverify=True), []),
        (["--tlsverify=false", "persist"], GlobalOptions(tlsverify=False), []),
        (
            ["--tlscacert", "/a", "--tlscert=/b", "--tlskey", "/c", "persist"],
            GlobalOptions(tlscacert="/a", tlscert="/b", tlskey="/c"),
            [],
        ),
        # The subcommand's own flags are not global flags, even when they look alike.
        (["persist", "version", "--context", "x"], GlobalOptions(), ["version", "--context", "x"]),
        (["persist", "--help"], GlobalOptions(), ["--help"]),
        (["--help"], GlobalOptions(), ["--help"]),
        (["-D", "--", "persist", "x"], GlobalOptions(debug=True), ["x"]),
        # Only one leading `persist` word is the plugin's name.
        (["persist", "persist"], GlobalOptions(), ["persist"]),
    ],
)
def test_split_global_flags(argv: list[str], options: GlobalOptions, rest: list[str]) -> None:
    assert split_global_flags(argv) == (options, rest)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--context"], "flag needs an argument: --context"),
        (["-H"], "flag needs an argument: -H"),
        (["-c", "a", "-H", "unix:///b", "persist"], "conflicting options: cannot specify both --host and --context"),
        (["-l", "chatty", "persist"], 'invalid argument "chatty"'),
        (["--tls=maybe", "persist"], 'invalid argument "maybe" for "--tls" flag'),
        (["-H", "unix:///a", "-H", "unix:///b", "persist"], "specify only one -H"),
    ],
)
def test_split_global_flags_rejects(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        split_global_flags(argv)


def test_to_argv_round_trips() -> None:
    argv = [
        "--config", "/cfg", "--context", "prod", "-D", "-l", "info", "--tls", "--tlsverify=false",
        "--tlscacert", "/ca", "--tlscert", "/cert", "--tlskey", "/key",
    ]  # fmt: skip
    options, rest = split_global_flags([*argv, "persist", "x"])
    assert rest == ["x"]
    assert split_global_flags([*options.to_argv(), "persist"]) == (options, [])
