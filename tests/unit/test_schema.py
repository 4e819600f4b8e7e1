"""The x-persist schema, its interpreter, and the example stacks: pure, no engine."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from docker_persist.config import model, schema
from docker_persist.config.schema import SchemaIssue, SchemaLoadError, format_issues, load_schema, validate_document
from docker_persist.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = ROOT / "compose-extensions"
EXAMPLES = sorted((EXTENSIONS / "examples").glob("*.yaml"))


def issues_at_top(value: Any) -> list[SchemaIssue]:
    return validate_document({"x-persist": value})


def issues_at_service(value: Any) -> list[SchemaIssue]:
    return validate_document({"services": {"db": {"image": "postgres:16", "x-persist": value}}})


def issues_at_volume(value: Any) -> list[SchemaIssue]:
    return validate_document({"volumes": {"db_data": {"name": "p_db_data", "x-persist": value}}})


def issues_at_mount(value: Any) -> list[SchemaIssue]:
    mounts = [
        {"type": "bind", "source": "/srv/conf", "target": "/conf", "read_only": True},
        {"type": "volume", "source": "db_data", "target": "/data", "x-persist": value},
    ]
    return validate_document({"services": {"db": {"volumes": mounts}}})


def messages(issues: list[SchemaIssue]) -> list[str]:
    return [f"{issue.path}: {issue.message}" for issue in issues]


# --- the files -------------------------------------------------------------------------


def test_the_examples_are_all_there() -> None:
    assert {path.name for path in EXAMPLES} >= {"postgres-web.yaml", "mysql.yaml", "redis-cache.yaml", "provider.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_validates(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert validate_document(document) == []
    assert "x-persist" in document


def test_the_packaged_schema_is_a_relative_symlink_to_the_reference() -> None:
    packaged = ROOT / "docker_persist" / "config" / "x-persist.schema.json"
    assert os.path.islink(packaged)
    assert not os.path.isabs(os.readlink(packaged))
    assert packaged.read_bytes() == (EXTENSIONS / "x-persist.schema.json").read_bytes()
    assert Path(schema.schema_path()).resolve() == (EXTENSIONS / "x-persist.schema.json").resolve()


def test_the_schema_declares_draft_2020_12() -> None:
    assert load_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _properties(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (name, schema) of every property in the schema."""
    if isinstance(node, dict):
        for name, child in (node.get("properties") or {}).items():
            yield name, child
        for child in node.values():
            yield from _properties(child)
    elif isinstance(node, list):
        for child in node:
            yield from _properties(child)


def test_every_property_has_a_description() -> None:
    definitions = load_schema()["$defs"]
    for name, node in _properties(load_schema()):
        described = "description" in node or (
            "$ref" in node and "description" in definitions[node["$ref"].rsplit("/", 1)[-1]]
        )
        assert described, name


# --- the schema matches the model built after it -----------------------------------------


def _keys(definition: str) -> set[str]:
    return set(load_schema()["$defs"][definition]["properties"])


def _fields(cls: Any) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def test_the_keys_are_the_models_fields() -> None:
    assert _keys("project") == _fields(model.ProjectPolicy)
    assert _keys("keep") == _fields(model.KeepPolicy)
    assert _keys("service") == _fields(model.ServicePolicy)
    assert _keys("volume_options") == _fields(model.VolumePolicy)
    assert _keys("mount_options") == _fields(model.VolumePolicy) | {"ignore"}


def test_the_enums_and_defaults_are_the_models() -> None:
    definitions = load_schema()["$defs"]
    project, service = definitions["project"]["properties"], definitions["service"]["properties"]
    assert tuple(project["compression"]["enum"]) == model.COMPRESSION
    assert tuple(project["on_down"]["enum"]) == model.ON_DOWN
    assert tuple(service["consistency"]["enum"]) == model.CONSISTENCY
    assert project["compression"]["default"] == model.ProjectPolicy().compression
    assert project["on_down"]["default"] == model.ProjectPolicy().on_down
    assert service["consistency"]["default"] == model.ServicePolicy().consistency
    assert definitions["protect"]["default"] is model.VolumePolicy().protect
    assert definitions["restore"]["default"] == model.VolumePolicy().restore


# --- project x-persist ---------------------------------------------------------------------


def test_a_full_project_x_persist_is_accepted() -> None:
    value = {
        "store": "s3://bucket/prefix",
        "compression": "gzip",
        "keep": {"last": 7, "hourly": 0, "daily": -1, "weekly": 4, "monthly": 6, "yearly": 1, "within": "2w3d"},
        "on_down": "refuse",
        "schedule": "0 3 * * *",
        "max_age": "26h",
        "verify_max_age": "8d",
        "ignore": ["DP001", "DP012"],
        "encrypt": {
            "recipients": [
                "age1uhjsq7n5ma7wnk2c3rlrhzt3u3560n5mknz70vl676kgzvn5tsgsvzsp9k",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIANgWXOEp62wnN1GlceZ8fkYF1UDHMe22nLly8vPQYyj backup@host",
            ],
            "recipients_file": "./backup-recipients.txt",
        },
    }
    assert issues_at_top(value) == []
    assert issues_at_top({}) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"store": ""}, "x-persist.store: expected a non-empty string, got ''"),
        ({"store": 5}, "x-persist.store: expected a non-empty string, got 5"),
        ({"compression": "lz4"}, "x-persist.compression: expected one of zstd, gzip, none, got 'lz4'"),
        ({"on_down": "delete"}, "x-persist.on_down: expected one of backup, refuse, allow, got 'delete'"),
        ({"keep": {"daily": "seven"}}, "x-persist.keep.daily: expected an integer >= -1, got 'seven'"),
        ({"keep": {"daily": -2}}, "x-persist.keep.daily: expected an integer >= -1, got -2"),
        ({"keep": {"last": True}}, "x-persist.keep.last: expected an integer >= -1, got true"),
        ({"keep": {"last": 1.5}}, "x-persist.keep.last: expected an integer >= -1, got 1.5"),
        ({"keep": {"within": "3 days"}}, "x-persist.keep.within: expected a duration such as 26h or 7d, got '3 days'"),
        (
            {"keep": {}},
            "x-persist.keep: expected at least one of last, hourly, daily, weekly, monthly, yearly or within, "
            "got an empty mapping",
        ),
        ({"keep": 7}, "x-persist.keep: expected a mapping, got 7"),
        (
            {"schedule": "0 3 * *"},
            "x-persist.schedule: expected a cron expression such as '0 3 * * *' or @daily, got '0 3 * *'",
        ),
        ({"max_age": "3 days"}, "x-persist.max_age: expected a duration such as 26h or 7d, got '3 days'"),
        ({"verify_max_age": 7}, "x-persist.verify_max_age: expected a duration such as 26h or 7d, got 7"),
        ({"ignore": "DP001"}, "x-persist.ignore: expected a list of rule IDs such as DP001, got 'DP001'"),
        ({"ignore": ["dp001"]}, "x-persist.ignore[0]: expected a rule ID such as DP001, got 'dp001'"),
        ({"ignore": ["DP001", "DP001"]}, "x-persist.ignore[1]: 'DP001' is already listed at [0]"),
        (
            {"encrypt": {}},
            "x-persist.encrypt: expected at least one of recipients or recipients_file, got an empty mapping",
        ),
        (
            {"encrypt": {"recipient": ["age1x"]}},
            "x-persist.encrypt: unknown key 'recipient'; did you mean 'recipients'?",
        ),
        (
            {"encrypt": {"recipients": ["AGE-SECRET-KEY-1QQQQ"]}},
            "x-persist.encrypt.recipients[0]: expected an age recipient such as age1... or an SSH public key, "
            "got 'AGE-SECRET-KEY-1QQQQ'",
        ),
        (
            {"encrypt": {"recipients": "age1uhjsq7n5ma7wnk2c3rlrhzt3u3560n5mknz70vl676kgzvn5tsgsvzsp9k"}},
            "x-persist.encrypt.recipients: expected a list of age recipients, "
            "got 'age1uhjsq7n5ma7wnk2c3rlrhzt3u3560n5mknz70vl676kgzvn5tsgsv...'",
        ),
        (
            {"encrypt": {"recipients_file": ""}},
            "x-persist.encrypt.recipients_file: expected a non-empty string, got ''",
        ),
        (None, "x-persist: expected a mapping, got null"),
        ([], "x-persist: expected a mapping, got an empty list"),
    ],
)
def test_a_bad_project_x_persist_is_refused(value: Any, expected: str) -> None:
    assert messages(issues_at_top(value)) == [expected]


def test_an_unknown_key_gets_a_suggestion() -> None:
    assert issues_at_top({"kep": {"last": 7}}) == [SchemaIssue("x-persist", "unknown key 'kep'; did you mean 'keep'?")]
    assert issues_at_volume({"protet": False}) == [
        SchemaIssue("volumes.db_data.x-persist", "unknown key 'protet'; did you mean 'protect'?")
    ]


def test_an_unknown_key_with_nothing_close_lists_the_known_ones() -> None:
    assert messages(issues_at_volume({"colour": "red"})) == [
        "volumes.db_data.x-persist: unknown key 'colour'; "
        "expected one of protect, restore, max_age, verify_max_age, schedule, notify"
    ]


# --- service x-persist ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"consistency": "stop"},
        {"consistency": "pause", "pre": "pg_dump -f /data/dump.sql app", "post": "rm /data/dump.sql"},
        {"pre": ["redis-cli SAVE", "sync"], "post": []},
        {"verify": "test -f /data/PG_VERSION", "paths": ["/var/lib/postgresql/data", "/"], "ignore": ["DP003"]},
    ],
)
def test_a_good_service_x_persist_is_accepted(value: Any) -> None:
    assert issues_at_service(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"consistency": "halt"}, "services.db.x-persist.consistency: expected one of stop, pause, none, got 'halt'"),
        ({"pre": 5}, "services.db.x-persist.pre: expected a command or a list of commands, got 5"),
        ({"pre": ""}, "services.db.x-persist.pre: expected a command or a list of commands, got ''"),
        ({"post": ["sync", 1]}, "services.db.x-persist.post[1]: expected a command, got 1"),
        (
            {"post": {"run": "sync"}},
            "services.db.x-persist.post: expected a command or a list of commands, got a mapping",
        ),
        ({"verify": ["test", "-f"]}, "services.db.x-persist.verify: expected a command, got a list"),
        ({"paths": ["data"]}, "services.db.x-persist.paths[0]: expected an absolute path such as /data, got 'data'"),
        (
            {"paths": "/data"},
            "services.db.x-persist.paths: expected a list of absolute paths such as /data, got '/data'",
        ),
        ({"ignore": ["DP1"]}, "services.db.x-persist.ignore[0]: expected a rule ID such as DP001, got 'DP1'"),
        ({"consistancy": "stop"}, "services.db.x-persist: unknown key 'consistancy'; did you mean 'consistency'?"),
        (True, "services.db.x-persist: expected a mapping, got true"),
    ],
)
def test_a_bad_service_x_persist_is_refused(value: Any, expected: str) -> None:
    assert messages(issues_at_service(value)) == [expected]


# --- volume x-persist ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        {},
        {"protect": False},
        {"restore": "latest"},
        {"restore": "none"},
        {"restore": "2026-11-26T153000Z-pre-down"},
        {"restore": "a" * 128},
        {"max_age": "26h", "verify_max_age": "1w", "schedule": "@weekly", "protect": True},
    ],
)
def test_a_good_volume_x_persist_is_accepted(value: Any) -> None:
    assert issues_at_volume(value) == []


SNAPSHOT = "a snapshot name (a letter or digit, then up to 127 letters, digits, '.', '_' or '-')"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "volumes.db_data.x-persist: expected true, false or a mapping, got null"),
        ("yes", "volumes.db_data.x-persist: expected true, false or a mapping, got 'yes'"),
        (1, "volumes.db_data.x-persist: expected true, false or a mapping, got 1"),
        ([], "volumes.db_data.x-persist: expected true, false or a mapping, got an empty list"),
        ({"protect": "yes"}, "volumes.db_data.x-persist.protect: expected true or false, got 'yes'"),
        ({"restore": "../x"}, f"volumes.db_data.x-persist.restore: expected latest, none or {SNAPSHOT}, got '../x'"),
        ({"restore": "a" * 129}, f"volumes.db_data.x-persist.restore: expected latest, none or {SNAPSHOT}, got '"),
        ({"restore": True}, f"volumes.db_data.x-persist.restore: expected latest, none or {SNAPSHOT}, got true"),
        ({"max_age": "0s"}, "volumes.db_data.x-persist.max_age: expected a duration such as 26h or 7d, got '0s'"),
        ({"schedule": "daily"}, "volumes.db_data.x-persist.schedule: expected a cron expression such as "),
        ({"ignore": ["DP001"]}, "volumes.db_data.x-persist: unknown key 'ignore'; expected one of protect, restore"),
    ],
)
def test_a_bad_volume_x_persist_is_refused(value: Any, expected: str) -> None:
    found = messages(issues_at_volume(value))
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_a_yaml_date_is_named_as_one() -> None:
    document = yaml.safe_load("volumes:\n  db_data:\n    x-persist:\n      restore: 2024-01-31T00:00:00Z\n")
    [issue] = validate_document(document)
    assert issue.path == "volumes.db_data.x-persist.restore"
    assert issue.message.endswith("got the date 2024-01-31T00:00:00+00:00 (quote it to make it a string)")


# --- mount x-persist -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [True, False, {}, {"ignore": ["DP004"]}, {"protect": False, "restore": "latest", "max_age": "7d"}],
)
def test_a_good_mount_x_persist_is_accepted(value: Any) -> None:
    assert issues_at_mount(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"protect": "no"}, "services.db.volumes[1].x-persist.protect: expected true or false, got 'no'"),
        (
            {"ignore": ["DP4"]},
            "services.db.volumes[1].x-persist.ignore[0]: expected a rule ID such as DP001, got 'DP4'",
        ),
        ({"ignor": []}, "services.db.volumes[1].x-persist: unknown key 'ignor'; did you mean 'ignore'?"),
        ("true", "services.db.volumes[1].x-persist: expected true, false or a mapping, got 'true'"),
    ],
)
def test_a_bad_mount_x_persist_is_refused(value: Any, expected: str) -> None:
    assert messages(issues_at_mount(value)) == [expected]


# --- the whole document ----------------------------------------------------------------


def test_everything_but_x_persist_is_left_to_compose() -> None:
    document = {
        "name": "p",
        "services": {
            "web": None,
            "db": {"volumes": ["db_data:/data", {"type": "tmpfs", "target": "/tmp"}], "x-other": {"kep": 1}},
            "odd": {"volumes": "not a list"},
        },
        "volumes": {"db_data": None, "cache": {"name": "p_cache", "x-persist": False}},
        "networks": {"default": {"name": "p_default"}},
        "x-other": {"kep": 1},
    }
    assert validate_document(document) == []
    assert validate_document({}) == []


def test_every_issue_is_collected_in_document_order() -> None:
    document = yaml.safe_load(
        """
x-persist:
  kep: {last: 7}
  on_down: delete
services:
  db:
    x-persist: {consistency: halt}
    volumes:
      - db_data:/short/syntax
      - type: volume
        source: db_data
        target: /data
        x-persist: {protect: "yes", restore: "x y"}
volumes:
  db_data:
    x-persist: {max_age: 3 days}
  cache:
    x-persist: "no"
"""
    )
    issues = validate_document(document)
    assert [issue.path for issue in issues] == [
        "x-persist",
        "x-persist.on_down",
        "services.db.x-persist.consistency",
        "services.db.volumes[1].x-persist.protect",
        "services.db.volumes[1].x-persist.restore",
        "volumes.db_data.x-persist.max_age",
        "volumes.cache.x-persist",
    ]
    assert validate_document(document) == issues


def test_format_issues_gives_one_line_per_issue() -> None:
    issues = [
        SchemaIssue("volumes.db_data.x-persist.keep.daily", "expected an integer >= -1, got 'seven'"),
        SchemaIssue("x-persist", "unknown key 'kep'; did you mean 'keep'?"),
    ]
    assert format_issues(issues) == (
        "At 'volumes.db_data.x-persist.keep.daily': expected an integer >= -1, got 'seven'\n"
        "At 'x-persist': unknown key 'kep'; did you mean 'keep'?"
    )
    assert format_issues([]) == ""


def test_a_validated_document_builds_the_model() -> None:
    document = yaml.safe_load((EXTENSIONS / "examples" / "redis-cache.yaml").read_text(encoding="utf-8"))
    assert validate_document(document) == []
    project = model.build_project(document, "/srv/shop")
    assert [volume.key for volume in project.precious_volumes()] == ["redis_data"]
    assert project.volumes["cache"].disposable


# --- formats -------------------------------------------------------------------------------


def _duration_ok(text: str) -> bool:
    return issues_at_top({"max_age": text}) == []


def _parses(text: str) -> bool:
    try:
        model.parse_duration(text)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize(
    "text", ["26h", "7d", "2w3d", "90min", "1w", "45s", "1w2d3h4min5s", "0w1d", "100d", "01h", "6mo", "1y6mo", "1y"]
)
def test_a_duration_the_schema_accepts_parses(text: str) -> None:
    assert _duration_ok(text)
    assert not model.parse_duration(text).is_zero()


@pytest.mark.parametrize(
    "text", ["", "0s", "0w0d", "3 days", "1.5h", "3d2w", "7", "h", "7D", "-1d", "6m", "90m", "1y6m", "٣d"]
)
def test_a_duration_the_schema_refuses_does_not_parse(text: str) -> None:
    assert not _duration_ok(text)
    assert not _parses(text)


@pytest.mark.parametrize("text", [" 7d", "7d ", "7d\n"])
def test_a_duration_with_whitespace_is_refused_though_the_parser_strips_it(text: str) -> None:
    assert not _duration_ok(text)


def test_the_duration_pattern_agrees_with_the_parser() -> None:
    # Every string of up to three characters over the duration alphabet, plus every
    # combination of units with values 0, 1 and 12: accepted exactly when it parses.
    short = ("".join(chars) for n in range(4) for chars in itertools.product("012wdhms", repeat=n))
    units = (
        "".join(f"{value}{unit}" for value, unit in zip(values, "wdhms", strict=True) if value is not None)
        for values in itertools.product((None, 0, 1, 12), repeat=5)
    )
    for text in itertools.chain(short, units):
        assert _duration_ok(text) == _parses(text), text


@pytest.mark.parametrize(
    "text", ["0 3 * * *", "*/15 * * * *", "30 2 * * 1-5", "0 0 1,15 * *", "0 4 * JAN mon", "@hourly", "@yearly"]
)
def test_a_cron_expression_is_accepted(text: str) -> None:
    assert issues_at_top({"schedule": text}) == []


@pytest.mark.parametrize("text", ["", "0 3 * *", "0 3 * * * *", "@reboot", "@daily 0", " 0 3 * * *", "0 3 ? * *"])
def test_a_bad_cron_expression_is_refused(text: str) -> None:
    assert len(issues_at_top({"schedule": text})) == 1


def test_a_trailing_newline_does_not_slip_past_an_anchored_pattern() -> None:
    assert len(issues_at_top({"ignore": ["DP001\n"]})) == 1


# --- loading -------------------------------------------------------------------------------


@pytest.fixture
def schema_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the schema that schema.load_schema reads instead of the packaged one."""
    path = tmp_path / "x-persist.schema.json"
    path.write_bytes((EXTENSIONS / "x-persist.schema.json").read_bytes())
    monkeypatch.setattr(schema, "schema_path", lambda: str(path))
    load_schema.cache_clear()
    yield path
    load_schema.cache_clear()


def _edit(path: Path, edit: Any) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_the_schema_is_read_once() -> None:
    assert load_schema() is load_schema()


def test_an_unsupported_keyword_makes_loading_raise(schema_file: Path) -> None:
    _edit(schema_file, lambda document: document["$defs"]["command"].update(maxLength=200))
    with pytest.raises(SchemaLoadError, match="maxLength"):
        load_schema()


@pytest.mark.parametrize(
    "edit",
    [
        lambda document: document["$defs"]["project"].update(patternProperties={"^x-": {}}),
        lambda document: document["$defs"]["keep"].update(allOf=[]),
        lambda document: document["$defs"]["volume"]["oneOf"].append({"$ref": "#/$defs/nothing"}),
        lambda document: document["$defs"]["rule_id"].update(type="number"),
        lambda document: document["$defs"]["rule_id"].update(pattern="("),
        lambda document: document["$defs"]["cron"].update(format="cron"),
    ],
)
def test_an_uninterpretable_schema_makes_loading_raise(schema_file: Path, edit: Any) -> None:
    _edit(schema_file, edit)
    with pytest.raises(SchemaLoadError):
        load_schema()


def test_a_missing_schema_makes_loading_raise(schema_file: Path) -> None:
    schema_file.unlink()
    with pytest.raises(SchemaLoadError, match="cannot read the x-persist schema"):
        load_schema()
