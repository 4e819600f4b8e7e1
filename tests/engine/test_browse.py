"""Looking into snapshots and getting at them from anywhere, through the real CLI.

`ls` lists a snapshot's files from its index (and from the archive for snapshots without one),
`diff` compares two, `restore --path --to-dir` takes files out without touching a volume, and
`snapshots`, `ls`, `restore --to`, `verify` and `projects` work with no Compose file at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI
from tests.engine.helpers import compose_file, fill, listing, volume_name


def ok(done: object) -> str:
    assert getattr(done, "returncode", None) == 0, f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"
    return str(getattr(done, "stdout", ""))


def two_snapshots(project: ComposeProject) -> None:
    project.write(compose_file())
    project.compose("up", "-d", "--wait")
    fill(project, 1)
    ok(project.persist("backup", "--name", "s1"))
    project.compose(
        "exec", "-T", "app", "sh", "-c", "echo changed > /data/dir/small; echo new > /data/new; rm /data/link"
    )
    ok(project.persist("backup", "--name", "s2"))


def test_ls_diff_and_single_files(docker: DockerCLI, project: ComposeProject, tmp_path: Path) -> None:
    two_snapshots(project)
    assert (project.store / project.name / "s1" / "data.index.zst").is_file()
    listed = ok(project.persist("ls", "s1"))
    assert any(line.endswith("  dir/small") and line.startswith("-rw-r-----") for line in listed.splitlines())
    assert any(line.endswith("  link -> dir/small") for line in listed.splitlines()), listed
    only = ok(project.persist("ls", "s1", "data:dir")).splitlines()
    assert [line.split("  ")[-1] for line in only] == ["dir", "dir/empty", "dir/small"]
    missing = project.persist("ls", "s1", "data:nope")
    assert missing.returncode == 1 and "Nothing at 'nope'" in missing.stderr
    entries = json.loads(ok(project.persist("ls", "s1", "data:dir/small", "--format", "json")))["entries"]
    assert [(e["path"], e["uid"], e["gid"], e["sha256"]) for e in entries] == [
        ("dir/small", 1000, 2000, hashlib.sha256(b"hello\n").hexdigest())
    ]

    changes = ok(project.persist("diff", "s1", "s2")).splitlines()
    assert "+ new" in changes and "- link" in changes
    assert any(line.startswith("M dir/small  (") and "content" in line for line in changes), changes
    assert [c.split("  ")[0] for c in changes if c.startswith("M")] == ["M dir/small"], changes

    before = listing(docker, volume_name(project))
    folder = tmp_path / "out"
    done = project.persist("restore", "s1", "--path", "dir", "--to-dir", str(folder))
    ok(done)
    assert (folder / "dir" / "small").read_text() == "hello\n" and (folder / "dir" / "empty").is_dir()
    assert (folder / "dir" / "small").stat().st_uid == 1000, "owners kept, as root"
    assert listing(docker, volume_name(project)) == before, "no volume was touched"
    assert ok(project.persist("restore", "s1", "--path", "dir/small", "--to-dir", "-")) == "hello\n"
    again = project.persist("restore", "s1", "--path", "dir", "--to-dir", str(folder))
    assert again.returncode == 2 and "is not an empty folder" in again.stderr
    folder_is_a_file = project.persist("restore", "s1", "--path", "dir", "--to-dir", "-")
    assert folder_is_a_file.returncode == 2 and "not a file" in folder_is_a_file.stderr


def test_a_snapshot_without_an_index_is_listed_from_its_archive(project: ComposeProject) -> None:
    two_snapshots(project)
    with_index = ok(project.persist("ls", "s1"))
    manifest = project.store / project.name / "s1" / "manifest.json"
    document = json.loads(manifest.read_text())
    del document["volumes"][0]["index"]  # as docker-persist wrote it before file indexes
    manifest.write_text(json.dumps(document, indent=2) + "\n")
    (project.store / project.name / "s1" / "data.index.zst").unlink()
    assert ok(project.persist("ls", "s1")) == with_index
    # A damaged index is refused, never listed.
    index = project.store / project.name / "s2" / "data.index.zst"
    index.write_bytes(index.read_bytes()[:-1] + b"\x00")
    damaged = project.persist("ls", "s2")
    assert damaged.returncode == 1 and "data.index.zst" in damaged.stderr and "corrupt" in damaged.stderr


def test_recovery_from_anywhere(docker: DockerCLI, project: ComposeProject, tmp_path: Path) -> None:
    two_snapshots(project)
    store = str(project.store)
    # No Compose file here (the test runs from the repository), only the project's name.
    names = json.loads(ok(docker.run("persist", "snapshots", "-p", project.name, "--store", store, "--format", "json")))
    assert [row["name"] for row in names["snapshots"]] == ["s1", "s2"]
    nameless = docker.run("persist", "snapshots", "--store", store)
    assert nameless.returncode == 2 and "-p NAME" in nameless.stderr and "docker persist projects" in nameless.stderr
    projects = ok(docker.run("persist", "projects", "--store", store))
    assert project.name in projects and "s2" in projects
    assert "dir/small" in ok(docker.run("persist", "ls", "s1", "-p", project.name, "--store", store))
    in_place = docker.run("persist", "restore", "s1", "--yes", "-p", project.name, "--store", store)
    assert in_place.returncode == 2 and f"Compose would name it {project.name}_data" in in_place.stderr
    fresh = f"{project.name}_recovered"
    try:
        ok(
            docker.run(
                "persist", "restore", "s1", "--volume", "data", "--to", fresh, "-p", project.name, "--store", store
            )
        )
        assert "dir/small" in listing(docker, fresh)
        ok(docker.run("persist", "verify", "s1", "-p", project.name, "--store", store))
    finally:
        docker.run("volume", "rm", "-f", fresh)

    # A broken x-persist blocks what needs it, not the listing of snapshots.
    project.write(compose_file() + "\nx-persist:\n  keep: {lats: 3}\n")
    listed = project.persist("snapshots")
    assert listed.returncode == 0 and "invalid x-persist" in listed.stderr, listed.stderr
    assert project.persist("backup").returncode == 2
