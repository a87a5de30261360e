"""IPMI against OpenIPMI's ipmi_sim and against dim's BMC on pyghmi's Bmc class (bmcsim).

ipmi_sim keeps the chassis state through a small chassis_control script that writes files
(power, boot, resets), so every request dim makes is checked where it lands. bmcsim starts
and stops a dummy process (``sleep``) for power on and off, as it will a QEMU node.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from tests.integration.power_sims import (
    PASSWORD,
    Lab,
    bmcsim,
    entry,
    fanout_seconds,
    free_port,
    ipmi_sim,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with ipmi_sim(tmp_path_factory.mktemp("ipmi_sim")) as running:
        yield running


@pytest.fixture
def lab(tmp_path, capsys) -> Lab:
    return Lab(tmp_path, capsys)


def test_status_on_off_reset_soft_and_boot_device_land_on_ipmi_sim(sim, lab):
    lab.layout({"i1": ("ipmi", sim.address, "ipmi")})
    lab.credentials(entry("ipmi"))
    assert lab.dim("power", "off", "i1")[0] == 0
    assert lab.dim("power", "status", "i1")[1].split() == ["off", "i1"]
    status, out, err = lab.dim("power", "on", "i1")
    assert status == 0, err
    assert out.split() == ["on", "requested", "i1"] and sim.state("power") == "1"
    assert lab.dim("power", "status", "i1")[1].split() == ["on", "i1"]
    assert lab.dim("power", "reset", "i1")[0] == 0 and sim.state("resets") != ""
    status, out, err = lab.dim("bootdev", "i1", "pxe")
    assert status == 0, err
    assert out.split() == ["pxe", "once", "i1"] and sim.state("boot") == "pxe"
    assert lab.dim("bootdev", "i1", "disk", "--persistent")[0] == 0
    assert lab.dim("power", "soft", "i1")[0] == 0 and sim.state("power") == "0"
    # A cycle of a node that is off switches it on (many BMCs refuse to cycle it).
    assert lab.dim("power", "cycle", "i1")[0] == 0 and sim.state("power") == "1"


def test_wrong_password_dead_port_and_garbage_are_per_node_errors(sim, lab):
    dead = free_port(socket.SOCK_DGRAM)
    garbage = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    garbage.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def answer_garbage() -> None:
        garbage.settimeout(0.1)
        while not stop.is_set():
            try:
                _data, peer = garbage.recvfrom(2048)
            except OSError:
                continue
            garbage.sendto(b"\x06\x00\xff\x07garbage that is not RMCP+", peer)

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        lab.layout(
            {
                "good": ("ipmi", sim.address, "ipmi"),
                "dead": ("ipmi", f"127.0.0.1:{dead}", "ipmi"),
                "junk": ("ipmi", f"127.0.0.1:{garbage.getsockname()[1]}", "ipmi"),
            }
        )
        lab.credentials(entry("ipmi"))
        # 3 s: with a dead BMC in the same process, pyghmi was seen taking up to 1.7 s for a
        # live one (its sessions share one I/O thread).
        status, out, err = lab.dim("power", "status", "good,dead,junk", "--timeout", "3")
        # dead and junk wait out their timeouts side by side, not one after the other
        assert fanout_seconds(err) < 2 * 3
        assert status == 1
        state, node = out.splitlines()[0].split()
        assert state in ("on", "off") and node == "good"
        assert "error (timeout)  dead,junk: no answer within 3 s" in out
        assert "Traceback" not in out + err
    finally:
        stop.set()
        thread.join()
        garbage.close()
    # A wrong password: a quick, clear refusal (alone: pyghmi routes two concurrent logins to
    # one BMC with different passwords through one socket and may mix them up).
    lab.layout({"good": ("ipmi", sim.address, "bad")})
    lab.credentials(entry("bad", password="not-the-password-42"))
    status, out, err = lab.dim("power", "status", "good", "--json")
    assert status == 1
    assert '"error": "auth"' in out and "Incorrect password" in out
    assert "not-the-password-42" not in out + err and PASSWORD not in out + err
    # and in the text people read, on stdout and stderr
    status, out, err = lab.dim("power", "status", "good")
    assert status == 1 and "error (auth)  good: " in out and "Incorrect password" in out
    assert "not-the-password-42" not in out + err and PASSWORD not in out + err


def _running(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"^sleep {marker}$"], capture_output=True, text=True)
    return found.stdout.split()


def test_power_through_a_pyghmi_bmc_starts_and_stops_the_node_process(tmp_path, lab):
    marker = f"{4000 + free_port() % 1000}.{time.monotonic_ns() % 1000}"
    with bmcsim(tmp_path / "bmc", ["sleep", marker]) as bmc:
        lab.layout({"q1": ("ipmi", bmc.address, "ipmi")})
        lab.credentials(entry("ipmi"))
        assert lab.dim("power", "status", "q1")[1].split() == ["off", "q1"]
        assert _running(marker) == []
        status, out, err = lab.dim("power", "on", "q1")
        assert status == 0, err
        first = _running(marker)
        assert len(first) == 1
        assert lab.dim("power", "status", "q1")[1].split() == ["on", "q1"]
        assert lab.dim("bootdev", "q1", "pxe")[0] == 0
        assert lab.dim("power", "reset", "q1")[0] == 0
        second = _running(marker)
        assert len(second) == 1 and second != first
        assert lab.dim("power", "off", "q1")[0] == 0
        assert _running(marker) == []
        assert lab.dim("power", "status", "q1")[1].split() == ["off", "q1"]
    assert _running(marker) == []
