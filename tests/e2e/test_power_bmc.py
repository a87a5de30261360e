"""`dim power` drives a lab node through a simulated IPMI BMC: on starts its QEMU, which then
PXE-boots to the marker; off stops it. The real IPMI driver (pyghmi) talks to the simulator
(pyghmi's BMC class) on the node's loopback BMC address from examples/lab.xml."""

from __future__ import annotations

import json

import pytest

from dim.lab.bmcs import start_bmcs
from dim.lab.daemons import ganesha_pid_files
from dim.lab.network import SERVER
from dim.lab.processes import sleep_until
from dim.services import sessions
from tests.e2e.conftest import Lab

pytestmark = pytest.mark.e2e

NODE = "node06"


def test_power_on_through_the_bmc_pxe_boots_the_node_and_off_stops_it(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = start_bmcs(lab.folder, [NODE], say=lab.say)
    monkeypatch.setenv("DIM_CREDENTIALS", str(credentials))
    assert lab.dim("power", "status", NODE).stdout.split()[:2] == ["off", NODE]
    lab.dim("power", "on", NODE)
    lab.wait([NODE])
    assert lab.marker(NODE).group(1) == NODE
    assert lab.ok(NODE, "hostname").strip() == NODE
    assert lab.dim("power", "status", NODE).stdout.split()[:2] == ["on", NODE]
    up = node_status(lab, "--power")
    assert (up["state"], up["power"], up["session"]) == ("up", "on", SERVER), up
    assert up["booted"]["image"] == up["image"] and up["live_version"] >= 1

    # the same session as the lab's dim serve records it in the state DB, read from there alone
    # (sampled every sessions.INTERVAL s: the node's mount may be newer than the last sample)
    def recorded() -> tuple:
        found = node_status(lab, pid_file="none")
        return found["state"], found["session"], found["session_server"]

    assert sleep_until(lambda: recorded() == ("up", SERVER, "labsrv"), 3 * sessions.INTERVAL), (
        recorded()
    )
    lab.dim("power", "off", NODE, "--yes")
    assert lab.dim("power", "status", NODE).stdout.split()[:2] == ["off", NODE]
    off = node_status(lab, "--power")
    assert (off["state"], off["power"]) == ("off", "off"), off
    assert not sleep_until(lambda: _qemu_runs("52:54:00:77:00:06"), 3)


def node_status(lab: Lab, *options: str, pid_file: str | None = None) -> dict:
    """``dim node status NODE --json`` with the lab's ganesha as the NFS server (dim lab env),
    or ``pid_file``'s (``none``: only the sessions recorded by the image servers)."""
    pid_file = pid_file or str(ganesha_pid_files(lab.folder)[0])
    shown = lab.dim("node", "status", NODE, "--nfs-pid-file", pid_file, "--json", *options)
    report = json.loads(shown.stdout)
    assert report["sessions_known"], shown.stderr
    (found,) = report["nodes"]
    return found


def _qemu_runs(mac: str) -> bool:
    from pathlib import Path

    for pid in filter(str.isdigit, (p.name for p in Path("/proc").iterdir())):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"qemu-system") and mac.encode() in cmdline:
            return True
    return False
