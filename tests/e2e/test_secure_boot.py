"""A Secure Boot node boots a Debian image through Debian's signed chain (issue 11).

OVMF built with Secure Boot, Microsoft's keys enrolled (``--firmware uefi-secureboot``), no NIC
option ROM: only a loader signed by Microsoft starts. The layout declares the node
``secure-boot="yes"``: DHCP sends it ``shimx64.efi`` by its MAC, and ``dim apply`` installs
Debian's Microsoft-signed shim, with Debian's signed network GRUB as ``grubx64.efi`` and
MokManager beside it, in the TFTP root; shim checks GRUB
against Debian's certificate, GRUB checks the kernel through shim (the image's own Debian
kernel, signed) and loads dim's initramfs, which nothing checks. Then the kernel's own rules:
locked down (integrity), modules only with a valid signature: a Debian module loads, the same
module with its signature cut off is refused. /root is kept across a reboot the same way.

    CI=true .venv/bin/pytest tests/e2e/test_secure_boot.py
"""

from __future__ import annotations

import lzma
import re
import struct
from pathlib import Path

import pytest

from tests.e2e.conftest import Lab

pytestmark = pytest.mark.e2e

NODE = "node05"
IMAGE = "debian12"
FILE = "/root/dim-e2e-secure-boot"
UNSIGNED = "/root/dummy-unsigned.ko"
SIGNATURE_MAGIC = b"~Module signature appended~\n"
# efivarfs: 4 bytes of attributes, then the value; SecureBoot is one byte, 1 when on
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def without_signature(module: bytes) -> bytes:
    """The module as built, before the kernel's sign-file appended its signature: the
    signature, a 12-byte ``struct module_signature`` (its length last, big-endian) and the
    magic string are cut off."""
    assert module.endswith(SIGNATURE_MAGIC), "the module is not signed"
    length = struct.unpack(">I", module[-len(SIGNATURE_MAGIC) - 4 : -len(SIGNATURE_MAGIC)])[0]
    return module[: len(module) - len(SIGNATURE_MAGIC) - 12 - length]


def module_file(tree: Path, release: str, name: str) -> bytes:
    folder = tree / "usr/lib/modules" / release / "kernel/drivers/net"
    plain = folder / f"{name}.ko"
    if plain.exists():
        return plain.read_bytes()
    return lzma.decompress((folder / f"{name}.ko.xz").read_bytes())  # Debian 13 compresses


@pytest.mark.timeout(900)
def test_secure_boot_node_boots_debian_through_shim_grub_and_its_signed_kernel_locked_down(
    lab: Lab,
) -> None:
    lab.dim("node", "switch", NODE, IMAGE)
    declared = f'  <node name="{NODE}" secure-boot="yes"/>\n  </group>'
    with lab.layout_changed("</group>", declared):
        try:
            seconds = lab.boot([NODE], firmware="uefi-secureboot")[NODE]
            console = lab.console(NODE)
            assert re.search(r"NBP filename is shimx64\.efi", console), lab.tail(NODE)
            assert "Fetching Netboot Image grubx64.efi" in console  # shim, checking GRUB
            assert "EFI stub: UEFI Secure Boot is enabled." in console  # the kernel GRUB let in
            assert "Kernel is locked down from EFI Secure Boot" in console
            assert lab.marker(NODE).groups() == (NODE, IMAGE, "ro")
            lab.shell(NODE)

            assert lab.ok(NODE, f"od -An -tu1 {SECURE_BOOT_VAR}").split()[-1] == "1"
            lockdown = lab.ok(NODE, "cat /sys/kernel/security/lockdown").strip()
            assert lockdown == "none [integrity] confidentiality"

            # a Debian module of the running kernel loads; the same bytes unsigned do not
            release = lab.ok(NODE, "uname -r").strip()
            signed = module_file(lab.live(IMAGE), release, "dummy")
            (lab.replica(NODE, IMAGE) / UNSIGNED.lstrip("/")).write_bytes(without_signature(signed))
            status, said = lab.run(NODE, f"insmod {UNSIGNED}")
            assert status != 0 and "Key was rejected by service" in said, said
            refused = lab.ok(NODE, "dmesg | grep -c 'Loading of unsigned module is rejected'")
            assert int(refused) >= 1  # (the kernel's own lines are left out of a command's output)
            lab.ok(NODE, "modprobe dummy")
            assert re.search(r"^dummy\s", lab.ok(NODE, "cat /proc/modules"), re.M)

            lab.ok(NODE, f"echo {NODE} > {FILE} && sync")
            again = lab.boot([NODE], firmware="uefi-secureboot")[NODE]  # a reboot the same way
            assert "Kernel is locked down from EFI Secure Boot" in lab.console(NODE)
            lab.shell(NODE)
            assert lab.ok(NODE, f"cat {FILE}") == f"{NODE}\n"
            print(f"{NODE}: {IMAGE} by Secure Boot, marker {seconds:.1f} s, again {again:.1f} s")
        finally:
            lab.run(NODE, f"rm -f {FILE} {UNSIGNED}")
            lab.power_off([NODE])
