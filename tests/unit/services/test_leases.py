"""Releasing stale leases: the commands sent to each daemon, through a fake transport.

The real dnsmasq and Kea answer these in tests/integration/test_dhcp_daemons.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from dim.layout.parser import parse
from dim.services import leases
from dim.services.leases import FAILED, NOT_NEEDED, RELEASED, Transport, release, settle
from dim.state import StaleLease, StateDB
from tests.unit.conftest import SMALL

OLD, NEW = "52:54:00:00:00:01", "52:54:00:00:01:01"

TWO_SERVERS = b"""<?xml version="1.0"?>
<cluster name="t">
  <network name="boot" subnet="10.10.0.0/24"/>
  <network name="data" subnet="10.12.0.0/24"/>
  <server name="a" address="10.10.0.2" dhcp="kea" interface="br0"/>
  <server name="b" address="10.10.0.3" dhcp="dnsmasq"/>
  <group name="left" nodes="c[01-02]" server="a">
    <interface network="boot" ip="10.10.0.{10+n1}"/>
    <interface network="data" ip="10.12.0.{10+n1}"/>
  </group>
  <group name="right" nodes="d[01-02]" server="b">
    <interface network="boot" ip="10.10.0.{20+n1}"/>
  </group>
</cluster>
"""


class FakeTransport(Transport):
    """Records what would be run or asked; answers from a script."""

    def __init__(self, *, status: int = 0, output: str = "", kea=None, error=None) -> None:
        super().__init__(kea_connect_wait=0)
        self.commands: list[list[str]] = []
        self.requests: list[tuple[str, dict]] = []
        self.status, self.output, self.error = status, output, error
        self.answers = list(kea or [])

    def run(self, argv):
        self.commands.append(argv)
        if self.error is not None:
            raise self.error
        return self.status, self.output

    def kea(self, path, command):
        self.requests.append((path, command))
        if self.error is not None:
            raise self.error
        return self.answers.pop(0)


@pytest.fixture
def cluster():
    return parse(SMALL, "small.xml")


def server(cluster, **changes):
    return dataclasses.replace(cluster.servers["srv"], **changes)


def stale(node="c01", network="boot", mac=OLD):
    return StaleLease(node, network, mac)


def test_dnsmasq_release_is_dhcp_release_without_client_id(cluster):
    fake = FakeTransport()
    (result,) = release(server(cluster, interface="br0"), cluster, [stale()], transport=fake)
    assert fake.commands == [["dhcp_release", "br0", "10.10.0.11", OLD]]
    assert (result.outcome, result.ip, result.ok) == (RELEASED, "10.10.0.11", True)


def test_dnsmasq_without_an_interface_is_a_failure_that_says_what_to_set(cluster):
    fake = FakeTransport()
    (result,) = release(server(cluster), cluster, [stale()], transport=fake)
    assert fake.commands == []
    assert result.outcome == FAILED and not result.ok
    assert 'set interface= on <server name="srv">' in result.message


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        (FakeTransport(error=FileNotFoundError()), "apt-get install dnsmasq-utils"),
        (FakeTransport(status=1, output="cannot setup interface\n"), "exited 1: cannot setup"),
    ],
)
def test_dhcp_release_failures_are_results(cluster, transport, message):
    leases_ = [stale(), stale("c02", mac="52:54:00:00:00:02")]
    results = release(server(cluster, interface="br0"), cluster, leases_, transport=transport)
    assert [r.outcome for r in results] == [FAILED, FAILED]
    assert message in results[0].message


def kea_server(cluster):
    return server(cluster, dhcp="kea", kea_socket="/tmp/kea.sock")


def test_kea_deletes_the_lease_the_old_mac_holds(cluster):
    fake = FakeTransport(kea=[{"result": 0, "arguments": {"hw-address": OLD}}, {"result": 0}])
    (result,) = release(kea_server(cluster), cluster, [stale()], transport=fake)
    ip = {"ip-address": "10.10.0.11"}
    assert fake.requests == [
        ("/tmp/kea.sock", {"command": "lease4-get", "arguments": ip}),
        ("/tmp/kea.sock", {"command": "lease4-del", "arguments": ip}),
    ]
    assert result.outcome == RELEASED


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"result": 3, "text": "Lease not found."}, "Kea has no lease on 10.10.0.11 any more"),
        ({"result": 0, "arguments": {"hw-address": NEW}}, f"10.10.0.11 is leased to {NEW} now"),
    ],
)
def test_kea_leaves_an_address_the_old_mac_no_longer_holds(cluster, answer, message):
    fake = FakeTransport(kea=[answer])
    (result,) = release(kea_server(cluster), cluster, [stale()], transport=fake)
    assert len(fake.requests) == 1  # no lease4-del
    assert (result.outcome, result.message) == (NOT_NEEDED, message)


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        (FakeTransport(error=FileNotFoundError()), "control socket /tmp/kea.sock does not exist"),
        (FakeTransport(error=ConnectionRefusedError()), "nothing answers on Kea's control"),
        (FakeTransport(error=TimeoutError()), "Kea did not answer lease4-get"),
        (FakeTransport(error=ValueError()), "is not JSON"),
        (FakeTransport(kea=[{"result": 2, "text": "not supported"}]), "load the lease_cmds hook"),
        (FakeTransport(kea=[{"result": 1, "text": "boom"}]), "Kea refused lease4-get"),
    ],
)
def test_kea_failures_are_results(cluster, transport, message):
    (result,) = release(kea_server(cluster), cluster, [stale()], transport=transport)
    assert result.outcome == FAILED
    assert message in result.message


def test_isc_and_no_dhcp_need_no_release(cluster):
    fake = FakeTransport()
    for flavour, reason in [("isc", "ISC dhcpd keeps no lease"), ("none", "runs no DHCP")]:
        (result,) = release(server(cluster, dhcp=flavour), cluster, [stale()], transport=fake)
        assert result.outcome == NOT_NEEDED and reason in result.message
    assert fake.commands == [] and fake.requests == []


def test_a_gone_node_or_a_non_boot_network_needs_no_release():
    cluster = parse(TWO_SERVERS, "two.xml")
    fake = FakeTransport()
    gone, data = stale("x9"), stale("c01", "data")
    results = release(cluster.servers["a"], cluster, [gone, data], transport=fake)
    assert [(r.outcome, r.ip) for r in results] == [(NOT_NEEDED, None), (NOT_NEEDED, "10.12.0.11")]
    assert "no longer in the layout" in results[0].message
    assert "boot interfaces only" in results[1].message
    assert fake.requests == []


def test_settle_releases_this_servers_leases_and_forgets_only_the_settled(tmp_path, database):
    cluster = parse(TWO_SERVERS, "two.xml")
    db = StateDB.open(tmp_path, url=database)
    first = {("c01", "boot"): OLD, ("c02", "boot"): "52:54:00:00:00:02"}
    db.set_macs(cluster, first | {("d01", "boot"): "52:54:00:00:00:03"})
    db.set_macs(
        cluster,
        {
            ("c01", "boot"): NEW,
            ("c02", "boot"): "52:54:00:00:01:02",
            ("d01", "boot"): "52:54:00:00:01:03",
        },
    )
    fake = FakeTransport(
        kea=[
            {"result": 0, "arguments": {"hw-address": OLD}},
            {"result": 0},
            {"result": 1, "text": "database error"},
        ]
    )
    results = settle(db, cluster.servers["a"], cluster, transport=fake)
    assert sorted((r.lease.node, r.outcome) for r in results) == [
        ("c01", RELEASED),
        ("c02", FAILED),
    ]
    left = sorted(s.node for s in db.stale_leases())
    assert left == ["c02", "d01"]  # c02 failed; d01 is server b's
    assert [s.node for s in leases.pending(db.stale_leases(), cluster.servers["b"], cluster)] == [
        "d01"
    ]


def test_kea_connect_gives_up_once_then_no_longer_waits(tmp_path):
    transport = Transport(kea_connect_wait=0.2)
    with pytest.raises(FileNotFoundError):
        transport.kea(str(tmp_path / "no.sock"), {"command": "lease4-get"})
    assert transport.kea_connect_wait == 0
