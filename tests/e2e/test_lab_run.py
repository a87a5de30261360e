"""``dim lab run NODE -- COMMAND…`` runs a command on a lab node through its serial console:
the command's output on stdout, its exit status as dim's. Through dim's entry point, in
process, on the session's lab (node04 is booted by the ``fleet`` fixture and only looked at)."""

from __future__ import annotations

import pytest

from dim.cli import main
from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e

NODE = "node04"


def test_lab_run_prints_the_output_and_exits_with_the_commands_status(
    lab: Lab, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.shell(NODE)
    capsys.readouterr()
    argv = ["lab", "run", "--dir", str(lab.folder), NODE, "--", "sh", "-c", "echo hi; exit 3"]
    assert main(argv) == 3  # the command's status, as dim's
    assert capsys.readouterr().out == "hi\n"
    assert main(["lab", "run", "--dir", str(lab.folder), NODE, "--", "hostname"]) == 0
    assert capsys.readouterr().out == f"{NODE}\n"


def test_lab_run_on_a_node_that_is_not_running_is_an_error_with_a_hint(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["lab", "run", "--dir", str(lab.folder), "node07", "--", "true"])
    err = capsys.readouterr().err
    assert status == 1
    assert "node07 is not running" in err
    assert "hint: dim lab boot" in err
