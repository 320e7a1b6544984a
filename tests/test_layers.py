"""The layers hold: `app → engine → ingest | kernels`, read from every module's import statements (ast).

Every import counts, at module level or inside a function (a deferred import is still a dependency),
except those under `if TYPE_CHECKING:`, which never run. Importing `a.b.c` runs `a/__init__` and
`a/b/__init__` as well; those implicit edges are not counted, or every module would sit in a circle
with its package's `__init__`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "engine", "ingest", "kernels")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path) -> set[str]:
    """The modules `path` imports: for `from a import b`, `a.b` when that is one of ours, else `a`."""
    names: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    names.discard("__future__")
    return names


IMPORTS = {name: imported_names(path) for name, path in MODULES.items()}


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_walk_finds_the_layers():
    """Guards the checks below against passing on an empty walk."""
    assert {"app.server", "engine.api", "engine.cli", "ingest.catalog", "kernels.dispatch"} <= set(MODULES)
    assert "engine" in IMPORTS["app.corpus"] and "ingest.catalog" in IMPORTS["engine.api"]


@pytest.mark.parametrize("package", ["engine", "ingest", "kernels"])
def test_nothing_below_the_app_imports_it(package):
    reaching_up = {name: sorted(found for found in imports if top(found) == "app")
                   for name, imports in IMPORTS.items() if top(name) == package}
    assert {name: found for name, found in reaching_up.items() if found} == {}


def test_the_app_uses_only_what_the_engine_exports():
    reaching_in = {name: sorted(found for found in imports if top(found) == "engine" and found != "engine")
                   for name, imports in IMPORTS.items() if top(name) == "app"}
    assert {name: found for name, found in reaching_in.items() if found} == {}


def test_ingest_stands_alone():
    reaching = {name: sorted(found for found in imports if top(found) in {"app", "engine", "kernels"})
                for name, imports in IMPORTS.items() if top(name) == "ingest"}
    assert {name: found for name, found in reaching.items() if found} == {}


def test_kernels_need_only_torch_triton_numpy_and_the_standard_library():
    allowed = {"torch", "triton", "numpy", "kernels"} | set(sys.stdlib_module_names)
    outside = {name: sorted(found for found in imports if top(found) not in allowed)
               for name, imports in IMPORTS.items() if top(name) == "kernels"}
    assert {name: found for name, found in outside.items() if found} == {}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle in `graph` (as the modules along it, the first repeated at the end), or None."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        trail.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return trail[trail.index(successor):] + [successor]
            if successor not in state and (found := walk(successor)):
                return found
        state[node] = "done"
        trail.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_circle_among_our_modules():
    graph = {name: {found for found in imports if found in MODULES and found != name}
             for name, imports in IMPORTS.items()}
    assert find_cycle(graph) is None
