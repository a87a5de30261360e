"""An aarch64 node beside an x86-64 one, booting from the same server (issue 17).

A lab of its own, ``dim lab up --arch x86_64,aarch64 --nodes 1`` (namespace ``dimarm<pid>``,
no BMCs: the session's lab has them): node01 boots as every lab node does (SeaBIOS, iPXE's
ROM), arm01 runs ``qemu-system-aarch64 -M virt`` (TCG) with Debian's AAVMF UEFI and boots by
the firmware's own PXE: DHCP with option 93 = 11, Debian's signed arm64 GRUB over TFTP, which
reads its configuration by the node's MAC and loads the arm64 kernel and initramfs of the
image ``tiny-aarch64`` (Debian's arm64 busybox and kernel) over TFTP; the initramfs mounts the
image's live tree over NFS from the same ganesha. Then: a change to each image reaches its
running node within seconds, arm01 keeps its own changes across a reboot, and ``dim node
switch`` refuses it an x86-64 image.

    CI=true .venv/bin/pytest tests/e2e/test_aarch64.py -s
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from dim import architectures
from tests.conftest import require, require_binary
from tests.e2e.conftest import Lab, lab_up, require_e2e

pytestmark = pytest.mark.e2e

WITHIN = 5.0  # seconds from the end of `dim image exec` to the node seeing the change
BOOT_TIMEOUT = 300.0  # AAVMF under TCG beside x86-64's nodes: about 30 s alone, on 2 cores


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_e2e()
    facts = architectures.named("aarch64")
    require_binary(facts.qemu_system, "qemu-system-arm")
    require(os.path.exists(facts.firmware_code), f"apt-get install {facts.firmware_package}")
    require(
        os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"),
        "qemu-user-static's qemu-aarch64 is not registered with binfmt_misc",
    )
    folder = tmp_path_factory.mktemp("armlab")
    with lab_up(
        folder, f"dimarm{os.getpid()}", nodes=1, bmcs=False, arches=("x86_64", "aarch64")
    ) as handle:
        yield handle


@pytest.fixture(scope="module")
def booted(lab: Lab) -> dict[str, float]:
    """node01 and arm01 powered on together, each at its marker: seconds to it."""
    seconds = lab.boot(["node01", "arm01"], timeout=BOOT_TIMEOUT)
    print(f"to the marker: {seconds}")
    return seconds


def test_an_x86_64_and_an_aarch64_node_boot_from_one_server(lab: Lab, booted: dict) -> None:
    console = lab.console("arm01")
    # the firmware's own PXE, sent Debian's arm64 GRUB for option 93 = 11
    assert "NBP filename is grubaa64.efi" in console, lab.tail("arm01")
    assert "Welcome to GRUB!" in console
    assert lab.ok("arm01", "uname -m") == "aarch64\n"
    assert lab.ok("node01", "uname -m") == "x86_64\n"
    for node, image in (("node01", "tiny"), ("arm01", "tiny-aarch64")):
        marker = lab.marker(node)
        assert (marker.group(1), marker.group(2)) == (node, image), marker.group()
        assert marker.group(3) == "ro", marker.group()  # its root read-only
        assert f"/images/{image}/live / nfs4 ro," in lab.ok(node, "cat /proc/mounts")
    listed = json.loads(lab.dim("image", "list", "--json").stdout)
    arches = {image["name"]: image["arch"] for image in listed}
    assert (arches["tiny"], arches["tiny-aarch64"]) == ("x86_64", "aarch64")


def test_a_change_to_each_image_reaches_its_running_node_within_seconds(
    lab: Lab, booted: dict
) -> None:
    path = "/usr/share/dim-e2e/arch"
    for node in ("node01", "arm01"):
        assert lab.run(node, f"cat {path}")[0] != 0
    # the commands run in each image's own binaries: arm64 ones through qemu-user
    change = f"mkdir -p /usr/share/dim-e2e && uname -m > {path}"
    lab.dim("image", "exec", "tiny-aarch64", "--", "sh", "-c", change)
    lab.dim("image", "exec", "tiny", "--", "sh", "-c", change)
    changed = time.monotonic()
    lab.wait_for("arm01", f"cat {path}", "aarch64\n", timeout=WITHIN)
    lab.wait_for("node01", f"cat {path}", "x86_64\n", timeout=WITHIN)
    seen = time.monotonic() - changed
    assert seen <= WITHIN, f"the nodes saw the changes after {seen:.1f} s"
    print(f"both nodes saw their image's change {seen:.1f} s after the last dim image exec")


def test_the_aarch64_node_keeps_its_own_changes_across_a_reboot(lab: Lab, booted: dict) -> None:
    lab.ok("arm01", "echo kept > /etc/dim-e2e-kept && echo gone > /tmp/dim-e2e-gone && sync")
    replica = lab.replica("arm01", "tiny-aarch64")
    assert (replica / "etc/dim-e2e-kept").read_text() == "kept\n"
    seconds = lab.boot(["arm01"], timeout=BOOT_TIMEOUT)  # a reset: AAVMF, PXE, GRUB again
    print(f"arm01 again at its marker after {seconds['arm01']:.1f} s")
    assert lab.ok("arm01", "cat /etc/dim-e2e-kept") == "kept\n"
    assert lab.run("arm01", "cat /tmp/dim-e2e-gone")[0] != 0


def test_switch_refuses_the_aarch64_node_an_x86_64_image_and_changes_nothing(
    lab: Lab, booted: dict
) -> None:
    before = lab.dim("node", "list", "--json").stdout
    refused = lab.dim("node", "switch", "arm01", "tiny", check=False)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == (
        "dim: error: arm01 (group aarch64, aarch64) cannot boot image tiny, "
        "whose binaries are x86_64"
    )
    assert lab.dim("node", "list", "--json").stdout == before
    assert lab.ok("arm01", "uname -m") == "aarch64\n"  # and it runs on
