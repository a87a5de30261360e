"""The rule of the links per MAC (dim.services.loaders.link_rule): a node gets the PXELINUX or
GRUB link only if a loader its failover set's DHCP sends can read it, every link where dim
cannot know what is sent."""

import pytest

from dim.layout.parser import parse
from dim.services.loaders import CHOOSING_TEMPLATES, link_rule, node_links
from tests.unit.conftest import PAIR, SMALL

BOTH = ["grub", "pxelinux"]


def rule_of(attributes: str = "", data: bytes = SMALL, server: str = "srv", template_dir=None):
    """(ipxe, loaders of every node, loaders of a secure-boot node) of ``server`` with
    ``attributes`` added to every ``<server>``."""
    cluster = parse(data.replace(b"<server ", f"<server {attributes} ".encode()), "x.xml")
    rule = link_rule(cluster, server, template_dir)
    return rule.ipxe, sorted(rule.loaders(False)), sorted(rule.loaders(True))


@pytest.mark.parametrize(
    ("attributes", "every_node", "secure_boot"),
    [
        ("", [], ["grub"]),  # iPXE for every kind of client, shim for secure-boot nodes
        ('bios-loader="lpxelinux.0"', ["pxelinux"], BOTH),
        ('uefi-loader="grubx64.efi"', ["grub"], ["grub"]),
        ('uefi-http-loader="grubx64.efi"', ["grub"], ["grub"]),
        ('uefi-loader="shimx64.efi"', ["grub"], ["grub"]),
        ('bios-loader="undionly.kpxe" uefi-loader="ipxe.efi"', [], ["grub"]),
        ('uefi-loader="efi/snponly.efi"', [], ["grub"]),  # Debian's iPXE in a folder
        ('secure-boot-loader="snponly.efi"', [], []),  # Secure Boot off, iPXE for them too
        ('secure-boot-loader="lpxelinux.0"', [], ["pxelinux"]),
        # a site's own loader: it may read either file
        ('bios-loader="pxelinux.0"', BOTH, BOTH),
        ('uefi-http-loader="site/boot.efi"', BOTH, BOTH),
        ('secure-boot-loader="sb.efi"', [], BOTH),
    ],
)
def test_each_loader_choice_links_what_its_loaders_read(attributes, every_node, secure_boot):
    assert rule_of(attributes) == (False, every_node, secure_boot)


def test_the_ipxe_link_follows_the_http_server_alone():
    assert rule_of('http="none"') == (True, [], ["grub"])
    assert rule_of('http="none" bios-loader="lpxelinux.0"') == (True, ["pxelinux"], BOTH)


def test_a_server_whose_dhcp_dim_does_not_render_links_every_loader():
    """The site's own DHCP server sends what it likes: every node gets both, as before."""
    data = SMALL.replace(b'dhcp="dnsmasq"', b'dhcp="none"')
    assert rule_of(data=data) == (False, BOTH, BOTH)


@pytest.mark.parametrize("template", CHOOSING_TEMPLATES)
def test_an_override_of_a_template_that_chooses_the_loader_links_every_loader(tmp_path, template):
    (tmp_path / template).write_text("# the site's own\n")
    assert rule_of(template_dir=tmp_path) == (False, BOTH, BOTH)


def test_an_override_of_another_template_changes_nothing(tmp_path):
    for other in ("hosts.j2", "exports.j2", "grub.cfg.j2", "pxelinux-image.j2"):
        (tmp_path / other).write_text("# the site's own\n")
    assert rule_of(template_dir=tmp_path) == (False, [], ["grub"])
    assert rule_of(template_dir=tmp_path / "missing") == (False, [], ["grub"])


def test_a_failover_set_links_what_any_of_its_servers_sends():
    """PAIR: srv1 has the defaults, its peer srv2 sends PXELINUX and GRUB, and a site's own
    Secure Boot loader: both servers render both links for every node of the set (a node may
    be answered by either); solo, beside them, none."""
    assert rule_of(data=PAIR, server="srv1") == (False, BOTH, BOTH)
    assert rule_of(data=PAIR, server="srv2") == (False, BOTH, BOTH)
    assert rule_of(data=PAIR, server="solo") == (False, [], ["grub"])


def test_a_failover_set_with_a_peer_sending_pxelinux_links_pxelinux_on_both():
    data = PAIR.replace(b'uefi-loader="grubx64.efi" ', b"").replace(
        b'secure-boot-loader="sb.efi"', b""
    )
    data = data.replace(b'uefi-http-loader="ipxe.efi"', b"")
    assert rule_of(data=data, server="srv1") == (False, ["pxelinux"], BOTH)
    assert rule_of(data=data, server="srv2") == (False, ["pxelinux"], BOTH)


def test_a_failover_set_with_a_peer_whose_dhcp_is_the_sites_links_every_loader():
    data = PAIR.replace(
        b'interface="eth1"\n          dhcp="dnsmasq"', b'interface="eth1"\n          dhcp="none"'
    )
    assert data != PAIR
    assert rule_of(data=data, server="srv1") == (False, BOTH, BOTH)
    assert rule_of(data=data, server="solo") == (False, [], ["grub"])


def test_node_links_are_those_of_the_rule_in_the_loaders_order():
    cluster = parse(SMALL.replace(b"<server ", b'<server http="none" '), "x.xml")
    server, mac = cluster.servers["srv"], "52:54:00:00:00:01"
    rule = link_rule(cluster, "srv", None)
    assert [f.path for f in node_links(server, rule, mac, "alpha")] == [
        "/srv/dim/http/dim/nodes/52-54-00-00-00-01.ipxe"
    ]
    secure = node_links(server, rule, mac, "alpha", secure_boot=True)
    assert [(f.path, f.link) for f in secure] == [
        ("/srv/dim/http/dim/nodes/52-54-00-00-00-01.ipxe", "../images/alpha.ipxe"),
        ("/srv/dim/tftp/grub/nodes/52:54:00:00:00:01.cfg", "../dim-alpha.cfg"),
    ]
    cluster = parse(SMALL.replace(b"<server ", b'<server bios-loader="lpxelinux.0" '), "x.xml")
    rule = link_rule(cluster, "srv", None)
    assert [(f.path, f.link) for f in node_links(server, rule, mac, "beta")] == [
        ("/srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-01", "dim-beta")
    ]
