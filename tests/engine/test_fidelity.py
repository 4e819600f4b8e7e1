"""What a restore gives back, row by row of the README's fidelity table, on both data paths.

A random tree (seeded: the seed is in the test id and in every failure) is written straight
into a volume's mountpoint: names that are not UTF-8 or hold spaces and newlines, every mode
bit, owners past 2^21, hard links across folders, symlinks pointing anywhere (out of the
volume, absolute, dangling), empty folders, empty and sparse files, fifos, user xattrs, file
capabilities, POSIX ACLs (access and default), and mtimes that are sub-second, negative or
past 2242. It is backed up, the volume is wiped and filled with junk, and restored; then an
independent listing (lstat, listxattr and sha256 from the host) must match, field by field.

- The fast path (GNU tar on the mountpoint, as root on the engine's host) keeps everything.
- The archive path (DOCKER_PERSIST_FAST_PATH=0: what a remote engine or a non-root user gets)
  keeps everything but xattrs other than security.capability, POSIX ACLs among them (the
  backup says so), sub-second mtimes, and mtimes before 1970.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import compose_file, mountpoint, scratch_volumes, sha256_file, volume_name

# Seed 0 always, and one new seed per run; DOCKER_PERSIST_FIDELITY_SEEDS=1,2,3 runs those instead.
SEEDS = [int(s) for s in os.environ.get("DOCKER_PERSIST_FIDELITY_SEEDS", "").split(",") if s] or [
    0,
    random.SystemRandom().randrange(1, 1 << 32),
]
UNDEFINED = 0xFFFFFFFF
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service=ep
NAMES = [b"a", b"data", b"caf\xe9", "ünïcödé".encode(), b" lead", b"-dash", b"new\nline", b"x" * 200, b".hidden"]
MODES = [0o644, 0o600, 0o755, 0o4755, 0o2775, 0o1777, 0o000, 0o640, 0o7777]
OWNERS = [0, 1, 999, 1000, 65534, 2_097_152, 3_000_000]
TIMES = [1_700_000_000_123_456_789, -315_619_200_000_000_000, 9_000_000_000_500_000_000, 0, 1_000_000_000]

Row = tuple[Any, ...]


def acl(rng: random.Random, default: bool = False) -> bytes:
    entries = [(ACL_USER_OBJ, rng.randrange(8), UNDEFINED), (ACL_GROUP_OBJ, rng.randrange(8), UNDEFINED)]
    entries += [(ACL_USER, rng.randrange(8), rng.choice(OWNERS[1:]))]
    if rng.random() < 0.5:
        entries += [(ACL_GROUP, rng.randrange(8), rng.choice(OWNERS[1:]))]
    entries += [(ACL_MASK, 7 if default else rng.randrange(8), UNDEFINED), (ACL_OTHER, rng.randrange(8), UNDEFINED)]
    entries.sort(key=lambda e: (e[0], e[2]))
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def make_tree(root: bytes, seed: int) -> None:
    """Fill `root` with a random tree; a given seed gives the same tree."""
    rng = random.Random(seed)
    files: list[bytes] = []
    made: list[bytes] = []
    folders: list[bytes] = []

    def fill(folder: bytes, depth: int) -> None:
        used: set[bytes] = set()
        for _ in range(rng.randrange(2, 7)):
            name = rng.choice(NAMES) + b"%d" % rng.randrange(100)
            if name in used:
                continue
            used.add(name)
            path = os.path.join(folder, name)
            kind = rng.choices(["file", "dir", "symlink", "hardlink", "fifo"], [5, 2 if depth < 3 else 0, 2, 1, 1])[0]
            if kind == "file":
                with open(path, "wb") as handle:
                    shape = rng.random()
                    if shape < 0.2:
                        pass  # empty
                    elif shape < 0.35:
                        handle.truncate(8 << 20)  # sparse: a hole, then data
                        handle.seek(5 << 20)
                        handle.write(rng.randbytes(4096))
                    else:
                        handle.write(rng.randbytes(rng.randrange(1, 70_000)))
                files.append(path)
            elif kind == "dir":
                os.mkdir(path)
                folders.append(path)
                fill(path, depth + 1)
            elif kind == "symlink":
                target = rng.choice([b"../" * rng.randrange(1, 5) + b"outside", b"/etc/passwd", b"dangling", b".",
                                     b"a/b/../c", b"/", rng.choice(NAMES)])  # fmt: skip
                os.symlink(target, path)
            elif kind == "hardlink" and files:
                os.link(rng.choice(files), path)
            else:
                os.mkfifo(path)
            made.append(path)

    fill(root, 0)
    for path in made:
        dress(path, rng)
    for folder in folders:  # last, so that no file above inherited one
        if rng.random() < 0.3:
            os.setxattr(folder, b"system.posix_acl_default", acl(rng, default=True))
    for path in [*made, *reversed(folders), root]:  # folders after what is in them
        mtime = rng.choice(TIMES) + rng.randrange(1_000_000_000)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def dress(path: bytes, rng: random.Random) -> None:
    """Give an entry a random owner, mode, xattrs and ACL, as its type allows."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        os.chown(path, rng.choice(OWNERS), rng.choice(OWNERS), follow_symlinks=False)
        return
    os.chown(path, rng.choice(OWNERS), rng.choice(OWNERS))
    os.chmod(path, rng.choice(MODES))
    if not stat.S_ISFIFO(info.st_mode) and rng.random() < 0.3:  # user xattrs: files and folders only
        os.setxattr(path, b"user.note", rng.randbytes(rng.randrange(0, 64)))
    if stat.S_ISREG(info.st_mode) and rng.random() < 0.15:
        os.setxattr(path, b"security.capability", CAPABILITY)
    if not stat.S_ISFIFO(info.st_mode) and rng.random() < 0.3:
        os.setxattr(path, b"system.posix_acl_access", acl(rng))


def full_listing(root: bytes) -> dict[bytes, Row]:
    """Return, per path, what the README's fidelity table lists, read from the host."""
    rows: dict[bytes, Row] = {}
    groups: dict[int, bytes] = {}
    for folder, dirs, names in os.walk(root):
        for path in [folder, *(os.path.join(folder, n) for n in sorted(dirs + names))]:
            relative = os.path.relpath(path, root)
            if relative in rows:
                continue
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            what: Any = ""
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    what = hashlib.sha256(handle.read()).hexdigest()
                if info.st_nlink > 1:
                    groups[info.st_ino] = min(groups.get(info.st_ino, relative), relative)
            elif stat.S_ISLNK(info.st_mode):
                what = os.readlink(path)
            xattrs = {} if stat.S_ISLNK(info.st_mode) else {
                name: os.getxattr(path, name) for name in sorted(os.listxattr(path))
            }  # fmt: skip
            rows[relative] = (kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_size, what,
                              info.st_mtime_ns, xattrs, info.st_ino if info.st_nlink > 1 else None)  # fmt: skip
    # An inode number means nothing across volumes: name each hard-link group by its first path.
    return {path: (*row[:8], groups.get(row[8]) if row[8] is not None else None) for path, row in rows.items()}


def through_the_archive_api(rows: dict[bytes, Row]) -> dict[bytes, Row]:
    """Return what the archive path keeps of `rows`: mtimes to the second, from 1970 on but for symlinks
    (the engine sets an earlier one to 1970-01-01), and no xattr but security.capability."""
    kept = {}
    for path, row in rows.items():
        mtime = row[6] // 1_000_000_000 * 1_000_000_000
        mtime = mtime if row[0] == stat.S_IFLNK else max(mtime, 0)
        kept[path] = (*row[:6], mtime, {k: v for k, v in row[7].items() if k == "security.capability"}, row[8])
    return kept


def wipe_with_junk(root: bytes) -> None:
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path)
        else:
            os.unlink(path)
    with open(os.path.join(root, b"junk"), "wb") as handle:
        handle.write(b"not from the snapshot")
    os.chmod(root, 0o711)


def first_difference(want: dict[bytes, Row], got: dict[bytes, Row]) -> str:
    for path in sorted(set(want) | set(got)):
        if want.get(path) != got.get(path):
            return f"{path!r}: want {want.get(path)}, got {got.get(path)}"
    return "none"


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={s}" for s in SEEDS])
@pytest.mark.parametrize("path", ["fast", "archive-api"])
def test_a_random_tree_comes_back_as_the_fidelity_table_says(
    docker: DockerCLI, project: ComposeProject, path: str, seed: int
) -> None:
    env = {"DOCKER_PERSIST_FAST_PATH": "0"} if path == "archive-api" else {}
    project.write(compose_file())
    project.compose("create")  # the volume, and no container writing in it
    root = bytes(mountpoint(docker, volume_name(project)))
    make_tree(root, seed)
    before = full_listing(root)

    done = project.persist("backup", "--name", "tree", env=env)
    assert done.returncode == 0, f"seed {seed}: {done.stdout}{done.stderr}"
    warned = "carries no POSIX ACL and no xattr but security.capability" in done.stderr
    assert warned == (path == "archive-api"), done.stderr
    wipe_with_junk(root)
    done = project.persist("restore", "tree", "--yes", env=env)
    assert done.returncode == 0, f"seed {seed}: {done.stdout}{done.stderr}"
    after = full_listing(bytes(mountpoint(docker, volume_name(project))))

    want = before if path == "fast" else through_the_archive_api(before)
    assert after == want, f"seed {seed} (rerun: DOCKER_PERSIST_FIDELITY_SEEDS={seed}): {first_difference(want, after)}"
    done = project.persist("verify", "tree", env=env)
    assert done.returncode == 0, f"seed {seed}: {done.stdout}{done.stderr}"


def test_the_tree_maker_is_deterministic_and_covers_every_row(tmp_path: Path) -> None:
    """Over a few seeds, each row of the table occurs; the same seed makes the same tree."""
    seen: set[str] = set()
    for seed in range(6):
        first, second = tmp_path / f"a{seed}", tmp_path / f"b{seed}"
        first.mkdir(), second.mkdir()
        make_tree(bytes(first), seed)
        make_tree(bytes(second), seed)
        rows = full_listing(bytes(first))
        assert rows == full_listing(bytes(second))
        for path, row in rows.items():
            kind, mode, uid, _, size, _, mtime, xattrs, group = row
            seen |= {stat.filemode(kind | 0)[0]} | {k.split(".")[0] + "." + k.split(".")[1] for k in xattrs}
            seen |= {"setuid"} if mode & 0o4000 else set()
            seen |= {"big-owner"} if uid > 2_097_151 else set()
            seen |= {"negative-mtime"} if mtime < 0 else set()
            seen |= {"hard-link"} if group is not None else set()
            seen |= {"non-utf8"} if b"\xe9" in path else set()
            seen |= {"sparse"} if size == 8 << 20 else set()
    expected = {"-", "d", "l", "p", "user.note", "security.capability", "system.posix_acl_access",
                "system.posix_acl_default", "setuid", "big-owner", "negative-mtime", "hard-link", "non-utf8",
                "sparse"}  # fmt: skip
    assert expected <= seen, expected - seen


def allocated(path: Path) -> int:
    return path.lstat().st_blocks * 512


def test_sparse_files_stay_sparse_on_the_fast_path_and_whole_through_the_api(
    docker: DockerCLI, project: ComposeProject
) -> None:
    """A 1 GiB disk image holding 3 MiB backs up as 3 MiB, and restores as 3 MiB on disk again; a file of
    zeros written out stays written out (no hole is dug in it). Through the archive API the same
    snapshot restores to the same bytes."""
    project.write(compose_file())
    project.compose("create")
    root = mountpoint(docker, volume_name(project))
    with open(root / "disk.img", "wb") as image:
        image.truncate(1 << 30)
        for at in (0, 300 << 20, (1 << 30) - (1 << 20)):  # the start, the middle and the very end
            image.seek(at)
            image.write(random.Random(at).randbytes(1 << 20))
    (root / "zeros.bin").write_bytes(bytes(4 << 20))
    want = {name: sha256_file(root / name) for name in ("disk.img", "zeros.bin")}
    assert allocated(root / "disk.img") < 4 << 20 and allocated(root / "zeros.bin") >= 4 << 20

    done = project.persist("backup", "--name", "sparse")
    assert done.returncode == 0, done.stdout + done.stderr
    stored = sum(p.stat().st_size for p in project.store.rglob("data.tar*") if "sparse" in str(p))
    assert 0 < stored < 8 << 20, f"the snapshot stores {stored} bytes for 7 MiB of data"

    for path, env in (("fast", {}), ("api", {"DOCKER_PERSIST_FAST_PATH": "0"})):
        target = f"{project.name}_{path}"
        try:
            done = project.persist("restore", "sparse", "--volume", "data", "--to", target, "--yes", env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            restored = mountpoint(docker, target)
            assert {name: sha256_file(restored / name) for name in want} == want, path
            assert (restored / "disk.img").stat().st_size == 1 << 30
            assert allocated(restored / "zeros.bin") >= 4 << 20, f"{path}: a hole was dug in a file of zeros"
            if path == "fast":
                assert allocated(restored / "disk.img") < 4 << 20, "the restored disk image is not sparse"
        finally:
            docker.run("volume", "rm", "-f", target)
    done = project.persist("verify", "sparse")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_drill_removes_its_scratch_volume_as_it_reads_back_and_only_that(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    """verify's read-back on the fast path hands every top-level entry it has gone past to rm: top-level
    names that look like options, hold a newline or are not UTF-8, and a top-level symlink to a folder
    outside the volume (removed as a link; what it points to stays). The drill passes, the snapshot's
    volume is untouched, and no scratch volume is left."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "kept").write_bytes(b"kept")
    project.write(compose_file())
    project.compose("create")
    root = bytes(mountpoint(docker, volume_name(project)))
    for top in range(60):
        folder = os.path.join(root, b"d%02d" % top)
        os.mkdir(folder)
        for file in range(50):
            with open(os.path.join(folder, b"f%d" % file), "wb") as handle:
                handle.write(random.Random(top * 100 + file).randbytes(file * 13))
    for name in (b"-rf", b"--no-preserve-root", b"new\nline", b"caf\xe9"):
        with open(os.path.join(root, name), "wb") as handle:
            handle.write(name)
    os.symlink(bytes(canary), os.path.join(root, b"escape"))
    before = full_listing(root)

    done = project.persist("backup", "--name", "drilled")
    assert done.returncode == 0, done.stdout + done.stderr
    scratch = set(scratch_volumes(docker))
    done = project.persist("verify", "drilled")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "data: 3004 files, digest matches" in done.stdout + done.stderr
    assert full_listing(root) == before
    assert (canary / "kept").read_bytes() == b"kept"
    assert set(scratch_volumes(docker)) == scratch
