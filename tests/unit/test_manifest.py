"""The snapshot manifest: names, the exact JSON form, round trips and strict loading."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from docker_persist.core.manifest import (
    ENCRYPTED_FORMAT,
    FORMAT,
    MAX_VERIFICATIONS,
    SEALED_FORMAT,
    Manifest,
    ManifestError,
    RootEntry,
    ServiceRecord,
    Verification,
    VolumeRecord,
    automatic_name,
    check_snapshot_name,
    dump_manifest,
    is_part_name,
    load_manifest,
    open_sealed,
    private_document,
)
from docker_persist.errors import ConfigError, ExitStatus

UTC = datetime.timezone.utc
CREATED = datetime.datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
WHERE = "file:///srv/backups/shop/s1/manifest.json"


def volume(key: str = "db_data", **changes: Any) -> VolumeRecord:
    record = VolumeRecord(
        key=key,
        source=f"shop_{key}",
        driver="local",
        driver_opts={},
        labels={"com.docker.compose.project": "shop", "com.docker.compose.volume": key},
        file=f"{key}.tar.zst",
        compression="zstd",
        archive_sha256="ab" * 32,
        archive_bytes=1234,
        content_digest="sha256:" + "cd" * 32,
        bytes=4096,
        files=3,
        directories=2,
        symlinks=1,
        entries=6,
        root=RootEntry(mode=0o700, uid=999, gid=999),
    )
    return dataclasses.replace(record, **changes)


def manifest(**changes: Any) -> Manifest:
    base = Manifest(
        name="s1",
        project="shop",
        created=CREATED,
        tool_version="0.1.0",
        reason="manual",
        volumes=(volume(),),
    )
    return dataclasses.replace(base, **changes)


def verification(minutes: int, ok: bool = True) -> Verification:
    return Verification(
        at=CREATED + datetime.timedelta(minutes=minutes), ok=ok, detail=f"drill {minutes}", volumes=("db_data",)
    )


def document(m: Manifest | None = None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(dump_manifest(m or manifest()))
    return result


def load_document(doc: Any) -> Manifest:
    return load_manifest(json.dumps(doc).encode(), WHERE)


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "s1", "2026-11-26T153000Z-pre-down", "A.b_c-d", "9", "x" * 128])
def test_valid_snapshot_names_pass_unchanged(name: str) -> None:
    assert check_snapshot_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x", "..", ".", "a/b", "/abs", ".hidden", "-dash", "_under", "x" * 129, "with space", "nul\0x", "a\n"],
)
def test_invalid_snapshot_names_are_refused_clearly(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_snapshot_name(name)
    assert raised.value.exit_status == ExitStatus.USAGE
    assert f"invalid snapshot name {name!r}" in str(raised.value)
    assert "1 to 128 characters" in str(raised.value)


@pytest.mark.parametrize(
    ("filename", "ok"),
    [("db.tar.zst", True), ("_k.tar", True), ("manifest.json", False), ("..", False), ("a/b", False), ("", False)],
)
def test_part_names_are_plain_file_names(filename: str, ok: bool) -> None:
    assert is_part_name(filename) is ok


def test_automatic_name_is_utc_seconds_and_a_slug() -> None:
    assert automatic_name(CREATED, "pre-down") == "2026-11-26T153000Z-pre-down"
    paris = datetime.timezone(datetime.timedelta(hours=1))
    later = datetime.datetime(2026, 11, 26, 16, 30, 0, 999_999, tzinfo=paris)
    assert automatic_name(later, "Pre Down!") == "2026-11-26T153000Z-pre-down"
    assert automatic_name(CREATED, "before upgrade to 17.2") == "2026-11-26T153000Z-before-upgrade-to-17-2"
    assert automatic_name(CREATED, "") == "2026-11-26T153000Z"
    assert automatic_name(CREATED, "!!!") == "2026-11-26T153000Z"


def test_automatic_name_stays_a_valid_name_for_long_reasons() -> None:
    name = automatic_name(CREATED, "a" * 108 + " " + "b" * 50)
    assert len(name) <= 128
    assert check_snapshot_name(name) == name
    assert not name.endswith("-")


def test_automatic_name_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        automatic_name(datetime.datetime(2026, 11, 26, 15, 30), "manual")


# --- the dataclasses -----------------------------------------------------------------------


def test_volume_lookup_total_bytes_and_last_verification() -> None:
    m = manifest(volumes=(volume("a", archive_bytes=10), volume("b", archive_bytes=32)))
    assert m.volume("b") == volume("b", archive_bytes=32)
    assert m.volume("c") is None
    assert m.total_bytes == 42
    assert m.last_verification is None
    assert manifest(volumes=()).total_bytes == 0


def test_with_verification_appends_and_keeps_the_newest() -> None:
    m = manifest()
    for minute in range(MAX_VERIFICATIONS + 5):
        m = m.with_verification(verification(minute, ok=minute % 2 == 0))
    assert len(m.verifications) == MAX_VERIFICATIONS
    assert m.verifications[0] == verification(5, ok=False)
    assert m.last_verification == verification(MAX_VERIFICATIONS + 4, ok=True)
    assert manifest().verifications == ()  # the original is untouched


def test_records_hash_despite_their_mappings() -> None:
    assert hash(manifest()) == hash(manifest())


# --- the JSON form -------------------------------------------------------------------------


def test_dump_is_exact() -> None:
    m = Manifest(
        name="s1",
        project="shop",
        created=CREATED,
        tool_version="0.1.0",
        reason="manual",
        volumes=(
            VolumeRecord(
                key="data",
                source="shop_data",
                driver="local",
                driver_opts={"type": "none", "o": "bind"},
                labels={},
                file="data.tar.zst",
                compression="zstd",
                archive_sha256="0" * 64,
                archive_bytes=10,
                content_digest="sha256:" + "1" * 64,
                bytes=5,
                files=1,
                directories=1,
                symlinks=0,
                entries=2,
                root=RootEntry(0o755, 0, 0),
            ),
        ),
        services=(ServiceRecord("db", "stop", pre=("pg_dump",)),),
        verifications=(Verification(CREATED, True, "ok", ("data",)),),
    )
    expected = """{
  "format": 1,
  "name": "s1",
  "project": "shop",
  "created": "2026-11-26T15:30:00Z",
  "reason": "manual",
  "tool_version": "0.1.0",
  "volumes": [
    {
      "archive_bytes": 10,
      "archive_sha256": "0000000000000000000000000000000000000000000000000000000000000000",
      "bytes": 5,
      "compression": "zstd",
      "content_digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
      "directories": 1,
      "driver": "local",
      "driver_opts": {
        "o": "bind",
        "type": "none"
      },
      "entries": 2,
      "file": "data.tar.zst",
      "files": 1,
      "key": "data",
      "kind": "volume",
      "labels": {},
      "root": {
        "gid": 0,
        "mode": "0755",
        "uid": 0
      },
      "source": "shop_data",
      "symlinks": 0
    }
  ],
  "services": [
    {
      "consistency": "stop",
      "name": "db",
      "post": [],
      "pre": [
        "pg_dump"
      ]
    }
  ],
  "verifications": [
    {
      "at": "2026-11-26T15:30:00Z",
      "detail": "ok",
      "ok": true,
      "volumes": [
        "data"
      ]
    }
  ]
}
"""
    assert dump_manifest(m).decode() == expected
    assert load_manifest(expected.encode(), WHERE) == m


ROUND_TRIPS = {
    "minimal": manifest(),
    "no volumes": manifest(volumes=()),
    "many volumes": manifest(
        volumes=(
            volume("a", compression="gzip", file="a.tar.gz", root=None),
            volume("b", compression="none", file="b.tar", root=RootEntry(0o2775, 0, 1000)),
            volume("c", driver="rexray", driver_opts={"size": "10", "type": "gp2"}, labels={}),
        )
    ),
    "unicode and odd bytes": manifest(
        reason="avant la mise à jour",
        volumes=(
            volume(
                labels={"note": "ünïcödé ✓", "quote": 'a "b" \\ c', "name": "caf\udce9"},  # surrogate-escaped
            ),
        ),
    ),
    "services and history": manifest(
        services=(
            ServiceRecord("db", "stop", pre=("pg_dump -f /x", "sync"), post=("true",)),
            ServiceRecord("w", "none"),
        ),
        verifications=(verification(1, ok=False), verification(2)),
    ),
    "sub-second and non-UTC times": manifest(
        created=datetime.datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        verifications=(Verification(datetime.datetime(2026, 1, 2, 9, 0, 0, 1, tzinfo=UTC), True, "", ("db_data",)),),
    ),
    "empty reason": manifest(reason=""),
    "big numbers": manifest(volumes=(volume(bytes=2**53 + 1, archive_bytes=10**15, entries=10**7),)),
}


@pytest.mark.parametrize("m", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip(m: Manifest) -> None:
    data = dump_manifest(m)
    loaded = load_manifest(data, WHERE)
    assert loaded == m
    assert dump_manifest(loaded) == data
    assert data.endswith(b"}\n")
    assert loaded.created.tzinfo == UTC


def test_times_are_written_in_utc_with_z() -> None:
    m = ROUND_TRIPS["sub-second and non-UTC times"]
    doc = document(m)
    assert doc["created"] == "2026-01-02T08:04:05.250000Z"
    assert doc["verifications"][0]["at"] == "2026-01-02T09:00:00.000001Z"


def test_dump_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dump_manifest(manifest(created=datetime.datetime(2026, 1, 1)))


def test_unknown_keys_are_ignored() -> None:
    doc = document()
    doc["future_top"] = {"anything": [1, 2]}
    doc["volumes"][0]["future_field"] = "x"
    doc["volumes"][0]["root"]["mtime"] = 1.5
    assert load_document(doc) == manifest()


def test_lists_with_defaults_may_be_missing() -> None:
    doc = document()
    del doc["services"], doc["verifications"]
    assert load_document(doc) == manifest()


def test_offset_times_are_read_as_utc() -> None:
    doc = document()
    doc["created"] = "2026-11-26T16:30:00+01:00"
    assert load_document(doc).created == CREATED


# --- strict loading ------------------------------------------------------------------------


def assert_refused(doc: Any, *fragments: str) -> ManifestError:
    with pytest.raises(ManifestError) as raised:
        load_document(doc)
    message = str(raised.value)
    assert message.startswith(WHERE + ": ")
    for fragment in fragments:
        assert fragment in message
    assert raised.value.exit_status == ExitStatus.FAILED
    return raised.value


def test_invalid_json_is_refused_with_its_position() -> None:
    with pytest.raises(ManifestError, match=r"not valid JSON \(Expecting .* at line 1 column \d+\)") as raised:
        load_manifest(b'{"format": 1,', WHERE)
    assert str(raised.value).startswith(WHERE)


def test_non_utf8_is_refused() -> None:
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(b'{"name": "\xff"}', WHERE)


@pytest.mark.parametrize("doc", [[], "x", 1, None])
def test_a_manifest_must_be_an_object(doc: Any) -> None:
    assert_refused(doc, "the manifest: expected a JSON object")


def test_a_newer_format_asks_for_an_upgrade() -> None:
    doc = document()
    doc["format"] = 4
    doc["volumes"] = "changed in format 4"
    assert_refused(doc, "format 4", "newer docker-persist", "upgrade docker-persist")


ENCRYPTED = manifest(volumes=(volume(file="db_data.tar.zst.age", encryption="age"),), format=ENCRYPTED_FORMAT)


def test_an_encrypted_part_round_trips_in_format_2() -> None:
    assert load_manifest(dump_manifest(ENCRYPTED), WHERE) == ENCRYPTED
    doc = document(ENCRYPTED)
    assert doc["format"] == 2 and doc["volumes"][0]["encryption"] == "age"


SECRET_HOOK = "pg_dump --password=hunter2 -f /dump.sql"
OPEN = manifest(
    volumes=(volume(file="db_data.tar.zst.age", encryption="age", labels={"note": "secret label"}),),
    services=(ServiceRecord("db", "stop", pre=(SECRET_HOOK,), post=("true",)),),
    verifications=(Verification(CREATED, False, "db_data: ./pin.txt differs (0000)", ("db_data",)),),
)


def sealed(m: Manifest) -> Manifest:
    """Seal as a backup does, with a stand-in for the age ciphertext (the pure core never encrypts)."""
    return dataclasses.replace(m, format=SEALED_FORMAT, sealed="c2VhbGVk")


def test_a_sealed_manifest_shows_nothing_of_the_content() -> None:
    text = dump_manifest(sealed(OPEN)).decode()
    volume_fields = json.loads(text)["volumes"][0]
    assert set(volume_fields) == {"archive_bytes", "archive_sha256", "compression", "encryption", "file", "key", "kind"}
    for secret in (OPEN.volumes[0].content_digest, "shop_db_data", "secret label", "hunter2", "pin.txt",
                   '"bytes"', '"files"', '"entries"', '"root"', '"driver"', '"pre"'):  # fmt: skip
        assert secret not in text, secret
    assert json.loads(text)["sealed"] == "c2VhbGVk" and json.loads(text)["format"] == 3


def test_a_sealed_manifest_loads_locked_and_opens_with_its_document() -> None:
    locked = load_manifest(dump_manifest(sealed(OPEN)), WHERE)
    assert locked.locked and locked.volumes[0].content_digest == "" and locked.services[0].pre == ()
    assert locked.volumes[0].archive_sha256 == OPEN.volumes[0].archive_sha256 and not locked.verifications[0].ok
    opened = open_sealed(locked, private_document(OPEN), WHERE)
    assert not opened.locked
    assert opened.volumes == OPEN.volumes and opened.services == OPEN.services
    # Written back (a pin, a verification), it is the same sealed manifest: no key needed.
    pinned = dataclasses.replace(OPEN, pinned=True)
    assert dump_manifest(dataclasses.replace(locked, pinned=True)) == dump_manifest(sealed(pinned))
    assert dump_manifest(opened) == dump_manifest(locked)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["volumes"].pop("db_data"), "does not hold the volumes the manifest lists"),
        (lambda d: d["volumes"].update(other={}), "does not hold the volumes the manifest lists"),
        (lambda d: d["services"].clear(), "does not hold the services the manifest lists"),
        (lambda d: d["volumes"]["db_data"].update(content_digest="md5:x"), "content_digest: expected 'sha256:'"),
        (lambda d: d["volumes"]["db_data"].pop("entries"), "entries: missing"),
    ],
)
def test_a_sealed_document_that_does_not_fit_is_refused(change: Any, fragment: str) -> None:
    locked = load_manifest(dump_manifest(sealed(OPEN)), WHERE)
    document = json.loads(private_document(OPEN))
    change(document)
    with pytest.raises(ManifestError, match="the snapshot is damaged") as raised:
        open_sealed(locked, json.dumps(document).encode(), WHERE)
    assert fragment in str(raised.value)
    with pytest.raises(ManifestError, match="not JSON"):
        open_sealed(locked, b"\xff", WHERE)


def test_a_sealed_manifest_needs_every_part_encrypted_and_base64() -> None:
    doc = document(sealed(OPEN))
    doc["volumes"][0].pop("encryption")
    doc["volumes"][0]["file"] = "db_data.tar.zst"
    assert_refused(doc, "format: 3 is for encrypted snapshots")
    doc = document(sealed(OPEN))
    doc["sealed"] = "not base64!"
    assert_refused(doc, "sealed: expected base64 text")
    doc.pop("sealed")
    assert_refused(doc, "sealed: missing")


def test_a_plain_snapshot_stays_format_1_without_an_encryption_key() -> None:
    doc = document()
    assert doc["format"] == FORMAT == 1 and "encryption" not in doc["volumes"][0]


def test_format_1_cannot_hold_an_encrypted_part() -> None:
    doc = document(ENCRYPTED)
    doc["format"] = 1
    assert_refused(doc, "format: 1 cannot hold encrypted parts")


def test_an_unknown_encryption_is_refused() -> None:
    doc = document(ENCRYPTED)
    doc["volumes"][0]["encryption"] = "gpg"
    assert_refused(doc, "volumes[0].encryption: expected one of age, got 'gpg'")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda d: d.pop("format"), ["format: missing"]),
        (lambda d: d.update(format="1"), ["format: expected an integer, got a string"]),
        (lambda d: d.update(format=0), ["format: 0 is not a manifest format"]),
        (lambda d: d.pop("name"), ["invalid manifest: name: missing"]),
        (lambda d: d.update(name="../x"), ["name: '../x' is not a valid snapshot name"]),
        (lambda d: d.update(project=7), ["project: expected a string, got an integer"]),
        (lambda d: d.update(project=""), ["project: must not be empty"]),
        (lambda d: d.update(created="2026-11-26 15:30:00"), ["created: expected a UTC time"]),
        (lambda d: d.update(created="2026-13-26T15:30:00Z"), ["created: '2026-13-26T15:30:00Z' is not a valid time"]),
        (lambda d: d.update(volumes={}), ["volumes: expected a list, got an object"]),
        (lambda d: d.update(volumes=[1]), ["volumes[0]: expected a JSON object, got an integer"]),
        (lambda d: d["volumes"][0].pop("content_digest"), ["volumes[0].content_digest: missing"]),
        (lambda d: d["volumes"][0].update(archive_bytes="12"), ["volumes[0].archive_bytes: expected an integer"]),
        (lambda d: d["volumes"][0].update(files=True), ["volumes[0].files: expected an integer, got true"]),
        (lambda d: d["volumes"][0].update(bytes=1.5), ["volumes[0].bytes: expected an integer, got a number"]),
        (lambda d: d["volumes"][0].update(entries=-1), ["volumes[0].entries: must not be negative"]),
        (lambda d: d["volumes"][0].update(file="../../etc/passwd"), ["volumes[0].file: '../../etc/passwd' is not"]),
        (lambda d: d["volumes"][0].update(compression="xz"), ["volumes[0].compression: expected one of zstd"]),
        (lambda d: d["volumes"][0].update(archive_sha256="AB" * 32), ["volumes[0].archive_sha256: expected 64"]),
        (lambda d: d["volumes"][0].update(content_digest="md5:00"), ["volumes[0].content_digest: expected 'sha256:'"]),
        (lambda d: d["volumes"][0].update(labels={"a": 1}), ["volumes[0].labels: expected an object of strings"]),
        (lambda d: d["volumes"][0].update(driver_opts=None), ["volumes[0].driver_opts: expected an object"]),
        (lambda d: d["volumes"][0].pop("root"), ["volumes[0].root: missing"]),
        (lambda d: d["volumes"][0]["root"].update(mode=493), ["volumes[0].root.mode: expected a string"]),
        (lambda d: d["volumes"][0]["root"].update(mode="0899"), ["volumes[0].root.mode: expected an octal mode"]),
        (lambda d: d["volumes"][0]["root"].update(uid=None), ["volumes[0].root.uid: expected an integer, got null"]),
        (lambda d: d["volumes"].append(dict(d["volumes"][0])), ["volumes: the volume key 'db_data' appears twice"]),
        (lambda d: d.update(services=[{"name": "db"}]), ["services[0].consistency: missing"]),
        (lambda d: d.update(verifications=[{"at": "x"}]), ["verifications[0].at: expected a UTC time"]),
        (
            lambda d: d.update(
                verifications=[{"at": "2026-11-26T15:30:00Z", "ok": "yes", "detail": "", "volumes": []}]
            ),
            ["verifications[0].ok: expected true or false, got a string"],
        ),
    ],
)
def test_malformed_fields_are_named(change: Any, fragments: list[str]) -> None:
    doc = document()
    change(doc)
    assert_refused(doc, "invalid manifest", *fragments, "the snapshot is damaged")
