import pytest

from dim.errors import LayoutError
from dim.layout.parser import load, parse
from tests.unit.conftest import EXAMPLES, SMALL


def test_bladecenter_example_expands_to_2576_blades_with_expressions():
    cluster = load(EXAMPLES / "bladecenter.xml")
    assert len(cluster.nodes) == 2576
    blade = cluster.node("s03c2b05")
    assert blade.boot.ip == "10.0.3.19"
    assert blade.interface("ib").hostname == "s03c2b05-ib"
    assert blade.bmc.address == "10.1.3.19"
    assert blade.image == "rhel9"
    assert cluster.node("s46c4b07").image == "sles15"


def test_bladecenter_group_definitions_fit_in_15_lines():
    lines = (EXAMPLES / "bladecenter.xml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if "<group" in ln)
    end = max(i for i, ln in enumerate(lines) if "</group>" in ln)
    assert end - start + 1 <= 15


def test_lab_example_is_valid():
    cluster = load(EXAMPLES / "lab.xml")
    assert [n.name for n in cluster.nodes] == ["node01", "node02", "node03", "node04"]
    assert cluster.servers["labsrv"].network == "boot"


def test_index_and_overrides(small_cluster):
    assert small_cluster.node("g2").boot.ip == "10.10.0.101"
    assert small_cluster.node("c04").image == "beta"
    assert small_cluster.node("c03").image == "alpha"
    assert small_cluster.node("c01").boot.hostname == "c01"


def broken(old: str, new: str) -> bytes:
    data = SMALL.decode()
    assert old in data
    return data.replace(old, new, 1).encode()


def line_of(data: bytes, text: str) -> int:
    return next(n for n, ln in enumerate(data.decode().splitlines(), 1) if text in ln)


@pytest.mark.parametrize(
    ("old", "new", "message", "marker"),
    [
        ('image="alpha">', 'image="gamma">', "unknown image", 'nodes="c[01-04]"'),
        (
            'network="boot" ip="10.10.0.{10+n1}"',
            'network="nope" ip="10.10.0.{10+n1}"',
            "unknown network",
            'network="nope"',
        ),
        ('nodes="g[1-2]"', 'nodes="c[03-05]"', "duplicate node name", 'nodes="c[03-05]"'),
        ('ip="10.10.0.{100+i}"', 'ip="10.10.0.{10+i}"', "duplicate IP address", 'nodes="g[1-2]"'),
        ('ip="10.10.0.{100+i}"', 'ip="10.10.1.{100+i}"', "outside network boot", "10.10.1.{100+i}"),
        ('ip="10.10.0.{100+i}"', 'ip="10.10.0.{255+i}"', "broadcast address", "10.10.0.{255+i}"),
        ('ip="10.10.0.{100+i}"', 'ip="10.10.0.{0*i}"', "network address", "10.10.0.{0*i}"),
        (
            'ip="10.10.0.{100+i}"',
            'ip="10.10.0.{300+i}"',
            "not a valid IPv4 address",
            "10.10.0.{300+i}",
        ),
        (
            'ip="10.10.0.{100+i}"',
            'ip="10.10.0.{100//(n1-1)}"',
            "division by zero",
            "10.10.0.{100//(n1-1)}",
        ),
        ('ip="10.10.0.{100+i}"', 'ip="10.10.0.{__import__(1)}"', "only integers", "__import__"),
        ('nodes="g[1-2]"', 'nodes="g[1-2]/x"', "invalid node name", 'nodes="g[1-2]/x"'),
        ('nodes="g[1-2]"', 'nodes="..[1-2]"', "invalid node name", 'nodes="..[1-2]"'),
        (
            '<image name="beta">',
            '<image name="../beta">',
            "Invalid attribute name",
            '<image name="../beta">',
        ),
        (
            'address="10.11.0.{10+n1}"',
            'address="10.10.0.{10+n1}"',
            "duplicate BMC address",
            'nodes="c[01-04]"',
        ),
        (
            '<node name="c04" image="beta"/>',
            '<node name="x9" image="beta"/>',
            "outside its group",
            'name="x9"',
        ),
        ('gateway="10.10.0.1"', 'gateway="10.99.0.1"', "gateway is outside", "10.99.0.1"),
        ('subnet="10.11.0.0/24"', 'subnet="10.11.0.1/24"', "CIDR", "10.11.0.1/24"),
        ('<group name="gpu"', '<group name="all"', "reserved", 'name="all"'),
        ('dhcp="dnsmasq"', 'dhcp="bogus"', "schema", 'dhcp="bogus"'),
        ('dhcp="dnsmasq"', 'dhcp="dnsmasq" http="nginx"', "schema", 'http="nginx"'),
        ('dhcp="dnsmasq"', 'dhcp="kea" kea-socket="kea.sock"', "absolute path", "kea.sock"),
    ],
)
def test_bad_layout_gets_one_line_error_with_file_line_and_value(old, new, message, marker):
    data = broken(old, new)
    with pytest.raises(LayoutError) as info:
        parse(data, "cluster.xml")
    error = info.value
    assert message in str(error)
    assert "\n" not in str(error)
    assert str(error).startswith("cluster.xml:")
    assert error.exit_status == 2
    assert error.line == line_of(data, marker)


def test_malformed_xml_names_the_line():
    data = SMALL.replace(b'<image name="beta">', b'<image name="beta"', 1)
    with pytest.raises(LayoutError, match=r"cluster.xml:\d+: malformed XML") as info:
        parse(data, "cluster.xml")
    assert info.value.line is not None


def test_duplicate_ip_across_groups_names_both_nodes():
    data = broken('ip="10.10.0.{100+i}"', 'ip="10.10.0.{11+i}"')
    with pytest.raises(LayoutError, match="node g1 and c01"):
        parse(data, "cluster.xml")


def test_kea_hooks_and_socket_default_to_debians_and_can_be_set():
    default = parse(SMALL, "cluster.xml").servers["srv"]
    assert default.kea_hooks == "/usr/lib/x86_64-linux-gnu/kea/hooks"
    assert default.kea_socket == "/run/kea/kea4-ctrl-socket"
    data = broken('dhcp="dnsmasq"', 'dhcp="kea" kea-hooks="/opt/kea/hooks" kea-socket="/tmp/k"')
    server = parse(data, "cluster.xml").servers["srv"]
    assert (server.kea_hooks, server.kea_socket) == ("/opt/kea/hooks", "/tmp/k")


def test_dim_serve_answers_the_boot_url_unless_the_server_says_none():
    assert parse(SMALL, "cluster.xml").servers["srv"].http == "dim"
    data = broken('dhcp="dnsmasq"', 'dhcp="dnsmasq" http="none"')
    assert parse(data, "cluster.xml").servers["srv"].http == "none"


def test_server_address_reused_by_a_node_is_refused():
    data = broken('ip="10.10.0.{100+i}"', 'ip="10.10.0.{2+i}"')
    with pytest.raises(LayoutError, match="server srv"):
        parse(data, "cluster.xml")


def test_missing_file_is_a_layout_error(tmp_path):
    with pytest.raises(LayoutError, match="cannot read"):
        load(tmp_path / "none.xml")


def test_entities_are_not_expanded():
    data = b"""<?xml version="1.0"?>
<!DOCTYPE cluster [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<cluster name="&x;"><network name="b" subnet="10.0.0.0/24"/>
<server name="s" address="10.0.0.1"/></cluster>"""
    with pytest.raises(LayoutError):
        parse(data, "cluster.xml")


@pytest.mark.parametrize(
    ("old", "new", "message", "value"),
    [
        (  # a node's two interfaces share a host name
            '<bmc driver="ipmi"',
            '<interface network="bmc" ip="10.11.0.{100+n1}" hostname="{name}"/><bmc driver="ipmi"',
            "duplicate host name: node c01 twice",
            "c01",
        ),
        (  # two nodes share a host name
            '<interface network="boot" ip="10.10.0.{100+i}"/>',
            '<interface network="boot" ip="10.10.0.{100+i}" hostname="gpu"/>',
            "duplicate host name: node g2 and g1",
            "gpu",
        ),
        (  # a node has the address of the server
            'ip="10.10.0.{100+i}"',
            'ip="10.10.0.{2+i}"',
            "duplicate IP address: node g1 and server srv",
            "10.10.0.2",
        ),
    ],
)
def test_each_duplicate_is_named_with_its_owner(old, new, message, value):
    with pytest.raises(LayoutError) as info:
        parse(broken(old, new), "cluster.xml")
    assert message in str(info.value)
    assert info.value.value == value
