"""Sizing a server for its nodes (dim.services.limits) and what it renders past the defaults.

Regenerate the golden file on purpose only: ``DIM_UPDATE_GOLDEN=1 pytest tests/unit/services``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services import limits
from dim.services.limits import SYSCTL_CONF
from dim.services.render import render_all
from dim.services.rendering import RenderContext

GOLDEN = Path(__file__).parent / "golden"

# 2,000 nodes, each with a boot interface and a BMC: 4,000 neighbours of the server.
RACKS = """<?xml version="1.0"?>
<cluster name="racks" domain="racks.example">
  <network name="boot" subnet="10.80.0.0/16" gateway="10.80.0.1"/>
  <network name="bmc" subnet="10.81.0.0/16"/>
  <server name="srv" address="10.80.0.2" dhcp="@dhcp" nfs="ganesha"/>
  <image name="alpha"><persist path="/etc"/></image>
  <group name="racks" nodes="r[01-08]n[001-250]" image="alpha">
    <interface network="boot" ip="10.80.{n1}.{n2}"/>
    <bmc driver="ipmi" address="10.81.{n1}.{n2}"/>
  </group>
</cluster>
"""


def racks(dhcp: str = "dnsmasq", macs: bool = True) -> Inventory:
    cluster = parse(RACKS.replace("@dhcp", dhcp).encode(), "racks.xml")
    known = {
        (n.name, "boot"): f"52:54:00:80:{k >> 8:02x}:{k & 255:02x}"
        for k, n in enumerate(cluster.nodes)
    }
    return Inventory(cluster, known if macs else {}, {})


def rendered(inventory: Inventory) -> dict[str, str]:
    files = render_all(RenderContext(inventory, "srv", Path("/var/lib/dim")))
    return {f.path: f.content.decode() for f in files if f.content is not None}


@pytest.mark.parametrize("neighbours", [0, 1, 64, 128])
def test_a_small_segment_keeps_the_kernels_neighbour_thresholds(neighbours):
    assert limits.neighbour_thresholds(neighbours) == (128, 512, 1024)


@pytest.mark.parametrize("neighbours", [129, 1000, 2576 * 3, 20_000, 300_000])
def test_every_neighbour_fits_before_the_kernel_collects_or_drops_any(neighbours):
    first, second, third = limits.neighbour_thresholds(neighbours)
    assert neighbours <= first and 2 * neighbours <= second and 4 * neighbours <= third
    assert first < 2 * neighbours and all(t & (t - 1) == 0 for t in (first, second, third))


def test_the_bladecenter_needs_8192_16384_32768():
    assert limits.neighbour_thresholds(2576 * 3) == (8192, 16384, 32768)


@pytest.mark.parametrize(
    ("reservations", "lease_max"), [(0, None), (500, None), (501, 1002), (10_000, 20_000)]
)
def test_dnsmasq_gets_two_leases_per_reservation_past_its_default_of_1000(reservations, lease_max):
    assert limits.dnsmasq_lease_max(reservations) == lease_max


@pytest.mark.parametrize(
    ("nodes", "tftp"), [(25, None), (26, 52), (2500, 5000), (10_000, 20_000), (12_000, 20_000)]
)
def test_dnsmasq_serves_every_node_at_once_and_a_retried_request_beside(nodes, tftp):
    assert limits.tftp_max(nodes) == tftp


@pytest.mark.parametrize(
    ("nodes", "connections"), [(512, None), (513, 1026), (5000, 10_000), (7000, 10_000)]
)
def test_ganesha_holds_two_connections_per_node_up_to_its_maximum(nodes, connections):
    assert limits.ganesha_connections(nodes) == connections


@pytest.mark.parametrize("nodes", [0, 1, 104])
def test_a_dhcp_burst_of_up_to_104_nodes_fits_the_kernels_receive_buffer(nodes):
    assert limits.receive_buffer(nodes) is None


@pytest.mark.parametrize(
    ("nodes", "size"), [(105, 1 << 18), (2500, 8 << 20), (10_000, 32 << 20), (32_768, 64 << 20)]
)
def test_the_receive_buffer_holds_a_dhcp_packet_of_every_node_at_once(nodes, size):
    assert limits.receive_buffer(nodes) == size
    assert nodes * limits.BUFFER_PER_NODE <= size < 2 * nodes * limits.BUFFER_PER_NODE


def test_the_receive_buffer_stops_at_64_mib_the_default_of_every_datagram_socket():
    assert limits.receive_buffer(100_000) == 64 << 20


def test_a_failover_sets_server_is_sized_for_every_node_of_the_set(pair_inventory):
    assert limits.server_needs(pair_inventory, "srv1").nodes == 4  # a1, a2, b1, b2
    assert limits.server_needs(pair_inventory, "solo").nodes == 1


def test_2000_nodes_get_the_limits_their_daemons_and_kernel_need():
    files = rendered(racks())
    dnsmasq = files["/etc/dnsmasq.d/dim.conf"].splitlines()
    assert "dhcp-lease-max=4000" in dnsmasq and "tftp-max=4000" in dnsmasq
    assert "    RPC_Max_Connections = 4000;" in files["/etc/ganesha/ganesha.conf"].splitlines()
    sysctl = files[SYSCTL_CONF]
    golden = GOLDEN / "racks-60-dim-server.conf"
    if os.environ.get("DIM_UPDATE_GOLDEN"):
        golden.write_text(sysctl)
    assert sysctl == golden.read_text()


def test_120_nodes_without_bmcs_get_receive_buffers_and_keep_the_neighbour_table():
    # 120 addresses fit the kernel's neighbour table; 120 DISCOVERs at once do not fit 208 KiB
    layout = RACKS.replace("@dhcp", "dnsmasq").replace("r[01-08]n[001-250]", "r01n[001-120]")
    layout = layout.replace('    <bmc driver="ipmi" address="10.81.{n1}.{n2}"/>\n', "")
    sysctl = rendered(Inventory(parse(layout.encode(), "racks.xml"), {}, {}))[SYSCTL_CONF]
    assert "gc_thresh" not in sysctl
    assert sysctl.endswith("\nnet.core.rmem_default = 262144\n")


def test_dnsmasq_beside_kea_serves_tftp_to_every_node_at_once():
    files = rendered(racks("kea"))
    assert "tftp-max=4000" in files["/etc/dnsmasq.d/dim-tftp.conf"].splitlines()


def test_leases_are_sized_from_the_nodes_so_that_a_new_mac_changes_only_its_host_line():
    # an incremental apply rewrites the host lines of the nodes that changed, nothing else
    before = rendered(racks(macs=False))["/etc/dnsmasq.d/dim.conf"]
    assert "dhcp-lease-max=4000" in before.splitlines()
    assert rendered(racks())["/etc/dnsmasq.d/dim.conf"] == before


def test_a_small_cluster_gets_no_sysctl_file_and_no_limit_lines(small_inventory):
    files = rendered(small_inventory)
    assert SYSCTL_CONF not in files
    assert not any(
        word in text
        for text in files.values()
        for word in ("dhcp-lease-max", "tftp-max", "RPC_Max_Connections")
    )


DEFAULTS = dict(zip(limits.THRESHOLD_KEYS, limits.KERNEL_NEIGHBOUR_THRESHOLDS, strict=True))


def test_a_server_of_this_machine_with_default_thresholds_gets_one_warning_per_threshold():
    lines = limits.shortfalls(racks("kea"), ["srv"], DEFAULTS)
    assert lines == [
        f"net.ipv4.neigh.default.gc_thresh{n} is {now} on this machine (server srv), {needed} "
        f"needed for its 4000 node addresses: dim apply sets it in {SYSCTL_CONF}"
        for n, now, needed in ((1, 128, 4096), (2, 512, 8192), (3, 1024, 16384))
    ]


def test_a_receive_buffer_too_small_for_the_dhcp_burst_is_a_warning():
    current = dict.fromkeys(limits.THRESHOLD_KEYS, 1 << 20) | {limits.RECEIVE_BUFFER_KEY: 212992}
    assert limits.shortfalls(racks("kea"), ["srv"], current) == [
        "net.core.rmem_default is 212992 on this machine (server srv), 4194304 needed for the "
        f"DHCP burst of its 2000 nodes: dim apply sets it in {SYSCTL_CONF}"
    ]
    enough = current | {limits.RECEIVE_BUFFER_KEY: 1 << 23}
    assert limits.shortfalls(racks("kea"), ["srv"], enough) == []


def test_thresholds_high_enough_or_another_machines_server_warn_of_nothing():
    enough = dict.fromkeys(limits.THRESHOLD_KEYS, 1 << 20)
    assert limits.shortfalls(racks("kea"), ["srv"], enough) == []
    assert limits.shortfalls(racks("kea"), [], DEFAULTS) == []


def test_more_nodes_than_ganesha_can_hold_after_a_reboot_is_a_warning():
    cluster = parse(RACKS.replace("@dhcp", "kea").replace("r[01-08]", "r[01-24]").encode())
    (line,) = limits.shortfalls(Inventory(cluster, {}, {}), [], {})
    assert line.startswith("server srv serves 6000 nodes over nfs-ganesha, which holds at most ")
    assert "2000 wait up to 300 s" in line


def test_more_nodes_than_ganesha_has_connections_for_is_a_warning_of_refused_mounts():
    cluster = parse(
        RACKS.replace("@dhcp", "kea")
        .replace("r[01-08]n[001-250]", "n[00001-09999]")
        .replace("10.80.{n1}.{n2}", "10.80.{i//250+1}.{i%250+1}")
        .replace("10.81.{n1}.{n2}", "10.81.{i//250+1}.{i%250+1}")
        .encode()
    )
    (line,) = limits.shortfalls(Inventory(cluster, {}, {}), [], {})
    assert line == (
        "server srv serves 9999 nodes over nfs-ganesha, which holds at most 9998 clients "
        "(10000 connections, its 2 listeners included): 1 cannot mount even at a first boot; "
        "split the nodes over more servers"
    )


def test_a_cephfs_head_of_many_nodes_is_warned_of_a_ceph_client_per_export():
    data = RACKS.replace("@dhcp", "kea").replace(
        "</cluster>", '<store name="s" cephfs="dimfs" servers="srv"/>\n</cluster>'
    )
    (line,) = limits.shortfalls(Inventory(parse(data.encode()), {}, {}), [], {})
    assert line == (
        "server srv exports 2000 nodes' folders from CephFS store s: nfs-ganesha opens one "
        "CephFS client per export, 2001 here, about 28000 threads and 2.7 GiB, 160 s to start; "
        "split the nodes over more heads"
    )
    small = data.replace("r[01-08]", "r[01-02]")  # 500 nodes
    assert limits.shortfalls(Inventory(parse(small.encode()), {}, {}), [], {}) == []


def test_a_dnsmasq_server_of_more_than_1000_nodes_is_advised_kea_or_dhcpd_wherever_it_runs():
    (line,) = limits.shortfalls(racks(), [], {})
    assert line == (
        "server srv serves 2000 nodes with dnsmasq's DHCP, too slow past about 1000 booting at "
        "once (of 2500: 1400 to 2000 needed a second iPXE DHCP round, 72 failed): take "
        'dhcp="kea" or dhcp="isc"'
    )


@pytest.mark.parametrize(("dhcp", "racks_of"), [("dnsmasq", "r[01-04]"), ("kea", "r[01-08]")])
def test_up_to_1000_nodes_on_dnsmasq_or_any_number_on_kea_is_no_warning(dhcp, racks_of):
    layout = RACKS.replace("@dhcp", dhcp).replace("r[01-08]", racks_of)
    assert limits.shortfalls(Inventory(parse(layout.encode()), {}, {}), [], {}) == []
