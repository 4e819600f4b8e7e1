"""The S3-compatible snapshot store (AWS S3, MinIO, Ceph RGW, SeaweedFS), behind the protocols of store.py.

The URL: `s3://BUCKET[/PREFIX][?endpoint=http://host:port&region=R&path_style=true|false]`.
Without `endpoint` it is AWS (https://s3.amazonaws.com). Credentials never go in the URL: they
come, in this order, from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then
from the profile AWS_PROFILE (default "default") of the shared credentials file
(AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials) and of the config file (AWS_CONFIG_FILE,
~/.aws/config); with none, requests are anonymous. The region comes from `region=`, then
AWS_REGION, AWS_DEFAULT_REGION and the profile's `region`; with a custom endpoint it defaults to
us-east-1. Error messages carry the store URL (which holds no secret) and are masked against the
credentials anyway.

The client is `minio` (pure Python, over urllib3, which the bundle carries already for the
Docker SDK); boto3 would add botocore's far larger service data. `import minio` also imports
its admin client, which needs pycryptodome and argon2 (~10 MB of bundle) for an API this store
never calls: `_import_minio` stands a stub in for it, and the bundle leaves those out.
minio has no public API for a multipart upload fed from a writable stream, so _PartWriter uses
its `_create_multipart_upload`, `_upload_part`, `_complete_multipart_upload` and
`_abort_multipart_upload` methods (pinned: minio < 8).

The layout under `s3://BUCKET/PREFIX/`:

    <project>/.lock                      the best-effort project lock (JSON: host, pid, since, token)
    <project>/<snapshot>/<volume>.tar.zst
    <project>/<snapshot>/manifest.json   written last: a snapshot exists iff this object does

There is no staging prefix: S3 has no rename, and a server-side copy of every part would cost
as much as the upload. Parts are written in place, each by a multipart upload from a bounded
buffer (part_size; UPLOADS_IN_FLIGHT parts upload at once), and `publish` writes manifest.json
only after every part upload has completed. A snapshot prefix without manifest.json is a
leftover (a killed backup, or a `delete` killed after it removed the manifest): never listed,
and removed, with the project's in-progress multipart uploads, by the next `begin`, which runs
under the project lock.
`delete` removes manifest.json first, so the snapshot disappears at once, then its parts.

The lock: S3 has no flock. `lock()` writes `<project>/.lock` and reads it back to check that it
won; a lock object is fresh while its holder refreshes it (every LOCK_REFRESH_SECONDS). It is
stale, and taken over, once it is LOCK_STALE_SECONDS (15 minutes) old by the server's clock,
or at once when its holder provably died: it ran on this machine, in this boot and PID
namespace, and its process is gone (kill -9; see host/identity.py). A hostname and a pid alone
prove nothing. It is always released on exit. Two writers on different hosts racing for the
lock in the same instant are only best-effort protected: S3 offers no compare-and-swap that
every S3-compatible server honours. So that even then no run removes another live run's parts,
the clean-up removes only leftovers older than LOCK_STALE_SECONDS, by the server's clock.

Every request that makes no progress for DOCKER_PERSIST_S3_TIMEOUT seconds (default 30) fails,
and is tried RETRIES more times: a hung server fails a backup in minutes, not hours, and the
services it stopped start again.
"""

from __future__ import annotations

import concurrent.futures
import configparser
import contextlib
import dataclasses
import datetime
import email.utils
import io
import json
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from docker_persist.core.manifest import MANIFEST_FILE, check_snapshot_name, format_datetime, is_snapshot_name
from docker_persist.errors import ConfigError
from docker_persist.host.identity import holder_identity, is_provably_dead
from docker_persist.store.base import (
    PROJECT_NAME,
    StoreError,
    StoreLockedError,
    check_part_name,
    check_project_name,
    not_found,
    snapshot_exists,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer
    from minio import Minio
    from urllib3 import BaseHTTPResponse

PART_BYTES = 16 << 20
"""The first multipart upload parts' size (S3's minimum is 5 MiB); see part_size."""
PARTS_PER_SIZE = 1000
UPLOADS_IN_FLIGHT = 2
"""Parts uploaded at once, beside the one filling: a part's upload overlaps compressing the next."""
LOCK_FILE = ".lock"
LOCK_STALE_SECONDS = 15 * 60
LOCK_REFRESH_SECONDS = 60.0
LOCK_POLL_SECONDS = 0.5
LOCK_SETTLE_SECONDS = 0.2
TIMEOUT_ENV = "DOCKER_PERSIST_S3_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
RETRIES = 2
AWS_ENDPOINT = "https://s3.amazonaws.com"
DEFAULT_REGION = "us-east-1"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_QUERY_KEYS = ("endpoint", "region", "path_style")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AllAccessDisabled"}
)


@dataclasses.dataclass(frozen=True)
class S3Location:
    """Where an S3 store lives: what its URL says, checked."""

    bucket: str
    prefix: str  # "" or "a/b", no leading or trailing slash
    endpoint: str  # scheme://host[:port]
    region: str | None
    path_style: bool | None  # None: the client's default (virtual-host style on AWS, path style elsewhere)

    @property
    def url(self) -> str:
        """Return the store's URL without its query: what messages show. It holds no secret."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, *parts: str) -> str:
        """Return the object key of `parts` (project, snapshot, file) under the prefix."""
        return "/".join(p for p in (self.prefix, *parts) if p)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """S3 credentials; repr never shows the secrets."""

    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    source: str = ""

    def secrets(self) -> list[str]:
        """Return the values that must never appear in a message."""
        return [s for s in (self.access_key, self.secret_key, self.session_token) if s]


# One branch per part of the URL and per query option, each with its own error.
def parse_s3_url(url: str, environ: Mapping[str, str] | None = None) -> S3Location:  # noqa: PLR0912
    """Given an `s3://` store URL, return its S3Location. Raise ConfigError if it is not a valid one.

    The region falls back to AWS_REGION and AWS_DEFAULT_REGION from `environ`.
    """
    environ = environ or {}
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise ConfigError(f"invalid store {_safe(url)!r}: an S3 store URL starts with s3://")
    if "@" in parts.netloc:
        raise ConfigError(
            "invalid s3:// store URL: it must not carry credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, instead"
        )
    shown = _safe(url)
    bucket = parts.netloc
    if not bucket:
        raise ConfigError(f"invalid store {shown!r}: no bucket; the form is s3://BUCKET/PREFIX?endpoint=...")
    if _BUCKET.fullmatch(bucket) is None or ".." in bucket:
        raise ConfigError(
            f"invalid store {shown!r}: {bucket!r} is not a bucket name (3 to 63 lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    if parts.fragment:
        raise ConfigError(f"invalid store {shown!r}: an s3:// URL takes no '#' part")
    segments = [s for s in urllib.parse.unquote(parts.path).split("/") if s]
    for segment in segments:
        if _PREFIX_SEGMENT.fullmatch(segment) is None or segment in (".", ".."):
            raise ConfigError(
                f"invalid store {shown!r}: the prefix segment {segment!r} is not allowed "
                "(letters, digits, '.', '_' and '-'; not '.' or '..')"
            )
    try:
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"invalid store {shown!r}: the query is not key=value pairs joined by '&'") from None
    for key, values in query.items():
        if key not in _QUERY_KEYS:
            raise ConfigError(
                f"invalid store {shown!r}: unknown option {key!r}; an s3:// URL takes {', '.join(_QUERY_KEYS)}"
            )
        if len(values) != 1:
            raise ConfigError(f"invalid store {shown!r}: the option {key!r} is given {len(values)} times")
    endpoint = _parse_endpoint(query.get("endpoint", [""])[0], shown)
    region = query.get("region", [""])[0] or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    path_style: bool | None = None
    if "path_style" in query:
        value = query["path_style"][0].lower()
        if value not in _TRUE + _FALSE:
            raise ConfigError(f"invalid store {shown!r}: path_style must be true or false, got {value!r}")
        path_style = value in _TRUE
    return S3Location(bucket, "/".join(segments), endpoint or AWS_ENDPOINT, region, path_style)


def _parse_endpoint(value: str, shown: str) -> str:
    if not value:
        return ""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"invalid store {shown!r}: endpoint must be http://HOST[:PORT] or https://HOST[:PORT], got {value!r}"
        )
    if parts.username or parts.password:
        raise ConfigError(f"invalid store {shown!r}: the endpoint must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"invalid store {shown!r}: the endpoint takes no path or query, got {value!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid store {shown!r}: the endpoint's port is not a number: {value!r}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _safe(url: str) -> str:
    """Return `url` with any user:password@ part masked, for messages."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@", r"\1***@", url)


def resolve_credentials(environ: Mapping[str, str]) -> Credentials | None:
    """Return the credentials from the standard AWS variables or shared files, or None (anonymous).

    Raise ConfigError if AWS_PROFILE names a profile that no file has.
    """
    access = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if access and secret:
        return Credentials(access, secret, environ.get("AWS_SESSION_TOKEN") or None, "environment")
    home = environ.get("HOME") or os.path.expanduser("~")
    profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"
    files = (
        (environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"), profile),
        (environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"), _config_section(profile)),
    )
    found_profile = False
    for path, section in files:
        values = _read_profile(path, section)
        if values is None:
            continue
        found_profile = True
        access, secret = values.get("aws_access_key_id", ""), values.get("aws_secret_access_key", "")
        if access and secret:
            return Credentials(access, secret, values.get("aws_session_token") or None, f"profile {profile!r}")
    if "AWS_PROFILE" in environ and not found_profile:
        raise ConfigError(f"AWS_PROFILE={profile} names no profile in ~/.aws/credentials or ~/.aws/config")
    return None


def profile_region(environ: Mapping[str, str]) -> str | None:
    """Return the `region` of the AWS_PROFILE profile in the config file, or None."""
    home = environ.get("HOME") or os.path.expanduser("~")
    profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"
    path = environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    values = _read_profile(path, _config_section(profile))
    return (values or {}).get("region") or None


def _config_section(profile: str) -> str:
    return "default" if profile == "default" else f"profile {profile}"


def _read_profile(path: str, section: str) -> dict[str, str] | None:
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as stream:
            parser.read_file(stream)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None  # the AWS CLI also treats an unreadable file as absent
    if not parser.has_section(section):
        return None
    return {key.lower(): value.strip() for key, value in parser.items(section)}


def mask(text: str, hidden: Sequence[str]) -> str:
    """Return `text` with every occurrence of the `hidden` values (credentials) replaced by ***."""
    for value in sorted((h for h in hidden if h), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def open_s3_store(url: str, environ: Mapping[str, str]) -> S3Store:
    """Given an `s3://` store URL and the environment, return the S3Store. Raise ConfigError if invalid."""
    location = parse_s3_url(url, environ)
    if location.region is None:
        region = profile_region(environ)
        if region is None and location.endpoint != AWS_ENDPOINT:
            region = DEFAULT_REGION
        location = dataclasses.replace(location, region=region)
    return S3Store(location, resolve_credentials(environ), request_timeout(environ))


def request_timeout(environ: Mapping[str, str]) -> float:
    """Return the seconds an S3 request may stall (DOCKER_PERSIST_S3_TIMEOUT, default 30).

    Raise ConfigError for a value that is not a positive number.
    """
    text = environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds, such as 30")
    return value


def _import_minio() -> None:
    """Import minio without minio.minioadmin (the MinIO admin API, which pulls in pycryptodome and
    argon2): a stub stands in for it. Imported here, not at the top: only s3:// commands pay for it."""
    import sys
    import types

    if "minio" not in sys.modules:
        admin = types.ModuleType("minio.minioadmin", "A stand-in: docker-persist never calls the admin API.")
        setattr(admin, "MinioAdmin", None)  # noqa: B010 (a module attribute mypy cannot see)
        sys.modules.setdefault("minio.minioadmin", admin)
    import minio  # noqa: F401


def _make_client(location: S3Location, credentials: Credentials | None, timeout: float = DEFAULT_TIMEOUT) -> Minio:
    import certifi
    import urllib3

    _import_minio()
    from minio import Minio

    parts = urllib.parse.urlsplit(location.endpoint)
    # minio's own client waits 5 minutes a request and retries 5 times: a hung server would stall a
    # backup (and a service stopped for it) for half an hour. A request that makes no progress for
    # `timeout` seconds fails instead, and is tried RETRIES more times.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
        maxsize=UPLOADS_IN_FLIGHT + 4,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=RETRIES, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]),
    )
    client = Minio(
        parts.netloc,
        access_key=credentials.access_key if credentials else None,
        secret_key=credentials.secret_key if credentials else None,
        session_token=credentials.session_token if credentials else None,
        secure=parts.scheme == "https",
        region=location.region,
        http_client=http,
    )
    if location.path_style is True:
        client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
    elif location.path_style is False:
        client.enable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
    return client


class S3Store:
    """Snapshots in an S3 bucket (see the module docstring for the layout, the lock and the cleanup)."""

    deduplicates = False

    def __init__(self, location: S3Location, credentials: Credentials | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.location = location
        self.url = location.url
        self._credentials = credentials
        self._timeout = timeout
        self._client_cache: Minio | None = None
        self._held: dict[str, _LockHold] = {}
        self._live: set[str] = set()  # keys of snapshots this object is writing

    @property
    def client(self) -> Minio:
        """The S3 client, made on first use."""
        if self._client_cache is None:
            self._client_cache = _make_client(self.location, self._credentials, self._timeout)
        return self._client_cache

    # --- the Store protocol --------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, project: str, timeout: float = 0.0) -> Iterator[None]:
        """Hold the project's best-effort lock object for the `with` block, waiting up to `timeout` seconds.

        Re-entrant within one S3Store. Raise StoreLockedError if a fresh lock of another holder
        is still there after `timeout` seconds.
        """
        check_project_name(project)
        held = self._held.get(project)
        if held is not None:
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        hold = self._acquire(project, timeout)
        self._held[project] = hold
        try:
            self._remove_leftovers(project)
            yield
        finally:
            del self._held[project]
            hold.release()

    def list_snapshots(self, project: str) -> list[str]:
        """Return the names of the project's published snapshots (those with a manifest.json), sorted."""
        keys = self._list(self.location.key(check_project_name(project)) + "/", f"listing project {project!r}")
        names = set()
        for key in keys:
            name, _, rest = key.partition("/")
            if rest == MANIFEST_FILE and is_snapshot_name(name):
                names.add(name)
        return sorted(names)

    def list_projects(self) -> list[str]:
        """Return the names of the projects that have published snapshots, sorted."""
        root = self.location.key() + "/" if self.location.prefix else ""
        with self._translate("listing the projects"):
            entries = [o.object_name or "" for o in self.client.list_objects(self.location.bucket, prefix=root)]
        projects = {e[len(root) :].rstrip("/") for e in entries if e.endswith("/")}
        return sorted(p for p in projects if PROJECT_NAME.fullmatch(p) and self.list_snapshots(p))

    def read_manifest(self, project: str, name: str) -> bytes:
        """Return the bytes of a snapshot's manifest. Raise SnapshotNotFoundError if there is no such snapshot."""
        key = self._snapshot_key(project, name, MANIFEST_FILE)
        data = self._get(key, f"reading the manifest of snapshot {name!r} of project {project!r}")
        if data is None:
            raise not_found(project, name, self.list_snapshots(project))
        return data

    def open_part(self, project: str, name: str, filename: str) -> BinaryIO:
        """Return a stream reading a part of a published snapshot.

        Raise SnapshotNotFoundError if there is no such snapshot, StoreError if the part is missing.
        """
        if not self._object_exists(self._snapshot_key(project, name, MANIFEST_FILE)):
            raise not_found(project, name, self.list_snapshots(project))
        key = self._snapshot_key(project, name, check_part_name(filename))
        doing = f"reading {filename} of snapshot {name!r} of project {project!r}"
        with self._translate(doing, missing=key):
            response = self.client.get_object(self.location.bucket, key)
        return cast(BinaryIO, io.BufferedReader(_PartReader(self, response, doing), 1 << 20))

    def begin(self, project: str, name: str) -> _S3Pending:
        """Start writing a snapshot (what killed runs left was removed when the lock was taken). The caller
        holds the lock.

        Raise SnapshotExistsError if the name is taken, or being written by this store already.
        """
        prefix = self._snapshot_key(project, name, "")
        if project not in self._held:
            raise RuntimeError(f"S3Store.begin needs the lock: call it inside `with store.lock({project!r})`")
        if prefix in self._live or self._object_exists(prefix + MANIFEST_FILE):
            raise snapshot_exists(project, name)
        self._live.add(prefix)
        return _S3Pending(self, project, name, prefix)

    def replace_manifest(self, project: str, name: str, manifest: bytes) -> None:
        """Replace a snapshot's manifest (one PUT: atomic per object). The caller holds the lock.

        Raise SnapshotNotFoundError if there is no such snapshot.
        """
        key = self._snapshot_key(project, name, MANIFEST_FILE)
        if not self._object_exists(key):
            raise not_found(project, name, self.list_snapshots(project))
        self._put(key, manifest, f"replacing the manifest of snapshot {name!r} of project {project!r}")

    def delete(self, project: str, name: str) -> None:
        """Remove a snapshot: its manifest first (it disappears at once), then its parts. The caller holds the lock.

        Raise SnapshotNotFoundError if there is no such snapshot. Parts that cannot be removed now
        are removed by the next `begin`.
        """
        prefix = self._snapshot_key(project, name, "")
        if not self._object_exists(prefix + MANIFEST_FILE):
            raise not_found(project, name, self.list_snapshots(project))
        doing = f"deleting snapshot {name!r} of project {project!r}"
        with self._translate(doing):
            self.client.remove_object(self.location.bucket, prefix + MANIFEST_FILE)
        with contextlib.suppress(StoreError):
            self._remove_keys([prefix + k for k in self._list(prefix, doing)], doing)

    def reclaim(self) -> None:
        """Nothing to do: a deleted snapshot's space is freed at once."""

    # --- internals ------------------------------------------------------------------------------

    def _snapshot_key(self, project: str, name: str, filename: str) -> str:
        key = self.location.key(check_project_name(project), check_snapshot_name(name))
        return f"{key}/{filename}"

    def _list(self, prefix: str, doing: str) -> list[str]:
        """Return every key under `prefix`, relative to it."""
        with self._translate(doing):
            objects = self.client.list_objects(self.location.bucket, prefix=prefix, recursive=True)
            return [(o.object_name or "")[len(prefix) :] for o in objects]

    def _object_exists(self, key: str) -> bool:
        _import_minio()
        from minio.error import S3Error

        try:
            with self._translate(f"reading {key}"):
                self.client.stat_object(self.location.bucket, key)
        except StoreError as error:
            cause = error.__cause__
            if isinstance(cause, S3Error) and cause.code in (
                "NoSuchKey",
                "NoSuchObject",
                "NotFound",
                "ResourceNotFound",
            ):
                return False
            raise
        return True

    def _check_stored(self, key: str, size: int, etag: str, doing: str) -> None:
        """Check, by asking the server, that the object at `key` is the one this run wrote: its size, and the
        ETag the server gave it when it was completed. Raise StoreError if it is gone or another."""
        with self._translate(doing, missing=key):
            stat = self.client.stat_object(self.location.bucket, key)
        stored_etag = str(stat.etag or "").strip('"')
        if stat.size != size or (etag and stored_etag != etag.strip('"')):
            raise StoreError(
                self._mask(
                    f"{doing} failed: {key} in the bucket is not what this backup wrote ({stat.size} bytes, ETag "
                    f"{stored_etag or '?'}; wrote {size} bytes, ETag {etag.strip(chr(34)) or '?'}): another process "
                    "changed or removed it; nothing was published"
                )
            )

    def _get(self, key: str, doing: str) -> bytes | None:
        """Return the object's bytes, or None if there is no such object."""
        got = self._get_with_headers(key, doing)
        return None if got is None else got[0]

    def _get_with_headers(self, key: str, doing: str) -> tuple[bytes, Mapping[str, str]] | None:
        """Return the object's bytes and the response headers, or None if there is no such object."""
        _import_minio()
        from minio.error import S3Error

        try:
            with self._translate(doing):
                response = self.client.get_object(self.location.bucket, key)
                try:
                    return bytes(response.read()), response.headers
                finally:
                    response.close()
                    response.release_conn()
        except StoreError as error:
            if isinstance(error.__cause__, S3Error) and error.__cause__.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise

    def _put(self, key: str, data: bytes, doing: str) -> str:
        """Write an object in one request; return its ETag."""
        with self._translate(doing):
            result = self.client.put_object(self.location.bucket, key, io.BytesIO(data), len(data))
        return str(result.etag or "")

    def _remove_keys(self, keys: Sequence[str], doing: str) -> None:
        _import_minio()
        from minio.deleteobjects import DeleteObject

        if not keys:
            return
        with self._translate(doing):
            errors = list(self.client.remove_objects(self.location.bucket, [DeleteObject(k) for k in keys]))
        if errors:
            first = errors[0]
            raise StoreError(self._mask(f"{doing} failed: {first.code}: {first.message} ({first.name})"))

    def _remove_leftovers(self, project: str) -> None:
        """Remove unpublished snapshot prefixes and abort multipart uploads of killed runs (under the lock).

        When the lock was free or its holder provably dead, no one else can be writing: every
        leftover goes. When the lock was taken over for its age, its holder might yet live (a
        network that lost only its heartbeats): then only what is older than LOCK_STALE_SECONDS,
        by the server's clock, goes, so that no run removes another live run's parts.
        """
        doing = "cleaning up after an earlier, interrupted run"
        hold = self._held.get(project)
        if hold is None or hold.server_clock is None:
            return  # without the server's clock, the age of a leftover is unknown: leave it
        server_now, read_at = hold.server_clock
        margin = LOCK_STALE_SECONDS if hold.previous == "expired" else 0
        cutoff = server_now + datetime.timedelta(seconds=time.monotonic() - read_at - margin)
        base = self.location.key(project) + "/"
        by_snapshot: dict[str, list[tuple[str, datetime.datetime | None]]] = {}
        with self._translate(doing):
            for item in self.client.list_objects(self.location.bucket, prefix=base, recursive=True):
                name, _, rest = (item.object_name or "")[len(base) :].partition("/")
                if rest:
                    by_snapshot.setdefault(name, []).append((rest, item.last_modified))
        stale = [
            f"{base}{name}/{rest}"
            for name, items in by_snapshot.items()
            if f"{base}{name}/" not in self._live
            and MANIFEST_FILE not in {rest for rest, _ in items}
            and all(modified is not None and modified < cutoff for _, modified in items)
            for rest, _ in items
        ]
        self._remove_keys(stale, doing)
        for key, upload_id, initiated in self._uploads(base, doing):
            if not any(key.startswith(live) for live in self._live) and initiated is not None and initiated < cutoff:
                with self._translate(doing):
                    self.client._abort_multipart_upload(self.location.bucket, key, upload_id)

    def _uploads(self, prefix: str, doing: str) -> list[tuple[str, str, datetime.datetime | None]]:
        """Return (key, upload id, when it began) of the multipart uploads in progress under `prefix`."""
        found: list[tuple[str, str, datetime.datetime | None]] = []
        key_marker: str | None = None
        upload_marker: str | None = None
        with self._translate(doing):
            while True:
                result = self.client._list_multipart_uploads(
                    self.location.bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=upload_marker
                )
                found += [
                    (u.object_name, u.upload_id, u.initiated_time)
                    for u in result.uploads
                    if u.object_name and u.upload_id
                ]
                if not result.is_truncated or not result.next_key_marker:
                    return found
                key_marker, upload_marker = result.next_key_marker, result.next_upload_id_marker

    def _acquire(self, project: str, timeout: float) -> _LockHold:
        key = self.location.key(project, LOCK_FILE)
        doing = f"locking project {project!r}"
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            holder = self._read_lock(key, doing)
            if holder is None or _lock_is_stale(holder):
                # How far the clean-up may trust that no one else writes: a lock that was free or whose
                # holder provably died leaves nothing live; one taken over for its age might.
                previous = "free" if holder is None else "dead" if is_provably_dead(dict(holder)) else "expired"
                token = secrets.token_hex(16)
                since = format_datetime(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
                body = {**holder_identity(), "since": since, "heartbeat": time.time(), "token": token}
                self._put(key, _lock_body(body), doing)
                time.sleep(LOCK_SETTLE_SECONDS)  # let a racing writer's PUT land, then see who won
                check = self._read_lock(key, doing)
                if check is not None and check.get("token") == token:
                    hold = _LockHold(self, key, body)
                    hold.previous = previous
                    server_now = check.get("server_now")
                    if isinstance(server_now, datetime.datetime):
                        hold.server_clock = (server_now, float(check["read_at"]))
                    hold.start()
                    return hold
                holder = check
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreLockedError(_locked_message(project, holder))
            time.sleep(min(LOCK_POLL_SECONDS, remaining))

    def _read_lock(self, key: str, doing: str) -> dict[str, Any] | None:
        """Return the lock object's holder, with its age in seconds by the server's clock ("age"), or None."""
        got = self._get_with_headers(key, doing)
        if got is None:
            return None
        data, headers = got
        try:
            holder = json.loads(data)
            if not isinstance(holder, dict):
                raise TypeError
        except (ValueError, TypeError):
            holder = {}  # unreadable: judge it by its age alone
        age = _age(headers.get("Last-Modified"), headers.get("Date"))
        with contextlib.suppress(TypeError, ValueError):
            holder["server_now"] = email.utils.parsedate_to_datetime(headers.get("Date") or "")
            holder["read_at"] = time.monotonic()
        heartbeat = holder.get("heartbeat")
        if age is None and isinstance(heartbeat, (int, float)):
            age = time.time() - heartbeat  # no usable server dates: trust the holder's clock
        holder["age"] = age
        return holder

    def _mask(self, text: str) -> str:
        return mask(text, self._credentials.secrets() if self._credentials else [])

    @contextlib.contextmanager
    def _translate(self, doing: str, missing: str | None = None) -> Iterator[None]:
        """Turn the client's errors into StoreErrors that say what failed and what to do."""
        _import_minio()
        from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
        from urllib3.exceptions import HTTPError

        try:
            yield
        except S3Error as error:
            raise self._s3_error(error, doing, missing) from error
        except (ServerError, InvalidResponseError) as error:
            raise StoreError(
                self._mask(f"{doing} failed: the S3 endpoint {self.location.endpoint} answered: {error}")
            ) from error
        except HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise StoreError(
                self._mask(
                    f"cannot reach the S3 endpoint {self.location.endpoint}: {doing} failed ({_short(reason)}); "
                    "check endpoint= in the store URL and that the server is up"
                )
            ) from error
        except MinioException as error:
            raise StoreError(self._mask(f"{doing} failed: {error} ({self.url})")) from error
        except OSError as error:
            raise StoreError(self._mask(f"{doing} failed: {error} ({self.url})")) from error

    def _s3_error(self, error: Any, doing: str, missing: str | None) -> StoreError:
        code = error.code or ""
        bucket = self.location.bucket
        if code == "NoSuchBucket":
            message = (
                f"the bucket {bucket!r} does not exist at {self.location.endpoint}: {doing} failed; create it "
                f"(for example `aws s3 mb s3://{bucket}` or `mc mb ALIAS/{bucket}`) or fix the store URL"
            )
        elif code in _ACCESS_CODES:
            source = f" (from the {self._credentials.source})" if self._credentials else " (none found: anonymous)"
            message = (
                f"access denied by {self.location.endpoint} ({code}): {doing} failed on {self.url}; check the "
                f"credentials{source}: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, or "
                "AWS_PROFILE with ~/.aws/credentials, and the bucket's policy"
            )
        elif missing is not None and code in ("NoSuchKey", "NoSuchObject"):
            message = f"{doing} failed: {missing} is missing: the snapshot is incomplete or damaged"
        else:
            message = f"{doing} failed: S3 error {code or 'unknown'}: {error.message} ({self.url})"
        return StoreError(self._mask(message))


def _short(reason: object) -> str:
    text = str(reason)
    # urllib3 wraps the cause: "<urllib3.connection.HTTPConnection object at 0x...>: Failed to ...".
    return re.sub(r"<[^>]*object at 0x[0-9a-f]+>: ", "", text)


def _age(last_modified: str | None, now: str | None) -> float | None:
    try:
        if last_modified and now:
            return (
                email.utils.parsedate_to_datetime(now) - email.utils.parsedate_to_datetime(last_modified)
            ).total_seconds()
    except (TypeError, ValueError):
        pass
    return None


def _lock_is_stale(holder: Mapping[str, Any]) -> bool:
    """Return True if the lock's holder is gone: its heartbeat stopped LOCK_STALE_SECONDS ago, or it
    provably died on this machine (see host/identity.py). A live holder elsewhere is never stale."""
    age = holder.get("age")
    if age is None or age > LOCK_STALE_SECONDS:
        return True
    return is_provably_dead(dict(holder))


def _lock_body(body: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(body), sort_keys=True) + "\n").encode()


def _locked_message(project: str, holder: Mapping[str, Any] | None) -> str:
    holder = holder or {}
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')}"
    return (
        f"another docker-persist operation on project {project!r} holds the lock ({who}); try again when it "
        f"finishes (a lock not refreshed for {LOCK_STALE_SECONDS // 60} minutes is taken over)"
    )


class _LockHold:
    """A held lock object: refreshed in the background, removed on release if it is still ours."""

    def __init__(self, store: S3Store, key: str, body: dict[str, Any]) -> None:
        self.store = store
        self.key = key
        self.body = body
        self.depth = 1
        self.server_clock: tuple[datetime.datetime, float] | None = None  # (the server's time, monotonic then)
        self.previous = "free"  # free | dead | expired: the lock before this holder took it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="docker-persist-s3-lock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            self.body["heartbeat"] = time.time()
            with contextlib.suppress(StoreError):
                self.store._put(self.key, _lock_body(self.body), "refreshing the project lock")

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(StoreError):
            holder = self.store._read_lock(self.key, "releasing the project lock")
            if holder is not None and holder.get("token") == self.body["token"]:
                with self.store._translate("releasing the project lock"):
                    self.store.client.remove_object(self.store.location.bucket, self.key)


class _PartReader(io.RawIOBase):
    """An object being read: its errors become StoreErrors; close releases the connection."""

    def __init__(self, store: S3Store, response: BaseHTTPResponse, doing: str) -> None:
        super().__init__()
        self._store = store
        self._response = response
        self._doing = doing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        with self._store._translate(self._doing):
            data = self._response.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._response.close()
                self._response.release_conn()
        super().close()


def part_size(number: int) -> int:
    """Return the size of multipart upload part `number` (from 1): PART_BYTES, doubled every PARTS_PER_SIZE parts.

    S3 allows at most 10,000 parts of at least 5 MiB each (but the last). Growing the size keeps
    small archives at small buffers and still lets an upload reach terabytes.
    """
    return PART_BYTES << min((number - 1) // PARTS_PER_SIZE, 9)


class _PartWriter(io.BufferedIOBase):
    """A part being uploaded: a multipart upload fed from a bounded buffer.

    Full parts upload in background threads, UPLOADS_IN_FLIGHT at a time, while the next part
    fills: the most held is the filling part plus those in flight. A part smaller than one
    multipart part is a single PUT on close. Closing after an exception in a `with` block, or
    `discard`, aborts the upload instead of completing it.
    """

    def __init__(self, store: S3Store, key: str, doing: str) -> None:
        super().__init__()
        self._store = store
        self.key = key
        self._doing = doing
        self._buffer = bytearray()
        self.upload_id: str | None = None
        self._uploads: list[concurrent.futures.Future[Any]] = []
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.completed = False
        self.size = 0  # bytes written
        self.etag = ""  # what the server said the completed object is

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        if self.closed:
            raise ValueError("write to a closed part")
        view = memoryview(data).cast("B")
        self._buffer += view
        self.size += len(view)
        while len(self._buffer) >= (size := part_size(len(self._uploads) + 1)):
            chunk = bytes(memoryview(self._buffer)[:size])
            del self._buffer[:size]
            self._submit(chunk)
        return len(view)

    def _submit(self, chunk: bytes) -> None:
        """Start uploading `chunk` as the next part, once fewer than UPLOADS_IN_FLIGHT are in flight."""
        client, bucket = self._store.client, self._store.location.bucket
        if self.upload_id is None:
            with self._store._translate(self._doing):
                self.upload_id = client._create_multipart_upload(
                    bucket, self.key, {"Content-Type": "application/octet-stream"}
                )
            self._pool = concurrent.futures.ThreadPoolExecutor(UPLOADS_IN_FLIGHT, "docker-persist-s3-upload")
        assert self._pool is not None
        while len(in_flight := [upload for upload in self._uploads if not upload.done()]) >= UPLOADS_IN_FLIGHT:
            # Only the uploads still in flight: a finished one in the list would end the wait at once, and
            # this loop would spin at 100% CPU whenever the upload is slower than compression.
            concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
        for upload in self._uploads:
            if upload.done():
                upload.result()  # a failed part fails the write now
        self._uploads.append(self._pool.submit(self._upload, len(self._uploads) + 1, chunk, self.upload_id))

    def _upload(self, number: int, chunk: bytes, upload_id: str) -> Any:
        _import_minio()
        from minio.datatypes import Part

        with self._store._translate(self._doing):
            client, bucket = self._store.client, self._store.location.bucket
            etag = client._upload_part(bucket, self.key, chunk, None, upload_id, number)
        return Part(number, etag)

    def _finish_uploads(self) -> list[Any]:
        """Wait for every part upload; return the parts. Raise the first failure."""
        concurrent.futures.wait(self._uploads)
        return [upload.result() for upload in self._uploads]

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is not None:
            self.discard()
        else:
            self.close()

    def close(self) -> None:
        """Upload what is buffered and complete the object. Raise StoreError on failure (then discard it)."""
        if self.closed:
            return
        try:
            if self.upload_id is None:
                self.etag = self._store._put(self.key, bytes(self._buffer), self._doing)
            else:
                if self._buffer:
                    self._submit(bytes(self._buffer))
                    self._buffer = bytearray()
                parts = self._finish_uploads()
                with self._store._translate(self._doing):
                    result = self._store.client._complete_multipart_upload(
                        self._store.location.bucket, self.key, self.upload_id, parts
                    )
                self.etag = str(result.etag or "")
            self.completed = True
        except BaseException:
            self.discard()
            raise
        finally:
            self._buffer = bytearray()
            self._shutdown()
            super().close()

    def discard(self) -> None:
        """Abort the upload, if one is in progress, and close without completing."""
        self._buffer = bytearray()
        self._shutdown()
        if self.upload_id is not None and not self.completed:
            with contextlib.suppress(StoreError), self._store._translate(self._doing):
                self._store.client._abort_multipart_upload(self._store.location.bucket, self.key, self.upload_id)
            self.upload_id = None
        if not self.closed:
            super().close()

    def _shutdown(self) -> None:
        """Stop the upload threads: parts not started are dropped, those in flight are waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _S3Pending:
    """A snapshot being written in place under its final prefix; visible once manifest.json is written."""

    def __init__(self, store: S3Store, project: str, name: str, prefix: str) -> None:
        self._store = store
        self._project = project
        self._name = name
        self._prefix = prefix
        self._parts: dict[str, _PartWriter] = {}
        self._state = "open"  # open | published | aborted

    def open_part(self, filename: str) -> BinaryIO:
        """Return a stream to write the part `filename` (a plain name) into; close it when done.

        Raise StoreError if the name is not a plain file name.
        """
        self._check_open()
        key = self._prefix + check_part_name(filename)
        if filename in self._parts:
            raise ValueError(f"the part {filename!r} of snapshot {self._name!r} was opened already")
        writer = _PartWriter(
            self._store, key, f"writing {filename} of snapshot {self._name!r} of project {self._project!r}"
        )
        self._parts[filename] = writer
        return cast(BinaryIO, writer)

    def publish(self, manifest: bytes) -> None:
        """Complete every part upload, then write manifest.json last: the snapshot appears with it.

        On any failure nothing becomes visible and what was uploaded is removed.
        """
        self._check_open()
        doing = f"publishing snapshot {self._name!r} of project {self._project!r}"
        published = False
        try:
            for writer in self._parts.values():
                writer.close()
                if not writer.completed:
                    raise StoreError(f"{doing} failed: the part {writer.key} was discarded")
            for writer in self._parts.values():
                self._store._check_stored(writer.key, writer.size, writer.etag, doing)
            if self._store._object_exists(self._prefix + MANIFEST_FILE):
                raise snapshot_exists(self._project, self._name)
            self._store._put(self._prefix + MANIFEST_FILE, manifest, doing)
            published = True
        finally:
            if not published:
                self.abort()
        self._state = "published"
        self._store._live.discard(self._prefix)

    def abort(self) -> None:
        """Abort the part uploads in progress and remove the uploaded parts. Again, or after publish: nothing."""
        if self._state != "open":
            return
        self._state = "aborted"
        for writer in self._parts.values():
            writer.discard()
        doing = f"removing the parts of the unfinished snapshot {self._name!r} of project {self._project!r}"
        # What cannot be removed now is removed by the next begin (a prefix without manifest.json).
        # Parts are written in place: if a snapshot of this name was published meanwhile (another
        # writer that took the lock over), the keys are its parts now, and stay.
        with contextlib.suppress(StoreError):
            if not self._store._object_exists(self._prefix + MANIFEST_FILE):
                self._store._remove_keys([w.key for w in self._parts.values() if w.completed], doing)
        self._store._live.discard(self._prefix)

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"snapshot {self._name!r} was {self._state} already")
