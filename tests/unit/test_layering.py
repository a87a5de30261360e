"""Imports go one way: nothing below the CLI imports it, and the use cases import no CLI, lab or
click (function-local imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dim"

# The lab still runs `dim` in-process through dim.cli.main; it is to call dim.actions instead.
ALLOWED_TO_IMPORT_CLI = ("dim/lab/",)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(folder: Path = SRC) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC.parent)))
def test_nothing_outside_the_cli_imports_it(path):
    relative = str(path.relative_to(SRC.parent))
    if relative.startswith(("dim/cli/", *ALLOWED_TO_IMPORT_CLI)):
        return
    assert not [name for name in imports(path) if under(name, "dim.cli")]


@pytest.mark.parametrize("path", modules(SRC / "actions"), ids=lambda p: p.name)
def test_the_use_cases_import_neither_cli_nor_lab_nor_click(path):
    names = imports(path)
    assert not [n for n in names if under(n, "dim.cli") or under(n, "dim.lab") or under(n, "click")]


@pytest.mark.parametrize("path", modules(SRC / "cli"), ids=lambda p: p.name)
def test_command_modules_do_not_import_the_root(path):
    if path.name == "__init__.py":
        return
    # `from dim.cli import x` would import the root; siblings are imported by their full name
    assert "dim.cli" not in imports(path)
