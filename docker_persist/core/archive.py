"""Read a tar stream as it arrives: compute its content digest, count its entries, refuse unsafe archives.

`TarDigester` is push-based: the backup and restore pipelines hand it the raw tar bytes in
whatever chunks the engine sends (`feed`), and ask for the `ArchiveSummary` at the end
(`finish`). It never holds a file's data: file data is hashed straight from the caller's
chunk, and only headers (512 bytes), GNU long names and PAX extended headers (at most
`MAX_META_SIZE` bytes each) are buffered. The digest needs one small record per path, sorted
by path, so the records are kept in memory up to `RUN_RECORDS` at a time, then sorted and
spilled to a temporary file; `finish` merges the sorted runs. Memory stays flat in both the
volume's byte size and its number of files (2 million files: 20 runs of 100,000 records).

Tar dialects read: ustar, GNU (long names 'L' and long link names 'K', base-256 numbers), PAX
('x' per entry and 'g' global headers, with `path`, `linkpath`, `size`, `uid`, `gid`, `mtime`,
`SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`). The end-of-archive marker (two zero blocks) may be
missing, and zero padding may follow it; anything else after it is refused. Entry types:
regular ('0', NUL, and contiguous '7'), hard link '1', symlink '2', character device '3',
block device '4', directory '5' and fifo '6'; a NUL-type name ending in '/' is a directory,
as in every tar. Sparse files are read in the PAX format 1.0 GNU tar writes with --sparse
(`GNU.sparse.major=1`, `minor=0`, `name`, `realsize`, the extent map at the start of the data):
the entry is the file as extracted, its holes hashed as zeros. Other types (GNU sparse formats
0.x and type 'S', multi-volume, ...) are refused as unsupported. As
in Go's archive/tar, which the engine uses to extract, entries of the types 1 to 6 carry no
data whatever their size field says; with safety checks on, a nonzero size there is refused
as ambiguous.

Names
-----
An entry name is normalized by dropping empty and "." components: "./a//b/" becomes "a/b",
and "./" or "." becomes "." (the volume root). With `strip_prefix="data"`, "data" becomes "."
and "data/x" becomes "x" (hard-link targets too; symlink targets are never rewritten); an
entry outside the prefix is refused as malformed. Names are bytes in tar; they are decoded
as UTF-8 with `surrogateescape`, so names that are not UTF-8 survive unchanged.

The content digest (version 1)
------------------------------
The digest describes what extracting the archive produces, independently of entry order and
of mtimes, so that a backup and the archive the engine sends back after a restore agree.

1. Each path gets a node, as a file system would: later entries for the same path replace
   earlier ones (tar semantics: the last one wins). A hard link entry makes its path share
   the node of its target, which must be an earlier, non-directory entry, so the members of
   a hard-link group share type, mode, owner, size, data hash and xattrs. The metadata in
   the hard-link header itself is ignored.
2. Each path gives one record, a list of (key, value) fields, values being bytes:

   - `path`: the normalized path, as the bytes the archive stores (UTF-8 in practice).
   - `type`: `file`, `dir`, `symlink`, `char`, `block` or `fifo`.
   - `mode`: `mode & 0o7777` as four or more octal digits, e.g. `0755` or `2775`; `0000` for
     symlinks.
   - `uid`, `gid`: decimal.
   - `size` (decimal) and `sha256` (lowercase hex of the data): files only.
   - `target`: symlinks only, the link target's bytes as stored, unnormalized.
   - `device`: character and block devices only, `<major>,<minor>` in decimal.
   - `link-group`: only for a path whose node is shared by two or more paths (a hard-link
     group); its value is the group's smallest path in byte order, whichever member the
     archive happened to store as the file.
   - `xattr.<name>`: one per extended attribute, `<name>` being its name's bytes (for example
     `xattr.user.comment`); the value is the lowercase hex sha256 of the attribute's value.
     `SCHILY.xattr.<name>` records hold the value as is, `LIBARCHIVE.xattr.<name>` ones hold
     it in base64 under a %-encoded name; both give the same field.

   The fields are sorted by key in byte order: device, gid, link-group, mode, path, sha256,
   size, target, type, uid, then the xattrs.
3. With `ns(b) = b"%d:%s," % (len(b), b)` (a netstring), a record serializes as
   `ns(b"".join(ns(key) + ns(value) for key, value in fields))`. An empty file "a" of mode
   0644, uid 1 and gid 2 gives `ns(b"3:gid,1:2,4:mode,4:0644,4:path,1:a,6:sha256,64:e3b0...855,`
   `4:size,1:0,4:type,4:file,3:uid,1:1,")`.
4. The digest is `"sha256:" + sha256(ns(b"docker-persist-content-digest-v1") + the records
   sorted by path in byte order, concatenated).hexdigest()`.

mtimes, uname/gname, and the other PAX keys are not part of it.

Safety checks
-------------
With `check_safety` (restore), the archive is refused with `UnsafeArchiveError`, as soon as
the offending header arrives, when:

- an entry name is absolute or has a ".." component;
- a hard link's target is absolute, has a ".." component, or is not an earlier non-directory
  entry (without safety checks, the last is `MalformedArchiveError`: there is no content to
  share);
- an entry's parent, or a hard link's target's parent, is a path that was a symlink earlier
  in the archive (writing through a symlink);
- an entry is a character or block device;
- the root entry "." is not a directory.

A symlink is data, whatever its target: `relesc -> ../data-x` and `cfg -> /etc/app` are common
in real volumes, and are restored as links. What is refused is writing *through* one, which
is the only way a link lets an extraction reach outside the volume.

Without safety checks (backup), nothing is refused for safety; absolute symlinks are still
listed. With `restorable` (backup), what no restore could create is refused at once, naming
the path, with `UnrestorableError`: device nodes, a path of 4096 bytes or more, a name
component over 255 bytes, a symlink target of 4096 bytes or more. Truncated, corrupt and
unsupported archives raise `MalformedArchiveError` either way.
"""

from __future__ import annotations

import array
import base64
import binascii
import bisect
import contextlib
import dataclasses
import hashlib
import itertools
import math
import pickle
import re
import struct
import tempfile
import urllib.parse
from collections.abc import Collection, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast
from zlib import adler32

from docker_persist.errors import PersistError

if TYPE_CHECKING:
    from docker_persist.core.fileindex import IndexEntry

try:  # the per-entry hot loops in C (core/_tarscan.c, built by build/accel.sh); the same results without them
    from docker_persist.core._tarscan import scan as _scan
    from docker_persist.core._tarscan import serialize as _serialize
except ImportError:  # pragma: no cover (a source tree without the build)
    _scan = _serialize = None  # type: ignore[assignment]

BLOCK_SIZE = 512
MAX_META_SIZE = 8 * 1024 * 1024
"""The largest GNU long name or PAX extended header accepted, so that memory stays bounded."""
DIGEST_VERSION = b"docker-persist-content-digest-v1"

_ZERO_BLOCK = bytes(BLOCK_SIZE)
_DECIMAL_DIGITS = b"0123456789"
_NUMERIC_FIELDS = struct.Struct("8s8s8s12s12s8s")  # mode, uid, gid, size, mtime, checksum, at byte 100

# Parser states.
_HEADER = 0  # reading a 512-byte header block
_DATA = 1  # hashing a regular file's data
_META = 2  # collecting the content of a long name or PAX header
_SKIP = 3  # skipping block padding
_END = 4  # after the end-of-archive marker
_SPARSE = 5  # reading a PAX 1.0 sparse file's map and data extents

_KINDS = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",  # contiguous: a regular file everywhere but on one long-gone system
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
}
_HARD_LINK = b"1"
_META_TYPES = {b"L": "GNU long name", b"K": "GNU long link name", b"x": "PAX header", b"g": "PAX global header"}
_UNSUPPORTED_TYPES = {
    b"S": "a GNU sparse file",
    b"D": "a GNU dump directory",
    b"M": "a multi-volume continuation",
    b"V": "a volume label",
    b"N": "an old GNU long name",
}

_GNU_SPARSE = b"GNU.sparse."
_SPARSE_KEYS = frozenset(  # the PAX keys of GNU sparse files, formats 0.0, 0.1 and 1.0 (as Go's archive/tar reads)
    _GNU_SPARSE + key for key in (b"major", b"minor", b"name", b"realsize", b"size", b"numblocks", b"offset",
                                  b"numbytes", b"map")
)  # fmt: skip
_ZEROS = bytes(1 << 20)  # a sparse file's holes, hashed from here
_SCHILY_XATTR = b"SCHILY.xattr."
# The xattrs that every way of reading a volume back sees: the engine's archive API sends only this one.
PORTABLE_XATTRS = frozenset({b"security.capability"})
_LIBARCHIVE_XATTR = b"LIBARCHIVE.xattr."


class UnsafeArchiveError(PersistError):
    """An archive was refused: extracting it could write outside the volume, or create device nodes."""


class UnrestorableError(PersistError):
    """A volume holds something a restore could not create: the backup fails, naming the path."""


MAX_PATH = 4095  # bytes in a path a restore can create (PATH_MAX, 4096, with its NUL)
MAX_NAME = 255  # bytes in one component of it (NAME_MAX)


class MalformedArchiveError(PersistError):
    """An archive is truncated or corrupt, or uses a tar feature this tool does not read."""


@dataclasses.dataclass(frozen=True)
class ArchiveRoot:
    """The archive's own entry for the volume root, whose mode and owner a restore must apply by hand
    (a manifest keeps the mode and owner: manifest.RootEntry)."""

    mode: int  # mode & 0o7777
    uid: int
    gid: int
    mtime: float


@dataclasses.dataclass(frozen=True)
class ArchiveSummary:
    """What an archive holds, after duplicate paths collapse (the last entry for a path wins).

    `entries` counts paths, the root included. `files` counts paths that are regular files,
    hard-linked ones included, and `bytes` sums their sizes, so a file with two names in the
    archive counts twice. `hardlinks` counts, for each hard-link group of n paths, n - 1: the
    number of hard-link entries any writer must emit for it (equal to the number of '1'
    entries in an archive without duplicate paths).
    """

    digest: str  # "sha256:<hex>", the content digest of the module docstring
    # The same digest with only the xattrs every path reads back (PORTABLE_XATTRS): the
    # engine's archive API sends no others, ACLs included.
    portable_digest: str
    entries: int
    files: int
    directories: int
    symlinks: int
    hardlinks: int
    bytes: int
    root: ArchiveRoot | None


# A path's record, as the digester keeps it until finish(): a tuple, so that sorting runs of
# them by (path, seq) is one C-level comparison, and spilling them is one pickle call.
# (path bytes, seq, kind, mode, uid, gid, size, sha256 hex, symlink or hard-link target,
#  "major,minor", ((xattr name, sha256 hex of its value), ...), mtime)
_PATH, _SEQ, _KIND, _MODE, _UID, _GID, _SIZE, _SHA, _TARGET, _DEVICE, _XATTRS, _MTIME = range(12)
_SCAN_OBJECTS = ("file", "dir", "symlink", "", ())  # what the C reader's records share
RUN_RECORDS = 100_000
"""How many records the digester keeps in memory before it spills them, sorted, to a temporary file."""
INDEX_IN_MEMORY = 8 << 20
"""How much of the file index finish() keeps in memory before it goes to a temporary file."""
_SPILL_CHUNK = 1024  # records a run is read back in: the merge holds one chunk of each run


def normalize_entry_name(name: str) -> str:
    """Given a tar entry name, return it normalized ("./a/b/" -> "a/b", "./" -> ".").

    Raises UnsafeArchiveError if the name is absolute or has a ".." component, and
    MalformedArchiveError if it is empty.
    """
    if not name:
        raise MalformedArchiveError("corrupt archive: an entry has an empty name")
    absolute, parts = _split_name(name)
    reason = _unsafe_name_reason(absolute, parts)
    if reason:
        raise UnsafeArchiveError(f"unsafe archive: entry {name!r} {reason}")
    return "/".join(parts) or "."


def serialize_digest_record(fields: list[tuple[bytes, bytes]]) -> bytes:
    """Given a record's (key, value) fields sorted by key, return its serialization in the content digest."""
    return _netstring(b"".join(_netstring(key) + _netstring(value) for key, value in fields))


class TarDigester:
    """Push-based tar reader: `feed` it the archive's bytes in any chunks, then `finish`.

    After `feed` or `finish` raises, the digester is spent: every later call raises the same error.
    """

    def __init__(
        self,
        strip_prefix: str | None = None,
        check_safety: bool = True,
        hash_data: bool = True,
        restorable: bool = False,
        index: bool = False,
    ) -> None:
        # hash_data=False reads only the structure (names, types, safety, counts): about five
        # times faster; the summary's digest is then "" because file contents were not read.
        self._hash_data = hash_data
        self._check_safety = check_safety
        self._prefix = _split_name(strip_prefix or "")[1]
        # The C reader's prefix (core/_tarscan.c), if it can take it: components without "..".
        prefix = "/".join(self._prefix).encode("utf-8", "surrogateescape")
        self._scan_prefix = prefix if ".." not in self._prefix else None
        self._restorable = restorable
        self._want_index = index
        self._records: list[tuple[Any, ...]] = []  # this run's records, until RUN_RECORDS spill them
        self._spilled: list[IO[bytes]] = []  # sorted runs on disk
        self._seq = 0  # entries seen, each a record's seq
        self._links: list[tuple[bytes, int, bytes, str, str]] = []  # (path, seq, target, entry, target as written)
        self._symlink_paths: set[str] = set()  # every path that was a symlink at some point
        self._pending: list[Any] | None = None  # the record of the file whose data is being hashed
        self._sparse: _SparseData | None = None  # the sparse file whose map and extents are being read
        self._index: IO[bytes] | None = None  # the file index, written by finish() when asked for
        self._global_pax: dict[bytes, bytes] = {}
        self._local_pax: dict[bytes, bytes] | None = None
        self._long_name: bytes | None = None
        self._long_link: bytes | None = None
        self._state = _HEADER
        self._remaining = 0  # bytes left in the current data, meta content or padding
        self._padding = 0  # padding after the current data or meta content
        self._header = bytearray()  # a header block split across chunks
        self._meta = bytearray()  # the content of the current long name or PAX header
        self._meta_type = b""
        self._meta_offset = 0
        self._hasher = hashlib.sha256()
        self._reading: str | tuple[str] = ""  # what is being read, for messages: "a PAX header", or (entry name,)
        self._zero_blocks = 0
        self._offset = 0  # stream offset of the chunk being fed
        self._error: PersistError | None = None
        self._summary: ArchiveSummary | None = None
        # Top-level names in the order the archive reached them, if tracked (track_tops()): see passed_tops().
        self._tops: list[bytes] | None = None
        self._tops_mark = 0  # records before this index of self._records were looked at

    # The tar reader's state machine: one branch per state, inline for speed (it runs per chunk).
    def feed(self, chunk: bytes | bytearray | memoryview) -> None:  # noqa: PLR0912, PLR0915
        """Consume the next bytes of the archive.

        Raises UnsafeArchiveError as soon as an unsafe entry's header arrives (with safety
        checks on), and MalformedArchiveError for a corrupt or unsupported archive.
        """
        if self._error is not None:
            raise self._error
        if self._summary is not None:
            raise RuntimeError("TarDigester.feed() called after finish()")
        view = memoryview(chunk)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        end = len(view)
        pos = 0
        try:
            while pos < end:
                state = self._state
                if state == _DATA:
                    take = min(self._remaining, end - pos)
                    if self._hash_data:
                        self._hasher.update(view[pos : pos + take])
                    pos += take
                    self._remaining -= take
                    if not self._remaining:
                        self._end_data()
                        if self._state == _SKIP and end - pos >= self._remaining:  # the padding is here: skip it
                            pos += self._remaining
                            self._state = _HEADER
                elif state == _HEADER:
                    if not self._header and end - pos >= 2 * BLOCK_SIZE:
                        moved = self._whole_entries(view, pos, end)
                        if moved != pos:
                            pos = moved
                            continue
                    pos = self._read_header(view, pos, end)
                elif state == _SPARSE:
                    take = min(self._remaining, end - pos)
                    assert self._sparse is not None
                    self._sparse.feed(view[pos : pos + take])
                    pos += take
                    self._remaining -= take
                    if not self._remaining:
                        self._end_data()
                elif state == _SKIP:
                    take = min(self._remaining, end - pos)
                    pos += take
                    self._remaining -= take
                    if not self._remaining:
                        self._state = _HEADER
                elif state == _META:
                    take = min(self._remaining, end - pos)
                    self._meta += view[pos : pos + take]
                    pos += take
                    self._remaining -= take
                    if not self._remaining:
                        self._end_meta()
                else:
                    self._check_trailing(view[pos:], self._offset + pos)
                    pos = end
        except PersistError as error:
            self._error = error
            raise
        finally:
            self._offset += pos

    @property
    def entries_seen(self) -> int:
        """Return how many entries (not meta headers) the archive fed so far holds, repeated paths included."""
        return self._seq

    def track_tops(self) -> None:
        """Keep, from now on, the top-level names the archive reaches, for passed_tops()."""
        self._tops = []
        self._tops_mark = len(self._records)

    def passed_tops(self) -> list[bytes]:
        """Return, once each, the top-level names (b"a" for "a/b/c") the archive has gone past since the
        last call: every one reached before the top-level name of the last entry read.

        A tar of a folder is written depth-first, so an entry whose name is passed is in the archive with
        everything under it, and GNU tar has read it. The root (".") is never passed.
        """
        tops = self._tops
        assert tops is not None, "passed_tops() needs track_tops()"
        self._note_tops()
        passed = tops[:-1]
        del tops[:-1]
        return passed

    def _note_tops(self) -> None:
        tops = self._tops
        assert tops is not None
        last = tops[-1] if tops else b"."
        for record in itertools.islice(self._records, self._tops_mark, None):
            top = record[0].partition(b"/")[0]
            if top != last:
                if top != b".":
                    tops.append(top)
                last = top
        self._tops_mark = len(self._records)

    def finish(self) -> ArchiveSummary:
        """Return the summary of the archive fed so far, which must be complete.

        Raises MalformedArchiveError if the archive is truncated, UnsafeArchiveError (or
        MalformedArchiveError without safety checks) for a hard link to nothing or to a folder.
        """
        if self._error is not None:
            raise self._error
        if self._summary is None:
            try:
                self._check_complete()
                self._summary = self._summarize()
            except PersistError as error:
                self._error = error
                raise
            finally:
                for run in self._spilled:
                    run.close()
                self._spilled = []
                self._records = []
        return self._summary

    def index_lines(self) -> Iterator[bytes]:
        """Yield the file index's lines (see core/fileindex.py), sorted by path, once finish() returned.

        Only for a digester made with index=True: finish() wrote them to a temporary file as it went.
        """
        yield from self._index_file()

    def index_blocks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the file index's bytes (see index_lines) in blocks of `size`, whole lines or not."""
        index = self._index_file()
        while block := index.read(size):
            yield block

    def _index_file(self) -> IO[bytes]:
        if self._summary is None:
            raise RuntimeError("the file index comes after finish()")
        if self._index is None:
            raise RuntimeError("this digester was not asked for a file index (index=True)")
        self._index.seek(0)
        return self._index

    def index_entries(self) -> Iterator[IndexEntry]:
        """Yield the file index of the archive as entries (see index_lines)."""
        from docker_persist.core.fileindex import decode

        for line in self.index_lines():
            yield decode(line.rstrip(b"\n"))

    # --- the stream ------------------------------------------------------------------

    def _whole_entries(self, view: memoryview, pos: int, end: int) -> int:
        """Read the entries lying whole in view[pos:end] (a PAX header, the entry's header, its data
        and padding), each at once: what GNU tar writes for a small file. Return where the first
        entry that is not whole (or anything else: a zero block, a long name, a global header)
        starts, for the state machine to read. The same checks run, through the same functions,
        and an entry takes exactly the bytes the state machine would give it."""
        base = self._offset
        scan = _scan is not None and not self._global_pax and self._scan_prefix is not None
        while (
            end - pos >= 2 * BLOCK_SIZE
            and not self._zero_blocks
            and self._local_pax is None
            and self._long_name is None
            and self._long_link is None
            and b"size" not in self._global_pax
        ):
            if scan and (moved := self._scan(view, pos, end)) != pos:
                pos = moved
                continue
            block = view[pos : pos + BLOCK_SIZE].tobytes()
            local: dict[bytes, bytes] | None = None
            at = pos
            if block[156:157] == b"x":
                size = _parse_header_numbers(block, base + pos)[3]
                at = pos + BLOCK_SIZE + size + -size % BLOCK_SIZE
                if size > MAX_META_SIZE or end - at < BLOCK_SIZE:
                    return pos
                local = _parse_pax(view[pos + BLOCK_SIZE : pos + BLOCK_SIZE + size].tobytes(), base + pos)
                block = view[at : at + BLOCK_SIZE].tobytes()
            typeflag = block[156:157]
            if block == _ZERO_BLOCK or typeflag in _META_TYPES:
                return pos
            mode, uid, gid, size = _parse_header_numbers(block, base + at)
            most = _pax_int(local, b"size", size, base + at) if local else size  # what the entry may take
            if at + BLOCK_SIZE + most + -most % BLOCK_SIZE > end:
                return pos
            self._local_pax = local
            self._start_entry(block, typeflag, mode, uid, gid, size, base + at)
            pos = at + BLOCK_SIZE
            state = self._state
            if state in (_DATA, _SPARSE):
                taken = self._remaining
                if taken > most:
                    raise AssertionError(f"entry at byte {base + at} takes {taken} bytes, not at most {most}")
                data = view[pos : pos + taken]
                if state == _SPARSE:
                    assert self._sparse is not None
                    self._sparse.feed(data)
                elif self._hash_data:
                    self._hasher.update(data)
                self._remaining = 0
                self._end_data()
                pos += taken + -taken % BLOCK_SIZE  # the padding too
                self._state, self._remaining = _HEADER, 0
            elif state != _HEADER:
                raise AssertionError(f"entry at byte {base + at} left the digester in state {state}")
        return pos

    def _scan(self, view: memoryview, pos: int, end: int) -> int:
        """Read the plain entries lying whole in view[pos:end] in C (core/_tarscan.c); return where the first
        entry it leaves to the Python reader starts."""
        assert _scan is not None and self._scan_prefix is not None
        moved, self._seq = _scan(view, pos, end, self._seq, self._records, RUN_RECORDS, self._symlink_paths,
                                 self._hash_data, self._check_safety, self._scan_prefix, _SCAN_OBJECTS)  # fmt: skip
        if len(self._records) >= RUN_RECORDS:
            self._spill()
        return moved

    def _read_header(self, view: memoryview, pos: int, end: int) -> int:
        header = self._header
        if header or end - pos < BLOCK_SIZE:
            take = min(BLOCK_SIZE - len(header), end - pos)
            header += view[pos : pos + take]
            pos += take
            if len(header) < BLOCK_SIZE:
                return pos
            block = bytes(header)
            header.clear()
        else:
            block = view[pos : pos + BLOCK_SIZE].tobytes()
            pos += BLOCK_SIZE
        self._handle_header(block, self._offset + pos - BLOCK_SIZE)
        return pos

    def _handle_header(self, block: bytes, offset: int) -> None:
        if block == _ZERO_BLOCK:
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                self._state = _END
            return
        if self._zero_blocks:
            raise MalformedArchiveError(
                f"corrupt archive: a header follows a single zero block at byte {offset}; "
                "the archive was probably damaged"
            )
        mode, uid, gid, size = _parse_header_numbers(block, offset)
        typeflag = block[156:157]
        if typeflag in _META_TYPES:
            if size > MAX_META_SIZE:
                raise MalformedArchiveError(
                    f"unsupported archive: a {_META_TYPES[typeflag]} of {size} bytes at byte {offset} "
                    f"(the limit is {MAX_META_SIZE})"
                )
            self._meta_type = typeflag
            self._meta_offset = offset
            self._reading = f"a {_META_TYPES[typeflag]}"
            self._meta.clear()
            self._remaining = size
            self._padding = -size % BLOCK_SIZE
            self._state = _META
            if not size:
                self._end_meta()
            return
        self._start_entry(block, typeflag, mode, uid, gid, size, offset)

    def _end_data(self) -> None:
        pending = self._pending
        assert pending is not None
        if self._sparse is not None:
            self._sparse.finish()
            self._sparse = None
        pending[_SHA] = self._hasher.hexdigest() if self._hash_data else ""
        self._pending = None
        self._add(tuple(pending))
        self._after_content()

    def _end_meta(self) -> None:
        content = bytes(self._meta)
        self._meta.clear()
        typeflag = self._meta_type
        if typeflag == b"L":
            self._long_name = content.split(b"\0", 1)[0]
        elif typeflag == b"K":
            self._long_link = content.split(b"\0", 1)[0]
        elif typeflag == b"x":
            self._local_pax = _parse_pax(content, self._meta_offset)
        else:
            records = _parse_pax(content, self._meta_offset)
            if any(key.startswith(_GNU_SPARSE) for key in records):
                raise MalformedArchiveError(
                    f"corrupt archive: the PAX global header at byte {self._meta_offset} describes a sparse file"
                )
            for key, value in records.items():
                if value:
                    self._global_pax[key] = value
                else:
                    self._global_pax.pop(key, None)
        self._after_content()

    def _after_content(self) -> None:
        if self._padding:
            self._remaining = self._padding
            self._padding = 0
            self._state = _SKIP
        else:
            self._state = _HEADER

    def _check_trailing(self, rest: memoryview, offset: int) -> None:
        data = rest.tobytes()
        if data.count(0) != len(data):
            raise MalformedArchiveError(
                f"corrupt archive: data follows the end-of-archive marker at byte {offset}; "
                "the archive was probably damaged or tampered with"
            )

    def _check_complete(self) -> None:
        state = self._state
        if state in (_DATA, _SPARSE, _META, _SKIP):
            raise MalformedArchiveError(
                f"truncated archive: it ends inside {self._what()}, {self._remaining + self._padding} bytes short; "
                "the backup or the download was cut off"
            )
        if state == _HEADER and self._header and bytes(self._header).count(0) != len(self._header):
            raise MalformedArchiveError(
                f"truncated archive: it ends inside a header at byte {self._offset - len(self._header)}; "
                "the backup or the download was cut off"
            )
        if self._long_name is not None or self._long_link is not None or self._local_pax is not None:
            raise MalformedArchiveError(
                f"truncated archive: it ends after {self._what()} that no entry follows; "
                "the backup or the download was cut off"
            )

    def _what(self) -> str:
        reading = self._reading
        return reading if isinstance(reading, str) else f"entry {reading[0]!r}"

    # --- entries ---------------------------------------------------------------------

    def _start_entry(
        self, block: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, offset: int
    ) -> None:
        pax = self._global_pax
        if self._local_pax is not None:
            pax = {**pax, **self._local_pax} if pax else self._local_pax
        name_raw = self._long_name if self._long_name is not None else _header_name(block)
        link_raw = self._long_link if self._long_link is not None else block[157:257].split(b"\0", 1)[0]
        self._long_name = self._long_link = self._local_pax = None
        sparse: _SparseData | None = None
        if pax:
            name_raw = pax.get(b"path") or name_raw
            link_raw = pax.get(b"linkpath") or link_raw
            if b"uid" in pax or b"gid" in pax or b"size" in pax:
                uid = _pax_int(pax, b"uid", uid, offset)
                gid = _pax_int(pax, b"gid", gid, offset)
                size = _pax_int(pax, b"size", size, offset)
            if not _SPARSE_KEYS.isdisjoint(pax):
                name_raw, sparse = _sparse_entry(pax, typeflag, name_raw, size, offset)
        name = name_raw.decode("utf-8", "surrogateescape")
        self._reading = (name,)  # formatted only for a message: "entry './a'"
        if not name:
            raise MalformedArchiveError(f"corrupt archive: the entry at byte {offset} has an empty name")
        if uid < 0 or gid < 0 or size < 0:
            raise MalformedArchiveError(f"corrupt archive: entry {name!r} has a negative uid, gid or size")

        kind = _entry_kind(typeflag, name_raw, name)
        if kind != "file" and size and self._check_safety:
            raise MalformedArchiveError(
                f"refusing an ambiguous archive: entry {name!r} is a {kind} but declares {size} bytes of data"
            )

        path = self._entry_path(name, name)
        if self._restorable:
            _check_restorable(name_raw, link_raw if kind == "symlink" else b"", kind, name)
        mode &= 0o7777
        if kind == "hardlink":
            self._add_hard_link(path, name, link_raw.decode("utf-8", "surrogateescape"))
            return
        if path == "." and kind != "dir" and self._check_safety:
            raise UnsafeArchiveError(f"unsafe archive: the root entry {name!r} is a {kind}, not a directory")

        mtime = _parse_mtime(block, pax, offset)
        xattrs = _collect_xattrs(pax, name) if pax else ()
        path_bytes = path.encode("utf-8", "surrogateescape")
        seq = self._seq
        self._seq += 1
        if kind == "file":
            self._start_file([path_bytes, seq, kind, mode, uid, gid, size, "", "", "", xattrs, mtime], sparse, name)
            return
        self._add_other(path, name, kind, block, link_raw, offset, (path_bytes, seq, kind, mode, uid, gid, 0, "", "",
                                                                   "", xattrs, mtime))  # fmt: skip

    def _start_file(self, record: list[Any], sparse: _SparseData | None, name: str) -> None:
        """Start hashing a regular file's data (record[_SIZE] bytes stored), or keep its record if it has none."""
        stored = record[_SIZE]
        self._hasher = hashlib.sha256()
        if sparse is not None:
            record[_SIZE] = sparse.real_size
            sparse.start(self._hasher if self._hash_data else None, name)
        if stored:
            self._pending = record
            self._sparse = sparse
            self._remaining = stored
            self._padding = -stored % BLOCK_SIZE
            self._state = _DATA if sparse is None else _SPARSE
            return
        if sparse is not None:
            sparse.finish()
        record[_SHA] = self._hasher.hexdigest() if self._hash_data else ""
        self._add(tuple(record))

    def _add_other(
        self, path: str, name: str, kind: str, block: bytes, link_raw: bytes, offset: int, record: tuple[Any, ...]
    ) -> None:
        """Keep the record of an entry that is neither a regular file nor a hard link."""
        if kind == "symlink":
            record = (*record[:_MODE], 0, *record[_UID:_TARGET], link_raw.decode("utf-8", "surrogateescape"),
                      *record[_DEVICE:])  # fmt: skip
            self._symlink_paths.add(path)
        elif kind in ("char", "block"):
            if self._check_safety:
                raise UnsafeArchiveError(
                    f"unsafe archive: entry {name!r} is a {kind} device node; restore never creates devices"
                )
            major = _parse_number(block[329:337], "devmajor", offset)
            minor = _parse_number(block[337:345], "devminor", offset)
            record = (*record[:_DEVICE], f"{major},{minor}", *record[_XATTRS:])
        self._add(record)

    def _add(self, record: tuple[Any, ...]) -> None:
        """Keep a path's record; spill the run to a temporary file, sorted, once RUN_RECORDS are kept."""
        records = self._records
        records.append(record)
        if len(records) >= RUN_RECORDS:
            self._spill()

    def _spill(self) -> None:
        """Sort this run's records and write them to a temporary file."""
        if self._tops is not None:
            self._note_tops()
            self._tops_mark = 0
        records = self._records
        records.sort()
        run = tempfile.TemporaryFile(prefix="docker-persist-digest-")  # noqa: SIM115 (read back by finish)
        for start in range(0, len(records), _SPILL_CHUNK):
            pickle.dump(records[start : start + _SPILL_CHUNK], run, protocol=5)
        self._spilled.append(run)
        self._records = []

    def _entry_path(self, name: str, entry: str) -> str:
        """Normalize an entry name (or a hard link's target) and check it; `entry` names the entry in messages."""
        if (  # GNU tar's "./a/b": normal already, unless a component is empty or starts with a dot
            name.startswith("./")
            and len(name) > 2
            and "//" not in name
            and "/." not in name
            and not name.endswith("/")
            and not self._prefix
            and not (self._check_safety and self._symlink_paths)
        ):
            return name[2:]
        absolute, parts = _split_name(name)
        if self._check_safety:
            reason = _unsafe_name_reason(absolute, parts)
            if reason:
                what = f"entry {entry!r}" if name == entry else f"hard link {entry!r} points to {name!r}, which"
                raise UnsafeArchiveError(f"unsafe archive: {what} {reason}")
        prefix = self._prefix
        if prefix:
            if absolute or parts[: len(prefix)] != prefix:
                raise MalformedArchiveError(
                    f"unexpected archive: entry {entry!r} is outside {'/'.join(prefix)!r}, the folder it should hold"
                )
            parts = parts[len(prefix) :]
        if self._check_safety and self._symlink_paths:
            for index in range(1, len(parts)):
                parent = "/".join(parts[:index])
                if parent in self._symlink_paths:
                    what = f"entry {name!r}" if name == entry else f"hard link {entry!r} points to {name!r}, which"
                    raise UnsafeArchiveError(
                        f"unsafe archive: {what} goes through {parent!r}, a symlink earlier in the archive; "
                        "extracting it would write through the symlink"
                    )
        return _join_lenient(absolute, parts)

    def _add_hard_link(self, path: str, name: str, target_name: str) -> None:
        """Keep a hard link; what it points to is resolved by finish(), which refuses a link to nothing or a
        folder (streaming, only the names are checked here)."""
        target = self._entry_path(target_name, name) if target_name else ""
        if path == "." and self._check_safety:
            raise UnsafeArchiveError(f"unsafe archive: the root entry {name!r} is a hard link, not a directory")
        if target in self._symlink_paths:  # it may be a link to a symlink: nothing may go through it either
            self._symlink_paths.add(path)
        path_bytes, target_bytes = path.encode("utf-8", "surrogateescape"), target.encode("utf-8", "surrogateescape")
        seq = self._seq
        self._seq += 1
        self._links.append((path_bytes, seq, target_bytes, name, target_name))
        self._add((path_bytes, seq, "hardlink", 0, 0, 0, 0, "", target, "", (), 0.0))

    # --- the summary -----------------------------------------------------------------

    def _merged(self) -> Iterator[list[tuple[Any, ...]]]:
        """Yield every record, sorted (by path, then by seq: the order the archive gave a path's entries),
        in lists: the sorted runs, spilled ones first, are merged a block at a time. Each run is read a
        chunk at a time; the records up to the smallest last record of the chunks at hand are, in every
        run, all that can come before the rest, so they are taken, sorted (timsort merges the sorted
        pieces) and yielded. Memory: one chunk of each run."""
        records = self._records
        runs: list[Iterator[list[tuple[Any, ...]]]] = [
            *(_read_chunks(run) for run in self._spilled),
            (records[start : start + _SPILL_CHUNK] for start in range(0, len(records), _SPILL_CHUNK)),
        ]
        heads = [(chunk, run) for run in runs if (chunk := next(run, None))]
        while heads:
            bound = min(chunk[-1] for chunk, _ in heads)
            batch: list[tuple[Any, ...]] = []
            left = []
            for chunk, run in heads:
                cut = bisect.bisect_right(chunk, bound)
                batch += chunk[:cut]
                if rest := chunk[cut:] or next(run, []):
                    left.append((rest, run))
            heads = left
            if len(runs) > 1:
                batch.sort()
            yield batch

    def _finals(self) -> Iterator[list[tuple[Any, ...]]]:
        """Yield the last record of each path, in path byte order (tar semantics: the last entry wins), in lists."""
        previous: list[tuple[Any, ...]] = []  # the last record so far: the next batch may hold its path again
        for merged in self._merged():
            batch = previous + merged
            previous = batch[-1:]
            finals = [record for record, after in itertools.pairwise(batch) if record[_PATH] != after[_PATH]]
            if finals:
                yield finals
        if previous:
            yield previous

    def _resolve_links(self) -> tuple[dict[int, tuple[Any, ...]], dict[tuple[bytes, int], bytes], int]:
        """Resolve every hard link to the record it shares (the target's last entry before the link).

        Return (the node record of each link by seq, the group's smallest path by node key (path,
        seq) for groups of two or more paths, the number of hard-link entries any writer must emit).
        Memory goes with the number of hard links, not of paths. Raise for a link to nothing or a folder.
        """
        links = self._links
        if not links:
            return {}, {}, 0
        wanted = {link[0] for link in links} | {link[2] for link in links}
        versions: dict[bytes, list[tuple[Any, ...]]] = {}
        for record in itertools.chain.from_iterable(self._merged()):
            if record[_PATH] in wanted:
                versions.setdefault(record[_PATH], []).append(record)
        by_seq = {link[1]: link for link in links}

        def resolve(target: bytes, before: int) -> tuple[Any, ...] | None:
            for _ in range(len(links) + 1):  # a chain of links is at most as long as the links
                found = None
                for record in versions.get(target, ()):
                    if record[_SEQ] < before:
                        found = record
                if found is None or found[_KIND] != "hardlink":
                    return found
                target, before = by_seq[found[_SEQ]][2], found[_SEQ]
            return None

        nodes: dict[int, tuple[Any, ...]] = {}
        for _, seq, target, name, target_name in links:
            node = resolve(target, seq)
            if node is None or node[_KIND] == "dir":
                why = "a directory" if node is not None else "not an earlier entry of the archive"
                message = f"hard link {name!r} points to {target_name!r}, which is {why}"
                if self._check_safety:
                    raise UnsafeArchiveError(f"unsafe archive: {message}")
                raise MalformedArchiveError(f"corrupt archive: {message}")
            nodes[seq] = node
        members: dict[tuple[bytes, int], list[bytes]] = {}
        for path, seq, *_ in links:
            if versions[path][-1][_SEQ] == seq:  # the link is what the path holds in the end
                node = nodes[seq]
                members.setdefault((node[_PATH], node[_SEQ]), []).append(path)
        for (path, seq), paths in members.items():
            if versions[path][-1][_SEQ] == seq:  # so is the file it shares
                paths.append(path)
        groups = {key: min(paths) for key, paths in members.items() if len(paths) > 1}
        hardlinks = sum(len(paths) - 1 for paths in members.values() if len(paths) > 1)
        return nodes, groups, hardlinks

    def _summarize(self) -> ArchiveSummary:
        self._records.sort()
        nodes, groups, hardlinks = self._resolve_links()
        digest = hashlib.sha256(_netstring(DIGEST_VERSION))
        portable: hashlib._Hash | None = None  # a copy of digest from the first path it differs on
        counts = {"file": 0, "dir": 0, "symlink": 0}
        total_bytes = entries = 0
        root: ArchiveRoot | None = None
        records: list[bytes] = []
        index = tempfile.SpooledTemporaryFile(INDEX_IN_MEMORY) if self._want_index else None  # noqa: SIM115 (read later)
        lines: list[bytes] = []
        grouped = sorted(path for path, _ in groups)  # files whose record needs its link group: Python's
        for batch in self._finals():
            # The C code takes no hard link (it returns None for one) and must not get a grouped file.
            first = bisect.bisect_left(grouped, batch[0][_PATH])
            in_c = (
                _serialize is not None and portable is None and first == bisect.bisect_right(grouped, batch[-1][_PATH])
            )
            done = _serialize(batch, index is not None) if in_c else None
            if done is not None:  # the C code serialized the batch: nothing in it needs more (see core/_tarscan.c)
                records.append(done[0])
                lines.append(done[1])
                entries += len(batch)
                for kind, count in zip(("file", "dir", "symlink"), done[2:5], strict=True):
                    counts[kind] += count
                total_bytes += done[5]
            for final in batch if done is None else ():
                entries += 1
                path_bytes = final[_PATH]
                node = nodes[final[_SEQ]] if final[_KIND] == "hardlink" else final
                group = groups.get((node[_PATH], node[_SEQ]))
                kind = node[_KIND]
                if kind in counts:
                    counts[kind] += 1
                    total_bytes += node[_SIZE]  # 0 but for files
                if path_bytes == b".":
                    root = ArchiveRoot(node[_MODE], node[_UID], node[_GID], node[_MTIME]) if kind == "dir" else None
                record = _digest_record(path_bytes, node, group)
                if portable is None and node[_XATTRS] and not all(name in PORTABLE_XATTRS for name, _ in node[_XATTRS]):
                    digest.update(b"".join(records))
                    records.clear()
                    portable = digest.copy()
                if portable is not None:
                    portable.update(_portable_record(node, record, group, path_bytes))
                records.append(record)
                if index is not None:
                    lines.append(_index_line(path_bytes, node, group))
            digest.update(b"".join(records))
            records.clear()
            if index is not None:
                index.write(b"".join(lines))
                lines.clear()
        if index is not None:
            self._index = cast("IO[bytes]", index)
        full = f"sha256:{digest.hexdigest()}" if self._hash_data else ""
        return ArchiveSummary(
            digest=full,
            portable_digest=full if portable is None or not self._hash_data else f"sha256:{portable.hexdigest()}",
            entries=entries,
            files=counts["file"],
            directories=counts["dir"],
            symlinks=counts["symlink"],
            hardlinks=hardlinks,
            bytes=total_bytes,
            root=root,
        )


def _digest_record(path_bytes: bytes, node: tuple[Any, ...], group: bytes | None) -> bytes:
    """Return a path's record in the content digest (see the module docstring)."""
    head, middle, tail = _serialize_fields(node)
    if group is not None:
        head += b"10:link-group,%d:%s," % (len(group), group)
    body = b"%s%s4:path,%d:%s,%s" % (head, middle, len(path_bytes), path_bytes, tail)
    return b"%d:%s," % (len(body), body)


def _read_chunks(run: IO[bytes]) -> Iterator[list[tuple[Any, ...]]]:
    """Yield the records of a spilled run, from its start, a chunk (a sorted list) at a time."""
    run.seek(0)
    while True:
        try:
            yield pickle.load(run)  # our own unnamed temporary file: nobody else wrote it
        except EOFError:
            return


def _index_line(path_bytes: bytes, node: tuple[Any, ...], group: bytes | None) -> bytes:
    """Return a path's file index line (core/fileindex.py)."""
    kind = node[_KIND]
    if kind == "file" and group is None and not _NEEDS_ESCAPE.search(path_bytes):  # most lines: nothing to escape
        return b"%s\tfile\t%04o\t%d\t%d\t%d\t%d\t%s\t\n" % (
            path_bytes, node[_MODE], node[_UID], node[_GID], node[_SIZE], math.floor(node[_MTIME]),
            node[_SHA].encode(),
        )  # fmt: skip
    from docker_persist.core.fileindex import escape

    what = node[_SHA] if kind == "file" else node[_TARGET] or node[_DEVICE]
    path = path_bytes.decode("utf-8", "surrogateescape")
    shared = group.decode("utf-8", "surrogateescape") if group is not None else ""
    return (
        f"{escape(path)}\t{kind}\t{node[_MODE]:04o}\t{node[_UID]}\t{node[_GID]}\t{node[_SIZE]}\t"
        f"{math.floor(node[_MTIME])}\t{escape(what)}\t{escape(shared)}\n"
    ).encode("utf-8", "surrogateescape")


_NEEDS_ESCAPE = re.compile(rb"[\\\t\n\r]")  # what fileindex.escape escapes


# --- sparse files -------------------------------------------------------------------------


def _sparse_entry(
    pax: dict[bytes, bytes], typeflag: bytes, name_raw: bytes, size: int, offset: int
) -> tuple[bytes, _SparseData]:
    """Return the real name and the reader of an entry whose PAX records say it is a sparse file.

    Only the format GNU tar writes with --sparse and --format=posix, 1.0, is read: its name and
    size are in GNU.sparse.name and GNU.sparse.realsize, and its data starts with the extent map.
    """
    version = (pax.get(b"GNU.sparse.major"), pax.get(b"GNU.sparse.minor"))
    if version != (b"1", b"0"):
        found = b".".join(part or b"?" for part in version).decode("ascii", "replace")
        raise MalformedArchiveError(
            f"unsupported archive: the entry at byte {offset} is a GNU sparse file of format {found} "
            "(only format 1.0, GNU tar's with --format=posix, is read)"
        )
    if _KINDS.get(typeflag) != "file":
        raise MalformedArchiveError(f"corrupt archive: the sparse entry at byte {offset} is not a regular file")
    real_size = _pax_int(pax, b"GNU.sparse.realsize", -1, offset)
    if real_size < 0:
        raise MalformedArchiveError(f"corrupt archive: the sparse entry at byte {offset} has no GNU.sparse.realsize")
    return pax.get(b"GNU.sparse.name") or name_raw, _SparseData(real_size, size, offset)


class _SparseData:
    """The data of a PAX 1.0 sparse file: a map (decimal numbers, one per line: the count of
    extents, then each extent's offset and length), zero-padded to a block, then the extents'
    bytes one after the other. Hashes the file as extraction makes it, the holes as zeros, and
    refuses a map that is malformed, out of order, past the real size or not what the entry's
    stored size holds. The map is at most MAX_META_SIZE bytes (about 400,000 extents), kept as
    16 bytes an extent."""

    def __init__(self, real_size: int, stored: int, offset: int) -> None:
        self.real_size = real_size
        self._stored = stored
        self._offset = offset
        self._name = ""
        self._hasher: Any = None
        self._map: bytearray | None = bytearray()  # until the map is read
        self._newlines = 0  # in the map so far
        self._count = -1  # extents, once the map's first line is in
        self._extents = array.array("q")  # offset, length, offset, length, ...
        self._next = 0  # index in _extents of the next extent's offset
        self._position = 0  # in the real file
        self._left = 0  # bytes of the current extent still to come

    def start(self, hasher: Any, name: str) -> None:
        self._hasher, self._name = hasher, name

    def _corrupt(self, why: str) -> MalformedArchiveError:
        return MalformedArchiveError(f"corrupt archive: the sparse file {self._name!r} (at byte {self._offset}) {why}")

    def feed(self, data: memoryview) -> None:
        if self._map is not None:
            data = self._read_map(data)
        extents = self._extents
        while data:
            if not self._left:
                if self._next >= len(extents):
                    raise self._corrupt("holds more data than its map says")
                start, self._left = extents[self._next], extents[self._next + 1]
                self._next += 2
                self._zeros(start - self._position)
                continue
            take = min(self._left, len(data))
            if self._hasher is not None:
                self._hasher.update(data[:take])
            self._position += take
            self._left -= take
            data = data[take:]

    def _read_map(self, data: memoryview) -> memoryview:
        """Collect the map a block at a time; return what follows it, once it is whole."""
        assert self._map is not None
        while data:
            take = BLOCK_SIZE - len(self._map) % BLOCK_SIZE
            before = len(self._map)
            self._map += data[:take]
            data = data[take:]
            self._newlines += self._map.count(b"\n", before)
            if len(self._map) % BLOCK_SIZE:
                return data
            if len(self._map) > MAX_META_SIZE:
                raise self._corrupt(f"has a map of more than {MAX_META_SIZE} bytes")
            if self._count < 0 and self._newlines:
                first = self._map[: self._map.index(b"\n")]
                if not first or first.translate(None, _DECIMAL_DIGITS):
                    raise self._corrupt("has a malformed map")
                self._count = int(first)
            if self._count >= 0 and self._newlines >= 2 * self._count + 1:
                self._parse_map()
                return data
        return data

    def _parse_map(self) -> None:
        assert self._map is not None
        lines = bytes(self._map).split(b"\n", 2 * self._count + 1)
        numbers, rest = lines[1:-1], lines[-1]
        if any(not n or n.translate(None, _DECIMAL_DIGITS) or len(n) > 18 for n in numbers) or rest.strip(b"\0"):
            raise self._corrupt("has a malformed map")
        self._extents = extents = array.array("q", map(int, numbers))
        end = stored = 0
        for index in range(0, len(extents), 2):
            start, length = extents[index], extents[index + 1]
            if start < end or start + length > self.real_size:
                raise self._corrupt("has a map whose extents overlap, go backwards or pass its size")
            end = start + length
            stored += length
        if len(self._map) + stored != self._stored:
            raise self._corrupt("has a map that does not match the data stored")
        self._map = None

    def _zeros(self, count: int) -> None:
        self._position += count
        if self._hasher is None:
            return
        while count > 0:
            piece = min(count, len(_ZEROS))
            self._hasher.update(_ZEROS[:piece] if piece < len(_ZEROS) else _ZEROS)
            count -= piece

    def finish(self) -> None:
        if self._map is not None:
            raise self._corrupt("ends inside its map")
        extents = self._extents
        if self._left or any(extents[i] for i in range(self._next + 1, len(extents), 2)):  # GNU tar ends with (size, 0)
            raise self._corrupt("holds less data than its map says")
        self._zeros(self.real_size - self._position)


# --- moving an archive under a folder ----------------------------------------------------


def reroot(chunks: Iterable[bytes], folder: bytes) -> Iterator[bytes]:
    """Yield the tar stream `chunks` with every entry moved under `folder` ("./a" -> "data/a", "./" -> "data/").

    The engine's archive API refuses to extract a symlink whose target leads out of the folder
    it extracts into (`x -> ../y` in a volume's root); extracted one level up, under the
    volume's mount point, the same link is inside. Each entry gets a PAX header carrying its
    new path (and, for a hard link, its new link path; for a sparse file, its new
    GNU.sparse.name), with the entry's other PAX records;
    GNU long names become PAX records; data and symlink targets pass through untouched.
    Streaming, with memory bounded by MAX_META_SIZE. Raise MalformedArchiveError for an entry
    this cannot move (an absolute or '..' name: the digester refuses those too).
    """
    blocks = _Blocks(iter(chunks))
    records: dict[bytes, bytes] = {}
    while (block := blocks.take(BLOCK_SIZE)) is not None:
        if block == _ZERO_BLOCK:
            yield block
            yield from blocks.rest()
            return
        _, _, _, size = _parse_header_numbers(block, blocks.offset - BLOCK_SIZE)
        typeflag = block[156:157]
        if typeflag in (b"x", b"L", b"K"):
            if size > MAX_META_SIZE:
                raise MalformedArchiveError(f"unsupported archive: a {_META_TYPES[typeflag]} of {size} bytes")
            content = blocks.take(size + -size % BLOCK_SIZE) or b""
            if typeflag == b"x":
                records.update(_parse_pax(content[:size], blocks.offset))
            else:
                records[b"path" if typeflag == b"L" else b"linkpath"] = content[:size].split(b"\0", 1)[0]
            continue
        if typeflag != b"g":
            if b"GNU.sparse.name" in records:  # a sparse file's real name, which readers prefer to `path`
                records[b"GNU.sparse.name"] = records[b"path"] = _under(folder, records[b"GNU.sparse.name"])
            else:
                records[b"path"] = _under(folder, records.get(b"path") or _header_name(block))
            if typeflag == _HARD_LINK:
                records[b"linkpath"] = _under(folder, records.get(b"linkpath") or block[157:257].split(b"\0", 1)[0])
            yield _pax_header(records)
            records = {}
        yield block
        yield from blocks.copy(size + -size % BLOCK_SIZE)


class _Blocks:
    """Exact reads from an iterator of chunks of any size."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.offset = 0  # bytes taken so far

    def take(self, size: int) -> bytes | None:
        """Return the next `size` bytes, fewer at the end of the stream, None if none is left."""
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if not self._buffer and size:
            return None
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.offset += len(taken)
        return taken

    def copy(self, size: int) -> Iterator[bytes]:
        """Yield the next `size` bytes (fewer at the end of the stream) as they come."""
        while size > 0:
            if not self._buffer:
                chunk = next(self._chunks, None)
                if chunk is None:
                    return
                self._buffer += chunk
            piece = bytes(self._buffer[:size])
            del self._buffer[: len(piece)]
            self.offset += len(piece)
            size -= len(piece)
            yield piece

    def rest(self) -> Iterator[bytes]:
        """Yield what is left."""
        if self._buffer:
            yield bytes(self._buffer)
            self._buffer.clear()
        yield from self._chunks


def _under(folder: bytes, name: bytes) -> bytes:
    parts = [part for part in name.split(b"/") if part not in (b"", b".")]
    if name.startswith(b"/") or b".." in parts:
        raise MalformedArchiveError(f"unsafe archive: entry {name!r} cannot be moved under a folder")
    return b"/".join([folder, *parts]) + (b"/" if name.endswith(b"/") or not parts else b"")


def _pax_record(key: bytes, value: bytes) -> bytes:
    payload = b" %s=%s\n" % (key, value)
    length = len(payload) + 1
    while len(b"%d" % length) + len(payload) != length:  # the length counts its own digits
        length = len(b"%d" % length) + len(payload)
    return b"%d%s" % (length, payload)


def _pax_header(records: dict[bytes, bytes]) -> bytes:
    body = b"".join(_pax_record(key, value) for key, value in records.items())
    header = bytearray(BLOCK_SIZE)
    header[0:14] = b"././@PaxHeader"
    header[100:108] = b"0000644\0"
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % len(body)
    header[136:148] = b"00000000000\0"
    header[148:156] = b" " * 8
    header[156:157] = b"x"
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + body + bytes(-len(body) % BLOCK_SIZE)


# --- helpers ---------------------------------------------------------------------------


def _portable_record(node: tuple[Any, ...], record: bytes, group: bytes | None, path_bytes: bytes) -> bytes:
    """Return `record` (the path's digest record) with only the PORTABLE_XATTRS of its node."""
    if all(name in PORTABLE_XATTRS for name, _ in node[_XATTRS]):
        return record
    head, middle, tail = _serialize_fields(node, PORTABLE_XATTRS)
    if group is not None:
        head += b"10:link-group,%d:%s," % (len(group), group)
    body = b"%s%s4:path,%d:%s,%s" % (head, middle, len(path_bytes), path_bytes, tail)
    return b"%d:%s," % (len(body), body)


def _netstring(value: bytes) -> bytes:
    return b"%d:%s," % (len(value), value)


def _serialize_fields(node: tuple[Any, ...], xattrs: Collection[bytes] | None = None) -> tuple[bytes, bytes, bytes]:
    """Return the record fields of a node that come before link-group, between it and path, and after path.

    With `xattrs`, only the xattrs named there count.
    """
    gid = b"%d" % node[_GID]
    head = b"3:gid,%d:%s," % (len(gid), gid)
    if node[_DEVICE]:
        device = node[_DEVICE].encode()
        head = b"6:device,%d:%s,%s" % (len(device), device, head)
    mode = b"%04o" % node[_MODE]
    middle = b"4:mode,%d:%s," % (len(mode), mode)
    kind = node[_KIND]
    tail: list[bytes] = []
    if kind == "file":
        size = b"%d" % node[_SIZE]
        tail.append(b"6:sha256,64:%s,4:size,%d:%s," % (node[_SHA].encode(), len(size), size))
    elif kind == "symlink":
        target = node[_TARGET].encode("utf-8", "surrogateescape")
        tail.append(b"6:target,%d:%s," % (len(target), target))
    uid = b"%d" % node[_UID]
    tail.append(b"4:type,%d:%s,3:uid,%d:%s," % (len(kind), kind.encode(), len(uid), uid))
    for name, value in sorted(node[_XATTRS]):
        if xattrs is not None and name not in xattrs:
            continue
        tail.append(_netstring(b"xattr." + name) + _netstring(value.encode()))
    return head, middle, b"".join(tail)


def _check_restorable(name_raw: bytes, target: bytes, kind: str, name: str) -> None:
    """Raise UnrestorableError if no restore could create this entry."""
    path = name_raw.removeprefix(b"./")
    if len(path) <= MAX_NAME and kind not in ("char", "block") and len(target) <= MAX_PATH:
        return  # almost every entry: nothing can be too long
    shown = name if len(name) <= 120 else f"{name[:60]}...{name[-40:]}"
    if kind in ("char", "block"):
        raise UnrestorableError(
            f"{shown!r} is a {kind} device node: a restore never creates device nodes (they reach the host's "
            "devices), so it cannot be backed up; remove it from the volume (containers get their devices from "
            "the engine, not from a volume)"
        )
    if len(path) > MAX_PATH:
        raise UnrestorableError(
            f"{shown!r} is {len(path)} bytes long: no restore can create a path over {MAX_PATH} bytes; "
            "shorten it (rename a folder on its way)"
        )
    longest = max(path.split(b"/"), key=len, default=b"")
    if len(longest) > MAX_NAME:
        raise UnrestorableError(
            f"{shown!r} has a name of {len(longest)} bytes: no file system here takes names over {MAX_NAME} bytes; "
            "rename it"
        )
    if len(target) > MAX_PATH:
        raise UnrestorableError(f"the symlink {shown!r} points to a target of {len(target)} bytes: over {MAX_PATH}")


def _split_name(name: str) -> tuple[bool, list[str]]:
    return name.startswith("/"), [part for part in name.split("/") if part and part != "."]


def _join_lenient(absolute: bool, parts: list[str]) -> str:
    if absolute:
        return "/" + "/".join(parts)
    return "/".join(parts) or "."


def _unsafe_name_reason(absolute: bool, parts: list[str]) -> str:
    if absolute:
        return "is an absolute path"
    if ".." in parts:
        return "has a '..' component"
    return ""


def _entry_kind(typeflag: bytes, name_raw: bytes, name: str) -> str:
    if typeflag == _HARD_LINK:
        return "hardlink"
    kind = _KINDS.get(typeflag)
    if kind is None:
        what = _UNSUPPORTED_TYPES.get(typeflag, f"of type {typeflag!r}")
        raise MalformedArchiveError(f"unsupported archive: entry {name!r} is {what}, which this tool cannot read")
    if kind == "file" and typeflag == b"\0" and name_raw.endswith(b"/"):
        return "dir"
    return kind


def _header_name(block: bytes) -> bytes:
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\0":  # POSIX ustar: the prefix field extends the name; GNU uses it otherwise
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


_PARSED: dict[bytes, tuple[int, int, int, int]] = {}  # mode, uid, gid and size fields -> their values
_PARSED_MAX = 4096


def _parse_header_numbers(block: bytes, offset: int) -> tuple[int, int, int, int]:
    """Given a header block, verify its checksum and return its mode, uid, gid and size.

    Raises MalformedArchiveError if a field is not a number or the checksum is wrong.
    """
    # Most headers repeat the mode, owner and size of one before (PAX headers, small files):
    # those four fields, once parsed, are looked up; the checksum is always checked.
    known = _PARSED.get(block[100:136])
    if known is not None:
        checksum = block[148:156].strip(b" \0")
        if checksum.isdigit() and b"8" not in checksum and b"9" not in checksum:
            _verify_checksum(block, int(checksum, 8), offset)
            return known
    fields = _NUMERIC_FIELDS.unpack_from(block, 100)
    mode, uid, gid, size, _, checksum = texts = [field.strip(b" \0") for field in fields]
    numbers: tuple[int, ...] = ()
    if mode and uid and gid and size and checksum and b"".join(texts).isdigit():
        with contextlib.suppress(ValueError):  # an 8 or a 9 falls through: _parse_number says which field
            numbers = int(mode, 8), int(uid, 8), int(gid, 8), int(size, 8), int(checksum, 8)
    if not numbers:
        names = ("mode", "uid", "gid", "size", "mtime", "checksum")
        numbers = tuple(
            _parse_number(field, name, offset) for field, name in zip(fields, names, strict=True) if name != "mtime"
        )
    _verify_checksum(block, numbers[4], offset)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    parsed = _PARSED[block[100:136]] = numbers[0], numbers[1], numbers[2], numbers[3]
    return parsed


def _verify_checksum(block: bytes, stored: int, offset: int) -> None:
    field = block[148:156]
    # The sum of the block's bytes, fast: adler32's low half is 1 + the byte sum modulo 65521,
    # and a half block sums to at most 256 * 255 = 65280, so each half's sum is exact.
    unsigned = (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2 - sum(field) + 8 * 0x20
    if stored == unsigned:
        return
    # Some old writers summed signed chars.
    signed = unsigned - 256 * (sum(1 for byte in block if byte > 0x7F) - sum(1 for byte in field if byte > 0x7F))
    if stored != signed:
        raise MalformedArchiveError(
            f"corrupt archive: bad header checksum at byte {offset}; the archive was damaged or is not a tar"
        )


def _parse_number(field: bytes, what: str, offset: int) -> int:
    if field[0] & 0x80:  # GNU base-256, two's complement over the field with its top bit cleared
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:
            value -= 1 << (8 * len(field) - 1)
        return value
    text = field.strip(b" \0")  # as Go's archive/tar: padding at either end, nothing inside
    if text.isdigit():
        try:
            return int(text, 8)
        except ValueError:
            pass  # an 8 or a 9
    elif not text:
        return 0
    raise MalformedArchiveError(f"corrupt archive: the {what} field of the header at byte {offset} is not a number")


def _pax_int(pax: dict[bytes, bytes], key: bytes, default: int, offset: int) -> int:
    value = pax.get(key)
    if not value:
        return default
    if value.translate(None, _DECIMAL_DIGITS):
        raise MalformedArchiveError(
            f"corrupt archive: the PAX {key.decode()} of the entry at byte {offset} is not a number"
        )
    return int(value)


def _parse_mtime(block: bytes, pax: dict[bytes, bytes], offset: int) -> float:
    value = pax.get(b"mtime")
    if value:
        try:
            mtime = float(value)
        except ValueError:
            mtime = math.nan
        if not math.isfinite(mtime):
            raise MalformedArchiveError(f"corrupt archive: the PAX mtime of the entry at byte {offset} is not a time")
        return mtime
    return float(_parse_number(block[136:148], "mtime", offset))


def _parse_pax(content: bytes, offset: int) -> dict[bytes, bytes]:
    """Given a PAX extended header's content ("<length> <key>=<value>\\n" records), return its records."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(content):
        space = content.find(b" ", pos, pos + 20)
        digits = content[pos:space] if space > pos else b""
        if not digits or digits.translate(None, _DECIMAL_DIGITS):
            raise MalformedArchiveError(f"corrupt archive: the PAX header at byte {offset} is malformed")
        end = pos + int(digits)
        if end > len(content) or end <= space + 1 or content[end - 1] != 0x0A:
            raise MalformedArchiveError(f"corrupt archive: the PAX header at byte {offset} is malformed")
        key, equals, value = content[space + 1 : end - 1].partition(b"=")
        if not equals or not key:
            raise MalformedArchiveError(f"corrupt archive: the PAX header at byte {offset} is malformed")
        records[key] = value
        pos = end
    return records


def _collect_xattrs(pax: dict[bytes, bytes], name: str) -> tuple[tuple[bytes, str], ...]:
    """Return the (name, sha256 hex of the value) of each xattr the PAX records of an entry hold."""
    found: dict[bytes, str] = {}
    for key, value in pax.items():
        if key.startswith(_SCHILY_XATTR):
            found[key[len(_SCHILY_XATTR) :]] = hashlib.sha256(value).hexdigest()
        elif key.startswith(_LIBARCHIVE_XATTR):
            attribute = urllib.parse.unquote_to_bytes(key[len(_LIBARCHIVE_XATTR) :])
            try:
                decoded = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
            except binascii.Error:
                raise MalformedArchiveError(
                    f"corrupt archive: the xattr {attribute!r} of entry {name!r} is not valid base64"
                ) from None
            found[attribute] = hashlib.sha256(decoded).hexdigest()
    return tuple(sorted(found.items()))
