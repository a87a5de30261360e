"""`dim layout check` and `dim node list` without click (dim.quick): whatever the command line,
a whole process prints what click's way prints, where it prints it, with its exit status."""

from __future__ import annotations

import shutil
import time

import pytest

from dim.cli import main
from dim.quick import CLICK, run
from tests.importtime import dim_process


@pytest.fixture
def site(layout_file, tmp_path, capsys):
    """A layout with some MACs recorded, a state folder, and two images assigned."""
    state = tmp_path / "state"
    argv = ["--config", str(layout_file), "--state", str(state)]
    assert main([*argv, "node", "set", "c01", "--mac", "52:54:00:00:00:01"]) == 0
    assert main([*argv, "node", "set", "g1", "--image", "alpha"]) == 0
    capsys.readouterr()
    return layout_file, state


def process(argv: list[str], env: dict[str, str]) -> tuple[int, str, str, set[str]]:
    """A whole ``python -m dim ARGV``: status, stdout, stderr and the top modules imported."""
    run = dim_process(argv, env)
    return run.status, run.stdout, run.stderr, run.roots


COMMANDS = [
    ["layout", "check"],
    ["layout", "check", "--json"],
    ["node", "list"],
    ["node", "list", "--json"],
    ["node", "list", "c01"],
    ["node", "list", "@compute", "-x", "c02"],
    ["node", "list", "-xc0[1-3]", "--json"],
    ["node", "list", "--exclude=c04", "c0[1-4]"],
    ["node", "list", "c99"],  # an error: one line and a hint, exit status 2
    ["node", "list", "c01\nc02"],  # the error's control character escaped
    ["node", "list", ""],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_plain_command_prints_without_click_what_click_prints(site, command, capsys):
    layout, state = site
    argv = ["--config", str(layout), "--state", str(state), *command]
    status, out, err, imported = process(argv, {})
    assert "click" not in imported  # dim.quick answered it
    expected = main(argv)
    clicks = capsys.readouterr()
    assert (status, out, err) == (expected, clicks.out, clicks.err)


@pytest.mark.parametrize(
    "form",
    [
        "options=value",
        "environment",
        "empty environment variable",
        "missing layout",
        "layout is a folder",
        "state is a file",
        "option twice",
        "help",
        "option after the command",
        "two node sets",
    ],
)
def test_every_form_of_the_line_gives_what_click_gives(site, form, monkeypatch, capsys):
    """The forms dim.quick reads (the first four) and those it leaves to click (the rest)."""
    layout, state = site
    env: dict[str, str] = {}
    argv = ["--config", str(layout), "--state", str(state), "node", "list", "c01"]
    quick = True
    if form == "options=value":
        argv = [f"--config={layout}", f"--state={state}", "--debug", "layout", "check"]
    elif form == "environment":
        env = {"DIM_CONFIG": str(layout), "DIM_STATE": str(state)}
        argv = ["layout", "check"]
    elif form == "empty environment variable":  # click: not set, so the option's default
        env = {"DIM_CONFIG": str(layout), "DIM_STATE": str(state), "DIM_DATABASE": ""}
        argv = ["node", "list"]
    elif form == "missing layout":
        argv[1] = str(layout.parent / "nosuch.xml")
    else:
        quick = False
        if form == "layout is a folder":
            argv[1] = str(layout.parent)
        elif form == "state is a file":
            argv[3] = str(layout)
        elif form == "option twice":
            argv = ["--state", str(state), *argv]
        elif form == "help":
            argv.append("--help")
        elif form == "option after the command":
            argv = [*argv, "--debug"]
        else:
            argv.append("c02")
    status, out, err, imported = process(argv, env)
    assert ("click" not in imported) == quick
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "80")
    expected = main(argv)
    clicks = capsys.readouterr()
    assert (status, out, err) == (expected, clicks.out, clicks.err)


def test_shell_completion_is_left_to_click(monkeypatch):
    monkeypatch.setenv("_DIM_COMPLETE", "bash_complete")
    assert run(["layout", "check"]) is CLICK


def test_a_cold_command_answers_and_a_child_of_it_leaves_the_layout_cache(site):
    """The first command after cluster.xml changed parses it in full and prints its answer;
    the validated-layout cache is written after, by a child it does not wait for, and the
    next command reads the layout from it."""
    layout, state = site
    shutil.rmtree(state / "layouts")
    argv = ["--config", str(layout), "--state", str(state), "layout", "check"]
    status, out, _, imported = process(argv, {})
    assert status == 0 and "is valid" in out
    assert "lxml" in imported  # parsed and validated in full
    deadline = time.monotonic() + 30
    while not list((state / "layouts").glob("*.db")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list((state / "layouts").glob("*.db"))) == 1
    assert (process(argv, {})[:2]) == (0, out)
    assert "lxml" not in process(argv, {})[3]  # read from the cache
