"""The import graph of src/dim, function-local imports included: no circles, no module using
another's private names, and imports only downwards through the layers of DESIGN.md::

    cli -> lab -> actions -> {boot, services, images, power} -> {inventory, state} -> layout
    -> common (errors, files, names, paths)

The CLI and the lab are left out of the circle check while they are being reorganized.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dim

SOURCE = Path(dim.__file__).parent
COMMON = {"dim", "dim.errors", "dim.files", "dim.names", "dim.paths", "dim.allocation"}
DOMAIN = ("dim.boot", "dim.services", "dim.images", "dim.power")


def _modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    private = []
    for module, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [owner(a.name) for a in node.names if a.name.startswith("dim")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if not node.module.startswith("dim"):
                    continue
                targets = []
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in modules else owner(node.module))
                    private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private_name and full not in modules:
                        private.append(f"{module} imports {full}")
            else:
                continue
            edges.update(t for t in targets if t and t != module)
        graph[module] = edges
    return graph, private


def _rank(module: str) -> int:
    if module in COMMON:
        return 0
    if module.startswith("dim.layout"):
        return 1
    if module in ("dim.inventory", "dim.state", "dim.records"):
        return 2
    if module.startswith(DOMAIN):
        return 3
    if module.startswith("dim.actions"):
        return 4
    if module.startswith("dim.lab"):
        return 5
    return 6  # the CLI


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles_below_the_cli_and_the_lab() -> None:
    graph, _ = _graph()
    below = {m: {t for t in e if _rank(t) < 5} for m, e in graph.items() if _rank(m) < 5}
    assert _circles(below) == []


def test_no_module_imports_another_modules_private_names() -> None:
    assert _graph()[1] == []


def test_imports_go_down_the_layers() -> None:
    graph, _ = _graph()
    upwards = [
        f"{m} -> {t}"
        for m, edges in graph.items()
        for t in edges
        if _rank(m) < 5 and _rank(t) > _rank(m)
    ]
    assert upwards == []


def test_common_modules_import_only_common_modules() -> None:
    graph, _ = _graph()
    assert {m: graph[m] - COMMON for m in COMMON if graph[m] - COMMON} == {}
