"""A Debian minbase image with systemd boots to multi-user from the read-only NFS root (g).

The lab's ``debian`` image (`dim.lab.images.debian_tree`: debootstrap's minbase, systemd-sysv,
udev and kmod installed by ``dim image exec``, the lab kernel, a unit printing the marker after
multi-user.target, a root autologin getty on ttyS0) persists /etc, /var and /root in the
node's replica, with /tmp and /var/tmp on tmpfs.

    CI=true .venv/bin/pytest tests/e2e/test_debian.py
"""

from __future__ import annotations

import re

import pytest

from dim.lab.processes import sleep_until
from tests.e2e.conftest import BOOT_TIMEOUT, Lab

pytestmark = pytest.mark.e2e

NODE = "node05"


# The slowest test of the suite: on a loaded 2-core machine the lab's start (the first test
# pays for it), two systemd boots under TCG and their waits can pass the 600 s default.
@pytest.mark.timeout(1200)
def test_debian_with_systemd_reaches_multi_user_and_keeps_var_across_a_reboot(lab: Lab) -> None:
    lab.dim("node", "switch", NODE, "debian")
    lab.reload()
    try:
        seconds = lab.boot([NODE])[NODE]
        assert lab.marker(NODE).groups() == (NODE, "debian", "ro")
        # the marker's unit may finish before multi-user.target does (on a loaded machine a
        # job such as e2scrub_reap still runs then): wait for the target, within a boot's time
        reached = r"Reached target .*multi-user\.target"
        assert sleep_until(lambda: re.search(reached, lab.console(NODE)), BOOT_TIMEOUT), lab.tail(
            NODE
        )
        lab.shell(NODE, timeout=BOOT_TIMEOUT)
        target = lab.ok(NODE, "systemctl is-active multi-user.target").strip()
        assert target.splitlines()[-1] == "active", f"{target}\n{lab.tail(NODE)}"
        state = lab.ok(NODE, "systemctl is-system-running || true").strip()
        assert state.splitlines()[-1] in ("running", "degraded"), state
        assert lab.ok(NODE, "cat /proc/1/comm").strip() == "systemd"
        # the lab's nodes have a hardware random source (udev loaded virtio_rng for it)
        rng = lab.ok(NODE, "cat /sys/class/misc/hw_random/rng_current").strip()
        assert rng.splitlines()[-1].startswith("virtio_rng"), rng
        mounts = lab.ok(NODE, "grep -E ' (/|/var|/etc|/tmp) ' /proc/mounts")
        assert re.search(r"^\S+ / nfs4 ro,", mounts, re.M), mounts
        assert re.search(r"^\S+ /var nfs4 rw,", mounts, re.M), mounts
        lab.ok(NODE, "echo kept > /var/lib/dim-e2e && sync")
        replica = lab.replica(NODE, "debian")
        assert (replica / "var/lib/dim-e2e").read_text() == "kept\n"
        assert not (lab.live("debian") / "var/lib/dim-e2e").exists()

        lab.boot([NODE])
        lab.marker(NODE)
        lab.shell(NODE, timeout=BOOT_TIMEOUT)
        assert lab.ok(NODE, "cat /var/lib/dim-e2e") == "kept\n"
        print(f"{NODE}: debian with systemd at its marker {seconds:.1f} s after power-on")
    finally:
        lab.power_off([NODE])
