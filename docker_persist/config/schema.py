"""Validate `x-persist` against its JSON Schema, before the model is built from it.

The schema is `compose-extensions/x-persist.schema.json`, shipped in the package as
`docker_persist/x-persist.schema.json`. It is read by a small interpreter for exactly
the JSON Schema subset it uses, so the package needs no `jsonschema`. A keyword the
interpreter does not know makes loading fail: the schema file and this code cannot
drift apart silently.

The schema's root walks a `docker compose config` document down to the four places
`x-persist` may appear, so `validate_document` is one pass of the interpreter. Every
issue is collected, in document order, and reads `At 'path': message` (borgmatic).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from docker_persist.errors import PersistError

SCHEMA_FILE = "x-persist.schema.json"

# Keywords that only document: the interpreter skips them.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples"})
# Keywords the interpreter implements. Anything else in the schema makes loading fail.
_KEYWORDS = frozenset(
    {
        "$defs",
        "$ref",
        "type",
        "properties",
        "additionalProperties",
        "required",
        "minProperties",
        "items",
        "uniqueItems",
        "enum",
        "const",
        "pattern",
        "minLength",
        "minimum",
        "oneOf",
        "anyOf",
    }
)
_TYPES = frozenset({"null", "boolean", "integer", "string", "array", "object"})
_REF_PREFIX = "#/$defs/"

# What a value checked against one of these `$defs` should have been, singular and
# plural: a failed pattern means nothing to a user, "a duration such as 26h" does.
_NOUNS: dict[str, tuple[str, str]] = {
    "duration": ("a duration such as 26h or 7d", "durations such as 26h or 7d"),
    "cron": ("a cron expression such as '0 3 * * *' or @daily", "cron expressions"),
    "rule_id": ("a rule ID such as DP001", "rule IDs such as DP001"),
    "snapshot_name": (
        "a snapshot name (a letter or digit, then up to 127 letters, digits, '.', '_' or '-')",
        "snapshot names",
    ),
    "container_path": ("an absolute path such as /data", "absolute paths such as /data"),
    "command": ("a command", "commands"),
    "age_recipient": ("an age recipient such as age1... or an SSH public key", "age recipients"),
    "dump": ("auto, or a mapping with command, restore, ready, volume, also_volume", "dump settings"),
    "notify_url": ("an Apprise URL such as ntfy://ntfy.sh/topic or mailtos://user:pass@example.com", "Apprise URLs"),
    "notify_target": ("an Apprise URL, or a mapping with url and on", "notify targets"),
    "notify_event": ("one of failure, success, stale, recovered", "events (failure, success, stale, recovered)"),
}


class SchemaLoadError(PersistError):
    """The packaged x-persist schema is missing, unreadable, or uses JSON Schema this module does not support."""


@dataclasses.dataclass(frozen=True)
class SchemaIssue:
    """One problem with an `x-persist` value: where it is, and what was expected and found."""

    path: str  # e.g. "volumes.db_data.x-persist.keep.daily" or "services.db.volumes[1].x-persist.protect"
    message: str


def schema_path() -> str:
    """Return the path of the packaged x-persist schema (beside this module, also in a PyInstaller bundle)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), SCHEMA_FILE)


@functools.cache
def load_schema() -> dict[str, Any]:
    """Return the parsed x-persist schema, read once.

    Raise SchemaLoadError if it cannot be read, or uses a keyword this module does not interpret.
    """
    path = schema_path()
    try:
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
    except (OSError, ValueError) as error:
        raise SchemaLoadError(f"cannot read the x-persist schema {path}: {error}") from error
    if not isinstance(schema, dict):
        raise SchemaLoadError(f"the x-persist schema {path} is not a JSON object")
    _check_node(schema, schema.get("$defs") or {}, "#")
    return schema


def validate_document(document: Mapping[str, Any]) -> list[SchemaIssue]:
    """Return every issue with the x-persist keys of `document`, the parsed YAML of `docker compose config`.

    The issues come in document order; an empty list means every x-persist is valid.
    """
    schema = load_schema()
    return _Validator(schema.get("$defs") or {}).validate(document, schema, "")


def format_issues(issues: Sequence[SchemaIssue]) -> str:
    """Return the issues one per line, as `At 'path': message`."""
    return "\n".join(f"At '{issue.path}': {issue.message}" for issue in issues)


# --- checking the schema itself ------------------------------------------------------


# One branch per JSON Schema keyword this validator interprets.
def _check_node(node: Any, defs: Mapping[str, Any], where: str) -> None:  # noqa: PLR0912
    """Raise SchemaLoadError unless `node` uses only keywords, types and references this module interprets."""
    if not isinstance(node, Mapping):
        raise SchemaLoadError(f"x-persist schema: {where} is not a schema object")
    unsupported = sorted(set(node) - _KEYWORDS - _ANNOTATIONS)
    if unsupported:
        raise SchemaLoadError(
            f"x-persist schema: {where} uses {', '.join(unsupported)}, "
            "which docker_persist.config.schema does not interpret"
        )
    if "$ref" in node and _ref_name(node["$ref"]) not in defs:
        raise SchemaLoadError(f"x-persist schema: {where} refers to {node['$ref']!r}, which is not in $defs")
    for type_name in _as_list(node.get("type")):
        if type_name not in _TYPES:
            raise SchemaLoadError(f"x-persist schema: {where} uses the type {type_name!r}, which is not interpreted")
    if "pattern" in node:
        try:
            _compile_pattern(node["pattern"])
        except (re.error, TypeError) as error:
            raise SchemaLoadError(f"x-persist schema: {where} has a bad pattern: {error}") from error
    for keyword in ("enum", "required", "oneOf", "anyOf"):
        if keyword in node and not isinstance(node[keyword], list):
            raise SchemaLoadError(f"x-persist schema: {where}/{keyword} is not a list")
    for keyword in ("minLength", "minProperties", "minimum"):
        if keyword in node and (isinstance(node[keyword], bool) or not isinstance(node[keyword], (int, float))):
            raise SchemaLoadError(f"x-persist schema: {where}/{keyword} is not a number")
    for name, child in (node.get("$defs") or {}).items():
        _check_node(child, defs, f"{where}/$defs/{name}")
    for name, child in (node.get("properties") or {}).items():
        _check_node(child, defs, f"{where}/properties/{name}")
    additional = node.get("additionalProperties")
    if additional is not None and not isinstance(additional, bool):
        _check_node(additional, defs, f"{where}/additionalProperties")
    if "items" in node:
        _check_node(node["items"], defs, f"{where}/items")
    for keyword in ("oneOf", "anyOf"):
        for index, child in enumerate(node.get(keyword) or ()):
            _check_node(child, defs, f"{where}/{keyword}/{index}")


def _ref_name(ref: Any) -> str | None:
    """Return the `$defs` name a `$ref` points at, or None for any other kind of reference."""
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX) and "/" not in ref[len(_REF_PREFIX) :]:
        return ref[len(_REF_PREFIX) :]
    return None


@functools.cache
def _compile_pattern(pattern: str) -> re.Pattern[str]:
    """Return the compiled ECMA-262 `pattern`, with `$` as `\\Z`: in Python, `$` also matches before a final newline."""
    chars: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            chars.append(r"\Z")
            continue
        chars.append(char)
    return re.compile("".join(chars))


# --- validating values -----------------------------------------------------------------


class _Validator:
    """Checks values against the schema's nodes and words what went wrong."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs

    def validate(self, value: Any, node: Mapping[str, Any], path: str) -> list[SchemaIssue]:
        """Return the issues of `value` at `path` against `node`, and against everything below it."""
        issues: list[SchemaIssue] = []
        name = _ref_name(node.get("$ref"))
        if name is not None:
            target = self.defs[name]
            if not self._fits_locally(value, target):
                # Worded by the reference, so a failed duration pattern reads "expected a duration ...".
                return [self._expected(path, node, value)]
            issues += self.validate(value, target, path)
        if not self._fits_locally(value, node):
            return [*issues, self._expected(path, node, value)]
        for keyword in ("oneOf", "anyOf"):
            if keyword in node:
                issues += self._validate_union(value, node, keyword, path)
        if isinstance(value, Mapping):
            issues += self._validate_mapping(value, node, path)
        elif isinstance(value, list):
            issues += self._validate_list(value, node, path)
        return issues

    def _fits_locally(self, value: Any, node: Mapping[str, Any]) -> bool:
        """Return True if `value` passes the keywords of `node` that look at the value itself."""
        types = _as_list(node.get("type"))
        if types and not any(_is_type(value, type_name) for type_name in types):
            return False
        if "enum" in node and not any(_same(value, option) for option in node["enum"]):
            return False
        if "const" in node and not _same(value, node["const"]):
            return False
        if isinstance(value, str):
            if len(value) < node.get("minLength", 0):
                return False
            if "pattern" in node and not _compile_pattern(node["pattern"]).search(value):
                return False
        return not (_is_type(value, "integer") and "minimum" in node and value < node["minimum"])

    def _validate_union(self, value: Any, node: Mapping[str, Any], keyword: str, path: str) -> list[SchemaIssue]:
        branches = node[keyword]
        results = [self.validate(value, branch, path) for branch in branches]
        passed = sum(1 for result in results if not result)
        if passed == 1 or (passed and keyword == "anyOf"):
            return []
        if passed:
            return [
                SchemaIssue(path, f"{_render(value)} is ambiguous: it matches more than one of {self._phrase(node)}")
            ]
        if isinstance(value, (Mapping, list)):
            # A mapping given where "true, false or a mapping" is expected: its own errors say more.
            fitting = [
                result for branch, result in zip(branches, results, strict=True) if self._takes_type_of(value, branch)
            ]
            if fitting:
                return min(fitting, key=len)
        return [self._expected(path, node, value)]

    def _validate_mapping(self, value: Mapping[Any, Any], node: Mapping[str, Any], path: str) -> list[SchemaIssue]:
        issues: list[SchemaIssue] = []
        properties: Mapping[str, Any] = node.get("properties") or {}
        additional = node.get("additionalProperties", True)
        for key, item in value.items():
            name = str(key)
            if name in properties:
                issues += self.validate(item, properties[name], _join(path, name))
            elif additional is False:
                issues.append(SchemaIssue(path, _unknown_key(name, list(properties))))
            elif isinstance(additional, Mapping):
                issues += self.validate(item, additional, _join(path, name))
        for name in node.get("required") or ():
            if name not in value:
                issues.append(SchemaIssue(path, f"missing required key {name!r}"))
        minimum = node.get("minProperties", 0)
        if len(value) < minimum:
            if minimum == 1 and properties:
                wanted = f"at least one of {_join_words(list(properties))}"
            else:
                wanted = f"at least {minimum} keys"
            got = "an empty mapping" if not value else f"{len(value)}"
            issues.append(SchemaIssue(path, f"expected {wanted}, got {got}"))
        return issues

    def _validate_list(self, value: list[Any], node: Mapping[str, Any], path: str) -> list[SchemaIssue]:
        issues: list[SchemaIssue] = []
        items = node.get("items")
        for index, item in enumerate(value):
            if items is not None:
                issues += self.validate(item, items, f"{path}[{index}]")
            if node.get("uniqueItems"):
                first = next((i for i, earlier in enumerate(value[:index]) if _same(item, earlier)), None)
                if first is not None:
                    issues.append(SchemaIssue(f"{path}[{index}]", f"{_render(item)} is already listed at [{first}]"))
        return issues

    def _takes_type_of(self, value: Any, node: Mapping[str, Any]) -> bool:
        """Return True if `node` (through its `$ref`) declares a type that `value` has."""
        name = _ref_name(node.get("$ref"))
        if name is not None and "type" not in node:
            return self._takes_type_of(value, self.defs[name])
        return any(_is_type(value, type_name) for type_name in _as_list(node.get("type")))

    def _expected(self, path: str, node: Mapping[str, Any], value: Any) -> SchemaIssue:
        return SchemaIssue(path, f"expected {self._phrase(node)}, got {_render(value)}")

    def _phrase(self, node: Mapping[str, Any]) -> str:
        """Return what `node` accepts in words: "one of zstd, gzip, none", "true, false or a mapping"."""
        alternatives: list[tuple[str, bool]] = []
        for alternative in self._alternatives(node):
            if alternative not in alternatives:
                alternatives.append(alternative)
        words = [text for text, _ in alternatives]
        if len(words) > 2 and all(literal for _, literal in alternatives):
            return "one of " + ", ".join(words)
        return _join_words(words)

    def _alternatives(self, node: Mapping[str, Any]) -> list[tuple[str, bool]]:
        """Return what `node` accepts as (words, is a literal value) pairs."""
        name = _ref_name(node.get("$ref"))
        if name is not None:
            return [(_NOUNS[name][0], False)] if name in _NOUNS else self._alternatives(self.defs[name])
        if "const" in node:
            return [(_literal(node["const"]), True)]
        if "enum" in node:
            return [(_literal(option), True) for option in node["enum"]]
        for keyword in ("oneOf", "anyOf"):
            if keyword in node:
                return [alternative for branch in node[keyword] for alternative in self._alternatives(branch)]
        types = _as_list(node.get("type"))
        if not types:
            return [("anything", False)]
        return [alternative for type_name in types for alternative in self._type_words(type_name, node)]

    # One return per JSON Schema type.
    def _type_words(self, type_name: str, node: Mapping[str, Any]) -> list[tuple[str, bool]]:  # noqa: PLR0911
        if type_name == "boolean":
            return [("true", True), ("false", True)]
        if type_name == "null":
            return [("null", True)]
        if type_name == "integer":
            return [("an integer" + (f" >= {node['minimum']}" if "minimum" in node else ""), False)]
        if type_name == "object":
            return [("a mapping", False)]
        if type_name == "array":
            items = node.get("items")
            return [("a list" + (f" of {self._plural(items)}" if items is not None else ""), False)]
        if "pattern" in node:
            return [(f"a string matching {node['pattern']}", False)]
        min_length = node.get("minLength", 0)
        if min_length == 1:
            return [("a non-empty string", False)]
        return [("a string" + (f" of at least {min_length} characters" if min_length else ""), False)]

    def _plural(self, node: Mapping[str, Any]) -> str:
        name = _ref_name(node.get("$ref"))
        if name in _NOUNS:
            return _NOUNS[name][1]
        types = _as_list(node.get("type"))
        return {"string": "strings", "integer": "integers", "boolean": "booleans", "object": "mappings"}.get(
            types[0] if len(types) == 1 else "", "values"
        )


# --- small helpers ---------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# One return per JSON Schema type.
def _is_type(value: Any, type_name: str) -> bool:  # noqa: PLR0911
    """Return True if `value`, parsed from YAML, has the JSON Schema type `type_name` (a bool is no integer)."""
    if type_name == "null":
        return value is None
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "array":
        return isinstance(value, list)
    if type_name == "object":
        return isinstance(value, Mapping)
    return False


def _same(first: Any, second: Any) -> bool:
    """Return True if two values are equal in JSON's sense: true is not 1."""
    if isinstance(first, bool) or isinstance(second, bool):
        return type(first) is type(second) and first == second
    return bool(first == second)


# One return per kind of YAML value.
def _render(value: Any) -> str:  # noqa: PLR0911
    """Return a found value as a user would recognise it from YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, datetime.date):
        # YAML makes a date of an unquoted 2024-01-31, and Compose prints it back as a timestamp.
        return f"the date {value.isoformat()} (quote it to make it a string)"
    return repr(str(value))


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _join_words(words: Sequence[str]) -> str:
    """Return "a", "a or b", "a, b or c"."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _unknown_key(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown key {name!r}; did you mean {close[0]!r}?"
    return f"unknown key {name!r}; expected one of {', '.join(known)}"
