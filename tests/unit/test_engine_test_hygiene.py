"""The engine tests run on whoever's engine runs them (a contributor's own, not only CI's): they never prune
what they did not make. Before API 1.42 (Debian 12's docker.io), a plain `docker volume prune -f` removes every
unused volume, named ones too, and `docker container prune -f` every stopped container."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
PRUNED = {"container", "volume", "system", "network", "image", "builder"}


def _text(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ast.unparse(node)


def unscoped_prunes(source: str) -> list[int]:
    """Return the lines of the `docker ... prune` calls (or argument lists) in `source` with no `--filter` whose
    value is a label filter: a "label=..." string, or a variable assigned one in the same file."""
    tree = ast.parse(source)
    assigned = {
        target.id: ast.unparse(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    lines = []
    for node in ast.walk(tree):
        items = node.args if isinstance(node, ast.Call) else node.elts if isinstance(node, ast.List) else None
        if not items:
            continue
        words = [_text(item) for item in items]
        if "prune" not in words or not PRUNED & set(words):
            continue
        filters = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--filter"]
        if not any(f.startswith("label=") or assigned.get(f, "").lstrip("f").strip("'\"").startswith("label=")
                   for f in filters):  # fmt: skip
            lines.append(node.lineno)
    return lines


def test_every_docker_prune_in_the_engine_tests_is_scoped_by_a_label_filter() -> None:
    found = {path.name: unscoped_prunes(path.read_text()) for path in sorted(ENGINE_TESTS.glob("*.py"))}
    assert {name: lines for name, lines in found.items() if lines} == {}, (
        "a docker prune without a label filter removes what whoever runs the tests has"
    )


def test_the_hygiene_check_finds_an_unscoped_prune() -> None:
    source = """
scope = f"label=com.docker.compose.project={name}"
docker.run("volume", "prune", "-f", "--filter", scope, check=True)
docker.run("volume", "prune", "-f", "--filter", "label=x")
docker.run("volume", "prune", "-f")
docker.run("volume", "prune", "-f", "--filter", "all=1")
for command in (["system", "prune", "-f", "--volumes"], ["container", "prune", "-f", "--filter", scope]):
    pass
docker.run("restic", "prune")
"""
    assert unscoped_prunes(source) == [5, 6, 7]
