"""The modules of rgsyn/downstream/ import one another one way: a cycle, even through an import inside
a function, makes which module is below which a matter of call order, and a module cannot be read or
tested without the one above it."""
import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = "rgsyn.downstream"


def imports_of(path: Path, package: str) -> set[str]:
    """Dotted names a module imports anywhere in its body (functions too), relative imports resolved
    against `package`; `from pkg import name` also yields pkg.name (it may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            mod = ".".join(x for x in (base, node.module) if x)
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (the package's __init__ aside)."""
    mods = {f"{package}.{f.stem}": f for f in sorted(folder.glob("*.py")) if f.name != "__init__.py"}
    return {m: (imports_of(f, package) & set(mods)) - {m} for m, f in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the path [a, b, ..., a], None when it has none (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_on_synthetic_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no cycle
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_imports_inside_functions_and_relative_imports_count(tmp_path):
    (tmp_path / "run.py").write_text("from . import trainer\n\ndef f():\n    from .utility import g\n")
    (tmp_path / "utility.py").write_text("def g():\n    import pkg.run\n")
    (tmp_path / "trainer.py").write_text("from pkg.selection import x\n")
    (tmp_path / "selection.py").write_text("import numpy\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg.run": {"pkg.trainer", "pkg.utility"}, "pkg.selection": set(),
                     "pkg.trainer": {"pkg.selection"}, "pkg.utility": {"pkg.run"}}
    assert find_cycle(graph) == ["pkg.run", "pkg.utility", "pkg.run"]


def test_downstream_modules_import_one_way():
    graph = import_graph(ROOT / "rgsyn" / "downstream", PACKAGE)
    assert len(graph) >= 8 and graph["rgsyn.downstream.reid"] >= {"rgsyn.downstream.trainer"}  # the walk sees them
    cycle = find_cycle(graph)
    assert cycle is None, f"rgsyn/downstream imports in a cycle: {' -> '.join(cycle)}"
