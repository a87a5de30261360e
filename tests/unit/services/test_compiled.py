"""The hand-compiled templates (dim.services.compiled) give Jinja2's bytes, or step aside."""

import dataclasses
import hashlib
from pathlib import Path

import pytest

from dim.errors import RenderError
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services import compiled
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.unit.conftest import PAIR, PAIR_MACS, SMALL

TEMPLATES = Path(compiled.__file__).parent.parent / "templates"
STATE = Path("/var/lib/dim")

# Two interfaces and a BMC per node, a host name template, no domain, nodes without a MAC,
# several networks with reservations, nodes of a second server left out.
WIDE = b"""<?xml version="1.0"?>
<cluster name="w">
  <network name="boot" subnet="10.30.0.0/16"/>
  <network name="ib" subnet="10.31.0.0/16"/>
  <network name="bmc" subnet="10.32.0.0/16"/>
  <server name="s1" address="10.30.0.2" dhcp="dnsmasq" nfs="kernel"/>
  <server name="s2" address="10.30.0.3" dhcp="dnsmasq" nfs="kernel"/>
  <image name="alpha"><persist path="/etc"/></image>
  <group name="r" nodes="r[1-3]n[01-40]" image="alpha" server="s1" secure-boot="yes">
    <interface network="boot" ip="10.30.{n1}.{n2}"/>
    <interface network="ib" ip="10.31.{n1}.{n2}" hostname="ib-{name}"/>
    <bmc driver="redfish" address="10.32.{n1}.{n2}" credentials="default"/>
  </group>
  <group name="x" nodes="x[1-9]" image="alpha" server="s1">
    <interface network="ib" ip="10.31.9.{n1}"/>
    <interface network="boot" ip="10.30.9.{n1}"/>
    <bmc driver="ipmi" address="bmc-{name}.example" credentials="default"/>
  </group>
  <group name="y" nodes="y[1-5]" image="alpha" server="s2">
    <interface network="boot" ip="10.30.8.{n1}"/>
  </group>
</cluster>
"""


def _wide() -> Inventory:
    cluster = parse(WIDE, "wide.xml")
    macs = {
        (n.name, n.boot.network): f"52:54:00:30:{k // 256:02x}:{k % 256:02x}"
        for k, n in enumerate(cluster.nodes)
        if k % 7
    }
    return Inventory(cluster, macs, {})


def _small(dhcp: str = "dnsmasq", nfs: str = "kernel") -> Inventory:
    data = SMALL.replace(b'nfs="ganesha"', f'nfs="{nfs}"'.encode())
    data = data.replace(b'dhcp="dnsmasq"', f'dhcp="{dhcp}"'.encode())
    return Inventory(parse(data, "small.xml"), {("c01", "boot"): "52:54:00:00:00:01"}, {})


def _pair_store(attributes: str) -> Inventory:
    store = f'<store name="dimfs" cephfs="dimfs" servers="srv[1-2]" {attributes}/>'
    data = PAIR.replace(b"</cluster>", store.encode() + b"\n</cluster>")
    return Inventory(parse(data, "pair.xml"), dict(PAIR_MACS), {})


def _aarch64(inventory: Inventory, group: bytes) -> Inventory:
    """``inventory`` with ``group``'s nodes of aarch64: its DHCP has their kinds too."""
    source = Path(inventory.cluster.source)
    data = {"wide.xml": WIDE, "pair.xml": PAIR}[source.name]
    data = data.replace(
        b'<group name="' + group + b'"', b'<group arch="aarch64" name="' + group + b'"'
    )
    data = data.replace(b'<node name="b2" secure-boot="yes"/>', b"")  # x86-64 nodes only
    return dataclasses.replace(inventory, cluster=parse(data, source.name))


INVENTORIES = {
    "small": (_small, "srv"),
    "small-kea": (lambda: _small("kea"), "srv"),
    "small-ganesha": (lambda: _small(nfs="ganesha"), "srv"),
    "pair": (lambda: Inventory(parse(PAIR, "pair.xml"), dict(PAIR_MACS), {}), "srv1"),
    "pair-cephfs": (lambda: _pair_store('root="/dim"'), "srv1"),
    "pair-cephfs-same-paths": (lambda: _pair_store('recovery="none"'), "srv2"),
    "wide": (_wide, "s1"),
    "wide-no-macs": (lambda: dataclasses.replace(_wide(), macs={}), "s1"),
    "wide-aarch64": (lambda: _aarch64(_wide(), b"x"), "s1"),
    "pair-aarch64": (
        lambda: _aarch64(Inventory(parse(PAIR, "pair.xml"), dict(PAIR_MACS), {}), b"b"),
        "srv1",
    ),
}


@pytest.mark.parametrize("name", sorted(compiled.TEMPLATES))
def test_each_compiled_function_stands_for_its_package_templates_text(name):
    digest, _ = compiled.TEMPLATES[name]
    assert hashlib.sha256((TEMPLATES / name).read_bytes()).hexdigest() == digest, (
        f"{name} changed: change its function in dim.services.compiled to match, then its digest"
    )


@pytest.mark.parametrize("case", sorted(INVENTORIES))
def test_compiled_templates_render_the_bytes_jinja2_renders(case, monkeypatch):
    build, server = INVENTORIES[case]
    inventory = build()
    fast = render_all(RenderContext(inventory, server, STATE))
    monkeypatch.setattr(compiled, "TEMPLATES", {})
    slow = render_all(RenderContext(inventory, server, STATE))
    assert [(f.path, f.content, f.link) for f in fast] == [
        (f.path, f.content, f.link) for f in slow
    ]


def test_an_override_with_the_package_text_is_compiled_and_with_other_text_is_not(
    tmp_path, monkeypatch
):
    calls = []
    digest, function = compiled.TEMPLATES["hosts.j2"]

    def counted(context, jinja):
        calls.append(1)
        return function(context, jinja)

    monkeypatch.setitem(compiled.TEMPLATES, "hosts.j2", (digest, counted))
    text = (TEMPLATES / "hosts.j2").read_text()
    (tmp_path / "hosts.j2").write_text(text)
    same = render_all(RenderContext(_small(), "srv", STATE, tmp_path))
    assert calls == [1]
    (tmp_path / "hosts.j2").write_text(text + "# the site's own line\n")
    files = {f.path: f.content for f in render_all(RenderContext(_small(), "srv", STATE, tmp_path))}
    assert calls == [1]
    assert files["/etc/dim/hosts"].endswith(b"# the site's own line\n")
    assert {f.path: f.content for f in same}["/etc/dim/hosts"] in files["/etc/dim/hosts"]


def test_a_host_name_with_a_newline_is_refused_with_jinja2s_message():
    """The compiled hosts file counts its lines, and steps aside for Jinja2 to refuse."""
    cluster = _small().cluster
    node = cluster.nodes[0]
    spoiled = dataclasses.replace(node.boot, hostname="c01\n10.6.6.6 evil")
    node = dataclasses.replace(node, interfaces=(spoiled,))
    cluster = dataclasses.replace(cluster, nodes=(node, *cluster.nodes[1:]), by_name={})
    inventory = Inventory(cluster, {}, {})  # no MAC: dnsmasq's hosts file does not see it
    with pytest.raises(RenderError, match="template hosts.j2: a value holds a newline"):
        render_all(RenderContext(inventory, "srv", STATE))


def test_a_substituted_template_with_other_syntax_is_left_to_jinja2():
    # hosts.j2 has a loop: its text comes from Jinja2, with a line count no text can have
    render = compiled.substituted("hosts.j2")
    assert render({"header": "h"}, lambda values: "jinja2's\n") == ("jinja2's\n", -1)
