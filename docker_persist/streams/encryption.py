"""Encryption at rest with age (https://age-encryption.org/v1), through pyrage.

With `x-persist.encrypt`, each part of a snapshot is its compressed archive encrypted to the
project's recipients, and named `<key>.tar.zst.age`. The standard CLI restores it by hand:

    age -d -i key.txt < data.tar.zst.age | zstd -d | tar -xpf - -C /restore/here

The manifest's own fields that tell of the content (content digests, sizes and entry counts,
source volumes and their options, hook commands) are sealed with the same recipients
(`seal`); `snapshots`, `forget`, `copy` and the stored files' sha256 check need no key.
Restore and verify need an identity (a private key): `--identity FILE` or
$DOCKER_PERSIST_IDENTITY.

pyrage streams both ways with bounded memory. It pulls from a reader and pushes to a writer,
so encryption runs in a thread fed by a bounded queue, and decryption in a thread whose output
the caller pulls (pipeline.from_writer).
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from docker_persist.config.model import EncryptPolicy
from docker_persist.errors import ConfigError, PersistError
from docker_persist.streams.pipeline import DEPTH, ChunkReader, from_writer

ENCRYPTION = "age"
SUFFIX = ".age"
IDENTITY_ENV = "DOCKER_PERSIST_IDENTITY"
HEAD_BYTES = 64 << 10
"""How much of a part `check_identities` reads: the age header and the first payload chunk."""
_COALESCE = 1 << 20


class DecryptionError(PersistError):
    """An encrypted archive cannot be decrypted with a matching key: it is corrupt, truncated or was changed."""


class IdentityError(ConfigError):
    """No identity was given for an encrypted snapshot, or none of those given can open it."""


class Sink(Protocol):
    """Where bytes go."""

    def write(self, data: bytes) -> int:
        """Write bytes; return how many."""
        ...


# --- keys -----------------------------------------------------------------------------------


def parse_recipient(text: str, where: str) -> Any:
    """Return the pyrage recipient for an age (age1...) or SSH public key. Raise ConfigError naming `where`."""
    import pyrage

    text = text.strip()
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(text)
    except pyrage.RecipientError as error:
        raise ConfigError(f"{where}: {text!r} is not a valid age recipient ({error})") from error
    raise ConfigError(f"{where}: {text!r} is not an age recipient: expected age1... or an ssh-ed25519/ssh-rsa key")


def load_recipients(policy: EncryptPolicy) -> list[Any]:
    """Return the recipients `x-persist.encrypt` names, from its list and its file.

    Raise ConfigError for an unreadable file, a bad recipient (naming the line), or none at all.
    """
    recipients = [parse_recipient(text, "x-persist.encrypt.recipients") for text in policy.recipients]
    if policy.recipients_file is not None:
        path = policy.recipients_file
        try:
            with open(path, encoding="utf-8") as file:
                lines = file.read().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            raise ConfigError(f"cannot read x-persist.encrypt.recipients_file {path}: {reason}") from error
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                recipients.append(parse_recipient(line, f"{path}, line {number}"))
    if not recipients:
        raise ConfigError("x-persist.encrypt names no recipient: add an age public key (age-keygen -y KEY prints it)")
    return recipients


def identity_file(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """Return the identity file to use: --identity, else $DOCKER_PERSIST_IDENTITY, else None."""
    return flag or environ.get(IDENTITY_ENV) or None


def load_identities(path: str) -> list[Any]:
    """Return the identities in an age identity file (age-keygen's output) or an unencrypted SSH private key.

    Never shows key material: errors name the file and the line. Raise IdentityError.
    """
    import pyrage

    try:
        with open(path, "rb") as file:
            data = file.read(1 << 20)
    except OSError as error:
        raise IdentityError(f"cannot read the identity file {path}: {error.strerror}") from error
    text = data.decode("utf-8", errors="replace")
    if text.lstrip().startswith("-----BEGIN"):
        try:
            return [pyrage.ssh.Identity.from_buffer(data)]
        except pyrage.IdentityError as error:
            raise IdentityError(
                f"the identity file {path} is not a usable SSH private key ({error}); a passphrase-protected "
                "key is not supported: decrypt a copy with `ssh-keygen -p`, or use an age key"
            ) from error
    if text.startswith("age-encryption.org/"):
        raise IdentityError(
            f"the identity file {path} is itself encrypted with a passphrase, which is not supported: "
            "decrypt it with `age -d` into a file only you can read"
        )
    identities = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise IdentityError(f"{path}, line {number}: not an age identity (expected AGE-SECRET-KEY-1...)")
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError as error:
            raise IdentityError(f"{path}, line {number}: not a valid age identity ({error})") from error
    if not identities:
        raise IdentityError(f"the identity file {path} holds no identity (age-keygen writes one)")
    return identities


def require_identities(path: str | None, what: str) -> list[Any]:
    """Return the identities in the identity file `path` (see identity_file). Raise IdentityError if it is None."""
    if path is None:
        raise IdentityError(
            f"{what} is encrypted: give the identity (the age private key) with --identity FILE or ${IDENTITY_ENV}"
        )
    return load_identities(os.path.expanduser(path))


def check_identities(head: bytes, identities: Sequence[Any], where: str) -> None:
    """Raise IdentityError if none of `identities` opens the age file that starts with `head`.

    Only the header decides: a payload cut short after it is expected here. Raise
    DecryptionError if the header itself is damaged.
    """
    import pyrage

    try:
        pyrage.decrypt_io(io.BytesIO(head), _Discard(), list(identities))
    except pyrage.DecryptError as error:
        if "no matching keys" in str(error).lower():
            raise IdentityError(
                f"{where}: none of the identities given can decrypt it: it was encrypted to other recipients"
            ) from error
        raise DecryptionError(f"{where}: the age header is damaged ({error})") from error
    except OSError:
        pass  # the header opened; the payload stops at HEAD_BYTES


# --- small documents -------------------------------------------------------------------------


def seal(data: bytes, recipients: Sequence[Any]) -> str:
    """Return `data` encrypted with age to `recipients`, in base64 (for a JSON string)."""
    import base64

    import pyrage

    return base64.b64encode(pyrage.encrypt(data, list(recipients))).decode("ascii")


def unseal(text: str, identities: Sequence[Any], where: str) -> bytes:
    """Return what `seal` sealed. Raise IdentityError if no identity opens it, DecryptionError if it is damaged."""
    import base64
    import binascii

    import pyrage

    try:
        sealed = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise DecryptionError(f"{where}: the sealed part is not base64; the snapshot is damaged") from error
    try:
        return bytes(pyrage.decrypt(sealed, list(identities)))
    except pyrage.DecryptError as error:
        if "no matching keys" in str(error).lower():
            raise IdentityError(
                f"{where}: none of the identities given can decrypt it: it was encrypted to other recipients"
            ) from error
        raise DecryptionError(
            f"{where}: the sealed part cannot be decrypted ({error}); the snapshot is damaged"
        ) from error


# --- streams --------------------------------------------------------------------------------


class EncryptingSink:
    """A sink that encrypts what is written to it, to `recipients`, into `target`, in a background thread.

    Call finish() after the last write, then close() in any case (it stops the thread if
    finish() was not reached). An error of the thread, or of `target`, is raised by the
    next write() or by finish().
    """

    def __init__(self, target: Sink, recipients: Sequence[Any]) -> None:
        self._items: queue.Queue[bytes | None] = queue.Queue(maxsize=DEPTH)
        self._ended = threading.Event()
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._reader = _QueueReader(self._items, self._abort)
        self._writer = _Recording(target)
        self._thread = threading.Thread(
            target=self._run, args=(list(recipients),), name="docker-persist-encrypt", daemon=True
        )
        self._thread.start()

    def _run(self, recipients: list[Any]) -> None:
        import pyrage

        try:
            pyrage.encrypt_io(self._reader, self._writer, recipients)
        except BaseException as error:  # re-raised by write() or finish()
            self._error = self._reader.error or self._writer.error or PersistError(f"age encryption failed: {error}")
        finally:
            self._ended.set()

    def write(self, data: bytes) -> int:
        """Queue bytes for encryption. Raise the encryption's error, if it failed."""
        self._put(bytes(data))
        return len(data)

    def finish(self) -> None:
        """End the stream and wait until every byte is encrypted and written. Raise the first error."""
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the encryption thread if it is still running (after an error elsewhere)."""
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join()

    def _put(self, item: bytes | None) -> None:
        while True:
            if self._ended.is_set():
                raise self._error or PersistError("age encryption stopped before the end of the archive")
            try:
                self._items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def iter_decrypted(chunks: Iterable[bytes], identities: Sequence[Any], where: str) -> Iterator[bytes]:
    """Yield the plaintext of an age stream given in pieces, decrypted in a background thread.

    Raise IdentityError if no identity opens it, DecryptionError if it is damaged, and any
    error of `chunks` itself as it is.
    """

    def produce(sink: Sink) -> None:
        import pyrage

        reader = _Recording(ChunkReader(chunks))
        writer = _Coalescing(sink)
        try:
            pyrage.decrypt_io(reader, writer, list(identities))
        except (pyrage.DecryptError, OSError) as error:
            _close(chunks)  # e.g. the store's open part, now rather than at garbage collection
            failure = reader.error or writer.error
            if failure is not None:
                raise failure from None
            if isinstance(error, pyrage.DecryptError) and "no matching keys" in str(error).lower():
                raise IdentityError(f"{where}: none of the identities given can decrypt it") from error
            raise DecryptionError(
                f"{where}: age cannot decrypt it ({error}): the archive is corrupt, truncated or was changed"
            ) from error
        writer.flush()

    return from_writer(produce)


def _close(chunks: Iterable[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


class _QueueReader(io.RawIOBase):
    """A readable file over a queue of byte strings; None ends it. Raises once `abort` is set."""

    def __init__(self, items: queue.Queue[bytes | None], abort: threading.Event) -> None:
        super().__init__()
        self._items = items
        self._abort = abort
        self._current = memoryview(b"")
        self._eof = False
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            if self._eof:
                return 0
            try:
                item = self._items.get(timeout=0.1)
            except queue.Empty:
                if self._abort.is_set():
                    self.error = PersistError("age encryption was stopped")
                    raise self.error from None
                continue
            if item is None:
                self._eof = True
                return 0
            self._current = memoryview(item)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


class _Recording(io.RawIOBase):
    """Passes read/readinto/write through and keeps the first exception, which pyrage would flatten to text."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._inner.readinto(buffer))
        except BaseException as error:
            self.error = self.error or error
            raise

    def write(self, data: Any) -> int:
        try:
            self._inner.write(bytes(data))
        except BaseException as error:
            self.error = self.error or error
            raise
        return len(data)


class _Coalescing:
    """Joins pyrage's small writes (8 KiB) into pieces of about 1 MiB for the sink."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._pending = bytearray()
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        self._pending += data
        if len(self._pending) >= _COALESCE:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            try:
                self._sink.write(bytes(self._pending))
            except BaseException as error:
                self.error = self.error or error
                raise
            self._pending = bytearray()


class _Discard:
    def write(self, data: Any) -> int:
        return len(data)
