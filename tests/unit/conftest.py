"""Fixtures that build real layouts and state folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from dim.cli import main
from dim.layout.model import Inventory
from dim.layout.parser import parse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SMALL = b"""<?xml version="1.0"?>
<cluster name="t" domain="t.example">
  <network name="boot" subnet="10.10.0.0/24" gateway="10.10.0.1" dns="10.10.0.2"/>
  <network name="bmc" subnet="10.11.0.0/24"/>
  <server name="srv" address="10.10.0.2" dhcp="dnsmasq" nfs="ganesha"/>
  <image name="alpha"><persist path="/etc"/><volatile path="/tmp"/></image>
  <image name="beta"><persist path="/var"/></image>
  <group name="compute" nodes="c[01-04]" image="alpha">
    <interface network="boot" ip="10.10.0.{10+n1}"/>
    <bmc driver="ipmi" address="10.11.0.{10+n1}" credentials="default"/>
    <node name="c04" image="beta"/>
  </group>
  <group name="gpu" nodes="g[1-2]" image="beta">
    <interface network="boot" ip="10.10.0.{100+i}"/>
  </group>
</cluster>
"""
# SMALL whose server sends PXELINUX to BIOS clients and GRUB to UEFI ones: each node with a MAC
# gets a link per MAC for both (dim.services.loaders.link_rule); with SMALL's default loaders,
# all iPXE, none.
LINKED = SMALL.replace(
    b'<server name="srv"', b'<server bios-loader="lpxelinux.0" uefi-loader="grubx64.efi" name="srv"'
)


# A failover set of two servers with loaders and ports of their own, and a lone server beside it.
PAIR = b"""<?xml version="1.0"?>
<cluster name="ha" domain="ha.example">
  <network name="boot" subnet="10.20.0.0/24" gateway="10.20.0.254"/>
  <network name="other" subnet="10.21.0.0/24"/>
  <server name="srv1" address="10.20.0.1" own-address="10.20.0.11" interface="eth0"
          dhcp="dnsmasq" nfs="ganesha"/>
  <server name="srv2" address="10.20.0.2" own-address="10.20.0.12" interface="eth1"
          dhcp="dnsmasq" nfs="ganesha" bios-loader="lpxelinux.0"
          uefi-loader="grubx64.efi" uefi-http-loader="ipxe.efi" secure-boot-loader="sb.efi"/>
  <server name="solo" address="10.20.0.3" dhcp="dnsmasq" nfs="ganesha"/>
  <failover name="pair" servers="srv[1-2]"/>
  <image name="alpha"><persist path="/etc"/></image>
  <image name="beta"><persist path="/var"/></image>
  <group name="a" nodes="a[1-2]" image="alpha" server="srv1">
    <interface network="boot" ip="10.20.0.{100+n1}"/>
    <node name="a2" secure-boot="yes"/>
  </group>
  <group name="b" nodes="b[1-2]" image="beta" server="srv2">
    <interface network="boot" ip="10.20.0.{110+n1}"/>
    <node name="b2" secure-boot="yes"/>
  </group>
  <group name="c" nodes="c1" image="alpha" server="solo">
    <interface network="boot" ip="10.20.0.{120+n1}"/>
  </group>
</cluster>
"""
PAIR_MACS = {
    ("a1", "boot"): "52:54:00:20:00:01",
    ("a2", "boot"): "52:54:00:20:00:02",
    ("b1", "boot"): "52:54:00:20:01:01",
    ("b2", "boot"): "52:54:00:20:01:02",
    ("c1", "boot"): "52:54:00:20:02:01",
}


@pytest.fixture
def pair_inventory() -> Inventory:
    """`PAIR` with every node's MAC recorded."""
    return Inventory(parse(PAIR, "pair.xml"), dict(PAIR_MACS), {})


@pytest.fixture
def small_xml() -> bytes:
    return SMALL


@pytest.fixture
def small_cluster():
    return parse(SMALL, "small.xml")


@pytest.fixture
def small_inventory(small_cluster) -> Inventory:
    macs = {
        ("c01", "boot"): "52:54:00:00:00:01",
        ("c02", "boot"): "52:54:00:00:00:02",
        ("c04", "boot"): "52:54:00:00:00:04",
        ("g1", "boot"): "52:54:00:00:01:01",
    }
    return Inventory(small_cluster, macs, {"c02": "beta"})


@pytest.fixture
def linked_inventory(small_inventory) -> Inventory:
    """`small_inventory` over `LINKED`: PXELINUX and GRUB links per MAC."""
    return Inventory(parse(LINKED, "small.xml"), small_inventory.macs, small_inventory.images)


@pytest.fixture
def layout_file(tmp_path) -> Path:
    path = tmp_path / "cluster.xml"
    path.write_bytes(SMALL)
    return path


@pytest.fixture
def dim(layout_file, tmp_path, capsys):
    """The dim command in-process on ``layout_file``: (status, stdout, stderr) of a call."""
    state = tmp_path / "state"

    def run(*args):
        status = main(["--config", str(layout_file), "--state", str(state), *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run
