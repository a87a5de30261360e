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
