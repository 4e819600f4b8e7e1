"""How DockerEngine moves a volume's bytes: the engine's archive API on helper containers, or the
local fast path (GNU tar on the volume's mountpoint, when the engine runs on this host).

A helper is created from docker-persist's own tiny image and never started: the engine
mounts the volume for the archive calls of a stopped container, which works with any
volume driver and any engine, local or remote. Nothing is pulled.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import shutil
import tarfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from docker_persist import __version__
from docker_persist.engine import (
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_VOLUME,
    ContainerSpec,
    Engine,
    EngineError,
    VolumeMount,
)

if TYPE_CHECKING:
    from docker_persist.engine.docker import DockerEngine

HELPER_REPOSITORY = "docker-persist/helper"
ROOT_REPOSITORY = "docker-persist/root"
MOUNT_POINT = "/data"


def _rootfs(entries: Iterable[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            archive.addfile(entry)
    return buffer.getvalue()


def ensure_helper_image(engine: Engine) -> str:
    """Return docker-persist's empty helper image, importing it the first time."""
    reference = f"{HELPER_REPOSITORY}:{__version__}"
    if not engine.image_exists(reference):
        engine.import_image(HELPER_REPOSITORY, __version__, _rootfs(()))
    return reference


def ensure_root_image(engine: Engine, mode: int, uid: int, gid: int) -> str:
    """Return an image whose /data has this mode and owner, importing it the first time.

    When an empty volume is mounted where an image has a directory, the engine gives the
    volume's root that directory's mode and owner ("copy-up"). That is the one way to set
    a volume root's mode through the API: extracting the archive's root entry does not.
    """
    tag = f"{mode & 0o7777:04o}-{uid}-{gid}"
    reference = f"{ROOT_REPOSITORY}:{tag}"
    if not engine.image_exists(reference):
        entry = tarfile.TarInfo(MOUNT_POINT.strip("/"))
        entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, mode & 0o7777, uid, gid
        engine.import_image(ROOT_REPOSITORY, tag, _rootfs([entry]))
    return reference


def helper_spec(image: str, volume: str, project: str, copy_up: bool, read_only: bool = False) -> ContainerSpec:
    """Return the spec of a helper that mounts `volume` at /data, with no network, never started."""
    return ContainerSpec(
        image=image,
        command=("/docker-persist-helper-is-never-started",),
        labels={
            LABEL_ROLE: "helper",
            LABEL_PROJECT: project,
            LABEL_VOLUME: volume,
            "io.docker-persist.pid": str(os.getpid()),
        },
        mounts=(VolumeMount(volume, MOUNT_POINT, read_only=read_only, copy_up=copy_up),),
    )


@contextlib.contextmanager
def helper_container(
    engine: Engine, volume: str, project: str, image: str | None = None, copy_up: bool = False, read_only: bool = False
) -> Iterator[str]:
    """Create a helper for `volume` and remove it afterwards, whatever happens."""
    spec = helper_spec(image or ensure_helper_image(engine), volume, project, copy_up, read_only)
    container = engine.create_container(None, spec)
    try:
        yield container
    finally:
        engine.remove_container(container, force=True)


def remove_stale_helpers(engine: Engine, project: str) -> int:
    """Remove helpers of `project` left by a killed run; return how many. Call it holding the project lock."""
    stale = engine.list_containers([f"{LABEL_ROLE}=helper", f"{LABEL_PROJECT}={project}"])
    for container in stale:
        engine.remove_container(container.id, force=True)
    return len(stale)


def read_volume(engine: DockerEngine, container: str) -> Generator[bytes, None, None]:
    """Yield the tar of the helper's volume, rooted at the volume's root (entries `./...`)."""
    response = engine.get_archive(container, f"{MOUNT_POINT}/.")
    try:
        yield from response.iter_chunks()
    finally:
        response.close()


def write_volume(engine: DockerEngine, container: str, tar_stream: Iterable[bytes]) -> None:
    """Extract a tar (entries `./...`) into the helper's volume.

    From the container's root, the entries moved under the mount point: the engine refuses a
    symlink whose target leads out of the folder it extracts into, and `x -> ../y` at the
    volume's root is data. The volume root's own entry then gives it its mtime too.
    """
    from docker_persist.core.archive import reroot

    engine.put_archive(container, "/", reroot(tar_stream, MOUNT_POINT.strip("/").encode()))


def local_volume_path(engine: DockerEngine, volume: str, writable: bool = False) -> str | None:
    """Return where a volume's files are on this host, when the fast path can use them; else None.

    Only for the `local` driver without options, or bound to a host folder (with other options,
    e.g. an NFS mount, the data is mounted only while a container uses the volume), an engine
    on this host, a readable (and, to restore, writable) folder, and GNU tar.
    """
    from docker_persist.host.process import find_gnu_tar

    root = engine.local_root
    if root is None or find_gnu_tar() is None:
        return None
    state = engine.inspect_volume(volume)
    if state is None or state.driver != "local":
        return None
    options = state.options
    if options.get("type") == "none" and "bind" in options.get("o", "").split(",") and options.get("device"):
        path = root + options["device"]
    elif not options and state.mountpoint:
        path = root + state.mountpoint
    else:
        return None
    mode = os.R_OK | os.X_OK | (os.W_OK if writable else 0)
    return path if os.path.isdir(path) and os.access(path, mode) else None


def host_data_path(engine: DockerEngine, volume: str) -> str | None:
    """Return where a local-driver volume keeps its files on this host, bound folders included; else None."""
    root = engine.local_root
    state = engine.inspect_volume(volume)
    if root is None or state is None or state.driver != "local":
        return None
    options = state.options
    if options.get("type") == "none" and "bind" in options.get("o", "").split(",") and options.get("device"):
        path = root + options["device"]
    elif not options and state.mountpoint:
        path = root + state.mountpoint
    else:
        return None
    return path if os.path.isdir(path) and os.access(path, os.R_OK | os.W_OK | os.X_OK) else None


EMPTY_SCRIPT = 'cd /data && for f in * .[!.]* ..?*; do if [ -e "$f" ] || [ -L "$f" ]; then rm -rf -- "$f"; fi; done'


def emptying(engine: DockerEngine, volume: str, images: Sequence[str]) -> str | None:
    """Return how a volume can be emptied here (see Engine.emptying), or None."""
    path = host_data_path(engine, volume)
    if path is not None:
        return f"on this host, in {path}"
    image = next((i for i in images if engine.image_exists(i)), None)
    return f"in a container of {image}" if image is not None else None


def empty_volume(engine: DockerEngine, volume: str, project: str, images: Sequence[str]) -> None:
    """Remove every entry of a volume but its root (see Engine.empty_volume)."""
    path = host_data_path(engine, volume)
    if path is not None:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        return
    image = next((i for i in images if engine.image_exists(i)), None)
    if image is None:
        raise EngineError(
            f"cannot empty volume {volume!r}: its files outlive it (driver options or another driver), the engine "
            "is not on this host, and no image of the project with a shell is present to do it"
        )
    spec = ContainerSpec(
        image=image,
        entrypoint=("sh", "-c"),
        command=(EMPTY_SCRIPT,),
        labels={LABEL_ROLE: "helper", LABEL_PROJECT: project, LABEL_VOLUME: volume},
        mounts=(VolumeMount(volume, MOUNT_POINT),),
        user="0:0",
    )
    code, output = engine.run_container(spec)
    if code != 0:
        raise EngineError(
            f"emptying volume {volume!r} in a container of {image} failed (exit {code}): {output.strip()}"
        )


@contextlib.contextmanager
def volume_archive(engine: DockerEngine, volume: str, project: str) -> Iterator[Iterator[bytes]]:
    """Yield the tar stream of a volume, rooted at its root (entries `./...`).

    From the mountpoint with GNU tar when the engine is local (the fast path: the same
    content, about twice as fast), else through a helper container and the archive API.
    """
    from docker_persist.host.process import find_gnu_tar, tar_create

    path = local_volume_path(engine, volume)
    tar = find_gnu_tar()
    if path is not None and tar is not None:
        chunks = tar_create(tar, path, engine.environ)
        try:
            yield chunks
        finally:
            chunks.close()  # a reader that stops early stops tar too
        return
    with helper_container(engine, volume, project, read_only=True) as helper:
        chunks = read_volume(engine, helper)
        try:
            yield chunks
        finally:
            # Before the helper is removed: the engine holds the container while it sends its
            # archive, so a removal before the stream is closed would wait for it forever.
            chunks.close()


def extract_volume_archive(
    engine: DockerEngine, volume: str, project: str, root: tuple[int, int, int], tar_stream: Iterable[bytes]
) -> None:
    """Extract a tar (entries `./...`) into the empty volume `volume`, giving its root (mode, uid, gid).

    On the fast path GNU tar extracts into the mountpoint; else a helper container whose
    image has /data with that mode and owner takes the archive through the API.
    """
    from docker_persist.host.process import find_gnu_tar, tar_extract

    mode, uid, gid = root
    path = local_volume_path(engine, volume, writable=True)
    tar = find_gnu_tar()
    if path is not None and tar is not None:
        os.chown(path, uid, gid)
        os.chmod(path, mode & 0o7777)
        tar_extract(tar, path, tar_stream, engine.environ)
        os.chown(path, uid, gid)  # the root entry "./" may have changed it; the record is what counts
        os.chmod(path, mode & 0o7777)
        return
    image = ensure_root_image(engine, mode, uid, gid)
    with helper_container(engine, volume, project, image=image, copy_up=True) as helper:
        write_volume(engine, helper, tar_stream)


def layer_paths(changes: Iterable[str], ephemeral: Callable[[str], bool]) -> list[str]:
    """Return the changed paths of a writable layer worth keeping: leaves only (a directory is
    "changed" whenever something under it is), ephemeral places left out."""
    kept = sorted({p.rstrip("/") or "/" for p in changes if not ephemeral(p)})
    return [p for i, p in enumerate(kept) if not (i + 1 < len(kept) and kept[i + 1].startswith(p + "/"))]


def container_layer_archive(engine: DockerEngine, container: str, paths: Sequence[str]) -> Iterator[bytes]:
    """Yield one tar, rooted like a volume's, of the given paths from a container's filesystem.

    Each path is read through the archive API (the container need not run) and its
    entries are renamed from the path's base name to the full path, so that extracting
    the tar into a volume puts `/srv/data/x` at `srv/data/x`.
    """
    from docker_persist.streams.pipeline import ChunkReader, from_writer

    def produce(sink: Any) -> None:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as out:
            root = tarfile.TarInfo(".")
            root.type, root.mode = tarfile.DIRTYPE, 0o755
            out.addfile(root)
            for path in paths:
                base = posixpath.basename(path)
                prefix = path.strip("/")
                response = engine.get_archive(container, path)
                try:
                    reader: Any = ChunkReader(response.iter_chunks())
                    with tarfile.open(fileobj=reader, mode="r|") as source:
                        for member in source:
                            member.name = _rebase(member.name, base, prefix)
                            if member.islnk():
                                member.linkname = _rebase(member.linkname, base, prefix)
                            data = source.extractfile(member) if member.isreg() else None
                            out.addfile(member, data)
                finally:
                    response.close()

    return from_writer(produce)


def _rebase(name: str, base: str, prefix: str) -> str:
    name = name.lstrip("./") if name.startswith("./") else name
    if name == base:
        return prefix
    if name.startswith(base + "/"):
        return prefix + name[len(base) :]
    return f"{prefix}/{name}"
