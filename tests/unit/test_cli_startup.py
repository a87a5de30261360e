"""Start-up (issue 14): a command imports what it runs, and `dim --help` still shows everything.

Behaviour, not timing (bench/startup.py measures the time): which libraries a whole ``dim``
process imports, read from ``python -X importtime``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dim.cli import FAMILIES, main

SOURCE = Path(__file__).resolve().parents[2] / "src"

# Each costs tens of milliseconds to import, and none is needed to print a version or a help.
HEAVY = ("sqlalchemy", "alembic", "jinja2", "lxml", "ClusterShell", "aiohttp", "pyghmi", "pysnmp")


def imported_by(*argv: str) -> set[str]:
    """The modules a whole ``python -m dim ARGV`` process imports."""
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dim", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_version_and_help_import_no_heavy_library_and_no_command_family(option):
    modules = imported_by(option)
    assert not roots(modules) & set(HEAVY)
    assert not {m for m in modules if m.startswith(("dim.actions", "dim.layout", "dim.cli."))} - {
        "dim.cli.lazy"
    }


def test_version_is_answered_before_click_is_imported_and_as_click_answers_it(capsys):
    assert "click" not in roots(imported_by("--version"))
    run = subprocess.run(
        [sys.executable, "-m", "dim", "--version"],
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert main(["--version"]) == 0  # click's own version option
    assert run.stdout == capsys.readouterr().out


def test_layout_check_imports_no_template_engine_database_layer_or_bmc_client(tmp_path):
    layout = Path(__file__).resolve().parents[2] / "examples" / "lab.xml"
    modules = imported_by("--config", str(layout), "--state", str(tmp_path), "layout", "check")
    assert "lxml" in roots(modules)  # it did read the layout
    assert not roots(modules) & {"sqlalchemy", "alembic", "jinja2", "aiohttp", "pyghmi", "pysnmp"}


def test_help_lists_every_command_family_with_its_summary(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = out.split("Commands:")[1].splitlines()
    for name, family in FAMILIES.items():
        line = next(line for line in listed if line.split()[:1] == [name])
        shown = line.split(None, 1)[1].removesuffix("...")
        assert family.summary.startswith(shown)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_familys_summary_is_the_first_line_of_its_own_help(name):
    command = FAMILIES[name].load()
    assert command.name == name
    assert command.get_short_help_str(limit=1000) == FAMILIES[name].summary


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_shows_its_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert f"Usage: dim {name} " in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "No such command 'frobnicate'" in capsys.readouterr().err
