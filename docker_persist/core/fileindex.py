"""The file index of a snapshot part: one line per path, so that `ls` and `diff` need not read the archive.

Pure: no I/O. A backup writes the index beside each part (`<key>.index.zst`, encrypted like the
part), from what the digester read of every header; `ls` lists it, `diff` compares two.

The format (version 1), UTF-8 text with surrogate escapes for names that are not UTF-8, one
record a line, sorted by path in byte order, after the header line `#docker-persist-index 1`:

    path TAB type TAB mode TAB uid TAB gid TAB size TAB mtime TAB what TAB link-group

- `type`: file, dir, symlink, char, block or fifo; `mode`: four or more octal digits;
- `size`: bytes (files; 0 otherwise); `mtime`: whole seconds since 1970, negative before;
- `what`: a file's sha256 (hex), a symlink's target, a device's `major,minor`; else empty;
- `link-group`: for the paths of one hard-link group, the group's smallest path; else empty.

Backslash, tab, newline and carriage return in `path`, `what` and `link-group` are written as
`\\`, `\t`, `\n` and `\r`. The index is a convenience: a restore never reads it, and a
snapshot without one is listed by reading its archive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

HEADER = b"#docker-persist-index 1\n"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class FileIndexError(ValueError):
    """An index line cannot be read."""


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One path of a part, as the index records it."""

    path: str  # "." for the volume root, "a/b" below it
    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    mtime: int = 0
    what: str = ""  # sha256 of a file, target of a symlink, "major,minor" of a device
    link_group: str = ""

    def differences(self, other: IndexEntry) -> list[str]:
        """Return how `other` differs from this entry, in words ("size 4 -> 12"); empty if it does not."""
        changes = []
        for field in ("kind", "mode", "uid", "gid", "size", "what", "link_group"):
            before, after = getattr(self, field), getattr(other, field)
            if before != after:
                if field == "mode":
                    changes.append(f"mode {before:04o} -> {after:04o}")
                elif field == "what" and self.kind == other.kind == "file":
                    changes.append("content")
                elif field == "what":
                    changes.append(f"target {before} -> {after}")
                else:
                    changes.append(f"{field.replace('_', '-')} {before} -> {after}")
        return changes


def escape(text: str) -> str:
    """Return `text` as an index field: backslash, tab, newline and carriage return escaped."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return "".join(_ESCAPES.get(char, char) for char in text)
    return text


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            if following not in _UNESCAPES:
                raise FileIndexError(f"bad escape '\\{following}' in an index line")
            out.append(_UNESCAPES[following])
        else:
            out.append(char)
    return "".join(out)


def encode(entry: IndexEntry) -> bytes:
    """Return the index line of `entry`, newline included."""
    return (
        f"{escape(entry.path)}\t{entry.kind}\t{entry.mode:04o}\t{entry.uid}\t{entry.gid}\t{entry.size}\t"
        f"{entry.mtime}\t{escape(entry.what)}\t{escape(entry.link_group)}\n"
    ).encode("utf-8", "surrogateescape")


def decode(line: bytes) -> IndexEntry:
    """Return the entry of one index line (without its newline). Raise FileIndexError if it is malformed."""
    fields = line.decode("utf-8", "surrogateescape").split("\t")
    if len(fields) != 9:
        raise FileIndexError(f"an index line has {len(fields)} fields, not 9")
    path, kind, mode, uid, gid, size, mtime, what, group = fields
    try:
        return IndexEntry(
            _unescape(path), kind, int(mode, 8), int(uid), int(gid), int(size), int(mtime), _unescape(what),
            _unescape(group),
        )  # fmt: skip
    except ValueError as error:
        raise FileIndexError(f"an index line has a field that is not a number ({error})") from error


def read(chunks: Iterable[bytes]) -> Iterator[IndexEntry]:
    """Yield the entries of an index given as chunks of its bytes, in any sizes. Raise FileIndexError."""
    pending = b""
    first = True
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if first:
                if line + b"\n" != HEADER:
                    raise FileIndexError("not a docker-persist file index (or a newer version of one)")
                first = False
            elif line:
                yield decode(line)
    if pending or first:
        raise FileIndexError("the file index is truncated")


def under(entries: Iterable[IndexEntry], path: str) -> Iterator[IndexEntry]:
    """Yield the entries at `path` and below it ("" or "." or "/": all)."""
    prefix = path.strip("/")
    if prefix in ("", "."):
        yield from entries
        return
    for entry in entries:
        if entry.path == prefix or entry.path.startswith(prefix + "/"):
            yield entry


def diff(before: Iterable[IndexEntry], after: Iterable[IndexEntry]) -> list[tuple[str, str, str]]:
    """Return (change, path, detail) for each path added ("+"), removed ("-") or changed ("M"), by path.

    mtimes alone do not count as a change (a restore keeps them; a touch is not a change of content).
    """
    old = {entry.path: entry for entry in before}
    new = {entry.path: entry for entry in after}
    changes = []
    for path in sorted(old.keys() | new.keys(), key=lambda p: p.encode("utf-8", "surrogateescape")):
        if path not in new:
            changes.append(("-", path, old[path].kind))
        elif path not in old:
            changes.append(("+", path, new[path].kind))
        else:
            detail = old[path].differences(new[path])
            if detail:
                changes.append(("M", path, ", ".join(detail)))
    return changes
