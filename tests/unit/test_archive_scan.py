"""The C reader (core/_tarscan.c) gives exactly what the Python reader gives: same summary, same file
index, same error, on sound, odd, hostile and damaged archives, in any chunking, with every option.

tests/unit/test_archive.py runs every digest test both ways too; this module fuzzes the entries the C
code reads (and the ones next to them that it must leave to Python), and proves it is really used.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest

import docker_persist.core.archive as archive_module
from docker_persist.host.process import TAR_CREATE_OPTIONS, find_gnu_tar
from tests.unit.test_archive import outcome, with_checksum

NAMES = [
    "./a", "./d/", "./d/f", "a/b", "a//b", "./a/./b", "./.hidden", "./d/..", "../x", "/abs", "./", ".", "",
    "data", "data/", "data/f", "./data/f", "data/../f", "datax/f", "./d/" + "n" * 98, "é/ü", "a\tb", "a\\b",
    "a\nb", "x" * 99 + "/", "./" + "p/" * 40 + "f", "./d0", "d1", "./d2/",
]  # fmt: skip
MTIMES = ["1700000000.123456789", "-1.5", "1e5", "1.", ".5", "+5", " 5", "5_0", "", "99999999999999999999",
          "1" * 400, "0", "nan", "1700000000"]  # fmt: skip
PAX_KEYS = ["mtime", "atime", "ctime", "uname", "gname", "comment", "path", "uid", "size", "SCHILY.xattr.user.x"]
TYPES = [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.AREGTYPE,
         tarfile.LNKTYPE, tarfile.CONTTYPE, tarfile.FIFOTYPE]  # fmt: skip


def random_archive(rng: random.Random) -> bytes:
    """An archive of plain-looking entries, many of them slightly off in a way that matters to a reader."""
    buffer = io.BytesIO()
    fmt = rng.choice([tarfile.PAX_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
    made: list[str] = []
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for _ in range(rng.randrange(1, 40)):
            name = rng.choice(NAMES) if rng.random() < 0.5 else f"./d{rng.randrange(3)}/f{rng.randrange(50)}"
            info = tarfile.TarInfo(name)
            info.type = rng.choice(TYPES)
            info.mode = rng.choice([0o644, 0o7777, 0o100755, 0o2775])
            info.uid, info.gid = rng.choice([(0, 0), (999, 70), (2**21 - 1, 1), (2**21, 5)])
            info.mtime = rng.choice([1_700_000_000, 0, 1_700_000_000.25, 2**34])
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = rng.choice([*made, "../t", "/etc", "a\tb", "t" * 99]) if made else "t"
            if fmt == tarfile.PAX_FORMAT and rng.random() < 0.4:
                info.pax_headers = {rng.choice(PAX_KEYS): rng.choice(MTIMES) or "x" for _ in range(rng.randrange(1, 3))}
            data = rng.randbytes(rng.choice([0, 1, 64, 511, 512, 513, 3000, 70_000]))
            if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                info.size = len(data)
                try:
                    archive.addfile(info, io.BytesIO(data))
                except ValueError:  # a name this format cannot hold
                    continue
            else:
                try:
                    archive.addfile(info)
                except ValueError:
                    continue
            made.append(name)
    return buffer.getvalue()


def damaged(archive: bytes, rng: random.Random) -> bytes:
    """The archive with one header field changed, its checksum fixed or not, or cut short."""
    if len(archive) < 1024 or rng.random() < 0.3:
        return archive
    header = rng.randrange(len(archive) // 512) * 512
    what = rng.random()
    if what < 0.2:
        return archive[: rng.randrange(len(archive))]
    field = rng.choice([(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8), (156, 1), (0, 100), (345, 155)])
    start, size = field
    value = rng.choice([b" ", b"\0", b"8", b"7", b"\x80", b"/", b".", b"x", b"5", b"2", b"1"]) * rng.randrange(
        1, size + 1
    )
    block = bytearray(archive[header : header + 512])
    block[start : start + len(value)] = value[:size]
    changed = with_checksum(bytes(block)) if rng.random() < 0.7 else bytes(block)  # right: only the field is wrong
    return archive[:header] + changed + archive[header + 512 :]


def both(archive: bytes, chunks: Iterable[int] | int, monkeypatch: pytest.MonkeyPatch, **options: object) -> object:
    """The outcome with the C reader, after checking that the Python reader gives the same."""
    with_c = outcome(archive, chunks, **options)
    with monkeypatch.context() as patched:
        patched.setattr(archive_module, "_scan", None)
        patched.setattr(archive_module, "_serialize", None)
        without = outcome(archive, chunks, **options)
    assert with_c == without, f"{options}, chunks {chunks if isinstance(chunks, int) else 'random'}"
    return with_c


def test_the_c_reader_is_built() -> None:
    """tests/run and build/build.sh build it (build/accel.sh); the bundle and the benchmarks use it."""
    assert archive_module._scan is not None and archive_module._serialize is not None, (
        "docker_persist/core/_tarscan.c is not built: run build/accel.sh"
    )


@pytest.mark.parametrize("seed", range(120))
def test_the_c_reader_gives_what_the_python_reader_gives(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    archive = damaged(random_archive(rng), rng)
    monkeypatch.setattr(archive_module, "RUN_RECORDS", rng.choice([3, 100_000]))  # spilled runs too
    chunkings: list[Iterable[int] | int] = [65536, 1536, [rng.randrange(1, 3000) for _ in range(len(archive) + 1)]]
    for options in (
        {"check_safety": True},
        {"check_safety": False, "restorable": True},
        {"check_safety": True, "strip_prefix": "data"},
        {"check_safety": False, "hash_data": False},
    ):
        for chunks in chunkings:
            both(archive, chunks, monkeypatch, **options)


def make_tree(root: Path, rng: random.Random) -> None:
    """A folder with what real volumes hold: nested folders, small and empty files, symlinks, odd names."""
    for index in range(300):
        folder = root / f"d{index % 7}" / f"e{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}").write_bytes(rng.randbytes(rng.choice([0, 1, 64, 700, 5000])))
    (root / "d0" / "link").symlink_to("e0/f0")
    (root / "d0" / "outside").symlink_to("/etc/passwd")
    (root / "d1" / "tab\there").write_bytes(b"x")
    os.link(root / "d0" / "e0" / "f0", root / "d2" / "hard")
    (root / "d2" / ("long-" * 30)).write_bytes(b"a long name: a PAX path record")
    os.mkfifo(root / "fifo")
    os.chmod(root / "d3", 0o2750)
    os.utime(root / "d4" / "e1" / "f4", ns=(0, 1_700_000_000_123_456_789))


class Counting:
    """The C reader, counting the entries it reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        scan = archive_module._scan
        assert scan is not None
        self.scan = scan
        self.entries = 0
        monkeypatch.setattr(archive_module, "_scan", self)

    def __call__(self, view: memoryview, pos: int, end: int, seq: int, *rest: object) -> tuple[int, int]:
        moved, after = self.scan(view, pos, end, seq, *rest)
        self.entries += after - seq
        return moved, after


def test_a_gnu_tar_archive_is_read_by_the_c_code_and_gives_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tar = find_gnu_tar()
    assert tar is not None, "GNU tar is needed (Debian's tar package)"
    make_tree(tmp_path / "tree", random.Random(7))
    argv = [tar, "-C", str(tmp_path / "tree"), *TAR_CREATE_OPTIONS, "-cf", "-", "."]  # what backups run
    archive = subprocess.run(argv, capture_output=True, check=True).stdout
    counting = Counting(monkeypatch)
    for options in ({"check_safety": True}, {"check_safety": False, "restorable": True}):
        summary, _ = both(archive, 65536, monkeypatch, **options)  # type: ignore[misc]
        assert (summary.files, summary.symlinks, summary.hardlinks) == (303, 2, 1)
    assert counting.entries > 2 * 300  # most entries, both times: the C code is what runs


def test_the_archive_api_s_names_under_a_prefix_are_read_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the engine's archive API sends (data/..., ustar headers, no PAX), read with strip_prefix."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in ("data/", "data/sub/"):
            folder = tarfile.TarInfo(name)
            folder.type = tarfile.DIRTYPE
            archive.addfile(folder)
        for index in range(200):
            info = tarfile.TarInfo(f"data/sub/f{index}")
            info.size = 10
            archive.addfile(info, io.BytesIO(b"0123456789"))
    counting = Counting(monkeypatch)
    summary, index = both(buffer.getvalue(), 65536, monkeypatch, strip_prefix="data")  # type: ignore[misc]
    assert summary.files == 200 and summary.directories == 2 and index[2].startswith(b"sub/f0\tfile\t")
    assert counting.entries == 201  # all but the root
