"""The S3 store's pure parts: URL parsing, key layout, credentials and their masking. No network."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from docker_persist.errors import ConfigError, ExitStatus
from docker_persist.store import StoreError, open_store
from docker_persist.store.s3 import (
    AWS_ENDPOINT,
    PART_BYTES,
    PARTS_PER_SIZE,
    UPLOADS_IN_FLIGHT,
    Credentials,
    S3Location,
    S3Store,
    _PartWriter,
    mask,
    parse_s3_url,
    part_size,
    resolve_credentials,
)

NO_FILES = {"HOME": "/nonexistent"}


def test_a_full_url_parses() -> None:
    location = parse_s3_url(
        "s3://my-bucket/backups/host1?endpoint=http://127.0.0.1:8333&region=eu-west-1&path_style=true"
    )
    assert location == S3Location("my-bucket", "backups/host1", "http://127.0.0.1:8333", "eu-west-1", True)
    assert location.url == "s3://my-bucket/backups/host1"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "endpoint", "path_style"),
    [
        ("s3://bucket", "bucket", "", AWS_ENDPOINT, None),
        ("s3://bucket/", "bucket", "", AWS_ENDPOINT, None),
        ("s3://bucket//a//b/", "bucket", "a/b", AWS_ENDPOINT, None),
        ("S3://bucket/a?path_style=false", "bucket", "a", AWS_ENDPOINT, False),
        ("s3://b.c-d/x?endpoint=https://minio.example:9000/", "b.c-d", "x", "https://minio.example:9000", None),
        ("s3://bkt/x?endpoint=http://[::1]:9000", "bkt", "x", "http://[::1]:9000", None),
    ],
)
def test_urls_parse(url: str, bucket: str, prefix: str, endpoint: str, path_style: bool | None) -> None:
    location = parse_s3_url(url)
    assert (location.bucket, location.prefix, location.endpoint, location.path_style) == (
        bucket,
        prefix,
        endpoint,
        path_style,
    )


def test_the_region_comes_from_the_url_then_the_environment() -> None:
    assert parse_s3_url("s3://bkt/x").region is None
    assert parse_s3_url("s3://bkt/x", {"AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"
    env = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert parse_s3_url("s3://bkt/x", env).region == "eu-central-1"
    assert parse_s3_url("s3://bkt/x?region=us-west-2", env).region == "us-west-2"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://Bucket/x", "is not a bucket name"),
        ("s3://ab/x", "is not a bucket name"),
        ("s3://a..b/x", "is not a bucket name"),
        ("s3://bkt/../x", "prefix segment '..'"),
        ("s3://bkt/a b", "prefix segment 'a b'"),
        ("s3://bkt/x?endpoint=127.0.0.1:9000", "endpoint must be http"),
        ("s3://bkt/x?endpoint=ftp://host", "endpoint must be http"),
        ("s3://bkt/x?endpoint=http://host/path", "no path or query"),
        ("s3://bkt/x?endpoint=http://host:port", "port is not a number"),
        ("s3://bkt/x?endpoint=http://u:p@host", "must not carry credentials"),
        ("s3://bkt/x?path_style=maybe", "path_style must be true or false"),
        ("s3://bkt/x?colour=blue", "unknown option 'colour'"),
        ("s3://bkt/x?region=a&region=b", "given 2 times"),
        ("s3://bkt/x#frag", "no '#' part"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        open_store(url, NO_FILES)
    assert raised.value.exit_status == ExitStatus.USAGE


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="must not carry credentials") as raised:
        open_store("s3://AKIDEXAMPLE:wJalrXUtnFEMI@bkt/x", NO_FILES)
    assert "AKIDEXAMPLE" not in str(raised.value) and "wJalrXUtnFEMI" not in str(raised.value)


def test_open_store_gives_an_s3_store_with_a_default_region_for_custom_endpoints() -> None:
    store = open_store("s3://bkt/pre?endpoint=http://127.0.0.1:8333", NO_FILES)
    assert isinstance(store, S3Store)
    assert store.url == "s3://bkt/pre"
    assert store.location.region == "us-east-1"
    aws = open_store("s3://bkt/pre", NO_FILES)
    assert isinstance(aws, S3Store)
    assert aws.location.region is None  # AWS: the client asks the bucket's location


def test_the_key_layout() -> None:
    store = open_store("s3://bkt/a/b?endpoint=http://127.0.0.1:8333", NO_FILES)
    assert isinstance(store, S3Store)
    assert store.location.key("proj", "snap", "data.tar.zst") == "a/b/proj/snap/data.tar.zst"
    assert store._snapshot_key("proj", "snap", "manifest.json") == "a/b/proj/snap/manifest.json"
    assert store.location.key("proj", ".lock") == "a/b/proj/.lock"
    bare = parse_s3_url("s3://bkt")
    assert bare.key("proj", "snap", "manifest.json") == "proj/snap/manifest.json"
    for bad in (("../x", "snap"), ("proj", "../snap"), ("proj", "a/b")):
        with pytest.raises(ConfigError):
            store._snapshot_key(*bad, "manifest.json")


def test_credentials_come_from_the_environment_first(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "TOKEN"}
    credentials = resolve_credentials({**env, "HOME": str(tmp_path)})
    assert credentials == Credentials("AKID", "SECRET", "TOKEN", "environment")
    assert "SECRET" not in repr(credentials) and "AKID" not in repr(credentials)
    assert resolve_credentials(NO_FILES) is None


def test_credentials_come_from_the_shared_files_by_profile(tmp_path: Path) -> None:
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = DEFAULTSECRET\n"
        "[work]\naws_access_key_id = WORKKEY\naws_secret_access_key = WORKSECRET\naws_session_token = WORKTOKEN\n"
    )
    (aws / "config").write_text(
        "[default]\nregion = eu-west-3\n"
        "[profile cfg]\naws_access_key_id = CFGKEY\naws_secret_access_key = CFGSECRET\nregion = sa-east-1\n"
    )
    home = {"HOME": str(tmp_path)}
    assert resolve_credentials(home) == Credentials("DEFAULTKEY", "DEFAULTSECRET", None, "profile 'default'")
    work = resolve_credentials({**home, "AWS_PROFILE": "work"})
    assert work == Credentials("WORKKEY", "WORKSECRET", "WORKTOKEN", "profile 'work'")
    assert resolve_credentials({**home, "AWS_PROFILE": "cfg"}) == Credentials(
        "CFGKEY", "CFGSECRET", None, "profile 'cfg'"
    )
    with pytest.raises(ConfigError, match="AWS_PROFILE=nobody names no profile"):
        resolve_credentials({**home, "AWS_PROFILE": "nobody"})
    store = open_store("s3://bkt/x", {**home, "AWS_PROFILE": "cfg"})
    assert isinstance(store, S3Store)
    assert store.location.region == "sa-east-1"
    moved = tmp_path / "elsewhere"
    (aws / "credentials").rename(moved)
    assert resolve_credentials({"HOME": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": str(moved)}) == Credentials(
        "DEFAULTKEY", "DEFAULTSECRET", None, "profile 'default'"
    )


def test_credentials_are_masked_in_error_text() -> None:
    assert (
        mask("key AKID, secret SECRET/x, token TOK", ["AKID", "SECRET/x", "TOK", ""])
        == "key ***, secret ***, token ***"
    )
    store = S3Store(parse_s3_url("s3://bkt/x?endpoint=http://127.0.0.1:1"), Credentials("AKID123", "SECRETVALUE"))

    class FakeS3Error:
        code = "SignatureDoesNotMatch"
        message = "The request signature for AKID123 computed with SECRETVALUE does not match"

    error = store._s3_error(FakeS3Error(), "listing project 'p'", None)
    assert "access denied by http://127.0.0.1:1 (SignatureDoesNotMatch)" in str(error)
    assert "AWS_ACCESS_KEY_ID" in str(error)
    FakeS3Error.code = "SomethingElse"
    error = store._s3_error(FakeS3Error(), "listing project 'p'", None)
    assert "AKID123" not in str(error) and "SECRETVALUE" not in str(error) and "***" in str(error)


def test_a_missing_bucket_error_says_how_to_create_it() -> None:
    store = S3Store(parse_s3_url("s3://bkt/x?endpoint=http://127.0.0.1:1"), None)

    class FakeS3Error:
        code = "NoSuchBucket"
        message = "The specified bucket does not exist"

    text = str(store._s3_error(FakeS3Error(), "locking project 'p'", None))
    assert "the bucket 'bkt' does not exist at http://127.0.0.1:1" in text
    assert "aws s3 mb s3://bkt" in text


# --- the part writer, against an in-memory stand-in for the minio client ----------------------


class FakeMultipart:
    """Records multipart calls; `fail_part` makes that part number's upload raise; tracks concurrency."""

    def __init__(self, fail_part: int | None = None, delay: float = 0.0) -> None:
        self.fail_part = fail_part
        self.delay = delay
        self.parts: dict[int, bytes] = {}
        self.objects: dict[str, bytes] = {}
        self.completed: list[tuple[str, list[int]]] = []
        self.aborted: list[str] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def _create_multipart_upload(self, bucket: str, key: str, headers: object) -> str:
        return "upload-1"

    def _upload_part(self, bucket: str, key: str, data: bytes, headers: object, upload_id: str, number: int) -> str:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(self.delay)
            if number == self.fail_part:
                raise OSError(f"connection reset while uploading part {number}")
            self.parts[number] = data
            return f"etag-{number}"
        finally:
            with self._lock:
                self.running -= 1

    def _complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: list[Any]) -> Any:
        self.completed.append((key, [part.part_number for part in parts]))
        self.objects[key] = b"".join(self.parts[part.part_number] for part in parts)
        return types.SimpleNamespace(etag=f"{hashlib.md5(self.objects[key]).hexdigest()}-{len(parts)}")

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.aborted.append(key)

    def put_object(self, bucket: str, key: str, data: io.BytesIO, length: int) -> Any:
        self.objects[key] = data.read()
        return types.SimpleNamespace(etag=hashlib.md5(self.objects[key]).hexdigest())


def fake_store(client: FakeMultipart) -> S3Store:
    store = S3Store(parse_s3_url("s3://bucket/prefix?endpoint=http://127.0.0.1:1", {}), None)
    store._client_cache = client  # type: ignore[assignment]
    return store


def test_part_sizes_grow_so_that_10000_parts_reach_terabytes() -> None:
    assert part_size(1) == PART_BYTES and part_size(PARTS_PER_SIZE) == PART_BYTES
    assert part_size(PARTS_PER_SIZE + 1) == 2 * PART_BYTES
    assert all(part_size(n) >= 5 << 20 for n in range(1, 10001))
    assert sum(part_size(n) for n in range(1, 10001)) > 5 << 40  # S3's object size limit is 5 TiB


def test_a_small_part_is_one_put() -> None:
    client = FakeMultipart()
    with _PartWriter(fake_store(client), "k", "writing k") as writer:
        writer.write(b"small")
    assert client.objects == {"k": b"small"} and client.completed == [] and writer.completed


def test_parts_upload_in_parallel_in_order_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("docker_persist.store.s3.PART_BYTES", 1000)
    client = FakeMultipart(delay=0.02)
    data = bytes(range(256)) * 40  # 10,240 bytes: ten full parts and a short last one
    with _PartWriter(fake_store(client), "k", "writing k") as writer:
        for offset in range(0, len(data), 333):
            writer.write(data[offset : offset + 333])
    assert client.completed == [("k", list(range(1, 12)))]
    assert client.objects["k"] == data
    assert client.most_running == UPLOADS_IN_FLIGHT
    assert client.aborted == []


def test_a_failed_part_fails_the_writer_and_aborts_the_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("docker_persist.store.s3.PART_BYTES", 1000)
    client = FakeMultipart(fail_part=2)
    writer = _PartWriter(fake_store(client), "k", "writing k")
    with pytest.raises(StoreError, match="writing k failed: connection reset while uploading part 2"), writer:
        for _ in range(20):
            writer.write(bytes(500))
    assert client.aborted == ["k"] and client.completed == [] and "k" not in client.objects
    assert not writer.completed and writer.closed


def test_a_failure_while_writing_discards_the_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("docker_persist.store.s3.PART_BYTES", 1000)
    client = FakeMultipart()
    with pytest.raises(RuntimeError), _PartWriter(fake_store(client), "k", "writing k") as writer:
        writer.write(bytes(2500))
        raise RuntimeError("the source failed")
    assert client.aborted == ["k"] and client.completed == []


def test_a_slow_upload_is_waited_for_without_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """While both upload slots are busy, the writer sleeps: it used to spin at 100% CPU until a slot freed."""
    monkeypatch.setattr("docker_persist.store.s3.PART_BYTES", 1000)
    client = FakeMultipart(delay=0.3)
    started = time.thread_time()
    with _PartWriter(fake_store(client), "k", "writing k") as writer:
        writer.write(bytes(5500))  # five full parts: the third and later wait for a slot
    assert client.completed == [("k", [1, 2, 3, 4, 5, 6])]
    assert time.thread_time() - started < 0.2  # waited ~0.9 s in all, with next to no CPU


def test_the_client_gives_up_on_a_stalled_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from docker_persist.store.s3 import DEFAULT_TIMEOUT, RETRIES, _make_client, request_timeout

    assert request_timeout({}) == DEFAULT_TIMEOUT == 30.0
    assert request_timeout({"DOCKER_PERSIST_S3_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="DOCKER_PERSIST_S3_TIMEOUT"):
            request_timeout({"DOCKER_PERSIST_S3_TIMEOUT": bad})
    client = _make_client(parse_s3_url("s3://bucket?endpoint=http://127.0.0.1:1", {}), None, 7.0)
    http = client._http
    assert http.connection_pool_kw["timeout"].read_timeout == 7.0
    assert http.connection_pool_kw["retries"].total == RETRIES


IDENTITY = {"host": "h1", "boot": "b1", "pidns": "4026531836", "pid": 4242, "start": "1000"}


@pytest.mark.parametrize(
    ("holder", "alive_start", "stale"),
    [
        ({**IDENTITY, "age": 5.0}, "1000", False),  # alive, here: fresh
        ({**IDENTITY, "age": 5.0}, "", True),  # here, and its process is gone
        ({**IDENTITY, "age": 5.0}, "2000", True),  # here, and its pid belongs to a newer process now
        ({**IDENTITY, "pidns": "4026532999", "age": 5.0}, "", False),  # same host name, another PID namespace
        ({**IDENTITY, "boot": "b0", "age": 5.0}, "", False),  # an earlier boot: cannot tell, wait for its age
        ({**IDENTITY, "host": "h2", "age": 5.0}, "", False),  # another host with the same pid
        ({"host": "h1", "pid": 4242, "age": 5.0}, "", False),  # an older holder that says too little
        ({**IDENTITY, "age": 16 * 60.0}, "1000", True),  # a heartbeat that stopped 16 minutes ago
        ({**IDENTITY, "age": None}, "1000", True),  # no age at all
    ],
)
def test_a_lock_holder_is_stale_only_when_that_is_proven(
    monkeypatch: pytest.MonkeyPatch, holder: dict[str, object], alive_start: str, stale: bool
) -> None:
    from docker_persist.host import identity
    from docker_persist.store.s3 import _lock_is_stale

    here = {**IDENTITY, "pid": 1}
    monkeypatch.setattr(identity, "holder_identity", lambda: here)
    monkeypatch.setattr(identity, "process_start", lambda pid: alive_start if pid == 4242 else "")
    assert _lock_is_stale(holder) is stale
