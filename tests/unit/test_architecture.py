"""The house's structure, read from the code's own imports: one direction, no circles.

Every ``import`` in ``src/dim`` counts, function-local ones too (they hide a circle without
removing it); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
The floors, top to bottom, as docs/architecture.md draws them::

    cli -> api -> lab -> actions -> {boot, services, images, power} -> {inventory, state}
        -> layout -> common (errors, files, names, paths, processes, allocation, printable)

A module may import its own floor (no circle) or any floor below it, never one above.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SOURCE / "dim"

FLOORS = (
    (
        "common",
        (
            "dim",
            "dim.errors",
            "dim.files",
            "dim.names",
            "dim.paths",
            "dim.processes",
            "dim.allocation",
            "dim.printable",
        ),
    ),
    ("layout", ("dim.layout",)),
    (
        "inventory and state",
        (
            "dim.inventory",
            "dim.state",
            "dim.records",
            "dim.migrations",
            "dim.layout_cache",
            "dim.observations",
        ),
    ),
    ("domain", ("dim.boot", "dim.services", "dim.images", "dim.power")),
    ("actions", ("dim.actions",)),
    ("lab", ("dim.lab",)),
    ("api", ("dim.api",)),
    ("cli", ("dim.cli", "dim.__main__", "dim.commands", "dim.helptext", "dim.quick")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Line numbers of the imports under ``if TYPE_CHECKING:``."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(n.lineno for n in ast.walk(inner) if hasattr(n, "lineno"))
    return lines


def _target(name: str, imported: str | None) -> str | None:
    """The module of ``src/dim`` that ``from name import imported`` (or ``import name``) loads."""
    known = modules()
    if imported is not None and f"{name}.{imported}" in known:
        return f"{name}.{imported}"
    return name if name in known else None


@cache
def imports() -> dict[str, list[tuple[str, tuple[str, ...], int]]]:
    """For each module: (imported module, names taken from it, line) of every dim import."""
    graph: dict[str, list[tuple[str, tuple[str, ...], int]]] = {}
    for name, path in modules().items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree)
        found = []
        for node in ast.walk(tree):
            if node.lineno in skipped if hasattr(node, "lineno") else False:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _target(alias.name, None)
                    if target:
                        found.append((target, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".")
                    if path.name != "__init__.py":
                        package.pop()
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, base] if base else package)
                for alias in node.names:
                    target = _target(base, alias.name)
                    if target is None:
                        continue
                    taken = () if target.endswith(f".{alias.name}") else (alias.name,)
                    found.append((target, taken, node.lineno))
        graph[name] = found
    return graph


def floor(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, floor)
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    assert best[1] >= 0, f"{module} is on no floor: add it to FLOORS and docs/architecture.md"
    return best[1]


def circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted({t for t, _, _ in edges if t != m}) for m, edges in imports().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_anywhere_in_src() -> None:
    found = circles()
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_imports_run_down_the_floors_never_up() -> None:
    upward = [
        f"{source}:{line} imports {target} ({FLOORS[floor(target)][0]} is above "
        f"{FLOORS[floor(source)][0]})"
        for source, edges in imports().items()
        for target, _, line in edges
        if floor(target) > floor(source)
    ]
    assert not upward, "\n".join(upward)


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    """``python -m dim`` (dim/__main__.py) is the CLI's second door, on its floor."""
    outside = [
        f"{source}:{line}"
        for source, edges in imports().items()
        if FLOORS[floor(source)][0] != "cli"
        for target, _, line in edges
        if target == "dim.cli" or target.startswith("dim.cli.")
    ]
    assert not outside, "\n".join(outside)


def test_the_use_cases_import_no_user_interface() -> None:
    """dim.actions serves the CLI, the lab and a future API alike: no click, no printing."""
    found = []
    for name, path in modules().items():
        if not (name == "dim.actions" or name.startswith("dim.actions.")):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                roots = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                clicks = [r for r in roots if r == "click" or r.startswith("click.")]
                found += [f"{name}:{node.lineno} imports {r}" for r in clicks]
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "print":
                found.append(f"{name}:{node.lineno} prints")
    assert not found, "\n".join(found)


def test_no_module_takes_another_modules_private_names() -> None:
    private = [
        f"{source}:{line} takes {name} from {target}"
        for source, edges in imports().items()
        for target, names, line in edges
        for name in names
        if target != source and name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "\n".join(private)


# Conventions that have one home: the pattern may appear in that module only (and in the
# folders listed after it: the lab starts daemons meant to outlive the command that started them).
CONVENTIONS = (
    ("the temporary name .NAME.dim-PID", r"\.dim-\{os\.getpid\(\)\}", "dim/files.py", ()),
    ("fsync of a folder", r"O_DIRECTORY", "dim/files.py", ()),
    ("the state DB's file name", r"[\"']state\.db[\"']", "dim/paths.py", ()),
    ("the replicas' folder", r"/ [\"']nodes[\"']", "dim/paths.py", ()),
    ("the images' folder", r"/ [\"']images[\"']", "dim/paths.py", ()),
    (
        "starting a child process (it must die with dim)",
        r"subprocess\.(run|Popen|call|check_call|check_output)\(",
        "dim/processes.py",
        ("dim/lab/",),
    ),
)


def test_each_convention_is_spelled_in_one_module() -> None:
    strays = []
    for what, pattern, home, exempt in CONVENTIONS:
        for path in modules().values():
            where = path.relative_to(SOURCE).as_posix()
            if where == home or where.startswith(exempt):
                continue
            if re.search(pattern, path.read_text()):
                strays.append(f"{where}: {what} (its home is {home})")
    assert not strays, "\n".join(strays)


def test_the_architecture_test_sees_real_edges() -> None:
    """A guard for the guard: a reader that found no imports would pass every test above."""
    edges = {(s, t) for s, found in imports().items() for t, _, _ in found}
    assert ("dim.layout.parser", "dim.layout.model") in edges
    assert len(edges) > 100
    assert floor("dim.cli") > floor("dim.lab") > floor("dim.actions") > floor("dim.images")
