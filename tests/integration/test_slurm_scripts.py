"""Slurm's power saving through dim: contrib/slurm's SuspendProgram and ResumeProgram, run as
Slurm runs them (one argument, a Slurm host list), against a simulated IPMI BMC (OpenIPMI's
ipmi_sim on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.power_sims import Lab, entry, ipmi_sim

pytestmark = pytest.mark.integration

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "slurm"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with ipmi_sim(tmp_path_factory.mktemp("ipmi_sim")) as running:
        yield running


def slurm_runs(script: str, hostlist: str, lab: Lab, **env: str) -> subprocess.CompletedProcess:
    """The script with Slurm's one argument and a bare environment: dim's settings only."""
    bin_folder = Path(sys.executable).parent  # where pip put the `dim` command
    environment = {
        "PATH": f"{bin_folder}:/usr/sbin:/usr/bin:/sbin:/bin",
        "DIM_CONFIG": str(lab.folder / "cluster.xml"),
        "DIM_STATE": str(lab.folder / "state"),
        "DIM_CREDENTIALS": str(lab.folder / "credentials"),
        **env,
    }
    return subprocess.run(
        [str(CONTRIB / script), hostlist], env=environment, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.fixture
def lab(tmp_path, capsys, sim) -> Lab:
    lab = Lab(tmp_path, capsys)
    lab.layout({"cn1": ("ipmi", sim.address, "ipmi")})
    lab.credentials(entry("ipmi"))
    return lab


def test_resume_sets_a_network_boot_then_powers_the_nodes_on(sim, lab):
    assert lab.dim("power", "off", "cn1")[0] == 0
    resumed = slurm_runs("dim-slurm-resume", "cn[1]", lab)
    assert resumed.returncode == 0, resumed.stderr
    assert (sim.state("boot"), sim.state("power")) == ("pxe", "1")
    assert "cn1" in resumed.stderr  # dim's lines, also in syslog


def test_suspend_shuts_the_nodes_down_softly_or_cuts_their_power(sim, lab):
    assert lab.dim("power", "on", "cn1")[0] == 0
    suspended = slurm_runs("dim-slurm-suspend", "cn[1]", lab)
    assert suspended.returncode == 0, suspended.stderr
    assert sim.state("power") == "0"
    assert lab.dim("power", "on", "cn1")[0] == 0
    assert slurm_runs("dim-slurm-suspend", "cn1", lab, DIM_SLURM_SUSPEND="off").returncode == 0
    assert sim.state("power") == "0"


def test_a_typo_in_the_host_list_acts_on_no_node_and_fails(sim, lab):
    assert lab.dim("power", "on", "cn1")[0] == 0
    wrong = slurm_runs("dim-slurm-suspend", "cn[1-2]", lab)
    assert wrong.returncode == 2 and "unknown nodes: cn[1-2]" in wrong.stderr
    assert sim.state("power") == "1"


def test_a_bad_call_is_refused_with_its_usage(lab):
    for script in ("dim-slurm-suspend", "dim-slurm-resume"):
        called = subprocess.run([str(CONTRIB / script)], capture_output=True, text=True)
        assert called.returncode == 2 and "usage:" in called.stderr
    bad = slurm_runs("dim-slurm-suspend", "cn1", lab, DIM_SLURM_SUSPEND="reboot")
    assert bad.returncode == 2 and "soft or off" in bad.stderr


def test_the_scripts_are_executable(tmp_path):
    for script in ("dim-slurm-suspend", "dim-slurm-resume"):
        assert os.access(CONTRIB / script, os.X_OK)
