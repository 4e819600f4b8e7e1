"""The streaming tar reader: content digest, counts, safety checks, on archives built with tarfile."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import itertools
import os
import posixpath
import random
import re
import subprocess
import tarfile
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

import docker_persist.core.archive as archive_module
from docker_persist.core.archive import (
    ArchiveRoot,
    ArchiveSummary,
    MalformedArchiveError,
    TarDigester,
    UnrestorableError,
    UnsafeArchiveError,
    normalize_entry_name,
    reroot,
    serialize_digest_record,
)
from docker_persist.host.process import find_gnu_tar

MIB = 1024 * 1024
MTIME = 1_700_000_000
BIG = random.Random(1).randbytes(MIB + 12345)
LONG_DIR = "./" + "deep-folder-name/" * 7  # 121 characters: needs a long name in every format but ustar
LONG_TARGET = "../" + "t" * 120  # from LONG_DIR, stays inside the volume


@pytest.fixture(autouse=True, params=["c", "python"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the C reader (core/_tarscan.c) and with the Python reader alone."""
    if request.param == "python":
        monkeypatch.setattr(archive_module, "_scan", None)
        monkeypatch.setattr(archive_module, "_serialize", None)
    return str(request.param)


# --- building archives ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tar member to write: kind is file, dir, symlink, hardlink, fifo, char, block or contiguous."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    mtime: int = MTIME
    pax: tuple[tuple[str, str], ...] = ()
    size: int | None = None  # a header size that differs from the data, to build liars


TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "contiguous": tarfile.CONTTYPE,
    "aregular": tarfile.AREGTYPE,
}


def build_archive(
    entries: Iterable[Entry], format: int = tarfile.PAX_FORMAT, pax_headers: dict[str, str] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format, pax_headers=pax_headers) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = TYPES[entry.kind]
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = entry.mtime
            info.linkname = entry.target
            info.pax_headers = dict(entry.pax)
            if entry.kind in ("char", "block"):
                info.devmajor, info.devminor = 1, 3
            if entry.kind in ("file", "contiguous", "aregular"):
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                info.size = entry.size or 0
                archive.addfile(info)
    return buffer.getvalue()


def summarize(archive: bytes, chunks: Iterable[int] | int = 65536, **options: object) -> ArchiveSummary:
    digester = TarDigester(**options)  # type: ignore[arg-type]
    view = memoryview(archive)
    sizes = itertools.repeat(chunks) if isinstance(chunks, int) else iter(chunks)
    pos = 0
    while pos < len(archive):
        size = next(sizes)
        digester.feed(view[pos : pos + size])
        pos += size
    return digester.finish()


def digest(archive: bytes, **options: object) -> str:
    return summarize(archive, **options).digest


def content_end(archive: bytes) -> int:
    """The offset where the last member's data (with its padding) ends: the end-of-archive marker starts there."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        last = tar.getmembers()[-1]
    size = last.size if last.isreg() else 0
    return last.offset_data + -(-size // 512) * 512


def with_checksum(block: bytes) -> bytes:
    """Given a header block, return it with a correct checksum."""
    block = block[:148] + b" " * 8 + block[156:]
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


def patch_header(archive: bytes, offset: int, field: int, value: bytes) -> bytes:
    """Overwrite bytes of the header at `offset`, keeping its checksum right."""
    block = archive[offset : offset + 512]
    block = with_checksum(block[:field] + value + block[field + len(value) :])
    return archive[:offset] + block + archive[offset + 512 :]


def sample(xattrs: bool = True, long_target: bool = True, big: bool = True) -> list[Entry]:
    """A volume with most things a real one holds; hard links come after their targets."""
    entries = [
        Entry("./", "dir", mode=0o2775, uid=999, gid=70),
        Entry("./data/", "dir", mode=0o700, uid=999, gid=999),
        Entry("./data/empty-dir/", "dir", mode=0o755),
        Entry("./data/empty-file", data=b"", mode=0o600, uid=999, gid=999),
        Entry("./data/hello.txt", data=b"hello\n", uid=70, gid=70),
        Entry("./tmp/", "dir", mode=0o1777),
        Entry("./tmp/setgid-dir/", "dir", mode=0o2750, gid=70),
        Entry("./données/été 2024 · notes.txt", data="über\n".encode(), mode=0o640),
        Entry("./données/", "dir"),
        Entry(LONG_DIR, "dir"),
        Entry(LONG_DIR + "a file with a long path", data=b"x" * 700),
        Entry("./link-relative", "symlink", target="data/hello.txt", mode=0o777),
        Entry("./data/dangling", "symlink", target="../nowhere/at/all", mode=0o777),
        Entry("./data/to-self-dir", "symlink", target=".", mode=0o777),
        Entry("./pipe", "fifo", mode=0o620),
        Entry("./contiguous", "contiguous", data=b"old-style regular file"),
        Entry("./group/first", data=b"shared inode data", uid=5, gid=6),
        Entry("./group/second", "hardlink", target="./group/first", uid=5, gid=6),
        Entry("./group/", "dir"),
        Entry("./group/third", "hardlink", target="./group/first", uid=5, gid=6),
    ]
    if big:
        entries.append(Entry("./data/big.bin", data=BIG, uid=999, gid=999))
    if long_target:
        entries.append(Entry(LONG_DIR + "long-link", "symlink", target=LONG_TARGET))
    if xattrs:
        entries.append(
            Entry("./data/labelled", data=b"x", pax=(("SCHILY.xattr.user.comment", "hi"), ("SCHILY.xattr.user.b", "2")))
        )
    return entries


def shuffled(entries: Sequence[Entry], seed: int) -> list[Entry]:
    """The entries in a random order, hard links still after the files they point to."""
    plain = [entry for entry in entries if entry.kind != "hardlink"]
    random.Random(seed).shuffle(plain)
    return plain + [entry for entry in entries if entry.kind == "hardlink"]


# --- a reference digest, straight from the module docstring, on tarfile's parser ---------------


def netstring(value: bytes) -> bytes:
    return b"%d:%s," % (len(value), value)


def reference_digest(archive: bytes) -> str:
    nodes: dict[str, dict[bytes, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            path = posixpath.normpath(member.name)
            if member.islnk():
                nodes[path] = nodes[posixpath.normpath(member.linkname)]
                continue
            kinds = {tarfile.DIRTYPE: b"dir", tarfile.SYMTYPE: b"symlink", tarfile.FIFOTYPE: b"fifo"}
            kind = b"file" if member.isreg() else kinds[member.type]
            fields = {
                b"type": kind,
                b"mode": b"%04o" % (0 if member.issym() else member.mode & 0o7777),
                b"uid": b"%d" % member.uid,
                b"gid": b"%d" % member.gid,
            }
            if member.isreg():
                stream = tar.extractfile(member)
                assert stream is not None
                fields[b"sha256"] = hashlib.sha256(stream.read()).hexdigest().encode()
                fields[b"size"] = b"%d" % member.size
            if member.issym():
                fields[b"target"] = member.linkname.encode()
            for key, value in member.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    value_bytes = value.encode("utf-8", "surrogateescape")
                    fields[b"xattr." + key[13:].encode()] = hashlib.sha256(value_bytes).hexdigest().encode()
            nodes[path] = fields
    groups: dict[int, list[bytes]] = {}
    for path, fields in nodes.items():
        groups.setdefault(id(fields), []).append(path.encode())
    records = []
    for path, fields in nodes.items():
        record = {**fields, b"path": path.encode()}
        if len(groups[id(fields)]) > 1:
            record[b"link-group"] = min(groups[id(fields)])
        body = b"".join(netstring(key) + netstring(value) for key, value in sorted(record.items()))
        records.append((path.encode(), netstring(body)))
    stream = netstring(b"docker-persist-content-digest-v1") + b"".join(record for _, record in sorted(records))
    return "sha256:" + hashlib.sha256(stream).hexdigest()


# --- the digest ---------------------------------------------------------------------------


def test_digest_format_is_pinned() -> None:
    archive = build_archive([Entry("./", "dir", mode=0o755), Entry("./a", data=b"", uid=1, gid=2)])
    empty = hashlib.sha256(b"").hexdigest().encode()
    root = b"3:gid,1:0,4:mode,4:0755,4:path,1:.,4:type,3:dir,3:uid,1:0,"
    file = b"3:gid,1:2,4:mode,4:0644,4:path,1:a,6:sha256,64:" + empty + b",4:size,1:0,4:type,4:file,3:uid,1:1,"
    stream = b"32:docker-persist-content-digest-v1," + b"%d:%s," % (len(root), root) + b"%d:%s," % (len(file), file)
    assert digest(archive) == "sha256:" + hashlib.sha256(stream).hexdigest()
    fields = [(b"gid", b"0"), (b"mode", b"0755"), (b"path", b"."), (b"type", b"dir"), (b"uid", b"0")]
    assert serialize_digest_record(fields) == b"%d:%s," % (len(root), root)


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_digest_matches_the_documented_definition(format: int) -> None:
    archive = build_archive(sample(xattrs=format == tarfile.PAX_FORMAT), format=format)
    assert digest(archive) == reference_digest(archive)


def test_digest_does_not_depend_on_the_tar_dialect() -> None:
    entries = sample(xattrs=False, long_target=False)
    digests = {digest(build_archive(entries, format)) for format in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT)}
    digests.add(digest(build_archive(entries, tarfile.PAX_FORMAT)))
    assert len(digests) == 1
    with_long_target = sample(xattrs=False)
    assert digest(build_archive(with_long_target, tarfile.GNU_FORMAT)) == digest(build_archive(with_long_target))


@pytest.mark.parametrize("chunk", [511, 512, 4096, MIB, 3 * MIB])
def test_digest_does_not_depend_on_chunk_sizes(chunk: int) -> None:
    archive = build_archive(sample())
    assert summarize(archive, chunk) == summarize(archive, len(archive))


def test_digest_does_not_depend_on_random_chunk_sizes() -> None:
    archive = build_archive(sample())
    rng = random.Random(42)
    sizes = (rng.choice([1, 2, 100, 511, 513, rng.randrange(1, 200_000)]) for _ in itertools.count())
    assert summarize(archive, sizes) == summarize(archive, len(archive))


def test_digest_survives_one_byte_chunks() -> None:
    archive = build_archive(sample(big=False))
    assert summarize(archive, 1) == summarize(archive, len(archive))


def test_feed_takes_bytes_bytearray_and_memoryview() -> None:
    archive = build_archive(sample(big=False))
    expected = digest(archive)
    for chunk in (archive, bytearray(archive), memoryview(archive), memoryview(bytearray(archive))):
        digester = TarDigester()
        digester.feed(chunk)
        assert digester.finish().digest == expected


@pytest.mark.parametrize("seed", range(5))
def test_digest_does_not_depend_on_entry_order(seed: int) -> None:
    entries = sample()
    assert digest(build_archive(shuffled(entries, seed))) == digest(build_archive(entries))


def test_hard_link_groups_in_any_order_give_one_digest() -> None:
    def group(file: str, links: list[str]) -> list[Entry]:
        entries = [Entry("./", "dir"), Entry(file, data=b"one inode", uid=3)]
        return entries + [Entry(link, "hardlink", target=file, uid=3) for link in links]

    first = build_archive(group("./b", ["./a", "./c"]))
    second = build_archive(group("./c", ["./b", "./a"]))
    third = build_archive(group("./a", ["./c", "./b"]))
    assert digest(first) == digest(second) == digest(third) == reference_digest(first)
    separate = build_archive([Entry("./", "dir")] + [Entry(p, data=b"one inode", uid=3) for p in ("./a", "./b", "./c")])
    assert digest(separate) != digest(first)
    summary = summarize(second)
    assert (summary.files, summary.hardlinks, summary.bytes) == (3, 2, 27)


def test_hard_link_to_a_hard_link_joins_the_same_group() -> None:
    chain = [Entry("./a", data=b"x"), Entry("./b", "hardlink", target="./a"), Entry("./c", "hardlink", target="./b")]
    star = [Entry("./a", data=b"x"), Entry("./b", "hardlink", target="./a"), Entry("./c", "hardlink", target="./a")]
    assert digest(build_archive(chain)) == digest(build_archive(star))


BASE = [
    Entry("./", "dir", mode=0o755),
    Entry("./f", data=b"content", mode=0o640, uid=999, gid=70),
    Entry("./l", "symlink", target="f"),
    Entry("./x", data=b"v", pax=(("SCHILY.xattr.user.k", "value"),)),
]


def changed(index: int, **changes: object) -> list[Entry]:
    entries = list(BASE)
    entries[index] = dataclasses.replace(entries[index], **changes)  # type: ignore[arg-type]
    return entries


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(changed(1, mode=0o644), id="mode"),
        pytest.param(changed(1, mode=0o2640), id="setgid"),
        pytest.param(changed(0, mode=0o700), id="root-mode"),
        pytest.param(changed(1, uid=998), id="uid"),
        pytest.param(changed(1, gid=71), id="gid"),
        pytest.param(changed(0, gid=1), id="root-gid"),
        pytest.param(changed(1, data=b"contenT"), id="content"),
        pytest.param(changed(1, data=b"content "), id="size"),
        pytest.param(changed(2, target="./f"), id="symlink-target"),
        pytest.param(changed(2, uid=5), id="symlink-owner"),
        pytest.param(changed(3, pax=(("SCHILY.xattr.user.k", "valuE"),)), id="xattr-value"),
        pytest.param(changed(3, pax=(("SCHILY.xattr.user.K", "value"),)), id="xattr-name"),
        pytest.param(changed(3, pax=()), id="xattr-removed"),
        pytest.param(changed(1, name="./g"), id="path"),
        pytest.param(changed(1, kind="dir", data=b""), id="type"),
        pytest.param([*BASE, Entry("./empty", "dir")], id="empty-dir-added"),
        pytest.param(BASE[1:], id="root-missing"),
    ],
)
def test_digest_changes_with_content(entries: list[Entry]) -> None:
    assert digest(build_archive(entries)) != digest(build_archive(BASE))


def test_digest_ignores_mtimes_and_names_of_owners() -> None:
    later = [dataclasses.replace(entry, mtime=MTIME + 3600) for entry in BASE]
    assert digest(build_archive(later)) == digest(build_archive(BASE))
    named = [dataclasses.replace(entry, pax=(*entry.pax, ("uname", "postgres"))) for entry in BASE]
    assert digest(build_archive(named)) == digest(build_archive(BASE))


def test_symlink_mode_is_not_part_of_the_digest() -> None:
    assert digest(build_archive(changed(2, mode=0o755))) == digest(build_archive(BASE))


def test_duplicate_paths_last_one_wins() -> None:
    twice = [*BASE, Entry("./f", data=b"second", mode=0o600)]
    once = changed(1, data=b"second", mode=0o600, uid=0, gid=0)
    assert summarize(build_archive(twice)) == summarize(build_archive(once))


def test_file_replaced_after_being_hard_linked_keeps_the_link_on_the_old_data() -> None:
    replaced = [
        Entry("./a", data=b"old"),
        Entry("./b", "hardlink", target="./a"),
        Entry("./a", data=b"new"),
    ]
    expected = [Entry("./b", data=b"old"), Entry("./a", data=b"new")]
    assert digest(build_archive(replaced)) == digest(build_archive(expected))


def test_libarchive_xattrs_equal_schily_xattrs() -> None:
    schily = [Entry("./f", data=b"x", pax=(("SCHILY.xattr.user.a b", "v\u00e9"),))]
    encoded = base64.b64encode("v\u00e9".encode()).decode().rstrip("=")
    libarchive = [Entry("./f", data=b"x", pax=(("LIBARCHIVE.xattr.user.a%20b", encoded),))]
    assert digest(build_archive(libarchive)) == digest(build_archive(schily))


def test_global_pax_headers_apply_to_every_entry() -> None:
    archive = build_archive(BASE, pax_headers={"uid": "4242"})
    assert digest(archive) == reference_digest(archive)
    assert digest(archive) == digest(build_archive([dataclasses.replace(entry, uid=4242) for entry in BASE]))


def test_base_256_numbers() -> None:
    huge = [dataclasses.replace(entry, uid=3_000_000, gid=2**40) for entry in BASE[:3]]  # GNU has no xattrs
    gnu = build_archive(huge, tarfile.GNU_FORMAT)
    assert gnu[108] == 0x80  # the root's uid, in the header itself, base-256
    assert digest(gnu) == digest(build_archive(huge, tarfile.PAX_FORMAT)) == reference_digest(gnu)


def test_old_style_regular_types() -> None:
    regular = [Entry("./f", data=b"data"), Entry("./d/", "dir", mode=0o755)]
    old = [Entry("./f", "aregular", data=b"data"), Entry("./d/", "aregular", mode=0o755)]
    contiguous = [Entry("./f", "contiguous", data=b"data"), Entry("./d/", "dir", mode=0o755)]
    assert digest(build_archive(old, tarfile.GNU_FORMAT)) == digest(build_archive(regular))
    assert digest(build_archive(contiguous)) == digest(build_archive(regular))


# --- the summary --------------------------------------------------------------------------


def test_summary_counts() -> None:
    summary = summarize(build_archive(sample()))
    assert summary.entries == 23
    assert summary.files == 10  # contiguous and the hard-linked paths included
    assert summary.directories == 8
    assert summary.symlinks == 4
    assert summary.hardlinks == 2
    assert summary.bytes == sum(len(entry.data) for entry in sample()) + 2 * len(b"shared inode data")
    assert summary.root == ArchiveRoot(mode=0o2775, uid=999, gid=70, mtime=MTIME)


def test_root_entry_is_optional() -> None:
    assert summarize(build_archive(BASE[1:])).root is None
    pax_time = build_archive([Entry(".", "dir", mode=0o700, pax=(("mtime", "1700000000.25"),))])
    assert summarize(pax_time).root == ArchiveRoot(mode=0o700, uid=0, gid=0, mtime=1_700_000_000.25)


def test_the_portable_digest_leaves_out_what_the_archive_api_cannot_read() -> None:
    acl = "\x02\x00\x00\x00\x01\x00\x06\x00\xff\xff\xff\xff"  # system.posix_acl_access: user::rw-
    capability = ("SCHILY.xattr.security.capability", "\x01\x00\x00\x02")
    base = [dataclasses.replace(entry, pax=()) for entry in BASE]
    bare = [*base, Entry("./f", data=b"x", pax=(capability,)), Entry("./g", data=b"y")]
    rich = [*base, Entry("./f", data=b"x", pax=(capability, ("SCHILY.xattr.user.note", "n"))),
            Entry("./g", data=b"y", pax=(("SCHILY.xattr.system.posix_acl_access", acl),))]  # fmt: skip
    plain, full = summarize(build_archive(bare)), summarize(build_archive(rich))
    assert plain.portable_digest == plain.digest, "nothing to leave out"
    assert full.digest != plain.digest
    assert full.portable_digest == plain.digest
    mode_changed = [*rich[:-1], dataclasses.replace(rich[-1], mode=0o600)]
    assert summarize(build_archive(mode_changed)).portable_digest != plain.digest


def test_strip_prefix() -> None:
    rooted = [dataclasses.replace(entry, name=entry.name.replace("./", "data/", 1)) for entry in sample()]
    rooted = [
        dataclasses.replace(entry, target=entry.target.replace("./", "data/", 1)) if entry.kind == "hardlink" else entry
        for entry in rooted
    ]
    assert rooted[0].name == "data/"
    stripped = summarize(build_archive(rooted), strip_prefix="data")
    assert stripped == summarize(build_archive(sample()))
    assert summarize(build_archive(rooted), strip_prefix="./data/") == stripped
    with pytest.raises(MalformedArchiveError, match="'elsewhere/f' is outside 'data'"):
        summarize(build_archive([*rooted, Entry("elsewhere/f")]), strip_prefix="data")


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("./a/b/", "a/b"), ("./", "."), (".", "."), ("a//b", "a/b"), ("a/./b", "a/b"), ("./a b/é", "a b/é")],
)
def test_normalize_entry_name(name: str, normalized: str) -> None:
    assert normalize_entry_name(name) == normalized


@pytest.mark.parametrize("name", ["/etc/passwd", "..", "../x", "a/../b", "./a/../../x", "a/.."])
def test_normalize_entry_name_refuses_escapes(name: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(name))):
        normalize_entry_name(name)


# --- safety -------------------------------------------------------------------------------

UNSAFE = [
    pytest.param([Entry("../evil", data=b"x")], "entry '../evil' has a '..' component", id="dotdot"),
    pytest.param([Entry("./a/../../evil")], "entry './a/../../evil' has a '..' component", id="dotdot-inside"),
    pytest.param([Entry("/etc/cron.d/evil")], "entry '/etc/cron.d/evil' is an absolute path", id="absolute"),
    pytest.param(
        [Entry("./h", "hardlink", target="/etc/shadow")],
        "hard link './h' points to '/etc/shadow', which is an absolute path",
        id="hardlink-absolute",
    ),
    pytest.param(
        [Entry("./h", "hardlink", target="../x")],
        "hard link './h' points to '../x', which has a '..' component",
        id="hardlink-dotdot",
    ),
    pytest.param(
        [Entry("./l", "symlink", target="sub"), Entry("./sub/", "dir"), Entry("./l/x", data=b"x")],
        "entry './l/x' goes through 'l', a symlink earlier in the archive",
        id="write-through-symlink",
    ),
    pytest.param(
        [Entry("./d/", "dir"), Entry("./d/l", "symlink", target="."), Entry("./d/l/deeper/x")],
        "entry './d/l/deeper/x' goes through 'd/l'",
        id="write-through-nested-symlink",
    ),
    pytest.param(
        [Entry("./d/f", data=b"x"), Entry("./d", "symlink", target="e"), Entry("./h", "hardlink", target="./d/f")],
        "hard link './h' points to './d/f', which goes through 'd', a symlink earlier",
        id="hardlink-through-symlink",
    ),
    pytest.param([Entry("./null", "char")], "entry './null' is a char device node", id="char-device"),
    pytest.param([Entry("./sda", "block")], "entry './sda' is a block device node", id="block-device"),
    pytest.param([Entry(".", "symlink", target="x")], "the root entry '.' is a symlink", id="root-symlink"),
    pytest.param([Entry(".", data=b"x")], "the root entry '.' is a file, not a directory", id="root-file"),
]


@pytest.mark.parametrize(("entries", "message"), UNSAFE)
def test_unsafe_archives_are_refused(entries: list[Entry], message: str) -> None:
    with pytest.raises(UnsafeArchiveError) as raised:
        summarize(build_archive(entries))
    assert message in str(raised.value)
    assert str(raised.value).startswith("unsafe archive: ")


@pytest.mark.parametrize(("entries", "message"), UNSAFE)
def test_without_safety_checks_nothing_is_refused(entries: list[Entry], message: str) -> None:
    archive = build_archive(entries)
    if "hard link './h' points to '" in message and "goes through" not in message:
        # Not refused for safety but unreadable: the target is not in the archive to share its content.
        with pytest.raises(MalformedArchiveError, match="which is not an earlier entry of the archive"):
            summarize(archive, check_safety=False)
        return
    assert summarize(archive, check_safety=False).entries == len({e.name for e in entries})


def test_symlinks_are_data_whatever_their_target() -> None:
    """relesc -> ../data-x and cfg -> /etc/app are common in real volumes: restored as links."""
    entries = [
        Entry("./a/b/l", "symlink", target="../../x"),
        Entry("./a/l", "symlink", target="./../b/./c"),
        Entry("./l", "symlink", target="does/not/exist"),
        Entry("./m", "symlink", target="a/../a"),
        Entry("./relesc", "symlink", target="../data-x"),
        Entry("./up", "symlink", target=".."),
        Entry("./cfg", "symlink", target="/etc/app"),
    ]
    assert summarize(build_archive(entries)).symlinks == 7


def test_a_symlink_to_anywhere_is_never_written_through() -> None:
    for target in ("/etc", "../data-x", "."):
        through = [Entry("./l", "symlink", target=target), Entry("./l/passwd", data=b"root::0:0::/:/bin/sh\n")]
        with pytest.raises(UnsafeArchiveError, match=re.escape("'./l/passwd' goes through 'l'")):
            summarize(build_archive(through))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (Entry("./null", "char"), "'./null' is a char device node"),
        (Entry("./sda", "block"), "'./sda' is a block device node"),
        (Entry("./" + "/".join(["d" * 200] * 21)), "bytes long: no restore can create a path over 4095 bytes"),
        (Entry("./" + "n" * 256), "has a name of 256 bytes"),
        (Entry("./far", "symlink", target="t" * 4096), "points to a target of 4096 bytes"),
    ],
)
def test_a_backup_refuses_what_no_restore_could_create(entry: Entry, message: str) -> None:
    archive = build_archive([*BASE, entry])
    with pytest.raises(UnrestorableError, match=re.escape(message)):
        summarize(archive, check_safety=False, restorable=True)
    summarize(archive, check_safety=False)  # read as it is without the check


def test_the_longest_restorable_path_and_name_are_fine() -> None:
    longest = "./" + "/".join(["d" * 255] * 15) + "/" + "f" * 255  # 4095 bytes
    assert len(longest.removeprefix("./")) == 4095
    summarize(build_archive([*BASE, Entry(longest)]), check_safety=False, restorable=True)


def test_symlink_replaced_by_a_directory_still_refuses_writes_below_it() -> None:
    entries = [Entry("./l", "symlink", target="x"), Entry("./l/", "dir"), Entry("./l/f")]
    with pytest.raises(UnsafeArchiveError, match="goes through 'l'"):
        summarize(build_archive(entries))


def test_hard_link_to_a_symlink_is_a_symlink_too() -> None:
    entries = [Entry("./s", "symlink", target="d"), Entry("./h", "hardlink", target="./s"), Entry("./h/x")]
    with pytest.raises(UnsafeArchiveError, match="goes through 'h'"):
        summarize(build_archive(entries))
    summary = summarize(build_archive(entries[:2]))
    assert (summary.symlinks, summary.hardlinks) == (2, 1)


@pytest.mark.parametrize("check_safety", [True, False])
def test_hard_link_to_a_missing_entry(check_safety: bool) -> None:
    error = UnsafeArchiveError if check_safety else MalformedArchiveError
    with pytest.raises(error, match=re.escape("hard link './h' points to 'x', which is not an earlier entry")):
        summarize(build_archive([Entry("./h", "hardlink", target="x")]), check_safety=check_safety)
    with pytest.raises(error, match="which is a directory"):
        summarize(
            build_archive([Entry("./d/", "dir"), Entry("./h", "hardlink", target="d")]), check_safety=check_safety
        )


def test_header_only_entry_that_declares_data_is_refused() -> None:
    liar = build_archive([Entry("./l", "symlink", target="x", size=1024), Entry("./f", data=b"x")])
    with pytest.raises(MalformedArchiveError, match=re.escape("'./l' is a symlink but declares 1024 bytes")):
        summarize(liar)
    assert summarize(liar, check_safety=False).entries == 2  # as Go's archive/tar reads it: no data


def test_errors_are_sticky() -> None:
    digester = TarDigester()
    with pytest.raises(UnsafeArchiveError):
        digester.feed(build_archive([Entry("../x")]))
    with pytest.raises(UnsafeArchiveError):
        digester.feed(b"\0" * 512)
    with pytest.raises(UnsafeArchiveError):
        digester.finish()


def test_finish_twice_gives_the_same_summary_and_feed_after_it_is_a_bug() -> None:
    digester = TarDigester()
    digester.feed(build_archive(BASE))
    assert digester.finish() is digester.finish()
    with pytest.raises(RuntimeError):
        digester.feed(b"")


# --- malformed and truncated archives ---------------------------------------------------------


def cut_points(archive: bytes) -> list[int]:
    """Offsets inside headers, PAX data, file data and padding, never on an entry boundary."""
    end = content_end(archive)
    points = set()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            points.update({member.offset + 1, member.offset + 100, member.offset + 511, member.offset + 600})
            if member.isreg() and member.size:
                points.update({member.offset_data + 1, member.offset_data + member.size // 2})
                points.add(member.offset_data + member.size)  # the padding is missing
    return sorted(point for point in points if point < end and point % 512)


def test_truncated_archives_are_refused() -> None:
    archive = build_archive(sample(big=False))
    points = cut_points(archive)
    assert len(points) > 50
    for point in points:
        with pytest.raises(MalformedArchiveError, match="truncated archive: it ends inside"):
            summarize(archive[:point])


def test_extended_header_with_no_entry_is_truncated() -> None:
    archive = build_archive([Entry("./" + "n" * 150)], format=tarfile.GNU_FORMAT)
    with pytest.raises(MalformedArchiveError, match="GNU long name that no entry follows"):
        summarize(archive[:1024])


def test_end_of_archive_marker_may_be_missing_or_padded() -> None:
    archive = build_archive(sample(big=False))
    expected = summarize(archive)
    end = content_end(archive)
    assert summarize(archive[:end]) == expected
    assert summarize(archive[:end] + bytes(512)) == expected
    assert summarize(archive[:end] + bytes(700)) == expected
    assert summarize(archive + bytes(100_000)) == expected


def test_data_after_the_end_of_archive_is_refused() -> None:
    archive = build_archive(BASE)
    with pytest.raises(MalformedArchiveError, match="data follows the end-of-archive marker"):
        summarize(archive + build_archive([Entry("./sneaky", data=b"x")]))
    end = content_end(archive)
    with pytest.raises(MalformedArchiveError, match="a header follows a single zero block"):
        summarize(archive[:end] + bytes(512) + archive[:end])


def test_corrupt_header_is_refused() -> None:
    archive = bytearray(build_archive(BASE))
    archive[520] ^= 0x01
    with pytest.raises(MalformedArchiveError, match="bad header checksum at byte 512"):
        summarize(bytes(archive))
    with pytest.raises(MalformedArchiveError, match="not a tar"):
        summarize(b"PK\x03\x04" + bytes(2000))


def test_flipped_data_byte_changes_the_digest() -> None:
    archive = build_archive(BASE)
    offset = archive.index(b"content")
    flipped = archive[:offset] + b"C" + archive[offset + 1 :]
    assert digest(flipped) != digest(archive)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (100, b"0000689\0", "the mode field of the header at byte 0 is not a number"),
        (124, b"0000 000001\0", "the size field"),
        (124, b"+0000000001\0", "the size field"),
        (156, b"V", "entry './f' is a volume label"),
        (156, b"S", "entry './f' is a GNU sparse file"),
        (156, b"Z", "entry './f' is of type b'Z'"),
    ],
)
def test_malformed_headers_are_refused(field: int, value: bytes, message: str) -> None:
    archive = patch_header(build_archive([Entry("./f", data=b"x")], tarfile.GNU_FORMAT), 0, field, value)
    with pytest.raises(MalformedArchiveError, match=re.escape(message)):
        summarize(archive)


def test_octal_fields_with_spaces_and_signed_checksums_are_read() -> None:
    archive = build_archive([Entry("./f", data=b"x", mode=0o640)], tarfile.GNU_FORMAT)
    spaced = patch_header(archive, 0, 100, b"   640 \0")
    assert digest(spaced) == digest(archive)
    high = patch_header(archive, 0, 265, "é".encode("latin-1"))  # uname with a byte over 0x7f
    block = high[:512]
    signed = sum(byte - 256 if byte > 0x7F else byte for byte in block[:148] + b" " * 8 + block[156:])
    signed_checksum = block[:148] + b"%06o\0 " % signed + block[156:]
    assert digest(signed_checksum + high[512:]) == digest(archive)


def test_malformed_pax_headers_are_refused() -> None:
    archive = build_archive([Entry("./f", data=b"x", pax=(("comment", "hi"),))])
    record = b"14 comment=hi\n"
    assert archive.index(record) == 512
    for bad in (b"99 comment=hi\n", b"14 commenthi!\n", b"1x comment=hi\n", b"14 comment=hi!", b"4 c=\n0 comment"):
        with pytest.raises(MalformedArchiveError, match="the PAX header at byte 0 is malformed"):
            summarize(archive.replace(record, bad))
    sparse = build_archive([Entry("./f", data=b"x", pax=(("GNU.sparse.major", "1"),))])
    with pytest.raises(MalformedArchiveError, match=r"GNU sparse file of format 1\.\?"):
        summarize(sparse)


def test_oversized_extended_headers_are_refused() -> None:
    archive = build_archive([Entry("./f", pax=(("comment", "x" * (9 * MIB)),))])
    with pytest.raises(MalformedArchiveError, match=r"a PAX header of \d+ bytes at byte 0 \(the limit is 8388608\)"):
        summarize(archive)


# --- sparse files (PAX 1.0, as GNU tar --sparse --format=posix writes them) -------------------


def sparse_entry(
    name: str, real_size: int, extents: Sequence[tuple[int, bytes]], map_text: bytes | None = None, **pax: str
) -> Entry:
    """A PAX 1.0 sparse file: `extents` (offset, data) in a file of `real_size` bytes, the rest holes."""
    if map_text is None:
        map_text = b"%d\n" % len(extents) + b"".join(b"%d\n%d\n" % (at, len(data)) for at, data in extents)
    stored = map_text + bytes(-len(map_text) % 512) + b"".join(data for _, data in extents)
    records = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
               "GNU.sparse.realsize": str(real_size), **pax}  # fmt: skip
    return Entry(f"./GNUSparseFile.0/{name.lstrip('./')}", data=stored, pax=tuple(records.items()))


def expanded(real_size: int, extents: Sequence[tuple[int, bytes]]) -> bytes:
    content = bytearray(real_size)
    for at, data in extents:
        content[at : at + len(data)] = data
    return bytes(content)


SPARSE_CASES = [
    (3 << 20, [(4096, b"hello"), (2 << 20, random.Random(2).randbytes(5000))]),  # holes before, between and after
    (10_000, [(0, b"head"), (9_996, b"tail")]),  # data at both ends
    (1 << 20, []),  # all hole
    (0, []),  # empty
    (8192, [(0, b"x" * 4096), (4096, b"y" * 4096)]),  # no hole at all
    (1 << 20, [(index * 4096, b"z%d" % index) for index in range(250)]),  # a map of six blocks
]


@pytest.mark.parametrize(("real_size", "extents"), SPARSE_CASES)
@pytest.mark.parametrize("chunk", [511, 65536])
def test_a_sparse_file_digests_as_the_file_it_extracts_to(
    real_size: int, extents: list[tuple[int, bytes]], chunk: int
) -> None:
    base = [Entry("./", kind="dir", mode=0o755), Entry("./a", data=b"a")]
    sparse = summarize(build_archive([*base, sparse_entry("./s.img", real_size, extents)]), chunk, index=True)
    plain = summarize(build_archive([*base, Entry("./s.img", data=expanded(real_size, extents))]), index=True)
    assert sparse == plain
    assert sparse.bytes == 1 + real_size


def test_a_sparse_file_survives_one_byte_chunks() -> None:
    extents = [(0, b"head"), (9_996, b"tail")]
    archive = build_archive([sparse_entry("./s", 10_000, extents), Entry("./after", data=b"x")])
    assert summarize(archive, 1) == summarize(build_archive([Entry("./s", data=expanded(10_000, extents)),
                                                             Entry("./after", data=b"x")]))  # fmt: skip


def test_a_sparse_file_from_gnu_tar_digests_as_without_sparse(tmp_path: Path) -> None:
    tar = find_gnu_tar()
    if tar is None:
        pytest.skip("GNU tar is not installed")
    folder = tmp_path / "src"
    folder.mkdir()
    with open(folder / "disk.img", "wb") as out:
        out.truncate(64 << 20)
        for at in (1 << 20, 40 << 20):
            out.seek(at)
            out.write(os.urandom(70_000))
    (folder / "plain").write_bytes(b"plain")

    def archive(*options: str) -> bytes:
        return subprocess.run([tar, "-C", str(folder), "--format=posix", *options, "-cf", "-", "."],
                              capture_output=True, check=True).stdout  # fmt: skip

    sparse = archive("--sparse")
    assert b"GNU.sparse.major=1" in sparse and len(sparse) < 1 << 20  # the holes are not in it
    assert summarize(sparse, check_safety=True) == summarize(archive())


def test_a_sparse_file_is_checked_like_any_entry() -> None:
    extents = [(0, b"x")]
    for name, message in (("../escape", "has a '..' component"), ("/etc/x", "absolute")):
        with pytest.raises(UnsafeArchiveError, match=message):
            summarize(build_archive([sparse_entry(name, 10, extents)]), check_safety=True)
    with pytest.raises(MalformedArchiveError, match="not a regular file"):
        bad = dataclasses.replace(sparse_entry("./s", 10, extents), kind="dir", data=b"")
        summarize(build_archive([bad]))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (sparse_entry("./s", 10, [(5, b"abc"), (4, b"x")]), "overlap, go backwards or pass its size"),
        (sparse_entry("./s", 10, [(8, b"abc")]), "overlap, go backwards or pass its size"),
        (sparse_entry("./s", 10, [(0, b"a")], map_text=b"1\n0\n2\n"), "does not match the data stored"),
        (sparse_entry("./s", 10, [(0, b"ab")], map_text=b"1\n0\n1\n"), "does not match the data stored"),
        (sparse_entry("./s", 10, [(0, b"a")], map_text=b"x\n0\n1\n"), "malformed map"),
        (sparse_entry("./s", 10, [(0, b"a")], map_text=b"1\n0\n-1\n"), "malformed map"),
        (sparse_entry("./s", 10, [(0, b"a")], map_text=b"1\n0\n1\ngarbage"), "malformed map"),
        (sparse_entry("./s", 10, [], map_text=b"2\n0\n1\n"), "ends inside its map"),
        (sparse_entry("./s", 10, [(0, b"a")], **{"GNU.sparse.realsize": ""}), "has no GNU.sparse.realsize"),
        (sparse_entry("./s", 10, [(0, b"a")], **{"GNU.sparse.minor": "1"}), r"of format 1\.1 "),
        (Entry("./s", data=b"x", pax=(("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,1"))), r"of format \?\.\?"),
    ],
)
def test_malformed_sparse_files_are_refused(entry: Entry, message: str) -> None:
    with pytest.raises(MalformedArchiveError, match=message):
        summarize(build_archive([entry]))


def test_a_sparse_file_cut_off_in_its_data_is_truncated() -> None:
    archive = build_archive([sparse_entry("./s", 1 << 20, [(0, os.urandom(3000))])])
    for cut in (600, 2000):  # inside the map block, inside the data
        with pytest.raises(MalformedArchiveError, match="truncated archive"):
            summarize(archive[:cut])


def test_a_global_header_may_not_describe_a_sparse_file() -> None:
    archive = build_archive([Entry("./f", data=b"x")], pax_headers={"GNU.sparse.major": "1"})
    with pytest.raises(MalformedArchiveError, match="the PAX global header at byte 0 describes a sparse file"):
        summarize(archive)


def test_reroot_moves_a_sparse_file_by_its_real_name() -> None:
    extents = [(100, b"data")]
    archive = build_archive([Entry("./", kind="dir"), sparse_entry("./s.img", 4096, extents)])
    moved = b"".join(reroot([archive], b"data"))
    assert summarize(moved, strip_prefix="data") == summarize(archive)
    with tarfile.open(fileobj=io.BytesIO(moved)) as read:  # what another reader (Go's in the engine) sees
        member = read.getmember("data/s.img")
        extracted = read.extractfile(member)
        assert extracted is not None and extracted.read() == expanded(4096, extents)


# --- reading whole entries at once changes nothing ------------------------------------------


def outcome(archive: bytes, chunks: Iterable[int] | int, **options: object) -> object:
    """The summary and file index an archive gives, or the error it raises (type and message)."""
    digester = TarDigester(index=True, **options)  # type: ignore[arg-type]
    view = memoryview(archive)
    sizes = itertools.repeat(chunks) if isinstance(chunks, int) else iter(chunks)
    try:
        pos = 0
        while pos < len(archive):
            size = next(sizes)
            digester.feed(view[pos : pos + size])
            pos += size
        return digester.finish(), list(digester.index_lines())
    except (MalformedArchiveError, UnsafeArchiveError, UnrestorableError) as error:
        return type(error), str(error)


@pytest.mark.parametrize("seed", range(40))
def test_whole_entries_read_at_once_give_what_the_state_machine_gives(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digester reads entries that lie whole in a chunk at once (_whole_entries); with that turned
    off, every archive (sound, unsafe, truncated, corrupt) must give the same summary or the same error."""
    rng = random.Random(seed)
    entries = shuffled(sample(big=seed % 4 == 0), seed)
    if seed % 3 == 0:
        entries.append(sparse_entry("./s.img", 70_000, [(1000, b"a" * 700), (60_000, b"b" * 3000)]))
    if seed % 5 == 0:
        entries.extend(rng.choice(UNSAFE).values[0])
    archive = build_archive(entries, format=rng.choice([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))
    if seed % 2:  # damage it: cut it short, or flip a byte in a header or in data
        at = rng.randrange(len(archive))
        archive = archive[:at] if rng.random() < 0.5 else archive[:at] + bytes([archive[at] ^ 0x40]) + archive[at + 1 :]
    chunkings: list[Iterable[int] | int] = [65536, 1536, [rng.randrange(1, 5000) for _ in range(len(archive))]]
    for options in ({"check_safety": True}, {"check_safety": False, "restorable": True}):
        for chunks in chunkings:
            fast = outcome(archive, chunks, **options)
            with monkeypatch.context() as patched:
                patched.setattr(TarDigester, "_whole_entries", lambda self, view, pos, end: pos)
                slow = outcome(archive, chunks, **options)
            assert fast == slow, f"seed {seed}, {options}, chunks {chunks if isinstance(chunks, int) else 'random'}"


# --- memory -------------------------------------------------------------------------------


class Zeros(io.RawIOBase):
    """A file of `size` zero bytes that never exists in memory at once."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


class DigesterSink(io.RawIOBase):
    """A write-only stream that hands everything to a TarDigester."""

    def __init__(self, digester: TarDigester) -> None:
        self.digester = digester

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digester.feed(data)
        return len(data)


def test_memory_stays_flat_for_a_large_archive() -> None:
    size = 50 * MIB
    digester = TarDigester()
    tracemalloc.start()
    try:
        with tarfile.open(fileobj=DigesterSink(digester), mode="w|", format=tarfile.PAX_FORMAT) as archive:
            for index in range(5):
                info = tarfile.TarInfo(f"./big-{index}")
                info.size = size // 5
                archive.addfile(info, Zeros(info.size))
        summary = digester.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.bytes == size
    assert peak < MIB, f"peak {peak} bytes for a {size}-byte archive"


# --- reroot: an archive moved under the mount point, for the engine's archive API ----------


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.randrange(len(data)) for _ in range(rng.randrange(0, 40)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("seed", range(5))
def test_rerooted_archives_hold_the_same_content_one_folder_down(format: int, seed: int) -> None:
    entries = sample(xattrs=format == tarfile.PAX_FORMAT, long_target=format != tarfile.USTAR_FORMAT)
    if format == tarfile.USTAR_FORMAT:
        entries = [e for e in entries if len(e.name) < 100 and e.uid < 2**21]
    archive = build_archive(entries, format=format)
    moved = b"".join(reroot(pieces(archive, random.Random(seed)), b"data"))
    assert summarize(moved, strip_prefix="data").digest == summarize(archive).digest
    with tarfile.open(fileobj=io.BytesIO(moved)) as read:
        members = read.getmembers()
    assert all(m.name == "data" or m.name.startswith("data/") for m in members)
    assert all(m.linkname.startswith("data/") for m in members if m.islnk())
    originals = {e.name.removeprefix("./"): e for e in entries}
    for member in members:
        if member.issym():  # targets are data: never moved
            assert member.linkname == originals[member.name.removeprefix("data/")].target


def test_reroot_moves_the_root_and_refuses_what_it_cannot_move() -> None:
    moved = b"".join(reroot([build_archive(BASE)], b"data"))
    with tarfile.open(fileobj=io.BytesIO(moved)) as read:
        assert read.getnames()[0] == "data"
    for bad in ("../x", "/etc/x", "a/../../x"):
        with pytest.raises(MalformedArchiveError, match="cannot be moved under a folder"):
            b"".join(reroot([build_archive([Entry(bad, data=b"x")])], b"data"))


# --- memory: flat in the number of paths ----------------------------------------------------


def synthetic_archive(count: int) -> Iterator[bytes]:
    """Yield a tar of `count` empty files in folders of 1,000 (a hard link every 10,000), fast: one ustar
    header template, its name, link name and checksum filled in per entry."""
    template = bytearray(tarfile.TarInfo("").tobuf(tarfile.USTAR_FORMAT))
    template[148:156] = b" " * 8
    base = sum(template)
    buffered: list[bytes] = []
    for index in range(count):
        header = bytearray(template)
        name = b"./d%05d/f%07d" % (index // 1000, index)
        header[0 : len(name)] = name
        checksum = base + sum(name)
        if index % 10_000 == 9_999:
            target = b"./d%05d/f%07d" % (index // 1000, index - 1)
            header[156:157], header[157 : 157 + len(target)] = b"1", target
            checksum += sum(target) + ord("1") - header_typeflag(template)
        header[148:156] = b"%06o\0 " % checksum
        buffered.append(bytes(header))
        if len(buffered) >= 1024:
            yield b"".join(buffered)
            buffered.clear()
    yield b"".join(buffered) + bytes(1024)


def header_typeflag(header: bytearray) -> int:
    return header[156]


def peak_memory(count: int) -> tuple[int, ArchiveSummary]:
    digester = TarDigester(index=True)
    tracemalloc.start()
    try:
        for chunk in synthetic_archive(count):
            digester.feed(chunk)
        summary = digester.finish()
        lines = sum(1 for _ in digester.index_lines())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == summary.entries == count
    assert b"".join(digester.index_blocks(4096)) == b"".join(digester.index_lines())  # what backups store
    return peak, summary


def test_memory_stays_flat_as_paths_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records spill, sorted, to temporary files past RUN_RECORDS: ten times the paths, not ten times the memory."""
    from docker_persist.core import archive

    monkeypatch.setattr(archive, "RUN_RECORDS", 400)
    monkeypatch.setattr(archive, "_SPILL_CHUNK", 40)
    monkeypatch.setattr(archive, "INDEX_IN_MEMORY", 64 << 10)
    small, small_summary = peak_memory(4_000)
    big, big_summary = peak_memory(40_000)
    assert big_summary.hardlinks == 4 and small_summary.hardlinks == 0
    assert big < 1.5 * small, f"peak {big} bytes for 40,000 paths against {small} for 4,000"


def test_spilling_changes_nothing_in_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from docker_persist.core import archive

    entries = shuffled(sample(), 4)
    whole = summarize(build_archive(entries))
    monkeypatch.setattr(archive, "RUN_RECORDS", 3)  # a run every three paths
    assert summarize(build_archive(entries)) == whole


def tree_for_tops(root: Path) -> None:
    """A folder whose top-level entries are files, folders, links and odd names, some holding many entries."""
    for top in range(12):
        folder = root / f"d{top:02}"
        for sub in range(top % 3):
            (folder / f"s{sub}").mkdir(parents=True)
            for file in range(40):
                (folder / f"s{sub}" / f"f{file}").write_bytes(bytes([file]) * (file * 37))
        folder.mkdir(parents=True, exist_ok=True)
    (root / "-rf").write_bytes(b"x")
    (root / "new\nline").mkdir()
    (root / "new\nline" / "inside").write_bytes(b"y" * 3000)
    (root / os.fsdecode(b"latin-\xe9")).write_bytes(b"z")
    (root / "escape").symlink_to("/")
    os.link(root / "d05" / "s1" / "f3", root / "d11" / "linked")  # a hard link to a passed folder's file


def test_passed_tops_are_the_top_level_entries_the_archive_has_gone_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What verify removes while it reads a scratch volume back: a top-level name is passed only once
    every entry under it is in the stream read so far, each once, in the archive's order, the last
    one never (it may not be whole)."""
    from docker_persist.host.process import tar_create

    tar = find_gnu_tar()
    if tar is None:
        pytest.skip("no GNU tar")
    tree_for_tops(tmp_path / "v")
    stream = b"".join(tar_create(tar, str(tmp_path / "v"), os.environ))
    ends: dict[bytes, int] = {}  # top-level name: where its last entry ends in the stream
    order: list[bytes] = []
    with tarfile.open(fileobj=io.BytesIO(stream), encoding="utf-8", errors="surrogateescape") as archive:
        for member in archive:
            top = os.fsencode(normalize_entry_name(member.name)).partition(b"/")[0]
            if top == b".":
                continue
            if top not in ends:
                order.append(top)
            ends[top] = member.offset_data + (member.size + 511) // 512 * 512
    assert len(order) == 16
    rng = random.Random(7)
    for run_records in (3, 100_000):
        monkeypatch.setattr(archive_module, "RUN_RECORDS", run_records)
        digester = TarDigester(check_safety=False)
        digester.track_tops()
        passed: list[bytes] = []
        offset = 0
        while offset < len(stream):
            step = rng.choice([1, 511, 512, 4096, 70_000])
            digester.feed(stream[offset : offset + step])
            offset += step
            for top in digester.passed_tops():
                assert ends[top] <= offset, f"{top!r} passed at byte {offset}, its entries end at {ends[top]}"
                passed.append(top)
        assert digester.finish() == summarize(stream, check_safety=False)
        assert passed == order[:-1]
