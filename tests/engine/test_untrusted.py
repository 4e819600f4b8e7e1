"""The store is untrusted and restores are exact, through the real CLI and engine: an edited manifest
cannot make a restore write outside the volume the user named, and what was saved comes back exactly,
whatever the volume's driver holds, or what its symlinks point to."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import compose_file, fill, listing, mountpoint, service_state, snapshot_names, volume_name


def ok(done: object) -> None:
    assert getattr(done, "returncode", None) == 0, f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"


def manifest_path(project: ComposeProject, name: str) -> Path:
    return project.store / project.name / name / "manifest.json"


def edit_manifest(project: ComposeProject, name: str, edit: object) -> None:
    path = manifest_path(project, name)
    manifest = json.loads(path.read_text())
    edit(manifest)  # type: ignore[operator]
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_a_manifest_cannot_bind_a_restore_to_a_host_folder(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    ok(project.persist("backup", "--name", "s"))
    target = tmp_path / "somewhere-on-the-host"
    target.mkdir()
    edit_manifest(project, "s", lambda m: m["volumes"][0].update(
        driver_opts={"type": "none", "o": "bind", "device": str(target)}))  # fmt: skip
    done = project.persist("restore", "s", "--volume", "data", "--yes")
    ok(done)
    assert "restored with the project's" in done.stderr
    assert tree(target) == [], "the archive must never be written into a host folder a manifest names"
    inspected = json.loads(docker.run("volume", "inspect", volume_name(project), check=True).stdout)[0]
    assert inspected["Options"] in (None, {}), inspected


def test_a_manifest_cannot_name_the_volume_a_restore_replaces(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    ok(project.persist("backup", "--name", "s"))
    other = f"{project.name}_other_data"
    docker.run("volume", "create", other, check=True)
    docker.run("run", "--rm", "--network", "none", "-v", f"{other}:/d", "docker-persist-test/busybox",
               "sh", "-c", "echo theirs > /d/file", check=True)  # fmt: skip
    before = listing(docker, other)
    edit_manifest(project, "s", lambda m: m["volumes"][0].update(key="zzz", source=other))
    done = project.persist("restore", "s", "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'zzz', which project" in done.stderr and "--to NEW_VOLUME" in done.stderr
    assert listing(docker, other) == before
    docker.run("volume", "rm", "-f", other)


def test_from_project_restores_into_this_project_s_volume_only(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    ours_before = listing(docker, volume_name(project))
    other = ComposeProject(docker, tmp_path / "other", f"{project.name}b")
    other.directory.mkdir()
    other.store = project.store
    try:
        other.write(compose_file())
        other.compose("up", "-d", "--wait")
        other.compose("exec", "-T", "app", "sh", "-c", "echo from-b > /data/b-file")
        ok(other.persist("protect"))
        ok(other.persist("backup", "--name", "bsnap"))
        other.compose("down")  # no -v: B's volume stays, with B's data
        theirs = listing(docker, volume_name(other))
        guard_labels = docker.run("ps", "-a", "--filter", f"label=io.docker-persist.volume={volume_name(other)}",
                                  "--format", "{{.Labels}}", check=True).stdout  # fmt: skip
        ok(project.persist("restore", "bsnap", "--from-project", other.name, "--yes"))
        assert listing(docker, volume_name(other)) == theirs, "project B's volume must not be touched"
        after = docker.run("ps", "-a", "--filter", f"label=io.docker-persist.volume={volume_name(other)}",
                           "--format", "{{.Labels}}", check=True).stdout  # fmt: skip
        assert after == guard_labels
        ours = listing(docker, volume_name(project))
        assert "b-file" in ours and ours != ours_before
    finally:
        other.cleanup()


def test_restoring_a_volume_bound_to_a_host_folder_replaces_it(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    folder = tmp_path / "bound"
    folder.mkdir()
    text = compose_file().replace(
        "  data:\n    x-persist: {}",
        f"  data:\n    driver: local\n    driver_opts: {{type: none, o: bind, device: {folder}}}\n    x-persist: {{}}",
    )
    project.write(text)
    project.compose("up", "-d", "--wait")
    project.compose("exec", "-T", "app", "sh", "-c", "echo one > /data/kept; echo two > /data/gone")
    ok(project.persist("backup", "--name", "s1"))
    base = tree(folder), (folder / "kept").read_text()
    project.compose("exec", "-T", "app", "sh", "-c", "echo changed > /data/kept; rm /data/gone; echo x > /data/new")
    ok(project.persist("restore", "s1", "--yes"))
    assert (tree(folder), (folder / "kept").read_text()) == base, "a restore replaces, never merges"
    assert service_state(docker, project)[1]


def test_up_never_restores_over_empty_files(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file().replace("x-persist: {}", "x-persist: {restore: latest}"))
    ok(project.persist("up", "-d", "--wait"))
    project.compose("exec", "-T", "app", "sh", "-c", "echo data > /data/file")
    ok(project.persist("backup", "--name", "s"))
    project.compose("exec", "-T", "app", "sh", "-c", "rm /data/file; touch /data/empty-but-mine; mkdir /data/d")
    project.compose("stop")
    done = project.persist("up", "-d")
    ok(done)
    assert "holds data" in done.stderr
    assert sorted(listing(docker, volume_name(project))) == [".", "d", "empty-but-mine"]


def make_deep_path(root: Path, name: str, depth: int) -> None:
    """Make a path of DEPTH folders called NAME, one relative step at a time (no path is ever that long)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)


def test_what_a_backup_saves_can_be_restored(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    project.compose("exec", "-T", "app", "sh", "-c",
                    "ln -s ../data-x /data/relesc; ln -s /etc/app.conf /data/abs; ln -s .. /data/up")  # fmt: skip
    ok(project.persist("backup", "--name", "links"))
    before = listing(docker, volume_name(project))
    project.compose("exec", "-T", "app", "sh", "-c", "rm /data/relesc")
    ok(project.persist("restore", "links", "--yes"))
    assert listing(docker, volume_name(project)) == before
    ok(project.persist("verify", "links"))

    root = mountpoint(docker, volume_name(project))
    os.mknod(root / "null", 0o600 | 0o020000, os.makedev(1, 3))
    refused = project.persist("backup", "--name", "device")
    assert refused.returncode == 1 and "'./null' is a char device node" in refused.stderr, refused.stderr
    os.unlink(root / "null")
    make_deep_path(root, "d" * 249, 17)  # a path no restore could create
    refused = project.persist("backup", "--name", "deep")
    assert refused.returncode == 1 and "no restore can create a path over 4095 bytes" in refused.stderr
    assert "device" not in snapshot_names(project) and "deep" not in snapshot_names(project)


def test_an_edited_content_digest_is_refused_before_anything_is_touched(
    docker: DockerCLI, project: ComposeProject
) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    ok(project.persist("backup", "--name", "s"))
    project.compose("exec", "-T", "app", "sh", "-c", "echo later > /data/later")
    before, state = listing(docker, volume_name(project)), service_state(docker, project)
    fake = "sha256:" + hashlib.sha256(b"not the content").hexdigest()
    edit_manifest(project, "s", lambda m: m["volumes"][0].update(content_digest=fake))
    done = project.persist("restore", "s", "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "content digest" in done.stderr
    assert listing(docker, volume_name(project)) == before
    assert service_state(docker, project) == state, "refused before the service was stopped"
    assert snapshot_names(project) == ["s"]


def test_a_restore_without_a_terminal_says_to_pass_yes(docker: DockerCLI, project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    ok(project.persist("backup", "--name", "s"))
    done = project.persist("restore", "s")
    assert done.returncode == 1 and "pass --yes" in done.stderr, done.stderr
    fresh = f"{project.name}_fresh"
    ok(project.persist("restore", "s", "--volume", "data", "--to", fresh))  # nothing to replace: no question
    docker.run("volume", "rm", "-f", fresh)
