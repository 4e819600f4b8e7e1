"""The store contract, as one suite that every store runs (restic-style backend tests).

`StoreContract` tests what `store.base.Store` and `PendingSnapshot` promise, through the protocol
only. A test module runs it on a store by subclassing it as `Test...` and providing:

- the fixture `store`: a fresh, empty store;
- the fixture `rival`: a second handle on the same storage, as another process would open it
  (the two handles' locks exclude each other; what one publishes, the other reads);
- `contents(store)`: every object the backend keeps but its lock files (files and folders,
  keys and multipart uploads, staged or published), so that a test can tell that a refused
  call wrote nothing and that abort, delete and the clean-up after a killed run leave nothing.

Besides the protocol's docstrings, the suite holds the stores to what all three implement
alike: names are checked first (ConfigError for project and snapshot names, StoreError for part
names), `begin` outside the lock is a RuntimeError, a finished pending snapshot refuses more work
with ValueError, and the lock is re-entrant within one handle.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import BinaryIO, ClassVar

import pytest

from docker_persist.errors import BusyError, ConfigError, SnapshotNotFoundError
from docker_persist.store.base import PendingSnapshot, SnapshotExistsError, Store, StoreError, StoreLockedError

PROJECT = "shop"
MANIFEST = b'{"format": 1}\n'
# A store moves bytes and never parses a manifest: any bytes must round-trip.
ODD_MANIFEST = b'\x00\xff not JSON {"format": 1}\r\n' + bytes(range(256))

BAD_PROJECTS = ["", "../x", "a/b", ".hidden", "Shop", "-x", "with space", "x\n", "nul\0"]
BAD_SNAPSHOT_NAMES = ["", "../x", "a/b", ".hidden", "..", "-x", "x" * 129, "with space", "x\n", "nul\0", "é"]
BAD_PART_NAMES = ["", ".", "..", "../x", "a/b", "/abs", "manifest.json", "x" * 256, "with space", "x\n", "nul\0"]


def data(size: int, seed: int) -> bytes:
    """Return `size` pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


def write_parts(pending: PendingSnapshot, parts: Mapping[str, bytes]) -> None:
    for filename, content in parts.items():
        with pending.open_part(filename) as part:
            part.write(content)


def publish(
    store: Store,
    name: str,
    parts: Mapping[str, bytes] | None = None,
    manifest: bytes = MANIFEST,
    project: str = PROJECT,
) -> None:
    """Publish a snapshot under the project's lock."""
    with store.lock(project):
        pending = store.begin(project, name)
        write_parts(pending, {"db.tar.zst": b"archive of " + name.encode()} if parts is None else parts)
        pending.publish(manifest)


def read_part(store: Store, name: str, filename: str, project: str = PROJECT) -> bytes:
    with store.open_part(project, name, filename) as stream:
        return stream.read()


def digest(stream: BinaryIO, chunk: int) -> tuple[int, str]:
    """Read `stream` to its end, `chunk` bytes at a time; return its size and sha256."""
    hasher, size = hashlib.sha256(), 0
    while block := stream.read(chunk):
        hasher.update(block)
        size += len(block)
    return size, hasher.hexdigest()


def refused(lock: contextlib.AbstractContextManager[None]) -> bool:
    """Return True if taking `lock` raises StoreLockedError (and release it if it was taken)."""
    try:
        with lock:
            return False
    except StoreLockedError:
        return True


class StoreContract:
    """The contract of a snapshot store. Subclasses named `Test...` run it on one store."""

    large_part_bytes: ClassVar[int] = 3 * (1 << 20) + 12_345
    """The size of the large part: a few MB, or more where the store switches to multipart above that."""

    # --- what each store provides ----------------------------------------------------------------

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """A fresh, empty store."""
        raise NotImplementedError(f"{type(self).__name__} must provide the fixture `store`")

    @pytest.fixture
    def rival(self, store: Store) -> Iterator[Store]:
        """A second handle on `store`'s storage, as another process would open it."""
        raise NotImplementedError(f"{type(self).__name__} must provide the fixture `rival`")

    def contents(self, store: Store) -> list[str]:
        """Return, sorted, every object the backend keeps for `store` but its lock files."""
        raise NotImplementedError(f"{type(self).__name__} must implement contents()")

    # --- publish: atomic, byte-exact ---------------------------------------------------------------

    def test_a_published_snapshot_reads_back_byte_exact(self, store: Store, rival: Store) -> None:
        assert isinstance(store.url, str) and store.url
        parts = {"db.tar.zst": data(100_000, 1), "empty.tar": b"", "all-bytes.bin": bytes(range(256)) * 3}
        publish(store, "s1", parts, ODD_MANIFEST)
        for reader in (store, rival):  # another process sees the same snapshot
            assert reader.list_snapshots(PROJECT) == ["s1"]
            assert reader.list_projects() == [PROJECT]
            assert reader.read_manifest(PROJECT, "s1") == ODD_MANIFEST
            for filename, content in parts.items():
                assert read_part(reader, "s1", filename) == content, filename

    def test_a_pending_snapshot_is_invisible_until_publish(self, store: Store, rival: Store) -> None:
        publish(store, "old")
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "s1")
            write_parts(pending, {"db.tar.zst": b"closed part"})
            left_open = pending.open_part("left-open.tar")
            left_open.write(b"written, never closed by the caller")
            for reader in (store, rival):
                assert reader.list_snapshots(PROJECT) == ["old"]
                with pytest.raises(SnapshotNotFoundError):
                    reader.read_manifest(PROJECT, "s1")
                with pytest.raises(SnapshotNotFoundError):
                    reader.open_part(PROJECT, "s1", "db.tar.zst")
            pending.publish(MANIFEST)
        assert left_open.closed  # publish flushes and closes the parts left open
        assert store.list_snapshots(PROJECT) == ["old", "s1"]
        assert store.read_manifest(PROJECT, "s1") == MANIFEST
        assert read_part(store, "s1", "db.tar.zst") == b"closed part"
        assert read_part(store, "s1", "left-open.tar") == b"written, never closed by the caller"

    def test_a_pending_snapshot_does_not_list_its_project(self, store: Store) -> None:
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "s1")
            write_parts(pending, {"db.tar.zst": b"data"})
            assert store.list_projects() == []
            pending.publish(MANIFEST)
        assert store.list_projects() == [PROJECT]

    def test_a_snapshot_may_have_no_parts(self, store: Store) -> None:
        publish(store, "s1", {})
        assert store.list_snapshots(PROJECT) == ["s1"]
        assert store.read_manifest(PROJECT, "s1") == MANIFEST
        with pytest.raises(StoreError):
            store.open_part(PROJECT, "s1", "db.tar.zst")

    def test_a_large_part_written_in_chunks_reads_back_equal(self, store: Store) -> None:
        content = data(self.large_part_bytes, 7)
        sizes = [1, 7, 4096, 65_521, (1 << 20) + 3]  # odd sizes, so that chunks straddle every buffer
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "big")
            with pending.open_part("big.tar.zst") as part:
                offset, turn = 0, 0
                while offset < len(content):
                    chunk = content[offset : offset + sizes[turn % len(sizes)]]
                    part.write(chunk)
                    offset, turn = offset + len(chunk), turn + 1
            write_parts(pending, {"small.tar": b"beside the large one"})
            pending.publish(MANIFEST)
        with store.open_part(PROJECT, "big", "big.tar.zst") as stream:
            assert digest(stream, 70_001) == (len(content), hashlib.sha256(content).hexdigest())
        assert read_part(store, "big", "small.tar") == b"beside the large one"

    def test_a_part_is_opened_once(self, store: Store) -> None:
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "s1")
            write_parts(pending, {"db.tar.zst": b"first"})
            with pytest.raises(ValueError, match="opened already"):
                pending.open_part("db.tar.zst")
            pending.publish(MANIFEST)
        assert read_part(store, "s1", "db.tar.zst") == b"first"

    def test_a_published_pending_snapshot_refuses_more_work(self, store: Store) -> None:
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "s1")
            write_parts(pending, {"db.tar.zst": b"data"})
            pending.publish(MANIFEST)
            after = self.contents(store)
            with pytest.raises(ValueError):
                pending.open_part("late.tar")
            with pytest.raises(ValueError):
                pending.publish(b"again")
            pending.abort()  # after publish: does nothing
            pending.abort()
        assert self.contents(store) == after
        assert store.list_snapshots(PROJECT) == ["s1"]
        assert store.read_manifest(PROJECT, "s1") == MANIFEST
        assert read_part(store, "s1", "db.tar.zst") == b"data"

    # --- abort -----------------------------------------------------------------------------------

    def test_abort_leaves_nothing_and_frees_the_name(self, store: Store) -> None:
        publish(store, "old")
        with store.lock(PROJECT):
            before = self.contents(store)
            pending = store.begin(PROJECT, "s1")
            write_parts(pending, {"db.tar.zst": b"closed", "other.tar": b"closed too"})
            buffered = pending.open_part("buffered.tar")
            buffered.write(b"still buffered")
            large = pending.open_part("large.tar")  # a part being written when the run gives up
            large.write(data(self.large_part_bytes, 3))
            pending.abort()
            pending.abort()  # again: does nothing
            with pytest.raises(ValueError):
                pending.open_part("late.tar")
            with pytest.raises(ValueError):
                pending.publish(MANIFEST)
            assert self.contents(store) == before
            assert store.list_snapshots(PROJECT) == ["old"]
            with pytest.raises(SnapshotNotFoundError):
                store.read_manifest(PROJECT, "s1")
            again = store.begin(PROJECT, "s1")  # the name is free again
            write_parts(again, {"db.tar.zst": b"the second try"})
            again.publish(b"second manifest")
        assert store.list_snapshots(PROJECT) == ["old", "s1"]
        assert store.read_manifest(PROJECT, "s1") == b"second manifest"
        assert read_part(store, "s1", "db.tar.zst") == b"the second try"
        for aborted in ("other.tar", "buffered.tar", "large.tar"):
            with pytest.raises(StoreError):
                read_part(store, "s1", aborted)

    def test_abort_closes_the_parts_left_open(self, store: Store) -> None:
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "s1")
            buffered = pending.open_part("buffered.tar")
            buffered.write(b"still buffered")
            pending.abort()
            assert buffered.closed
            with pytest.raises(ValueError):
                buffered.write(b"more, after the abort")
        assert store.list_snapshots(PROJECT) == []
        assert self.contents(store) == []

    # --- names taken ---------------------------------------------------------------------------

    def test_begin_refuses_a_taken_name(self, store: Store) -> None:
        publish(store, "s1", {"db.tar.zst": b"first"})
        before = self.contents(store)
        with store.lock(PROJECT), pytest.raises(SnapshotExistsError, match="'s1' already exists in project 'shop'"):
            store.begin(PROJECT, "s1")
        assert issubclass(SnapshotExistsError, StoreError)
        assert self.contents(store) == before
        assert store.read_manifest(PROJECT, "s1") == MANIFEST
        assert read_part(store, "s1", "db.tar.zst") == b"first"

    def test_a_name_being_written_cannot_be_begun_again(self, store: Store) -> None:
        """Parts may be written in place (S3): a second writer of one name is refused at begin, not at publish."""
        with store.lock(PROJECT):
            before = self.contents(store)
            first = store.begin(PROJECT, "s1")
            write_parts(first, {"db.tar.zst": b"first"})
            with pytest.raises(SnapshotExistsError):
                store.begin(PROJECT, "s1")
            first.publish(MANIFEST)
            with pytest.raises(SnapshotExistsError):
                store.begin(PROJECT, "s1")
        assert read_part(store, "s1", "db.tar.zst") == b"first"
        with store.lock(PROJECT):
            aborted = store.begin(PROJECT, "s2")
            aborted.abort()
            again = store.begin(PROJECT, "s2")  # an aborted name is free again
            write_parts(again, {"db.tar.zst": b"again"})
            again.publish(MANIFEST)
        assert read_part(store, "s2", "db.tar.zst") == b"again"
        with store.lock(PROJECT):
            store.delete(PROJECT, "s1")
            store.delete(PROJECT, "s2")
            assert self.contents(store) == before

    # --- names -----------------------------------------------------------------------------------

    @pytest.mark.parametrize("name", BAD_SNAPSHOT_NAMES)
    def test_an_invalid_snapshot_name_is_refused_before_anything_is_touched(self, store: Store, name: str) -> None:
        publish(store, "s1")
        before = self.contents(store)
        with store.lock(PROJECT):
            with pytest.raises(ConfigError, match="invalid snapshot name"):
                store.begin(PROJECT, name)
            with pytest.raises(ConfigError, match="invalid snapshot name"):
                store.replace_manifest(PROJECT, name, MANIFEST)
            with pytest.raises(ConfigError, match="invalid snapshot name"):
                store.delete(PROJECT, name)
        with pytest.raises(ConfigError, match="invalid snapshot name"):
            store.read_manifest(PROJECT, name)
        with pytest.raises(ConfigError, match="invalid snapshot name"):
            store.open_part(PROJECT, name, "db.tar.zst")
        assert self.contents(store) == before
        assert store.list_snapshots(PROJECT) == ["s1"]

    @pytest.mark.parametrize("filename", BAD_PART_NAMES)
    def test_an_invalid_part_name_is_refused_before_anything_is_touched(self, store: Store, filename: str) -> None:
        publish(store, "s1")
        with store.lock(PROJECT):
            pending = store.begin(PROJECT, "s2")
            staged = self.contents(store)
            with pytest.raises(StoreError, match="invalid file name"):
                pending.open_part(filename)
            assert self.contents(store) == staged
            write_parts(pending, {"db.tar.zst": b"valid"})  # the pending snapshot is still usable
            pending.publish(MANIFEST)
        with pytest.raises(StoreError, match="invalid file name"):
            store.open_part(PROJECT, "s1", filename)
        assert store.list_snapshots(PROJECT) == ["s1", "s2"]
        assert read_part(store, "s2", "db.tar.zst") == b"valid"

    @pytest.mark.parametrize("project", BAD_PROJECTS)
    def test_an_invalid_project_name_is_refused_before_anything_is_touched(self, store: Store, project: str) -> None:
        publish(store, "s1")
        before = self.contents(store)
        with pytest.raises(ConfigError, match="invalid project name"), store.lock(project):
            pass
        with pytest.raises(ConfigError, match="invalid project name"):
            store.begin(project, "s2")  # the name is checked before the lock is
        for call in (
            lambda: store.list_snapshots(project),
            lambda: store.read_manifest(project, "s1"),
            lambda: store.open_part(project, "s1", "db.tar.zst"),
            lambda: store.replace_manifest(project, "s1", MANIFEST),
            lambda: store.delete(project, "s1"),
        ):
            with pytest.raises(ConfigError, match="invalid project name"):
                call()
        assert self.contents(store) == before
        assert store.list_projects() == [PROJECT]

    def test_names_at_the_edge_of_the_rules_are_accepted(self, store: Store) -> None:
        longest, part = "a" * 128, "p" * 255
        parts = {part: b"longest part name", ".hidden": b"a dot is fine in a part name", "..x": b"so are two"}
        publish(store, longest, parts, project="a0_-z")
        publish(store, "A.b_c-9", project="9")
        assert store.list_projects() == ["9", "a0_-z"]
        assert store.list_snapshots("a0_-z") == [longest]
        for filename, content in parts.items():
            assert read_part(store, longest, filename, project="a0_-z") == content
        assert read_part(store, "A.b_c-9", "db.tar.zst", project="9") == b"archive of A.b_c-9"

    # --- lists -----------------------------------------------------------------------------------

    def test_an_empty_store_reads_as_empty(self, store: Store) -> None:
        assert store.list_projects() == []
        assert store.list_snapshots(PROJECT) == []
        with pytest.raises(SnapshotNotFoundError):
            store.read_manifest(PROJECT, "s1")
        with pytest.raises(SnapshotNotFoundError):
            store.open_part(PROJECT, "s1", "db.tar.zst")
        with store.lock(PROJECT):
            with pytest.raises(SnapshotNotFoundError):
                store.replace_manifest(PROJECT, "s1", MANIFEST)
            with pytest.raises(SnapshotNotFoundError):
                store.delete(PROJECT, "s1")
        assert self.contents(store) == []
        assert store.list_projects() == []

    def test_list_snapshots_is_sorted_and_per_project(self, store: Store) -> None:
        names = ["b", "A", "a.2", "s10", "a", "10", "9", "s1", "a-1", "a_1", "Z"]
        for name in names:
            publish(store, name)
        publish(store, "x", project="shop2")  # a project whose name extends another's
        publish(store, "y", project="sho")
        assert store.list_snapshots(PROJECT) == sorted(names)
        assert store.list_snapshots("shop2") == ["x"]
        assert store.list_snapshots("sho") == ["y"]
        assert store.list_snapshots("none") == []

    def test_list_projects_lists_the_projects_with_published_snapshots(self, store: Store) -> None:
        publish(store, "s1", project="shop")
        publish(store, "s1", project="blog")
        publish(store, "s1", project="gone")
        with store.lock("gone"):
            store.delete("gone", "s1")
        with store.lock("locked-only"):
            pass
        with store.lock("aborted"):
            store.begin("aborted", "s1").abort()
        with store.lock("pending"):
            pending = store.begin("pending", "s1")
            write_parts(pending, {"db.tar.zst": b"staged"})
            assert store.list_projects() == ["blog", "shop"]
            pending.abort()
        assert store.list_projects() == ["blog", "shop"]
        assert store.list_snapshots("gone") == []

    # --- read_manifest and open_part of what is not there ----------------------------------------

    def test_a_missing_snapshot_is_not_found_with_a_suggestion(self, store: Store) -> None:
        publish(store, "before-upgrade")
        with pytest.raises(
            SnapshotNotFoundError, match="no snapshot named 'before-upgrad' in project 'shop'"
        ) as raised:
            store.read_manifest(PROJECT, "before-upgrad")
        assert "did you mean 'before-upgrade'?" in str(raised.value)
        with pytest.raises(SnapshotNotFoundError, match="did you mean 'before-upgrade'"):
            store.open_part(PROJECT, "before-upgrad", "db.tar.zst")
        with pytest.raises(SnapshotNotFoundError):
            store.read_manifest("other", "before-upgrade")  # snapshots belong to their project

    def test_a_missing_part_of_a_published_snapshot_is_a_store_error(self, store: Store) -> None:
        publish(store, "s1", {"db.tar.zst": b"data"})
        with pytest.raises(StoreError, match=r"gone\.tar") as raised:
            store.open_part(PROJECT, "s1", "gone.tar")
        assert not isinstance(raised.value, SnapshotNotFoundError)
        assert read_part(store, "s1", "db.tar.zst") == b"data"

    # --- replace_manifest ----------------------------------------------------------------------

    def test_replace_manifest_replaces_the_manifest_only(self, store: Store, rival: Store) -> None:
        parts = {"db.tar.zst": data(50_000, 5)}
        publish(store, "s1", parts, b"x" * 5000)
        publish(store, "s2", {"db.tar.zst": b"other"}, b"s2 manifest")
        before = self.contents(store)
        with store.lock(PROJECT):
            store.replace_manifest(PROJECT, "s1", b'{"verified": true}\n')  # shorter: nothing of the old one stays
        assert rival.read_manifest(PROJECT, "s1") == b'{"verified": true}\n'
        with store.lock(PROJECT):
            store.replace_manifest(PROJECT, "s1", ODD_MANIFEST)
        assert store.read_manifest(PROJECT, "s1") == ODD_MANIFEST
        assert self.contents(store) == before  # no temporary object is left
        assert store.list_snapshots(PROJECT) == ["s1", "s2"]
        assert read_part(store, "s1", "db.tar.zst") == parts["db.tar.zst"]
        assert store.read_manifest(PROJECT, "s2") == b"s2 manifest"

    def test_replace_manifest_of_a_missing_or_pending_snapshot_is_not_found(self, store: Store) -> None:
        publish(store, "s1")
        with store.lock(PROJECT):
            before = self.contents(store)
            with pytest.raises(SnapshotNotFoundError, match="no snapshot named 's2' in project 'shop'"):
                store.replace_manifest(PROJECT, "s2", b"new")
            assert self.contents(store) == before
            pending = store.begin(PROJECT, "s3")
            write_parts(pending, {"db.tar.zst": b"staged"})
            with pytest.raises(SnapshotNotFoundError):
                store.replace_manifest(PROJECT, "s3", b"not yet")
            pending.publish(MANIFEST)
        assert store.list_snapshots(PROJECT) == ["s1", "s3"]
        assert store.read_manifest(PROJECT, "s3") == MANIFEST
        assert read_part(store, "s3", "db.tar.zst") == b"staged"

    # --- delete ----------------------------------------------------------------------------------

    def test_delete_removes_the_snapshot_with_its_parts(self, store: Store, rival: Store) -> None:
        with store.lock(PROJECT):
            before = self.contents(store)
        publish(store, "s1", {"db.tar.zst": b"one", "cache.tar": data(70_000, 2)})
        publish(store, "s10", {"db.tar.zst": b"ten"})  # a name that extends the deleted one's
        with store.lock(PROJECT):
            store.delete(PROJECT, "s1")
        for reader in (store, rival):
            assert reader.list_snapshots(PROJECT) == ["s10"]
            with pytest.raises(SnapshotNotFoundError):
                reader.read_manifest(PROJECT, "s1")
            with pytest.raises(SnapshotNotFoundError):
                reader.open_part(PROJECT, "s1", "db.tar.zst")
        assert read_part(store, "s10", "db.tar.zst") == b"ten"
        with store.lock(PROJECT):
            store.delete(PROJECT, "s10")
            assert self.contents(store) == before  # every part went with its snapshot
        assert store.list_snapshots(PROJECT) == []
        assert store.list_projects() == []

    def test_delete_of_a_missing_or_pending_snapshot_is_not_found(self, store: Store) -> None:
        publish(store, "s1")
        with store.lock(PROJECT):
            before = self.contents(store)
            with pytest.raises(SnapshotNotFoundError, match="no snapshot named 's2' in project 'shop'"):
                store.delete(PROJECT, "s2")
            assert self.contents(store) == before
            pending = store.begin(PROJECT, "s3")
            write_parts(pending, {"db.tar.zst": b"staged"})
            with pytest.raises(SnapshotNotFoundError):
                store.delete(PROJECT, "s3")
            pending.publish(MANIFEST)  # its parts are all still there
        assert store.list_snapshots(PROJECT) == ["s1", "s3"]
        assert read_part(store, "s3", "db.tar.zst") == b"staged"

    def test_a_deleted_name_can_be_taken_again_without_its_old_parts(self, store: Store) -> None:
        publish(store, "s1", {"db.tar.zst": b"old", "cache.tar": b"old cache"}, b"old manifest")
        with store.lock(PROJECT):
            store.delete(PROJECT, "s1")
            with pytest.raises(SnapshotNotFoundError):
                store.delete(PROJECT, "s1")  # once only
        publish(store, "s1", {"db.tar.zst": b"new"})
        assert store.read_manifest(PROJECT, "s1") == MANIFEST
        assert read_part(store, "s1", "db.tar.zst") == b"new"
        with pytest.raises(StoreError):
            read_part(store, "s1", "cache.tar")

    # --- the lock --------------------------------------------------------------------------------

    def test_a_held_lock_refuses_another_holder(self, store: Store, rival: Store) -> None:
        assert issubclass(StoreLockedError, StoreError) and issubclass(StoreLockedError, BusyError)
        with rival.lock(PROJECT):
            with pytest.raises(StoreLockedError, match="holds the lock"), store.lock(PROJECT, timeout=0):
                pass
            with store.lock("other", timeout=0):  # other projects are free
                pass
        with store.lock(PROJECT), pytest.raises(StoreLockedError), rival.lock(PROJECT, timeout=0):
            pass

    def test_the_lock_is_released_after_the_block_and_can_be_taken_again(self, store: Store, rival: Store) -> None:
        with store.lock(PROJECT, timeout=0):
            pass
        with rival.lock(PROJECT, timeout=0):
            pass
        with store.lock(PROJECT, timeout=0):
            pass
        with pytest.raises(KeyError), store.lock(PROJECT):
            raise KeyError("the block fails")
        with rival.lock(PROJECT, timeout=0):  # released on an exception too
            pass
        with pytest.raises(RuntimeError, match="needs the lock"):
            store.begin(PROJECT, "s1")  # released in the handle that held it

    def test_the_lock_is_reentrant_within_one_handle(self, store: Store, rival: Store) -> None:
        with store.lock(PROJECT):
            with store.lock(PROJECT, timeout=0):
                pass
            assert refused(rival.lock(PROJECT, timeout=0))  # the inner block did not release it
            publish(store, "s1")  # which locks again
            assert refused(rival.lock(PROJECT, timeout=0))
        assert not refused(rival.lock(PROJECT, timeout=0))
        assert store.list_snapshots(PROJECT) == ["s1"]

    def test_a_lock_timeout_waits_that_long_then_fails(self, store: Store, rival: Store) -> None:
        with rival.lock(PROJECT):
            started = time.monotonic()
            with pytest.raises(StoreLockedError), store.lock(PROJECT, timeout=1.0):
                pass
            waited = time.monotonic() - started
        assert 0.9 <= waited < 10, waited

    def test_a_waiter_gets_the_lock_when_the_holder_releases_it(self, store: Store, rival: Store) -> None:
        held = threading.Event()
        errors: list[BaseException] = []

        def hold() -> None:
            try:
                with rival.lock(PROJECT):
                    held.set()
                    time.sleep(1.0)
            except BaseException as error:  # reported by the test
                errors.append(error)
                held.set()

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(30) and not errors, errors
            started = time.monotonic()
            with store.lock(PROJECT, timeout=30):
                waited = time.monotonic() - started
                publish(store, "s1")
        finally:
            holder.join()
        assert waited >= 0.5, waited  # it did wait for the holder
        assert store.list_snapshots(PROJECT) == ["s1"]

    def test_begin_needs_the_lock(self, store: Store, rival: Store) -> None:
        with pytest.raises(RuntimeError, match="needs the lock"):
            store.begin(PROJECT, "s1")
        with rival.lock(PROJECT), pytest.raises(RuntimeError, match="needs the lock"):
            store.begin(PROJECT, "s1")  # another handle's lock is not this one's
        assert self.contents(store) == []
        assert store.list_snapshots(PROJECT) == []

    def test_a_nested_lock_spares_a_live_pending_snapshot(self, store: Store) -> None:
        with store.lock(PROJECT):
            first = store.begin(PROJECT, "a")
            write_parts(first, {"db.tar.zst": b"a"})
            with store.lock(PROJECT):
                second = store.begin(PROJECT, "b")
                write_parts(second, {"db.tar.zst": b"b"})
                second.abort()
            first.publish(MANIFEST)
        assert store.list_snapshots(PROJECT) == ["a"]
        assert read_part(store, "a", "db.tar.zst") == b"a"

    def test_what_a_killed_run_left_is_never_visible_and_goes_with_the_next_lock(
        self, store: Store, rival: Store
    ) -> None:
        publish(store, "old")
        with store.lock(PROJECT):
            before = self.contents(store)
        with rival.lock(PROJECT):  # a run that dies mid-backup, while its lock is released (as a kill would)
            dead = rival.begin(PROJECT, "s1")
            write_parts(dead, {"dead.tar": b"a part of the killed run"})
            unfinished = dead.open_part("dead-large.tar")
            unfinished.write(data(self.large_part_bytes, 9))
        try:
            assert store.list_snapshots(PROJECT) == ["old"]
            assert store.list_projects() == [PROJECT]
            with pytest.raises(SnapshotNotFoundError):
                store.read_manifest(PROJECT, "s1")
            with store.lock(PROJECT):
                assert self.contents(store) == before  # taking the lock removed the leftovers
                pending = store.begin(PROJECT, "s1")
                write_parts(pending, {"db.tar.zst": b"the next run"})
                pending.publish(MANIFEST)
            assert read_part(store, "s1", "db.tar.zst") == b"the next run"
            for leftover in ("dead.tar", "dead-large.tar"):
                with pytest.raises(StoreError):
                    read_part(store, "s1", leftover)
        finally:
            # Free what the dead run's objects hold in this process (its parts' names differ from the next run's).
            with contextlib.suppress(Exception):
                dead.abort()
