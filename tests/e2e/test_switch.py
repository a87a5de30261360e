"""Switching a node's image and back, by two commands and a reset (item d).

``dim node switch`` records the node's new image and gives it a replica of it; ``dim apply``
(``dim lab reload`` in the lab: apply, then ganesha takes the new exports) points the node's
read-write export at that replica; a reset makes the node PXE-boot again, and ``dim serve``
answers its MAC with the new image's kernel and root: no boot file is rewritten by hand.
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

    lab.dim("node", "switch", node, "tiny2")
    lab.reload()
    lab.boot([node])
    assert lab.marker(node).groups() == (node, "tiny2", "ro")
    assert "dim.image=tiny2 " in lab.console(node)
    assert f"/state/nodes/{node}/tiny2" in lab.ok(node, "grep ' /etc ' /proc/mounts")
    status, _ = lab.run(node, "cat /etc/dim-e2e-state")
    assert status != 0  # a fresh replica of tiny2
    lab.ok(node, "echo from-tiny2 > /etc/dim-e2e-state2 && sync")
    assert (lab.replica(node, "tiny2") / "etc/dim-e2e-state2").is_file()
    assert (lab.replica(node, "tiny") / "etc/dim-e2e-state").is_file()  # kept aside

    lab.dim("node", "switch", node, "tiny")
    lab.reload()
    lab.boot([node])
    assert lab.marker(node).groups() == (node, "tiny", "ro")
    assert lab.ok(node, "cat /etc/dim-e2e-state") == "from-tiny\n"
    assert lab.run(node, "cat /etc/dim-e2e-state2")[0] != 0
    # the boots the server recorded: tiny2, then tiny again
    kernels = [ln for ln in lab.log("serve").splitlines() if "10.77.0.13 GET /dim/images/" in ln]
    images = [ln.split("/dim/images/")[1].split("/")[0] for ln in kernels if "vmlinuz" in ln]
    assert images[-3:] == ["tiny", "tiny2", "tiny"]
