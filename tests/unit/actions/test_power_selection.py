"""`dim power off @rack -x @typo`: the selection fails before the fan-out, no BMC is asked."""

from __future__ import annotations

import pytest

from dim.actions import power
from dim.cli import main
from dim.errors import UsageError
from dim.power import control, fanout


@pytest.fixture
def bmc_calls(monkeypatch) -> list:
    """Every way to a BMC: the control's run and the drivers the fan-out would make."""
    calls: list = []

    def run(nodes, *args, **kwargs):
        calls.append(("run", [n.name for n in nodes]))
        return []

    def make_driver(name, options):
        calls.append(("driver", name))
        raise AssertionError("no driver may be made")

    monkeypatch.setattr(control, "run", run)
    monkeypatch.setattr(fanout, "make_driver", make_driver)
    return calls


@pytest.fixture
def credentials(tmp_path):
    path = tmp_path / "credentials.toml"
    path.write_text('[default]\nusername = "u"\npassword = "p"\n')
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("exclude", ["@typo", "c0[1-2],zz1", "c01!@typo"])
def test_an_unknown_group_after_exclusion_is_an_error_and_contacts_no_bmc(
    layout_file, tmp_path, capsys, bmc_calls, credentials, exclude
):
    argv = ["--config", str(layout_file), "--state", str(tmp_path / "state"), "power", "off"]
    status = main([*argv, "@compute", "-x", exclude, "--yes", "--credentials", str(credentials)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == "" and err.startswith("dim: error: ") and "unknown" in err
    assert bmc_calls == []
    # the same command with a real exclusion reaches the fan-out: the seam above is the one
    main([*argv, "@compute", "-x", "c01", "--yes", "--credentials", str(credentials)])
    assert bmc_calls == [("run", ["c02", "c03", "c04"])]


def test_selecting_nodes_for_power_refuses_an_empty_set_before_reading_credentials(ctx, tmp_path):
    with pytest.raises(UsageError, match="names no node"):
        power.select_nodes(ctx, "@compute", "@compute", credentials_file=tmp_path / "missing")
