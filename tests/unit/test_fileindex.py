"""The file index: its lines round-trip any name, the digester writes it, and diff compares two."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from docker_persist.core.archive import TarDigester
from docker_persist.core.fileindex import HEADER, FileIndexError, IndexEntry, decode, diff, encode, read, under

ODD = ["a", "tab\there", "new\nline", "back\\slash", "cr\rx", "caf\udce9", "ünï", " lead", "-dash", "x" * 300]


@pytest.mark.parametrize("name", ODD)
def test_a_line_round_trips_any_name_and_target(name: str) -> None:
    entry = IndexEntry(name, "symlink", 0, 1, 2, 0, -5, what=f"../{name}", link_group="")
    line = encode(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.count(b"\t") == 8
    assert decode(line[:-1]) == entry


def test_an_index_reads_in_any_chunks_and_refuses_damage() -> None:
    entries = [IndexEntry(f"d/{n}", "file", 0o644, 0, 0, n, n, "ab" * 32) for n in range(50)]
    data = HEADER + b"".join(encode(e) for e in entries)
    rng = random.Random(3)
    cuts = sorted(rng.randrange(len(data)) for _ in range(20))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert list(read(chunks)) == entries
    with pytest.raises(FileIndexError, match="truncated"):
        list(read([data[:-3]]))
    with pytest.raises(FileIndexError, match="not a docker-persist file index"):
        list(read([b"#something else\n"]))
    with pytest.raises(FileIndexError, match="9"):
        list(read([HEADER + b"a\tb\n"]))


def test_under_takes_a_path_and_what_is_below_it_only() -> None:
    paths = [".", "a", "a/b", "ab", "a/b/c"]
    entries = [IndexEntry(p, "dir", 0o755, 0, 0) for p in paths]
    assert [e.path for e in under(entries, "a")] == ["a", "a/b", "a/b/c"]
    assert [e.path for e in under(entries, "/a/b/")] == ["a/b", "a/b/c"]
    assert [e.path for e in under(entries, "")] == paths


def test_diff_names_what_was_added_removed_and_changed_but_not_mtimes() -> None:
    base = IndexEntry("f", "file", 0o644, 0, 0, 3, 10, "aa" * 32)
    before = [IndexEntry(".", "dir", 0o755, 0, 0), base, IndexEntry("gone", "fifo", 0o600, 0, 0),
              IndexEntry("touched", "file", 0o644, 0, 0, 1, 5, "bb" * 32)]  # fmt: skip
    after = [IndexEntry(".", "dir", 0o755, 0, 0), IndexEntry("f", "file", 0o600, 0, 0, 4, 10, "cc" * 32),
             IndexEntry("new", "symlink", 0, 0, 0, what="f"),
             IndexEntry("touched", "file", 0o644, 0, 0, 1, 99, "bb" * 32)]  # fmt: skip
    assert diff(before, after) == [
        ("M", "f", "mode 0644 -> 0600, size 3 -> 4, content"),
        ("-", "gone", "fifo"),
        ("+", "new", "symlink"),
    ]


def test_the_digester_writes_the_index_of_what_it_read() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, data in [("./", tarfile.DIRTYPE, b""), ("./b", tarfile.REGTYPE, b"hello"),
                                 ("./a", tarfile.SYMTYPE, b""), ("./c", tarfile.LNKTYPE, b"")]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mtime = kind, len(data), -100
            info.linkname = {"./a": "/etc/x", "./c": "./b"}.get(name, "")
            archive.addfile(info, io.BytesIO(data))
    digester = TarDigester(check_safety=False, index=True)
    digester.feed(buffer.getvalue())
    with pytest.raises(RuntimeError):
        list(digester.index_entries())
    digester.finish()
    index = {e.path: e for e in digester.index_entries()}
    assert list(index) == [".", "a", "b", "c"]
    assert index["a"].what == "/etc/x" and index["a"].kind == "symlink"
    assert index["b"].size == 5 and index["b"].mtime == -100 and len(index["b"].what) == 64
    assert index["b"].link_group == index["c"].link_group == "b"
