"""The store contract (tests/conformance.py) on the S3 store, against SeaweedFS's gateway on loopback.

Each test gets a fresh bucket, made with the minio client as test_s3.py does, and the store is
opened from its URL with the test credentials. A second S3Store on the same URL is the rival: its
lock object is fresh and its holder alive, so neither takes the other's lock over. The suite runs
twice: under a prefix, and at the root of the bucket (where listing the projects differs).
"""

from __future__ import annotations

import contextlib
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import ClassVar

import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject

from docker_persist.store import Store
from docker_persist.store.s3 import PART_BYTES, S3Store, open_s3_store
from tests.bed.seaweed import ACCESS_KEY, CREDENTIALS, SECRET_KEY

pytest.register_assert_rewrite("tests.conformance")  # so that its asserts say what they compared
from tests.conformance import StoreContract  # noqa: E402

ENVIRON = {**CREDENTIALS, "HOME": "/nonexistent"}  # no ~/.aws of whoever runs the tests


def client(endpoint: str) -> Minio:
    netloc = urllib.parse.urlsplit(endpoint).netloc
    return Minio(netloc, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1")


class TestS3Store(StoreContract):
    prefix: ClassVar[str] = "conformance/run"
    # Past two multipart parts (and so past the uploads in flight), and not a multiple of one.
    large_part_bytes: ClassVar[int] = 2 * PART_BYTES + 1_234_567

    @pytest.fixture
    def s3(self, seaweed: str) -> Iterator[tuple[Minio, str, str]]:
        """A fresh bucket: (client, bucket, store URL); emptied and removed afterwards."""
        minio, bucket = client(seaweed), f"dptest-{uuid.uuid4().hex[:12]}"
        minio.make_bucket(bucket)
        url = f"s3://{bucket}/{self.prefix}?endpoint={seaweed}&region=us-east-1&path_style=true"
        yield minio, bucket, url
        with contextlib.suppress(Exception):
            for upload in minio._list_multipart_uploads(bucket).uploads:
                minio._abort_multipart_upload(bucket, upload.object_name or "", upload.upload_id or "")
            objects = minio.list_objects(bucket, recursive=True)
            list(minio.remove_objects(bucket, [DeleteObject(o.object_name or "") for o in objects]))
            minio.remove_bucket(bucket)

    @pytest.fixture
    def store(self, s3: tuple[Minio, str, str]) -> Iterator[Store]:
        yield open_s3_store(s3[2], ENVIRON)

    @pytest.fixture
    def rival(self, store: Store, s3: tuple[Minio, str, str]) -> Iterator[Store]:
        yield open_s3_store(s3[2], ENVIRON)

    def contents(self, store: Store) -> list[str]:
        """Every object under the store's prefix but the projects' lock objects, and every multipart
        upload in progress there (as 'upload:KEY'), relative to the prefix."""
        assert isinstance(store, S3Store)
        root = f"{store.location.prefix}/" if store.location.prefix else ""
        bucket, minio = store.location.bucket, store.client
        found = []
        for item in minio.list_objects(bucket, prefix=root, recursive=True):
            key = (item.object_name or "")[len(root) :]
            if key.partition("/")[2] != ".lock":
                found.append(key)
        result = minio._list_multipart_uploads(bucket, prefix=root)
        assert not result.is_truncated
        found += [f"upload:{(u.object_name or '')[len(root) :]}" for u in result.uploads]
        return sorted(found)


class TestS3StoreAtTheBucketRoot(TestS3Store):
    prefix: ClassVar[str] = ""
