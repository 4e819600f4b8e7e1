"""Streaming compression for snapshot archives: zstd (multi-threaded, the default), gzip or none.

Each format is what its standard CLI reads: `zstd -d`, `gzip -d`, or a plain tar, so a
snapshot stays restorable by hand.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from typing import BinaryIO, Protocol, cast

from docker_persist.errors import ConfigError

EXTENSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
CHUNK = 1 << 20


class Sink(Protocol):
    """Where compressed bytes go."""

    def write(self, data: bytes) -> int:
        """Write bytes; return how many."""
        ...


class HashingWriter:
    """Pass bytes on to a file while counting them and computing their sha256."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()


class Compressor(Protocol):
    """Takes tar bytes, writes the compressed stream to its sink."""

    def write(self, data: bytes) -> None:
        """Compress some bytes."""
        ...

    def finish(self) -> None:
        """Flush the end of the compressed stream."""
        ...


class _Zstd:
    def __init__(self, sink: Sink, level: int) -> None:
        import zstandard

        # threads=-1: one worker per core; the caller's thread keeps reading the engine.
        self._compressor = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
        self._writer = self._compressor.stream_writer(sink, closefd=False, write_size=CHUNK)  # type: ignore[arg-type]

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def finish(self) -> None:
        self._writer.close()  # type: ignore[no-untyped-call]  # ends the frame; the sink stays open


class _Gzip:
    def __init__(self, sink: Sink, level: int) -> None:
        self._file = gzip.GzipFile(fileobj=cast(BinaryIO, sink), mode="wb", compresslevel=level, mtime=0)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def finish(self) -> None:
        self._file.close()


class _Plain:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> None:
        self._sink.write(data)

    def finish(self) -> None:
        pass


def check_compression(kind: str) -> str:
    """Return `kind` if it is a known compression. Raise ConfigError otherwise."""
    if kind not in EXTENSIONS:
        raise ConfigError(f"unknown compression {kind!r}: expected zstd, gzip or none")
    return kind


def make_compressor(kind: str, sink: Sink) -> Compressor:
    """Return a streaming compressor of `kind` writing to `sink`."""
    check_compression(kind)
    if kind == "zstd":
        return _Zstd(sink, level=3)
    if kind == "gzip":
        return _Gzip(sink, level=6)
    return _Plain(sink)


def iter_decompressed(kind: str, source: BinaryIO, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the tar bytes of a compressed stream, in pieces."""
    check_compression(kind)
    reader: BinaryIO
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=chunk)
    elif kind == "gzip":
        reader = cast(BinaryIO, gzip.GzipFile(fileobj=source, mode="rb"))
    else:
        reader = source
    while data := reader.read(chunk):
        yield data
