"""Overlap I/O and CPU: run one stage of a byte stream in a background thread.

Hashing, zstd and socket I/O all release the GIL, so two stages in two threads use
both cores: e.g. the engine's archive is read (and the compressed output hashed and
written) while the main thread digests and compresses. Queues are bounded, so memory
stays flat; an error in a stage reaches the other side; stopping early stops both.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

DEPTH = 8
COALESCE = 1 << 20


class _Done:
    pass


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(items: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _consume(items: queue.Queue[object], stop: threading.Event, thread: threading.Thread) -> Iterator[bytes]:
    """Yield what a producer thread queues; re-raise its error; stop and join it however this ends."""
    try:
        while True:
            item = items.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        thread.join()


def in_background(source: Iterable[bytes], coalesce: int = COALESCE) -> Iterator[bytes]:
    """Yield `source`'s bytes, produced in a background thread and joined into pieces of ~`coalesce` bytes."""
    items: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(source)
        try:
            pending: list[bytes] = []
            size = 0
            for chunk in iterator:
                pending.append(chunk)
                size += len(chunk)
                if size >= coalesce:
                    if not _put(items, b"".join(pending), stop):
                        return
                    pending, size = [], 0
            if pending and not _put(items, b"".join(pending), stop):
                return
            _put(items, _Done(), stop)
        except BaseException as error:  # handed to the consumer, which re-raises it
            _put(items, _Failed(error), stop)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="docker-persist-reader", daemon=True)
    thread.start()
    yield from _consume(items, stop, thread)


class BackgroundWriter:
    """A sink that hashes (sha256), counts and writes bytes to a file in a background thread."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._items: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, name="docker-persist-writer", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while True:
            item = self._items.get()
            if isinstance(item, _Done):
                return
            if self._error is not None:
                continue  # keep draining so the producer never blocks
            assert isinstance(item, bytes)
            try:
                self.sha256.update(item)
                self.target.write(item)
                self.size += len(item)
            except BaseException as error:  # re-raised by write() or close()
                self._error = error

    def write(self, data: bytes) -> int:
        """Queue bytes for writing. Raise the writer's error, if it has failed."""
        if self._error is not None:
            raise self._error
        self._items.put(bytes(data))
        return len(data)

    def close(self) -> None:
        """Wait for every queued byte to be written. Raise the writer's error, if it failed."""
        if self._thread.is_alive():
            self._items.put(_Done())
            self._thread.join()
        if self._error is not None:
            raise self._error


class _QueueSink:
    def __init__(self, items: queue.Queue[object], stop: threading.Event) -> None:
        self._items = items
        self._stop = stop

    def write(self, data: bytes) -> int:
        if data and not _put(self._items, bytes(data), self._stop):
            raise BrokenPipeError("the reader stopped")
        return len(data)


def from_writer(producer: Callable[[Any], None]) -> Iterator[bytes]:
    """Yield the bytes `producer` writes to the file-like object it is given, which runs in a background thread.

    For code that can only push (tarfile in "w|" mode) feeding code that pulls.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
    stop = threading.Event()

    def produce() -> None:
        try:
            producer(_QueueSink(items, stop))
            _put(items, _Done(), stop)
        except BaseException as error:  # handed to the consumer, which re-raises it
            _put(items, _Failed(error), stop)

    thread = threading.Thread(target=produce, name="docker-persist-producer", daemon=True)
    thread.start()
    yield from _consume(items, stop, thread)


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte strings, for code that pulls with read or readinto."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            try:
                self._current = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size
