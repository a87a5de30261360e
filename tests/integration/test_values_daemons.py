"""The edges of what cluster.xml accepts, rendered and read by the real DHCP daemons.

The checks of :mod:`dim.names` are allow-lists; this test holds them to the daemons: a layout
made of the longest and oddest values they let through (63-character labels, dotted host names,
'_' and '.' in network names, boot files in sub-folders with '+', '~', '=' and '@') renders
files that dnsmasq, Kea and ISC dhcpd each accept in their own test mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.apply import PACKAGES, validate
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.conftest import require_binary

pytestmark = pytest.mark.integration

PREFIX = "n" + "-x9" * 19  # 58 characters: <node>-bmc is a 63-character label
DOMAIN = "d" * 63 + ".x-1.example"
EDGES = f"""<?xml version="1.0"?>
<cluster name="c_1.x-y" domain="{DOMAIN}">
  <network name="boot_net.1" subnet="10.70.0.0/24" gateway="10.70.0.1" dns="10.70.0.1"
           domain="{"e" * 63}.example"/>
  <network name="ib-2" subnet="10.71.0.0/24"/>
  <network name="bmc" subnet="10.72.0.0/24"/>
  <server name="img-1.srv" address="10.70.0.2" dhcp="@dhcp" nfs="ganesha" interface="@iface"
          tftp-root="/srv/dim+t/tftp@1" http-root="/srv/dim~h/http=1"
          bios-loader="boot/x86_64+bios/pxelinux.0" uefi-loader="efi/grub~x64=1@a.efi"/>
  <image name="rhel9.4_x-1" nfs-options="vers=4.2,proto=tcp,actimeo=1,nolock"
         kernel-args="console=ttyS0,115200n8 rd.break systemd.unit=getty@tty1 a=%x~y/z:1">
    <persist path="/etc"/> <volatile path="/var/tmp+x"/> <keepout path="/etc/ssh/ssh_host_*"/>
  </image>
  <group name="g_1" nodes="{PREFIX}[1-3]" image="rhel9.4_x-1">
    <interface network="boot_net.1" ip="10.70.0.{{10+i}}"/>
    <interface network="ib-2" ip="10.71.0.{{10+i}}" hostname="ib.{{name}}"/>
    <bmc driver="ipmi" address="10.72.0.{{10+i}}"/>
  </group>
</cluster>
"""


@pytest.mark.parametrize("flavour", ["dnsmasq", "kea", "isc"])
def test_the_daemons_accept_the_oddest_values_the_layout_accepts(flavour, tmp_path):
    program = {"dnsmasq": "dnsmasq", "kea": "kea-dhcp4", "isc": "dhcpd"}[flavour]
    require_binary(program, PACKAGES[flavour])
    data = EDGES.replace("@dhcp", flavour).replace("@iface", "bond0.100")
    cluster = parse(data.encode(), "edges.xml")
    assert len(cluster.nodes[0].name) == 59
    macs = {
        (n.name, n.boot.network): f"52:54:00:70:00:{k:02x}" for k, n in enumerate(cluster.nodes)
    }
    context = RenderContext(Inventory(cluster, macs, {}), "img-1.srv", Path("/var/lib/dim"))
    files = render_all(context)
    validated, skipped = validate(files, [flavour], tmp_path)
    assert (validated, skipped) == ([flavour], [])
