"""The package's folders are its layers: who may import whom, and no import circles.

Every import of a docker_persist module counts, those inside functions too (the lazy imports that
keep start-up fast are still dependencies).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "docker_persist"

# The layer of a module is its folder; errors and the version sit at the top and are shared by all.
LAYERS = ("config", "core", "streams", "host", "engine", "store", "actions", "cli")
PURE = {"config", "core"}
ALLOWED = {
    "top": set(),
    "config": {"top"},
    "core": {"top", "config"},
    "streams": {"top", "config", "core"},
    "host": {"top", "config", "core"},
    "engine": {"top", "config", "core", "host", "streams"},
    "store": {"top", "config", "core", "host", "streams"},
    "actions": {"top", "config", "core", "host", "streams", "engine", "store"},
    "cli": {"top", "config", "core", "host", "streams", "engine", "store", "actions"},
    "entry": {"top", "cli"},  # plugin.py and __main__.py: the shim
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) > 1 and parts[1] in ("plugin", "__main__"):
        return "entry"
    return "top"


MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}


def imports(path: Path, typing_too: bool = True) -> Iterator[str]:
    """Yield every docker_persist module `path` imports, at any depth of the file (without those
    under `if TYPE_CHECKING:` unless `typing_too`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[ast.AST] = set()
    if not typing_too:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                skipped.update(child for statement in node.body for child in ast.walk(statement))
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "docker_persist":
                continue
            for alias in node.names:  # `from package import submodule` imports the submodule
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in MODULES else node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("docker_persist"))


def graph(typing_too: bool = True) -> dict[str, set[str]]:
    return {module_name(path): set(imports(path, typing_too)) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if ast.get_docstring(ast.parse(p.read_text())) is None and p.name != "__main__.py"
    ]
    assert missing == []


def test_layers_import_only_the_layers_below() -> None:
    wrong = sorted(
        f"{source} ({layer(source)}) imports {target} ({layer(target)})"
        for source, targets in graph().items()
        for target in targets
        if layer(target) != layer(source) and layer(target) not in ALLOWED[layer(source)]
    )
    assert wrong == []


def test_the_pure_layers_import_no_io_library() -> None:
    io_libraries = {"docker", "subprocess", "socket", "minio", "urllib3", "pyrage", "zstandard", "http", "threading"}
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        if layer(module_name(path)) not in PURE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            wrong += [f"{module_name(path)} imports {n}" for n in names if n.split(".")[0] in io_libraries]
    assert wrong == []


def test_no_import_circles() -> None:
    edges = graph(typing_too=False)  # an import for annotations only runs nothing

    # A package's __init__ re-exporting its submodules is not a circle with them.
    def targets(source: str) -> set[str]:
        return {t for t in edges.get(source, set()) if t in edges and not source.startswith(t + ".")}

    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(targets(module)):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert circles == []
