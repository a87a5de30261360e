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
from dim.helptext import root_help
from dim.layout.nodesets import product_names
from tests.importtime import SOURCE, dim_process

# Each costs tens of milliseconds to import, and none is needed to print a version or a help.
HEAVY = ("sqlalchemy", "alembic", "jinja2", "lxml", "ClusterShell", "aiohttp", "pyghmi", "pysnmp")


def dim(*argv: str, columns: int = 80) -> subprocess.CompletedProcess:
    """A whole ``python -m dim ARGV`` process, its terminal ``columns`` wide."""
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "COLUMNS": str(columns)}
    env.pop("_DIM_COMPLETE", None)
    return subprocess.run(
        [sys.executable, "-m", "dim", *argv], env=env, capture_output=True, text=True
    )


def imported_by(*argv: str, status: int = 0) -> set[str]:
    """The modules a whole ``python -m dim ARGV`` process imports (it must exit ``status``)."""
    run = dim_process(list(argv))
    assert run.status == status, run.stderr
    return run.modules


def roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["-h"], []])
def test_version_and_help_are_answered_before_click_or_any_command_is_imported(argv):
    modules = imported_by(*argv, status=0 if argv else 2)
    assert not roots(modules) & {"click", *HEAVY}
    assert not {m for m in modules if m.startswith(("dim.actions", "dim.layout", "dim.cli"))}


def test_version_is_printed_as_click_prints_it(capsys):
    run = dim("--version")
    assert main(["--version"]) == 0  # click's own version option
    assert (run.returncode, run.stdout) == (0, capsys.readouterr().out)


@pytest.mark.parametrize("columns", range(40, 131))
def test_help_page_without_click_is_clicks_byte_for_byte_at_every_width(
    columns, monkeypatch, capsys
):
    monkeypatch.setenv("COLUMNS", str(columns))  # where click and dim.helptext read the width
    assert main(["--help"]) == 0
    assert capsys.readouterr().out == root_help() + "\n"


@pytest.mark.parametrize("argv", [["--help"], ["-h"], []])
def test_help_processes_print_what_click_prints_where_click_prints_it(argv, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    expected = main(argv)  # --help, -h: the page on stdout, 0; nothing: on stderr, usage error
    clicks = capsys.readouterr()
    run = dim(*argv, columns=80)
    assert (run.returncode, run.stdout, run.stderr) == (expected, clicks.out, clicks.err)


def test_help_page_names_every_family_even_one_already_loaded(monkeypatch, capsys):
    """In process, a family loaded before is listed from its own command: still the same page."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["node", "--help"]) == 0
    capsys.readouterr()
    assert main(["--help"]) == 0
    assert capsys.readouterr().out == root_help() + "\n"


def test_layout_check_imports_no_template_engine_database_layer_or_bmc_client(tmp_path):
    layout = Path(__file__).resolve().parents[2] / "examples" / "lab.xml"
    modules = imported_by("--config", str(layout), "--state", str(tmp_path), "layout", "check")
    assert "lxml" in roots(modules)  # it did read the layout
    assert not roots(modules) & {"sqlalchemy", "alembic", "jinja2", "aiohttp", "pyghmi", "pysnmp"}
    # nor what other commands of its family need
    assert not modules & {"dim.actions.nodes", "socket"}  # names.py: _socket


def test_layout_check_and_node_list_of_plain_patterns_do_without_clustershell(tmp_path):
    """Its import is a quarter of their work: plain patterns are expanded and a whole group
    folded by dim.layout.nodesets. Fresh (no MAC: the group folded), then every MAC recorded."""
    layout = Path(__file__).resolve().parents[2] / "examples" / "bladecenter.xml"
    argv = ["--config", str(layout), "--state", str(tmp_path)]
    assert "ClusterShell" not in roots(imported_by(*argv, "layout", "check"))
    names = product_names("s[01-46]c[1-4]b[01-14]")
    macs = [f"{name},02:00:00:00:{i >> 8:02x}:{i & 255:02x}\n" for i, name in enumerate(names)]
    (tmp_path / "macs.csv").write_text("".join(macs))
    assert main([*argv, "node", "import-macs", str(tmp_path / "macs.csv")]) == 0
    for command in (["layout", "check"], ["node", "list", "s46c4b14"], ["node", "list", "@blades"]):
        assert "ClusterShell" not in roots(imported_by(*argv, *command)), command


def test_node_list_reads_the_state_db_without_sqlalchemy(tmp_path):
    layout = Path(__file__).resolve().parents[2] / "examples" / "lab.xml"
    argv = ["--config", str(layout), "--state", str(tmp_path)]
    assert main([*argv, "node", "set", "node01", "--mac", "52:54:00:00:00:01"]) == 0  # a DB
    modules = imported_by(*argv, "node", "list", "node01")
    assert "sqlite3" in roots(modules)  # it did read the state DB
    assert not roots(modules) & {"sqlalchemy", "alembic", "jinja2", "aiohttp", "pyghmi"}


@pytest.mark.parametrize("command", [["layout", "check"], ["node", "list", "node01"]])
def test_a_layout_read_from_its_cache_costs_no_dataclasses_nor_openssl(tmp_path, command):
    """dataclasses (with inspect, ast, dis) and hashlib's OpenSSL were 35 % of their start."""
    layout = Path(__file__).resolve().parents[2] / "examples" / "lab.xml"
    argv = ["--config", str(layout), "--state", str(tmp_path)]
    assert main([*argv, "layout", "check"]) == 0  # the validated-layout cache left
    modules = imported_by(*argv, *command)
    assert "lxml" not in roots(modules)  # the layout came from the cache
    assert not modules & {"dataclasses", "inspect", "ast", "hashlib", "_hashlib", "typing"}


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
