"""A bind-mounted host folder marked `x-persist` is backed up like a volume, and comes back by name."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.engine.conftest import ComposeProject, DockerCLI

COMPOSE = """
name: {project}
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sleep", "3600"]
    volumes:
      - type: bind
        source: ./uploads
        target: /srv/uploads
        x-persist: {}
      - type: bind
        source: ./conf
        target: /etc/app
"""


def ok(done: object) -> str:
    assert getattr(done, "returncode", None) == 0, f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"
    return str(getattr(done, "stdout", ""))


def tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    rows = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        what = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        what = os.readlink(path) if path.is_symlink() else what
        rows[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, what)
    return rows


def test_a_precious_bind_is_backed_up_listed_and_restored(
    docker: DockerCLI, project: ComposeProject, tmp_path: Path
) -> None:
    uploads, conf = project.directory / "uploads", project.directory / "conf"
    (uploads / "2026").mkdir(parents=True)
    (uploads / "2026" / "report.pdf").write_bytes(os.urandom(50_000))
    os.chown(uploads / "2026" / "report.pdf", 1000, 1000)
    (uploads / "latest").symlink_to("2026/report.pdf")
    conf.mkdir()
    (conf / "app.ini").write_text("x=1\n")
    project.write(COMPOSE)
    project.compose("up", "-d", "--wait")
    before = tree(uploads)

    done = project.persist("backup", "--name", "s1", "--format", "json")
    record = json.loads(ok(done))
    assert [v["key"] for v in record["volumes"]] == ["bind-uploads"]
    assert [s["what"] for s in record["skipped"]] == [f"{conf} (app:/etc/app)"], (
        "the config folder is named as left out"
    )
    listed = ok(project.persist("ls", "s1", "bind-uploads"))
    assert "2026/report.pdf" in listed and "latest -> 2026/report.pdf" in listed
    assert not [v for v in ok(docker.run("volume", "ls", "-q")).split() if v.startswith("docker-persist-bind-")]

    # Without --to or --to-dir a bind part has no volume to go back to: refused, nothing touched.
    refused = project.persist("restore", "s1", "--yes", "--volume", "bind-uploads")
    assert refused.returncode == 2 and "--to-dir DIR" in refused.stderr
    out = tmp_path / "back"
    ok(project.persist("restore", "s1", "--volume", "bind-uploads", "--path", "/", "--to-dir", str(out)))
    assert tree(out) == before
    assert tree(uploads) == before
    check = json.loads(project.persist("check", "--format", "json").stdout)
    assert not [f for f in check["findings"] if f["rule"] == "DP021" and f.get("path") == str(uploads)]
