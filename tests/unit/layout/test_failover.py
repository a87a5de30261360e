"""Failover sets in cluster.xml: what a set makes of its servers, and every refusal, each one
line that names the file, the line and the offending value."""

from __future__ import annotations

import pytest

from dim.errors import LayoutError
from dim.layout.model import FailoverSet
from dim.layout.parser import parse
from tests.unit.conftest import PAIR

SET = '<failover name="pair" servers="srv[1-2]"/>'


def changed(*replacements: tuple[str, str]) -> bytes:
    data = PAIR.decode()
    for old, new in replacements:
        assert old in data, old
        data = data.replace(old, new, 1)
    return data.encode()


def tag_line(data: bytes, start: str) -> int:
    """The line of an element as libxml2 reports it: where its start tag ends."""
    lines = data.decode().splitlines()
    first = next(n for n, ln in enumerate(lines) if start in ln)
    return next(n for n in range(first, len(lines)) if lines[n].rstrip().endswith(">")) + 1


def test_a_set_names_its_servers_in_layout_order_and_each_server_its_set():
    cluster = parse(changed((SET, SET.replace("srv[1-2]", "srv2,srv1"))), "pair.xml")
    assert cluster.failover == {
        "pair": FailoverSet("pair", ("srv1", "srv2"), preempt=False, preempt_delay=0, line=11)
    }
    assert [s.failover for s in cluster.servers.values()] == ["pair", "pair", None]
    assert str(cluster.servers["srv2"].own_address) == "10.20.0.12"
    assert cluster.peers("srv1") == cluster.peers("srv2") == ("srv1", "srv2")
    assert cluster.peers("solo") == ("solo",)


def with_children(children: str) -> tuple[str, str]:
    """The replacement that gives srv1 ``children`` (``<check/>``, ``<reload/>`` elements)."""
    return 'nfs="ganesha"/>', f'nfs="ganesha">{children}</server>'


def test_preempt_checks_and_their_defaults():
    data = changed(
        (SET, '<failover name="pair" servers="srv[1-2]" preempt="yes" preempt-delay="30"/>'),
        with_children(
            '<check service="nfs" command="/bin/true"/>'
            '<check service="http" command="curl -fs http://10.20.0.11:8080/dim/health"/>'
        ),
    )
    cluster = parse(data, "pair.xml")
    assert (cluster.failover["pair"].preempt, cluster.failover["pair"].preempt_delay) == (True, 30)
    assert cluster.servers["srv1"].checks == (
        ("nfs", "/bin/true"),
        ("http", "curl -fs http://10.20.0.11:8080/dim/health"),
    )
    assert cluster.servers["srv2"].checks == ()


def test_keepalived_has_a_reload_command_of_its_own():
    data = changed(with_children('<reload service="keepalived" command="pkill -HUP -F /k.pid"/>'))
    server = parse(data, "pair.xml").servers["srv1"]
    assert server.reload_command("keepalived") == "pkill -HUP -F /k.pid"


def test_a_layout_without_failover_sets_has_none_and_needs_no_own_address(small_cluster):
    assert small_cluster.failover == {}
    assert small_cluster.servers["srv"].own_address is None
    assert small_cluster.servers["srv"].failover is None
    assert small_cluster.peers("srv") == ("srv",)


# (replacements, message, element whose line is named, value)
REFUSED = {
    "unknown server": (
        [(SET, SET.replace("srv[1-2]", "srv[1-3]"))],
        "failover set pair: no server srv3 in the layout",
        "<failover",
        "srv3",
    ),
    "one server": (
        [(SET, SET.replace("srv[1-2]", "srv1"))],
        "failover set pair has one server: a failover set needs a peer to fail over to",
        "<failover",
        "srv1",
    ),
    "a server named twice is one": (
        [(SET, SET.replace("srv[1-2]", "srv1,srv1"))],
        "failover set pair has one server: a failover set needs a peer to fail over to",
        "<failover",
        "srv1,srv1",
    ),
    "server in two sets": (
        [
            (
                '<server name="solo" address="10.20.0.3"',
                '<server name="solo" address="10.20.0.3" own-address="10.20.0.13" interface="eth0"',
            ),
            (SET, SET + '\n  <failover name="again" servers="srv1,solo"/>'),
        ],
        "server srv1 is in failover sets pair and again: a server backs up one set",
        '<failover name="again"',
        "srv1",
    ),
    "duplicate set name": (
        [(SET, SET + '\n  <failover name="pair" servers="srv1,srv2"/>')],
        "duplicate failover set name",
        'servers="srv1,srv2"',
        "pair",
    ),
    "servers not a node set": (
        [(SET, SET.replace("srv[1-2]", "srv[2-1]"))],
        "invalid node set (invalid range '2-1': it names no number)",
        "<failover",
        "srv[2-1]",
    ),
    "servers beyond the node set limit": (
        [(SET, SET.replace("srv[1-2]", "srv[1-100000000]"))],
        "invalid node set (srv[1-100000000] names 100000000 nodes, more than the limit of "
        '2000000 (<cluster nodeset-limit="…"> in cluster.xml raises it))',
        "<failover",
        "srv[1-100000000]",
    ),
    "missing own-address": (
        [(' own-address="10.20.0.12"', "")],
        "server srv2 is in failover set pair but has no own-address: the address floats, the "
        "server needs a fixed one of its own",
        '<server name="srv2"',
        "srv2",
    ),
    "own-address not an address": (
        [('own-address="10.20.0.12"', 'own-address="10.20.0.300"')],
        "own-address is not an IPv4 address",
        '<server name="srv2"',
        "10.20.0.300",
    ),
    "own-address outside the network": (
        [('own-address="10.20.0.12"', 'own-address="10.21.0.12"')],
        "own-address is outside network boot (10.20.0.0/24) of the server's address",
        '<server name="srv2"',
        "10.21.0.12",
    ),
    "own-address is the address": (
        [('own-address="10.20.0.12"', 'own-address="10.20.0.2"')],
        "own-address is the server's address: address is the service address, which floats to "
        "a peer, own-address the fixed one that stays; they must differ",
        '<server name="srv2"',
        "10.20.0.2",
    ),
    "own-address is another server's address": (
        [('own-address="10.20.0.11"', 'own-address="10.20.0.2"')],
        "duplicate IP address: server srv2 and server srv1",
        '<server name="srv2"',
        "10.20.0.2",
    ),
    "own-address is another server's own-address": (
        [('own-address="10.20.0.12"', 'own-address="10.20.0.11"')],
        "duplicate IP address: server srv2 and server srv1",
        '<server name="srv2"',
        "10.20.0.11",
    ),
    "address is another server's own-address": (
        [('address="10.20.0.3"', 'address="10.20.0.12"')],
        "duplicate IP address: server solo and server srv2",
        '<server name="solo"',
        "10.20.0.12",
    ),
    "a node has the own-address": (
        [('ip="10.20.0.{100+n1}"', 'ip="10.20.0.{10+n1}"')],
        "duplicate IP address: node a1 and server srv1",
        '<group name="a"',
        "10.20.0.11",
    ),
    "servers on different networks": (
        [
            (
                'address="10.20.0.2" own-address="10.20.0.12"',
                'address="10.21.0.2" own-address="10.21.0.12"',
            )
        ],
        "failover set pair: server srv2 is on network other, srv1 on boot: VRRP moves an "
        "address within one network",
        '<server name="srv2"',
        "10.21.0.2",
    ),
    "another http-port": (
        [('interface="eth1"', 'interface="eth1" http-port="8081"')],
        "failover set pair: server srv2 has http-port 8081, srv1 8080: dim serve answers a "
        "dead peer's nodes on its own port",
        '<server name="srv2"',
        "8081",
    ),
    "kernel NFS": (
        [
            (
                'interface="eth1"\n          dhcp="dnsmasq" nfs="ganesha"',
                'interface="eth1"\n          dhcp="dnsmasq" nfs="kernel"',
            )
        ],
        'failover set pair: server srv2 has nfs="kernel"; takeover is built on nfs-ganesha '
        "(the kernel server's state recovery is not)",
        '<server name="srv2"',
        "kernel",
    ),
    "no interface": (
        [(' interface="eth1"', "")],
        "failover set pair: server srv2 needs interface= (the one keepalived moves its address on)",
        '<server name="srv2"',
        "srv2",
    ),
    "preempt-delay not a number": (
        [(SET, SET.replace("/>", ' preempt-delay="soon"/>'))],
        "preempt-delay must be seconds, 0 to 3600",
        "<failover",
        "soon",
    ),
    "preempt-delay negative": (
        [(SET, SET.replace("/>", ' preempt-delay="-1"/>'))],
        "preempt-delay must be seconds, 0 to 3600",
        "<failover",
        "-1",
    ),
    "preempt-delay above an hour": (
        [(SET, SET.replace("/>", ' preempt-delay="3601"/>'))],
        "preempt-delay must be seconds, 0 to 3600",
        "<failover",
        "3601",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_broken_failover_set_is_one_line_naming_file_line_and_value(case):
    replacements, message, element, value = REFUSED[case]
    data = changed(*replacements)
    with pytest.raises(LayoutError) as caught:
        parse(data, "pair.xml")
    line = tag_line(data, element)
    assert str(caught.value) == f"pair.xml:{line}: {message}: {value!r}"
    assert (caught.value.line, caught.value.value, caught.value.exit_status) == (line, value, 2)


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        (
            (SET, SET.replace("/>", ' preempt="maybe"/>')),
            "does not match the cluster.xml schema",
        ),
        (with_children('<check service="ssh" command="true"/>'), "does not match the cluster.xml"),
        (with_children('<check service="nfs" command=" "/>'), "invalid check command"),
    ],
)
def test_a_bad_preempt_or_check_is_refused(replacement, message):
    with pytest.raises(LayoutError, match=message) as caught:
        parse(changed(replacement), "pair.xml")
    assert "\n" not in str(caught.value) and caught.value.line is not None


def test_more_than_255_servers_in_failover_sets_are_refused():
    servers = "".join(
        f'<server name="s{i}" address="10.30.{i // 100}.{i % 100 + 1}" '
        f'own-address="10.30.{i // 100 + 10}.{i % 100 + 1}" interface="eth0"/>'
        for i in range(256)
    )
    # sixteen sets of sixteen (the most one set may have), then one server fewer
    sets = "".join(
        f'<failover name="f{k}" servers="s[{16 * k}-{16 * k + 15}]"/>' for k in range(16)
    )
    data = f'<cluster name="big"><network name="n" subnet="10.30.0.0/16"/>{servers}{sets}</cluster>'
    with pytest.raises(LayoutError, match=r"^big.xml: 256 servers in failover sets: VRRP"):
        parse(data.encode(), "big.xml")
    fewer = data.replace('servers="s[240-255]"', 'servers="s[240-254]"')
    assert len(parse(fewer.encode(), "big.xml").failover) == 16


def test_a_failover_set_of_more_than_16_servers_is_refused():
    servers = "".join(
        f'<server name="s{i}" address="10.30.0.{i + 1}" own-address="10.30.1.{i + 1}" '
        'interface="eth0"/>'
        for i in range(17)
    )
    data = (
        f'<cluster name="big"><network name="n" subnet="10.30.0.0/16"/>{servers}'
        '<failover name="all" servers="s[0-16]"/></cluster>'
    )
    with pytest.raises(LayoutError, match=r"^big.xml:1: failover set all has 17 servers, 16 at"):
        parse(data.encode(), "big.xml")
    assert parse(data.replace("s[0-16]", "s[0-15]").encode(), "big.xml").failover["all"]
