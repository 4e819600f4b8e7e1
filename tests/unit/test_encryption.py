"""age encryption of snapshot parts: keys, files of keys, and the streams both ways. No engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest

from docker_persist.config.model import EncryptPolicy
from docker_persist.errors import ConfigError, ExitStatus, PersistError
from docker_persist.store import StoreError
from docker_persist.streams.encryption import (
    DecryptionError,
    EncryptingSink,
    IdentityError,
    check_identities,
    identity_file,
    iter_decrypted,
    load_identities,
    load_recipients,
    parse_recipient,
    require_identities,
    seal,
    unseal,
)

IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
OTHER = pyrage.x25519.Identity.generate()


class Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def encrypt(plain: bytes, recipients: list[object], piece: int = 70_001) -> bytes:
    out = Collect()
    sink = EncryptingSink(out, recipients)
    try:
        for offset in range(0, len(plain), piece):
            sink.write(plain[offset : offset + piece])
        sink.finish()
    finally:
        sink.close()
    return out.data


def pieces(data: bytes, size: int = 100_003) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


PLAIN = os.urandom(1 << 20) + bytes(2 << 20) + b"tail"


# --- keys ---------------------------------------------------------------------------------------


def ssh_keypair(tmp_path: Path) -> tuple[str, Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("no ssh-keygen")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "t"], check=True)
    return key.with_suffix(".pub").read_text().strip(), key


def test_age_and_ssh_recipients_parse(tmp_path: Path) -> None:
    public, _ = ssh_keypair(tmp_path)
    assert str(parse_recipient(RECIPIENT, "here")) == RECIPIENT
    assert parse_recipient(public, "here") is not None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("age1qqqq", "is not a valid age recipient"),
        (RECIPIENT[:-1] + ("q" if RECIPIENT[-1] != "q" else "p"), "is not a valid age recipient"),
        ("AGE-SECRET-KEY-1ABC", "is not an age recipient: expected age1"),
        ("ssh-dss AAAA", "is not an age recipient"),
        ("", "is not an age recipient"),
    ],
)
def test_bad_recipients_are_config_errors_naming_where(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^somewhere: ") as raised:
        parse_recipient(text, "somewhere")
    assert fragment in str(raised.value)


def test_recipients_come_from_the_list_and_the_file(tmp_path: Path) -> None:
    other = str(OTHER.to_public())
    path = tmp_path / "recipients.txt"
    path.write_text(f"# backup keys\n\n  {other}  \n# old: {RECIPIENT}\n")
    recipients = load_recipients(EncryptPolicy(recipients=(RECIPIENT,), recipients_file=str(path)))
    assert [str(r) for r in recipients] == [RECIPIENT, other]


def test_a_bad_line_in_the_recipients_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "recipients.txt"
    path.write_text(f"{RECIPIENT}\n# ok\nage1nope\n")
    with pytest.raises(ConfigError, match=f"{path}, line 3: 'age1nope' is not a valid age recipient"):
        load_recipients(EncryptPolicy(recipients_file=str(path)))


def test_a_missing_recipients_file_or_no_recipient_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read x-persist.encrypt.recipients_file .*No such file"):
        load_recipients(EncryptPolicy(recipients_file=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"names no recipient"):
        load_recipients(EncryptPolicy(recipients_file=str(empty)))
    with pytest.raises(ConfigError, match=r"names no recipient"):
        load_recipients(EncryptPolicy())


def age_keygen_file(path: Path, *identities: object) -> Path:
    lines = []
    for identity in identities:
        lines += ["# created: 2026-11-26T18:00:00Z", f"# public key: {identity.to_public()}", str(identity)]  # type: ignore[attr-defined]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_age_keygen_file_gives_its_identities(tmp_path: Path) -> None:
    path = age_keygen_file(tmp_path / "key.txt", IDENTITY, OTHER)
    assert [str(i) for i in load_identities(str(path))] == [str(IDENTITY), str(OTHER)]


def test_a_bad_identity_file_is_named_and_its_secret_never_shown(tmp_path: Path) -> None:
    secret = str(IDENTITY)
    damaged = tmp_path / "damaged.txt"
    damaged.write_text(f"# key\n{secret[:-2]}zz\n")
    with pytest.raises(IdentityError, match=f"{damaged}, line 2: not a valid age identity") as raised:
        load_identities(str(damaged))
    assert secret[20:40] not in str(raised.value)
    public = tmp_path / "public.txt"
    public.write_text(RECIPIENT + "\n")
    with pytest.raises(IdentityError, match=r"line 1: not an age identity .expected AGE-SECRET-KEY-1"):
        load_identities(str(public))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(IdentityError, match=r"holds no identity"):
        load_identities(str(empty))
    with pytest.raises(IdentityError, match=r"cannot read the identity file .*No such file"):
        load_identities(str(tmp_path / "missing.txt"))
    locked = tmp_path / "locked.age"
    locked.write_bytes(b"age-encryption.org/v1\n-> scrypt abc 18\n")
    with pytest.raises(IdentityError, match=r"encrypted with a passphrase, which is not supported"):
        load_identities(str(locked))
    assert IdentityError("x").exit_status == ExitStatus.USAGE


def test_an_ssh_private_key_is_an_identity(tmp_path: Path) -> None:
    public, private = ssh_keypair(tmp_path)
    identities = load_identities(str(private))
    ciphertext = encrypt(PLAIN, [parse_recipient(public, "t")])
    assert b"".join(iter_decrypted(pieces(ciphertext), identities, "t")) == PLAIN


def test_the_identity_file_comes_from_the_flag_then_the_environment(tmp_path: Path) -> None:
    assert identity_file("flag.txt", {"DOCKER_PERSIST_IDENTITY": "env.txt"}) == "flag.txt"
    assert identity_file(None, {"DOCKER_PERSIST_IDENTITY": "env.txt"}) == "env.txt"
    assert identity_file(None, {"DOCKER_PERSIST_IDENTITY": ""}) is None
    with pytest.raises(IdentityError, match=r"snapshot 's1' is encrypted: give the identity .* --identity FILE"):
        require_identities(identity_file(None, {}), "snapshot 's1'")
    path = age_keygen_file(tmp_path / "key.txt", IDENTITY)
    assert len(require_identities(identity_file(None, {"DOCKER_PERSIST_IDENTITY": str(path)}), "s")) == 1


# --- streams ------------------------------------------------------------------------------------


def test_what_is_encrypted_decrypts_to_the_same_bytes_here_and_with_age_itself() -> None:
    ciphertext = encrypt(PLAIN, [IDENTITY.to_public(), OTHER.to_public()])
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert PLAIN[:4096] not in ciphertext
    assert b"".join(iter_decrypted(pieces(ciphertext), [IDENTITY], "t")) == PLAIN
    assert b"".join(iter_decrypted(pieces(ciphertext, 4099), [OTHER], "t")) == PLAIN  # either recipient
    assert pyrage.decrypt(ciphertext, [OTHER]) == PLAIN  # the reference implementation reads it
    assert encrypt(b"", [IDENTITY.to_public()]).startswith(b"age-encryption.org/v1\n")
    assert b"".join(iter_decrypted(pieces(encrypt(b"", [IDENTITY.to_public()])), [IDENTITY], "t")) == b""


def test_the_wrong_identity_is_an_identity_error() -> None:
    ciphertext = encrypt(PLAIN, [IDENTITY.to_public()])
    with pytest.raises(IdentityError, match=r"^snap: none of the identities given can decrypt it"):
        b"".join(iter_decrypted(pieces(ciphertext), [OTHER], "snap"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c[:-1],  # truncated by a byte
        lambda c: c[: len(c) // 2],  # cut in the middle
        lambda c: c[:-200] + bytes([c[-200] ^ 1]) + c[-199:],  # a flipped bit in the payload
    ],
)
def test_damaged_ciphertext_is_a_decryption_error(damage: object) -> None:
    ciphertext = encrypt(PLAIN, [IDENTITY.to_public()])
    damaged = damage(ciphertext)  # type: ignore[operator]
    with pytest.raises(DecryptionError, match=r"^snap: age cannot decrypt it"):
        b"".join(iter_decrypted(pieces(damaged), [IDENTITY], "snap"))


def test_a_read_error_comes_through_as_itself() -> None:
    ciphertext = encrypt(PLAIN, [IDENTITY.to_public()])

    def failing() -> Iterator[bytes]:
        yield ciphertext[:300_000]
        raise StoreError("reading the part failed: connection reset")

    with pytest.raises(StoreError, match=r"connection reset"):
        b"".join(iter_decrypted(failing(), [IDENTITY], "snap"))


def test_check_identities_decides_on_the_header_alone() -> None:
    ciphertext = encrypt(PLAIN, [IDENTITY.to_public()])
    check_identities(ciphertext[:65536], [IDENTITY], "snap")  # the rest of the payload is not needed
    with pytest.raises(IdentityError, match=r"^snap: none of the identities given can decrypt it"):
        check_identities(ciphertext[:65536], [OTHER], "snap")
    with pytest.raises(DecryptionError, match=r"^snap: the age header is damaged"):
        check_identities(b"age-encryption.org/v1\n-> X25519 garbage\n", [IDENTITY], "snap")


class Broken:
    def __init__(self, after: int) -> None:
        self.left = after

    def write(self, data: bytes) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise StoreError("the store is full")
        return len(data)


def test_a_sink_error_reaches_the_writer_as_itself() -> None:
    sink = EncryptingSink(Broken(after=100_000), [IDENTITY.to_public()])
    try:
        with pytest.raises(StoreError, match=r"the store is full"):
            for piece in pieces(PLAIN * 4):
                sink.write(piece)
            sink.finish()
    finally:
        sink.close()


def test_close_without_finish_stops_the_thread() -> None:
    before = threading.active_count()
    sink = EncryptingSink(Collect(), [IDENTITY.to_public()])
    sink.write(PLAIN[:1000])
    sink.close()
    assert threading.active_count() == before
    with pytest.raises(PersistError):
        sink.write(b"more")


def test_a_sealed_document_opens_with_the_key_only() -> None:
    sealed = seal(b'{"secret": 1}', [IDENTITY.to_public()])
    assert "secret" not in sealed
    assert unseal(sealed, [IDENTITY], "m") == b'{"secret": 1}'
    with pytest.raises(IdentityError, match="m: none of the identities given can decrypt it"):
        unseal(sealed, [OTHER], "m")
    with pytest.raises(DecryptionError, match="not base64"):
        unseal("***", [IDENTITY], "m")
    damaged = sealed[:-8] + ("A" if sealed[-8] != "A" else "B") + sealed[-7:]
    with pytest.raises(DecryptionError, match="the snapshot is damaged"):
        unseal(damaged, [IDENTITY], "m")
