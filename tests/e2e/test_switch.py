"""Switching a booted node's image and back takes two commands: switch, then reset (issue 12).

``dim node switch`` records the node's new image and gives it a replica of it; ``dim power
reset``, through the node's simulated IPMI BMC (``dim lab up`` starts one per node), makes it
PXE-boot again, and ``dim serve`` answers its MAC with the new image's kernel and root. Nothing
else: no ``dim apply``, no daemon reloaded, since the NFS exports do not depend on which image
a node boots (the image store to every node, each node's folder of replicas to that node).
Switching back finds the replica the node had, with what it wrote there.

    CI=true .venv/bin/pytest tests/e2e/test_switch.py
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e


def test_a_switch_and_a_reset_boot_the_other_image_and_switching_back_finds_the_old_state(
    lab: Lab, fleet: Fleet
) -> None:
    node = "node03"
    assert lab.marker(node).group(2) == "tiny"
    lab.ok(node, "echo from-tiny > /etc/dim-e2e-state && sync")
    assert (lab.replica(node, "tiny") / "etc/dim-e2e-state").read_text() == "from-tiny\n"

    exports = lab.state.parent / "root/etc/ganesha/ganesha.conf"
    before = exports.read_text()
    ganesha = lab.daemon_pid("ganesha")

    said = lab.dim("node", "switch", node, "tiny2").stdout
    listed = lab.dim("node", "list", node).stdout.splitlines()[1].split()
    assert listed[4] == "tiny2" and listed[-3].startswith("tiny/")  # next, and booted
    lab.dim("power", "reset", node)
    lab.wait([node])
    assert lab.marker(node).groups() == (node, "tiny2", "ro"), said
    assert exports.read_text() == before and lab.daemon_pid("ganesha") == ganesha
    assert "dim.image=tiny2 " in lab.console(node)
    assert f"/state/nodes/{node}/tiny2" in lab.ok(node, "grep ' /etc ' /proc/mounts")
    status, _ = lab.run(node, "cat /etc/dim-e2e-state")
    assert status != 0  # a fresh replica of tiny2
    lab.ok(node, "echo from-tiny2 > /etc/dim-e2e-state2 && sync")
    assert (lab.replica(node, "tiny2") / "etc/dim-e2e-state2").is_file()
    assert (lab.replica(node, "tiny") / "etc/dim-e2e-state").is_file()  # kept aside

    lab.dim("node", "switch", node, "tiny")
    lab.dim("power", "reset", node)
    lab.wait([node])
    assert lab.marker(node).groups() == (node, "tiny", "ro")
    assert lab.ok(node, "cat /etc/dim-e2e-state") == "from-tiny\n"
    assert lab.run(node, "cat /etc/dim-e2e-state2")[0] != 0
    # the boots the server recorded: tiny2, then tiny again
    kernels = [ln for ln in lab.log("serve").splitlines() if "10.77.0.13 GET /dim/images/" in ln]
    images = [ln.split("/dim/images/")[1].split("/")[0] for ln in kernels if "vmlinuz" in ln]
    assert images[-3:] == ["tiny", "tiny2", "tiny"]
