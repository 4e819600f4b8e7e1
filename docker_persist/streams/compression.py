"""Streaming compression for snapshot archives: zstd (multi-threaded, the default), gzip or none.

Each format is what its standard CLI reads: `zstd -d`, `gzip -d`, or a plain tar, so a
snapshot stays restorable by hand.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol, cast

from docker_persist.core.manifest import COMPRESSIONS
from docker_persist.errors import ConfigError, PersistError
from docker_persist.streams.pipeline import ChunkReader

CHUNK = 1 << 20


class CorruptArchiveError(PersistError):
    """A compressed archive cannot be decompressed."""


class Sink(Protocol):
    """Where compressed bytes go."""

    def write(self, data: bytes) -> int:
        """Write bytes; return how many."""
        ...


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

        # Single-threaded on purpose: level 3 runs at ~1.3 GB/s on W1 on one core, while
        # multi-threaded mode was slower here and held 50-600 MB of buffers (memory must
        # stay flat). The other core reads the engine and hashes and writes the output.
        self._compressor = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=True)
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
    if kind not in COMPRESSIONS:
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


def iter_decompressed(kind: str, chunks: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Yield the tar bytes of a compressed stream given in pieces, at most `size` bytes at a time.

    Output is bounded whatever the ratio (300 MB of zeros compress to almost nothing).
    Truncation is caught by the caller's size and sha256 check of the stored file, and by
    the tar reader; corrupt data raises CorruptArchiveError.
    """
    check_compression(kind)
    if kind == "none":
        yield from chunks
        return
    try:
        if kind == "zstd":
            import zstandard

            source = cast(BinaryIO, ChunkReader(chunks))
            reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=size)
            while data := reader.read(size):
                yield data
            return
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for chunk in chunks:
            pending = chunk
            while pending:
                data = inflater.decompress(pending, size)
                pending = inflater.unconsumed_tail
                if data:
                    yield data
        if not inflater.eof:
            raise CorruptArchiveError("the gzip stream ends early: the archive is truncated")
    except (zlib.error, _zstd_error()) as error:
        raise CorruptArchiveError(f"the {kind} stream is corrupt: {error}") from error


def _zstd_error() -> type[Exception]:
    import zstandard

    error: type[Exception] = zstandard.ZstdError
    return error
