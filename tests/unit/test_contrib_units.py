"""The systemd units in contrib/ (dim serve, dim api, the DNS dnsmasq) pass systemd's own
check: every directive known and every value parsed (systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_binary

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
UNITS = sorted(CONTRIB.glob("*.service"))


def test_the_api_and_serve_units_are_shipped():
    assert {"dim-api.service", "dim-serve.service"} <= {u.name for u in UNITS}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_unit_passes_systemd_analyze_verify(unit, tmp_path):
    analyze = require_binary("systemd-analyze", "systemd")
    shutil.copy(unit, tmp_path / unit.name)
    checked = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / unit.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on a value it cannot parse, and says so: any word is a finding
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), (
        checked.stdout + checked.stderr
    )
