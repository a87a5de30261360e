"""PXE boot to the marker, legacy BIOS and UEFI (issue 4, items a and f).

The whole chain, each link seen where it happens: QEMU's iPXE ROM asks dnsmasq (its log:
the iPXE user class, the fixed address, the HTTP boot file), fetches ``boot.ipxe`` and the
node's own script by MAC from ``dim serve`` and then kernel and initrd (serve's log, from the
node's address), the kernel runs with the arguments only the per-MAC script gives
(``dim.node=``, ``dim.mac=``), dim's initramfs mounts the image's live tree read-only over NFS
as the root, and the image prints its marker (the console). On the server's disk, the state DB
records each node's boot.

    CI=true .venv/bin/pytest tests/e2e/test_pxe_boot.py
"""

from __future__ import annotations

import json
import re

import pytest

from dim.lab.qemu import node_macs
from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e

MACS = node_macs(5)


def mounts(console: str) -> dict[str, tuple[str, list[str]]]:
    """What the tiny image's rcS printed of /proc/mounts: path -> (type, options)."""
    found = re.findall(r"^DIM-MOUNT (\S+) (\S+) (\S+)$", console, re.M)
    return {path: (kind, options.split(",")) for path, kind, options in found}


def dhcp_exchange(dnsmasq_log: str, mac: str) -> str:
    """dnsmasq's lines for the transactions of one MAC (it logs with --log-dhcp)."""
    ids = set(re.findall(rf"^dnsmasq-dhcp\[\d+\]: (\d+) \S+\(br0\) .*{mac}", dnsmasq_log, re.M))
    lines = [ln for ln in dnsmasq_log.splitlines() if (ln.split() + ["", ""])[1] in ids]
    return "\n".join(lines)


def last_boot(lab: Lab, node: str) -> dict:
    nodes = json.loads(lab.dim("node", "list", node, "--json").stdout)
    return nodes[0]["last_boot"]


def test_a_node_pxe_boots_through_ipxe_dhcp_and_dim_serve_to_its_marker(
    lab: Lab, fleet: Fleet
) -> None:
    console = fleet.consoles["node01"]
    ip = "10.77.0.11"
    # the console: the image's marker, the kernel arguments that only the per-MAC script adds
    assert re.search(r"^DIM-NODE-UP node01 tiny root=ro$", console, re.M), console[-2000:]
    command_line = re.search(r"Command line: (.*)$", console, re.M)
    assert command_line, console[:2000]
    assert f"dim.node=node01 dim.mac={MACS['node01']}" in command_line.group(1)
    steps = re.findall(r"^dim: step (\d)/9 ", console, re.M)
    assert steps == [str(n) for n in range(1, 10)]
    assert not re.search(r"^dim: .* failed", console, re.M)
    kind, options = mounts(console)["/"]
    assert kind == "nfs4" and "ro" in options and f"clientaddr={ip}" in options

    # DHCP: iPXE (user class) got its fixed address, host name and dim serve's script
    exchange = dhcp_exchange(lab.log("dnsmasq"), MACS["node01"])
    assert "user class: iPXE" in exchange
    assert re.search(rf"DHCPACK\(br0\) {ip} {MACS['node01']} node01", exchange)
    assert "option: 67 bootfile-name  http://10.77.0.1:8080/boot.ipxe" in exchange
    # udhcpc in the initramfs asked again and got the same address
    assert "vendor class: udhcp" in exchange

    # dim serve: the entry script, the node's own script by MAC, kernel and initrd, in order
    served = re.findall(rf"^dim serve: {re.escape(ip)} GET (\S+) (\d+)", lab.log("serve"), re.M)
    mac = MACS["node01"].replace(":", "-")
    expected = [
        ("/boot.ipxe", "200"),
        (f"/dim/nodes/{mac}.ipxe", "200"),
        ("/dim/images/tiny/1/vmlinuz", "200"),
        ("/dim/images/tiny/1/initrd.img", "200"),
    ]
    assert served[:4] == expected

    # the server's disk: the boot is recorded in the state DB, with the version served
    boot = last_boot(lab, "node01")
    assert (boot["image"], str(boot["version"]), boot["client"]) == ("tiny", "1", ip)


def test_legacy_bios_and_uefi_both_boot_to_the_marker(lab: Lab, fleet: Fleet) -> None:
    for node, arch in (("node02", "00000"), ("node04", "00007")):
        console = fleet.consoles[node]
        assert re.search(rf"^DIM-NODE-UP {node} tiny root=ro$", console, re.M), console[-2000:]
        # the firmware says what it is in the DHCP vendor class: 0 BIOS, 7 x86-64 UEFI
        exchange = dhcp_exchange(lab.log("dnsmasq"), MACS[node])
        assert f"vendor class: PXEClient:Arch:{arch}:" in exchange, exchange
        assert last_boot(lab, node)["image"] == "tiny"
    # iPXE's EFI build prints to the serial console, and the kernel is started by its EFI stub
    uefi = fleet.consoles["node04"]
    assert "iPXE" in uefi and "EFI stub" in uefi
    assert f"dim/nodes/{MACS['node04'].replace(':', '-')}.ipxe... ok" in uefi
    assert "EFI stub" not in fleet.consoles["node02"]
    print("seconds to the marker:", {n: round(t, 1) for n, t in fleet.seconds.items()})
