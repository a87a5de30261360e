"""The limits dim sizes for 2,000 nodes (dim.services.limits), read by the real dnsmasq.

``dhcp-lease-max`` and ``tftp-max`` appear only past dnsmasq's defaults; its own test mode must
accept them, in the DHCP server's file and in the TFTP-only file beside Kea. And the reason
for the first, shown by dnsmasq serving leases in the lab's namespaces. nfs-ganesha, which has
no test mode, starts on ``RPC_Max_Connections`` for 520 nodes and logs no configuration error.
"""

from __future__ import annotations

import re
import time

import pytest

from dim.cli import main
from dim.errors import LabError
from dim.lab.netns import segment
from dim.layout.parser import parse
from dim.services.apply import validate
from dim.services.nfs import GANESHA_CONF
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.conftest import require, require_binary, require_root
from tests.doubles.dhcp import NoLeaseError
from tests.integration.test_dhcp_daemons import MACS, served
from tests.integration.test_nfs_ganesha import VFS_FSAL, privately, wait_for_nfs
from tests.unit.services.test_limits import racks

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("dhcp", "service"), [("dnsmasq", "dnsmasq"), ("kea", "tftp")])
def test_dnsmasq_accepts_the_limits_sized_for_2000_nodes(dhcp, service, tmp_path):
    require_binary("dnsmasq", "dnsmasq")
    files = render_all(RenderContext(racks(dhcp), "srv", tmp_path / "state"))
    text = b"".join(f.content for f in files if f.service == service and f.content)
    assert b"tftp-max=4000" in text
    assert (b"dhcp-lease-max=4000" in text) == (dhcp == "dnsmasq")
    assert validate(files, [service], tmp_path) == ([service], [])


def test_a_reserved_address_takes_one_of_dnsmasqs_leases_so_past_the_limit_a_node_gets_none(
    tmp_path,
):
    """Why dhcp-lease-max grows with the reservations: dnsmasq counts reserved leases too.

    dim's three-node site with the limit lowered from 1,000 to 2: the third node, reserved
    like the others, is offered its address and refused it at its request ("no leases left"),
    over and over, as the 1,001st would be at the default: udhcpc never gets a lease and loops
    until the test's 11 s limit.
    """
    with served("dnsmasq", tmp_path) as site:
        conf = site.root / "etc/dnsmasq.d/dim.conf"
        conf.write_text(conf.read_text() + "dhcp-lease-max=2\n")
        site.serve()
        assert site.ask(MACS["node01"]).ip == "10.77.0.11"
        assert site.ask(MACS["node02"]).ip == "10.77.0.12"
        with pytest.raises((NoLeaseError, LabError)):
            site.ask(MACS["node03"], timeout=1)
    log = (tmp_path / "dnsmasq.log").read_text()
    assert f"DHCPNAK(br0) 10.77.0.13 {MACS['node03']} no leases left" in log


# 520 nodes: past 512, ganesha's default of 1,024 connections no longer holds two per node.
GANESHA_LAYOUT = """<?xml version="1.0"?>
<cluster name="many" domain="many.dim">
  <network name="boot" subnet="10.78.0.0/16" gateway="10.78.0.1"/>
  <server name="srv" address="10.78.0.1" dhcp="none" nfs="ganesha"/>
  <image name="tiny"><persist path="/etc"/></image>
  <group name="nodes" nodes="r[1-4]n[001-130]" image="tiny">
    <interface network="boot" ip="10.78.{n1}.{n2}"/>
  </group>
</cluster>
"""


def test_ganesha_takes_the_connections_sized_for_520_nodes_without_complaint(tmp_path):
    require_root()
    require_binary("ip", "iproute2")
    ganesha = require_binary("ganesha.nfsd", "nfs-ganesha")
    require(
        VFS_FSAL.exists(), "ganesha's VFS FSAL is not installed (apt-get install nfs-ganesha-vfs)"
    )
    layout, state, root = tmp_path / "cluster.xml", tmp_path / "state", tmp_path / "root"
    layout.write_text(GANESHA_LAYOUT)
    argv = ["--config", str(layout), "--state", str(state), "apply", "--root", str(root)]
    assert main([*argv, "--no-reload"]) == 0
    config = root / GANESHA_CONF.lstrip("/")
    assert "    RPC_Max_Connections = 1040;\n" in config.read_text()
    (state / "images" / "tiny" / "live").mkdir(parents=True)
    for node in parse(GANESHA_LAYOUT.encode()).nodes:
        (state / "nodes" / node.name / "tiny").mkdir(parents=True)
    log = tmp_path / "ganesha.log"
    command = [ganesha, "-F", "-N", "NIV_EVENT", "-f", str(config), "-L", str(log)]
    command += ["-p", str(tmp_path / "ganesha.pid")]
    with segment("10.78.0.1/16", clients=0) as seg:
        daemon = seg.start(privately(tmp_path, command), log=tmp_path / "ganesha.out")
        wait_for_nfs(daemon, log, timeout=30)
        deadline = time.monotonic() + 10
        while "NFS SERVER INITIALIZED" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert "NFS SERVER INITIALIZED" in text
        assert not re.findall(r".*(?:config_errs_to_log|:CONFIG :(?:CRIT|MAJ|FATAL)).*", text)
        assert daemon.running
