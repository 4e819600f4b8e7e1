"""What `docker persist init` proposes, and the text edits that record it durably.

- Which Compose files Compose reads, as Compose finds them (`-f`, COMPOSE_FILE from the shell or
  the project's `.env`, else compose.yaml and its compose.override.yaml).
- Which named volumes are precious, which look like caches (disposable), and which init cannot
  decide on (logs); which database services must stop while they are backed up.
- The x-persist keys inserted into the user's own Compose file, line by line, so that every
  comment, blank line, quote, indent and key order stays as it was: ruamel.yaml parses the file
  with the position of every node, and parses the result again to prove it holds exactly the
  old document plus the new keys. (Dumping ruamel's round-trip model instead re-indents
  sequences and moves a comment that sits above the next service below the inserted key.)
- The override file, and COMPOSE_FILE in a dotenv file, keeping every other line.

Pure functions of text and the project model, except resolve_compose_files, which looks for
files as Compose does.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ruamel.yaml.nodes import MappingNode, Node

    from docker_persist.config.model import Project, Service
    from docker_persist.config.project import ComposeOptions

# Compose's own names and order (compose-go cli.DefaultFileNames, DefaultOverrideFileNames).
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
COMPOSE_OVERRIDE_NAMES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)
KEY = "x-persist"
MARK = "docker persist init"


class CannotEditError(Exception):
    """The Compose file cannot take the keys without changing something else; the message says why."""


# --- the files Compose reads ----------------------------------------------------------------


class ComposeFiles(NamedTuple):
    """The Compose files of a project, as `docker compose` finds them.

    `files` are absolute ("-" for stdin), in Compose's order. `working_dir` is the project
    directory. `env_file` is where COMPOSE_FILE is read from on a run without -f: the last
    --env-file, else `.env` in the project directory (which may not exist yet). `source` says
    where the list came from: "-f", "COMPOSE_FILE" (the shell), "COMPOSE_FILE in <file>" or
    "default" (found by name, with its override file).
    """

    files: tuple[str, ...]
    working_dir: str
    env_file: str
    source: str
    separator: str


def resolve_compose_files(options: ComposeOptions, environ: Mapping[str, str], cwd: str) -> ComposeFiles:
    """Return the files Compose reads for these project flags, environment and folder.

    As compose-go's ProjectOptions do: -f paths are relative to the current folder; else
    COMPOSE_FILE, from the environment first, then from the env files (`.env` in the project
    directory: --project-directory, else the current folder), split on COMPOSE_PATH_SEPARATOR
    (default os.pathsep) and relative to the current folder; else the first of compose.yaml,
    compose.yml, docker-compose.yml, docker-compose.yaml in the project directory or a parent,
    plus its compose.override.yaml if there is one.
    """

    def absolute(path: str) -> str:
        return path if path == "-" else os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))

    files = [absolute(f) for f in options.files]
    first = next((f for f in files if f != "-"), None)
    if options.project_directory:
        directory = absolute(options.project_directory)
    else:
        directory = os.path.dirname(first) if first else cwd
    given_env_files = [absolute(f) for f in options.env_files]
    env_files = given_env_files or [os.path.join(directory, ".env")]
    dotenv: dict[str, str] = {}
    for path in env_files:
        try:
            with open(path, encoding="utf-8") as handle:
                dotenv.update(parse_dotenv(handle.read()))
        except (OSError, UnicodeDecodeError):
            continue
    merged = {**dotenv, **environ}  # the environment wins over the env files, as in Compose
    separator = merged.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    source = "-f"
    if not files and merged.get("COMPOSE_FILE"):
        files = [absolute(f) for f in merged["COMPOSE_FILE"].split(separator) if f]
        source = "COMPOSE_FILE" if environ.get("COMPOSE_FILE") else f"COMPOSE_FILE in {env_files[-1]}"
    elif not files:
        source = "default"
        folder = directory
        while True:
            found = [os.path.join(folder, n) for n in COMPOSE_FILE_NAMES if os.path.isfile(os.path.join(folder, n))]
            if found:
                overrides = [n for n in COMPOSE_OVERRIDE_NAMES if os.path.isfile(os.path.join(folder, n))]
                files = [found[0], *([os.path.join(folder, overrides[0])] if overrides else [])]
                break
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    first = next((f for f in files if f != "-"), None)
    if not options.project_directory and first:
        directory = os.path.dirname(first)
    env_file = given_env_files[-1] if given_env_files else os.path.join(directory, ".env")
    return ComposeFiles(tuple(files), directory, env_file, source, separator)


# --- what init proposes -----------------------------------------------------------------------

# Words in a volume's name, and folders in a mount target, that say "cache": what is in there is
# made again from elsewhere, so backing it up costs time and space and restoring it gains nothing.
CACHE_WORDS = frozenset({"cache", "caches", "tmp", "temp", "scratch"})
CACHE_FOLDERS = frozenset(
    {"cache", "caches", ".cache", "tmp", "temp", "node_modules", ".npm", ".yarn", ".pnpm-store", ".m2", ".gradle"}
)
# Logs can matter (an audit trail) or not at all: init does not guess, it leaves them to the user.
LOG_WORDS = frozenset({"log", "logs"})
# Images that keep nothing on disk: a volume they mount is scratch space.
MEMORY_ONLY_IMAGES = frozenset({"memcached"})
REDIS_IMAGES = frozenset({"redis", "valkey/valkey", "bitnami/redis"})


class Decision(NamedTuple):
    """What init decided for one named volume: `verdict` is precious, disposable or undecided."""

    key: str
    verdict: str
    reason: str


class Annotation(NamedTuple):
    """One x-persist key to add: at `section.key` (section is "services" or "volumes")."""

    section: str
    key: str
    value: Any  # {} (precious), False (disposable), or a service's mapping
    comment: str | None = None


class InitPlan(NamedTuple):
    """What init adds to the project: the keys, and why, in file order."""

    decisions: tuple[Decision, ...]
    annotations: tuple[Annotation, ...]
    stopped: tuple[tuple[str, str], ...]  # (service, what and why) for each `dump: auto` or `consistency: stop` added


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w}


def _folders(target: str) -> set[str]:
    return {part.lower() for part in target.split("/") if part}


def _under(target: str, path: str) -> bool:
    """Return True if a mount at `target` holds `path`, or sits inside it."""
    target, path = target.rstrip("/") or "/", path.rstrip("/") or "/"
    return target == path or path.startswith(target + "/") or target.startswith(path + "/")


def _command(raw_service: Mapping[str, Any]) -> list[str]:
    command = raw_service.get("command")
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError:
            return command.split()
    return [str(c) for c in command] if isinstance(command, list) else []


def _redis_keeps_nothing(raw_service: Mapping[str, Any]) -> bool:
    """Return True if the service's command turns Redis persistence off (`--save ""`, and no AOF)."""
    args = _command(raw_service)
    saves_nothing = any(a == "--save" and i + 1 < len(args) and args[i + 1] in ("", '""', "''")
                        for i, a in enumerate(args))  # fmt: skip
    appends = any(a == "--appendonly" and i + 1 < len(args) and args[i + 1] == "yes" for i, a in enumerate(args))
    return saves_nothing and not appends


def _by_name(key: str) -> Decision | None:
    if _words(key) & CACHE_WORDS or "node_modules" in key.lower():
        return Decision(key, "disposable", "named like a cache")
    return None


def _by_image(key: str, users: Sequence[tuple[Service, str]], raw_services: Mapping[str, Any]) -> Decision | None:
    from docker_persist.config.images import lookup_image

    for service, target in users:
        known = lookup_image(service.image)
        if known is None or not any(_under(target, path) for path in known.data_paths):
            continue
        if known.name in REDIS_IMAGES and _redis_keeps_nothing(raw_services.get(service.name) or {}):
            return Decision(key, "disposable", f'{service.name} runs {known.name} with persistence off (--save "")')
        kind = "database files" if known.database else "data"
        return Decision(key, "precious", f"{known.name} {kind} at {target} in {service.name}")
    return None


def _by_target(key: str, users: Sequence[tuple[Service, str]]) -> Decision | None:
    from docker_persist.config.images import image_repository

    targets = ", ".join(sorted({t for _, t in users}))
    if users and all(_folders(t) & CACHE_FOLDERS for _, t in users):
        return Decision(key, "disposable", f"mounted at {targets}, a cache")
    for service, _ in users:
        if service.image and image_repository(service.image).rsplit("/", 1)[-1] in MEMORY_ONLY_IMAGES:
            return Decision(key, "disposable", f"{service.name} runs memcached, which keeps nothing on disk")
    if _words(key) & LOG_WORDS or any(_folders(t) & LOG_WORDS for _, t in users):
        return Decision(key, "undecided", f"mounted at {targets}: logs, which init cannot judge")
    return None


def classify_volume(key: str, users: Sequence[tuple[Service, str]], raw_services: Mapping[str, Any]) -> Decision:
    """Decide whether the named volume `key`, mounted at each (service, target), is precious.

    In order: a name that says cache (`pip-cache`, `tmp`) makes it disposable; a well-known
    image's data path makes it precious (Redis with persistence off excepted); mount targets
    that are all caches (`/var/cache/...`, `/tmp`, `.../node_modules`, `~/.cache`) make it
    disposable, and so does an image that keeps nothing on disk (memcached); logs are left to
    the user; anything else is application data, and precious.
    """
    decided = _by_name(key) or _by_image(key, users, raw_services) or _by_target(key, users)
    targets = ", ".join(sorted({t for _, t in users}))
    return decided or Decision(key, "precious", f"application data at {targets}")


def plan_init(project: Project, document: Mapping[str, Any]) -> InitPlan:
    """Return the x-persist keys init adds to a project that Compose loaded from the user's own files.

    A named volume gets `x-persist: {}` (precious) or `x-persist: false` (disposable) unless
    something decides already: an x-persist on it or on a mount of it, or `external`. A
    well-known database that keeps its files on a precious volume gets `dump: auto` where
    docker-persist knows its dump (PostgreSQL, MySQL, MariaDB), else `consistency: stop`, unless the
    service has an x-persist of its own. `document` is `docker compose config`'s
    output, for what the model leaves out (commands).
    """
    from docker_persist.config.images import DUMPABLE, lookup_image

    raw_services = document.get("services") or {}
    decisions: list[Decision] = []
    annotations: list[Annotation] = []
    precious: set[str] = set()
    for volume in project.volumes.values():
        users = [(s, m.target) for s in project.services for m in s.mounts
                 if m.type == "volume" and m.source == volume.key]  # fmt: skip
        if volume.policy is not None:
            precious.add(volume.key)
            continue
        annotated = any(m.precious is not None for s, _ in users for m in s.mounts if m.source == volume.key)
        if volume.disposable or volume.external or annotated or not users:
            continue
        decision = classify_volume(volume.key, users, raw_services)
        decisions.append(decision)
        if decision.verdict == "precious":
            precious.add(volume.key)
            annotations.append(Annotation("volumes", volume.key, {}))
        elif decision.verdict == "disposable":
            comment = f"{MARK}: {decision.reason}; {{}} would back it up"
            annotations.append(Annotation("volumes", volume.key, False, comment))
    stopped: list[tuple[str, str]] = []
    for service in project.services:
        known = lookup_image(service.image)
        if service.provider is not None or service.policy is not None or known is None or not known.database:
            continue
        if any(m.type == "volume" and m.source in precious for m in service.mounts):
            if known.name in DUMPABLE:  # a hot dump: consistent, and no downtime
                stopped.append((service.name, f"dump: auto ({known.name}: a consistent dump while it serves)"))
                annotations.append(Annotation("services", service.name, {"dump": "auto"}))
            else:
                stopped.append((service.name, f"consistency: stop ({known.name} must not be copied while it writes)"))
                annotations.append(Annotation("services", service.name, {"consistency": "stop"}))
    return InitPlan(tuple(decisions), tuple(annotations), tuple(stopped))


# --- inserting keys into the user's Compose file ----------------------------------------------


def _flow(value: Any) -> str:
    """Return `value` as one line of YAML flow style."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _entry(key: Any, name: str) -> bool:
    return str(getattr(key, "tag", "")).endswith(":str") and str(key.value) == name


def _find(mapping: MappingNode, name: str) -> tuple[Node, Node] | None:
    return next(((k, v) for k, v in mapping.value if _entry(k, name)), None)


def _is_alias(key: Node, value: Node) -> bool:
    return bool(value.start_mark.index < key.start_mark.index)


def _implicit_null(node: Node) -> bool:
    return bool(str(node.tag).endswith(":null") and node.start_mark.index == node.end_mark.index)


def _last_line(node: Node, lines: Sequence[str]) -> int:
    """Return the index of the last line that holds part of `node` (not the comments after it)."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        if isinstance(node, MappingNode):
            key, value = node.value[-1]
            if _is_alias(key, value) or _implicit_null(value):
                return int(key.end_mark.line)
            return _last_line(value, lines)
        item = node.value[-1]
        if item.start_mark.index < node.start_mark.index:
            raise CannotEditError("a sequence ends with an alias")
        return _last_line(item, lines)
    line = int(node.end_mark.line)
    if getattr(node, "style", None) in ("|", ">"):  # a block scalar ends where the next token starts
        line -= 1 if node.end_mark.column == 0 else 0
        while line > node.start_mark.line and not lines[line].strip():
            line -= 1
    return line


class _Edits:
    """Line edits to a text: spans replaced on a line, and lines inserted after a line."""

    def __init__(self, lines: list[str], newline: str) -> None:
        self.lines = lines
        self.newline = newline
        self.replaced: list[tuple[int, int, int, str]] = []
        self.inserted: list[tuple[int, str]] = []

    def apply(self) -> str:
        lines = list(self.lines)
        for line, start, end, text in sorted(self.replaced, reverse=True):
            head, tail = lines[line][:start], lines[line][end:]
            if not text and not tail.strip():  # what was removed ended the line: no trailing blanks
                head = head.rstrip(" \t")
            lines[line] = head + text + tail
        for line, text in sorted(self.inserted, key=lambda item: item[0], reverse=True):
            if line >= 0 and not lines[line].endswith("\n"):
                lines[line] += self.newline
            lines.insert(line + 1, text + self.newline)
        return "".join(lines)


def _add_key(edits: _Edits, key: Node, mapping: Node, step: int, entry: str, comment: str, where: str) -> None:
    """Add `entry` ("x-persist: ...") to the value of `key`, a mapping or null: a line of its own with `comment`."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode

    if _is_alias(key, mapping) or getattr(mapping, "anchor", None):
        raise CannotEditError(f"{where} is a YAML anchor or alias, shared with other entries")
    child = " " * (key.start_mark.column + step)
    if isinstance(mapping, ScalarNode) and str(mapping.tag).endswith(":null"):
        if mapping.value and mapping.start_mark.line != key.start_mark.line:
            raise CannotEditError(f"{where} is null on a line of its own")
        if mapping.value:  # `~` or `null`: the key gets a mapping instead
            edits.replaced.append((key.start_mark.line, mapping.start_mark.column, mapping.end_mark.column, ""))
        edits.inserted.append((key.start_mark.line, child + entry + comment))
        return
    if not isinstance(mapping, MappingNode):
        raise CannotEditError(f"{where} is not a mapping")
    if any(_entry(k, KEY) for k, _ in mapping.value):
        raise CannotEditError(f"{where} has an {KEY} key already, which Compose reads differently")
    if mapping.flow_style:
        start, end = mapping.start_mark, mapping.end_mark
        if not mapping.value and start.line == end.line == key.start_mark.line:  # `{}`: becomes a block
            edits.replaced.append((start.line, start.column, end.column, ""))
            edits.inserted.append((key.start_mark.line, child + entry + comment))
            return
        line = edits.lines[end.line]
        before = line[: end.column - 1].rstrip()
        if not line[end.column - 1 : end.column] == "}":
            raise CannotEditError(f"{where} is a flow mapping init cannot follow")
        separator = "" if before.endswith(("{", ",")) else ", "
        edits.replaced.append((end.line, end.column - 1, end.column - 1, f"{separator}{entry}"))
        return
    column = mapping.value[0][0].start_mark.column
    edits.inserted.append((_last_line(mapping, edits.lines), " " * column + entry + comment))


def _plain(value: Any) -> Any:
    """Return a round-trip-loaded YAML value as plain dicts, lists and scalars, tags kept."""
    from ruamel.yaml.comments import TaggedScalar

    tag = getattr(getattr(value, "tag", None), "value", None)
    if isinstance(value, TaggedScalar):
        return ("tagged", tag, value.value)
    if isinstance(value, Mapping):
        plain: Any = {_plain(k): _plain(v) for k, v in value.items()}
    elif isinstance(value, list):
        plain = [_plain(v) for v in value]
    else:
        return value
    return ("tagged", tag, plain) if tag else plain


def _load(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="rt", pure=True).load(text)


def insert_keys(text: str, annotations: Sequence[Annotation], name: str = "the Compose file") -> str:
    """Return `text`, a Compose file, with each annotation's `x-persist` key added, and nothing else changed.

    The keys go at the end of each service's or volume's mapping (a null volume gets one), at
    its indent, in flow style on one line, with the annotation's comment. Raise CannotEditError if the
    file cannot take them that way: several documents, an anchor shared with other entries,
    a service or volume defined in another file (include, extends), or a result that does not
    parse to exactly the old document plus the keys.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import MappingNode

    if not annotations:
        return text
    try:
        documents = list(YAML(typ="rt", pure=True).compose_all(text))
        if len(documents) != 1 or not isinstance(documents[0], MappingNode):
            raise CannotEditError(f"{name} is not one YAML mapping")
        expected = _plain(_load(text))
    except YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise CannotEditError(f"ruamel.yaml cannot read {name}: {problem}") from error
    root = documents[0]
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    edits = _Edits(lines, newline)
    for annotation in annotations:
        where = f"{annotation.section}.{annotation.key}"
        section = _find(root, annotation.section)
        if section is None or not isinstance(section[1], MappingNode) or _is_alias(*section):
            raise CannotEditError(f"{name} has no {annotation.section} mapping of its own")
        found = _find(section[1], annotation.key)
        if found is None:
            raise CannotEditError(f"{where} is not defined in {name} (it comes from another file)")
        key, value = found
        step = key.start_mark.column - section[0].start_mark.column
        comment = f"  # {annotation.comment}" if annotation.comment else ""
        _add_key(edits, key, value, step, f"{KEY}: {_flow(annotation.value)}", comment, where)
        entry = expected[annotation.section][key.value]
        if entry is None:
            expected[annotation.section][key.value] = entry = {}
        if not isinstance(entry, dict):
            raise CannotEditError(f"{where} is not a plain mapping")
        entry[KEY] = annotation.value
    result = edits.apply()
    try:
        matches = _plain(_load(result)) == expected
    except YAMLError:
        matches = False
    if not matches:
        raise CannotEditError(f"adding the keys would change more of {name} than the keys")
    return result


# --- the override file --------------------------------------------------------------------------

OVERRIDE_HEADER = (
    f"# Written by `{MARK}`: the docker-persist Compose provider, which backs up x-persist\n"
    "# volumes before `docker compose down -v` and restores them on `up`, and the x-persist keys your\n"
    "# own Compose files leave out. COMPOSE_FILE in .env makes Compose read it. Review the keys below;\n"
    "# `docker persist init --override --yes` writes it again.\n"
)


def is_init_override(text: str) -> bool:
    """Return True if `text` is an override file that init wrote."""
    return text.startswith(f"# Written by `{MARK}`")


def render_override(project: Project, plan: InitPlan, provider: str, add_provider: bool) -> str:
    """Return the override file: the provider service, depends_on it, and the plan's keys."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    services = CommentedMap()
    if add_provider:
        services[provider] = {"provider": {"type": "persist"}}
    keys = {(a.section, a.key): a for a in plan.annotations}
    for service in project.services:
        entry = CommentedMap()
        named = any(m.type == "volume" and m.source for m in service.mounts)
        if service.provider is None and named and provider not in service.depends_on:
            entry["depends_on"] = CommentedSeq([provider])
        annotation = keys.get(("services", service.name))
        if annotation is not None:
            entry[KEY] = CommentedMap(annotation.value)
        if entry:
            services[service.name] = entry
    volumes = CommentedMap()
    for annotation in plan.annotations:
        if annotation.section == "volumes":
            value = CommentedMap() if annotation.value == {} else annotation.value
            volumes[annotation.key] = entry = CommentedMap({KEY: value})
            if annotation.comment:
                entry.yaml_add_eol_comment(annotation.comment, KEY)
    document = CommentedMap({"services": services})
    if volumes:
        document["volumes"] = volumes
    yaml = YAML(typ="rt", pure=True)
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(document, out)
    return OVERRIDE_HEADER + out.getvalue()


# --- COMPOSE_FILE in a dotenv file ------------------------------------------------------------

_DOTENV_LINE = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)[ \t]*[=:][ \t]*(?P<value>.*?)[ \t]*$"
)
_BARE = re.compile(r"[A-Za-z0-9_./:;,@+=%-]*")


def _unquote(raw: str) -> str:
    """Return a dotenv value as Compose's dotenv reads it (quotes removed, a trailing comment cut off)."""
    if raw[:1] in ("'", '"'):
        end = raw.find(raw[0], 1)
        while raw[0] == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find('"', end + 1)
        inner = raw[1:end] if end > 0 else raw[1:]
        if raw[0] == "'":
            return inner
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), inner)
    return re.split(r"[ \t]#", raw, maxsplit=1)[0].strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """Return the variables of a dotenv file (KEY=VALUE lines, `export` and quotes allowed; later wins)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _DOTENV_LINE.match(line)
        if match and not line.lstrip().startswith("#"):
            found[match["key"]] = _unquote(match["value"])
    return found


def quote_dotenv(value: str) -> str:
    """Return `value` as a dotenv value that reads back as itself (no interpolation, no comment)."""
    if _BARE.fullmatch(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def set_dotenv(text: str | None, key: str, value: str, comment: str) -> tuple[str, str | None]:
    """Return `text` with `key` set to `value`, and the value it had (None if unset).

    The last line that sets `key` (the one that wins) is rewritten in place; else a comment
    line and `KEY=VALUE` are appended. Every other line stays as it was.
    """
    text = text or ""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    line = f"{key}={quote_dotenv(value)}"
    for index in range(len(lines) - 1, -1, -1):
        match = _DOTENV_LINE.match(lines[index].rstrip("\r\n"))
        if match and match["key"] == key and not lines[index].lstrip().startswith("#"):
            ending = lines[index][len(lines[index].rstrip("\r\n")) :]
            lines[index] = f"{match['lead']}{line}{ending}"
            return "".join(lines), _unquote(match["value"])
    if text and not text.endswith("\n"):
        text += newline
    return f"{text}# {comment}{newline}{line}{newline}", None


# --- showing a change -------------------------------------------------------------------------


def unified_diff(old: str | None, new: str, name: str) -> str:
    """Return the unified diff from `old` (None: no such file) to `new`, labelled with `name`."""
    before = [] if old is None else [line.rstrip("\r\n") for line in old.splitlines()]
    after = [line.rstrip("\r\n") for line in new.splitlines()]
    lines = difflib.unified_diff(before, after, "/dev/null" if old is None else name, name, lineterm="")
    return "".join(f"{line}\n" for line in lines)
