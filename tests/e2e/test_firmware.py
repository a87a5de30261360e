"""Nodes without an iPXE option ROM boot with dim's defaults: UEFI PXE and UEFI HTTP boot (11).

The node's NIC has no option ROM (QEMU ``romfile=``), so OVMF's own network stack boots it, as
on a UEFI server: with ``--firmware uefi-pxe`` it asks DHCP as a PXE client (option 93 = 7) and
gets ``snponly.efi`` (iPXE, from Debian's ``ipxe`` package, installed by ``dim apply``) over
TFTP; with ``uefi-http`` (OVMF's PXE switched off) it asks as an HTTP client (option 60
``HTTPClient``, option 93 = 16) and gets the same loader as a URL on ``dim serve``. Either way
iPXE then asks DHCP again as iPXE and the boot goes on as usual. node05 boots the tiny image
through each, with /etc kept across the reboots.

    CI=true .venv/bin/pytest tests/e2e/test_firmware.py
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Lab

pytestmark = pytest.mark.e2e

NODE = "node05"
FILE = "/etc/dim-e2e-firmware"


def test_uefi_pxe_and_uefi_http_boot_without_an_option_rom_reach_the_marker_and_keep_etc(
    lab: Lab,
) -> None:
    lab.dim("node", "switch", NODE, "tiny")
    lab.reload()
    try:
        pxe = lab.boot([NODE], firmware="uefi-pxe")[NODE]
        console = lab.console(NODE)
        assert ">>Start PXE over IPv4" in console, lab.tail(NODE)
        assert re.search(r"NBP filename is \S*snponly\.efi", console), lab.tail(NODE)
        assert "iPXE initialising devices" in console
        assert lab.marker(NODE).groups() == (NODE, "tiny", "ro")
        lab.ok(NODE, f"echo {NODE} > {FILE} && sync")

        lab.boot([NODE], firmware="uefi-pxe")  # a reboot the same way
        assert lab.ok(NODE, f"cat {FILE}") == f"{NODE}\n"

        http = lab.boot([NODE], firmware="uefi-http")[NODE]
        console = lab.console(NODE)
        assert ">>Start HTTP Boot over IPv4" in console, lab.tail(NODE)
        assert ">>Start PXE over IPv4" not in console
        assert re.search(r"URI: http://10\.77\.0\.1:8080/\S*snponly\.efi", console), lab.tail(NODE)
        assert lab.marker(NODE).groups() == (NODE, "tiny", "ro")
        assert lab.ok(NODE, f"cat {FILE}") == f"{NODE}\n"
        print(f"{NODE}: marker {pxe:.1f} s after power-on by UEFI PXE, {http:.1f} s by HTTP boot")
    finally:
        lab.run(NODE, f"rm -f {FILE}")
        lab.power_off([NODE])
