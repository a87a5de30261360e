"""services.clients: the table of client kinds, the server's overrides, the loader files, and
the DHCP answers each flavour renders from them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dim import architectures
from dim.layout.parser import parse
from dim.services import clients
from dim.services.clients import KINDS, SHIPPED, loader_files, loader_for
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.unit.conftest import SMALL

SERVER = b'<server name="srv" address="10.10.0.2" dhcp="dnsmasq" nfs="ganesha"'


def server_with(**attributes: str):
    extra = "".join(f' {name}="{value}"' for name, value in attributes.items())
    data = SMALL.replace(SERVER, SERVER + extra.encode())
    return parse(data, "small.xml").servers["srv"]


def test_every_client_kind_ends_in_ipxe_by_default():
    assert [(k.name, k.transport, k.default) for k in KINDS] == [
        ("ipxe", "http", "boot.ipxe"),
        ("uefi-http", "http", "snponly.efi"),
        ("uefi-pxe", "tftp", "snponly.efi"),
        ("bios-pxe", "tftp", "undionly.kpxe"),
    ]
    assert clients.BY_NAME["uefi-http"].arch == (16,)
    assert clients.BY_NAME["uefi-http"].vendor_class == "HTTPClient"
    assert clients.BY_NAME["uefi-pxe"].arch == (7, 9)


def test_every_default_loader_is_shipped_from_a_debian_package():
    for kind in KINDS[1:]:
        assert kind.default in SHIPPED
    assert {f.package for files in SHIPPED.values() for _, f in files} == {
        "ipxe",
        "pxelinux",
        "syslinux-common",
        "grub-efi-amd64-signed",
        "grub-efi-arm64-signed:arm64",
        "shim-signed",
    }


ARM_GROUP = b"""  <group name="arm" nodes="a[1-2]" image="alpha" arch="arm64">
    <interface network="boot" ip="10.10.0.{200+n1}"/>
  </group>
</cluster>"""


def with_arm_group():
    return parse(SMALL.replace(b"</cluster>", ARM_GROUP), "small.xml")


def test_a_cluster_of_one_architecture_has_the_default_kinds_only():
    assert clients.kinds_of(parse(SMALL, "small.xml")) == KINDS


def test_an_aarch64_group_adds_its_uefi_kinds_before_bios_with_its_table_s_codes_and_loader():
    kinds = clients.kinds_of(with_arm_group())
    assert [(k.name, k.arch, k.transport, k.default, k.architecture) for k in kinds[3:]] == [
        ("aarch64-uefi-http", (19,), "http", "grubaa64.efi", "aarch64"),
        ("aarch64-uefi-pxe", (11,), "tftp", "grubaa64.efi", "aarch64"),
        ("bios-pxe", (), "tftp", "undionly.kpxe", "x86_64"),
    ]
    assert kinds[3].vendor_class == "HTTPClient"


def test_the_default_kinds_agree_with_the_x86_64_table():
    x86 = architectures.known()["x86_64"]
    assert clients.BY_NAME["uefi-pxe"].arch == x86.dhcp_uefi
    assert clients.BY_NAME["uefi-http"].arch == x86.dhcp_uefi_http
    assert clients.BY_NAME["uefi-pxe"].default == x86.uefi_loader
    assert clients.BY_NAME["uefi-http"].default == x86.uefi_http_loader


def test_aarch64_nodes_bring_debians_arm64_grub_into_both_roots():
    cluster = with_arm_group()
    files = loader_files(cluster.servers["srv"], kinds=clients.kinds_of(cluster))
    arm = [(f.path, f.shipped.package, f.kind) for f in files if "aa64" in f.path]
    assert arm == [
        ("/srv/dim/http/grubaa64.efi", "grub-efi-arm64-signed:arm64", "aarch64-uefi-http"),
        ("/srv/dim/tftp/grubaa64.efi", "grub-efi-arm64-signed:arm64", "aarch64-uefi-pxe"),
    ]
    sources = {f.shipped.source for f in files if "aa64" in f.path}
    assert sources == {"/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"}


def test_aarch64_nodes_get_grubs_links_per_mac_and_x86_only_clusters_none():
    from dim.services.loaders import GRUB, link_rule

    assert GRUB in link_rule(with_arm_group(), "srv", None).loaders(False)
    assert GRUB not in link_rule(parse(SMALL, "small.xml"), "srv", None).loaders(False)


def test_defaults_go_to_the_tftp_root_and_the_http_loader_to_the_http_root():
    files = loader_files(server_with())
    assert [(f.path, f.shipped.source, f.kind) for f in files] == [
        ("/srv/dim/http/snponly.efi", "/usr/lib/ipxe/snponly.efi", "uefi-http"),
        ("/srv/dim/tftp/snponly.efi", "/usr/lib/ipxe/snponly.efi", "uefi-pxe"),
        ("/srv/dim/tftp/undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe", "bios-pxe"),
    ]


def test_pxelinux_brings_ldlinux_into_its_folder_and_grub_is_debians_network_image():
    files = loader_files(
        server_with(**{"bios-loader": "boot/lpxelinux.0"}, **{"uefi-loader": "grubx64.efi"})
    )
    shipped = {f.path: f.shipped.source for f in files}
    assert shipped["/srv/dim/tftp/boot/lpxelinux.0"] == "/usr/lib/PXELINUX/lpxelinux.0"
    assert shipped["/srv/dim/tftp/boot/ldlinux.c32"].endswith("/bios/ldlinux.c32")
    assert shipped["/srv/dim/tftp/grubx64.efi"].endswith("grubnetx64.efi.signed")


def test_a_sites_own_loader_is_named_but_not_shipped():
    server = server_with(**{"uefi-http-loader": "site/my.efi", "bios-loader": "pxelinux.0"})
    assert loader_for(server, "uefi-http") == "site/my.efi"
    own = {f.path: f.kind for f in loader_files(server) if f.shipped is None}
    assert own == {"/srv/dim/http/site/my.efi": "uefi-http", "/srv/dim/tftp/pxelinux.0": "bios-pxe"}


def test_the_uefi_http_loader_attribute_is_checked_like_the_others():
    with pytest.raises(Exception, match="uefi-http-loader"):
        server_with(**{"uefi-http-loader": "../x.efi"})


def dhcp_config(small_inventory, flavour: str, **attributes: str) -> str:
    extra = "".join(f' {name}="{value}"' for name, value in attributes.items())
    data = SMALL.replace(SERVER, SERVER + extra.encode()).replace(
        b'dhcp="dnsmasq"', f'dhcp="{flavour}"'.encode()
    )
    inventory = dataclasses.replace(small_inventory, cluster=parse(data, "small.xml"))
    files = render_all(RenderContext(inventory, "srv", Path("/var/lib/dim")))
    (config,) = [f for f in files if f.service == flavour and f.path.endswith(("conf", ".conf"))][
        :1
    ]
    return config.content.decode()


@pytest.mark.parametrize("flavour", ["dnsmasq", "kea", "isc"])
def test_each_flavour_answers_every_kind_with_the_tables_loader(small_inventory, flavour):
    text = dhcp_config(small_inventory, flavour)
    for wanted in (
        "http://10.10.0.2:8080/boot.ipxe",
        "http://10.10.0.2:8080/snponly.efi",
        "snponly.efi",
        "undionly.kpxe",
        "HTTPClient",
    ):
        assert wanted in text
    assert "pxelinux.0" not in text and "grubx64.efi" not in text


@pytest.mark.parametrize("flavour", ["dnsmasq", "kea", "isc"])
def test_overrides_reach_every_flavours_answers(small_inventory, flavour):
    text = dhcp_config(
        small_inventory,
        flavour,
        **{
            "bios-loader": "lpxelinux.0",
            "uefi-loader": "grubx64.efi",
            "uefi-http-loader": "efi/ipxe.efi",
        },
    )
    assert "lpxelinux.0" in text and "grubx64.efi" in text
    assert "http://10.10.0.2:8080/efi/ipxe.efi" in text
    assert "undionly.kpxe" not in text and "snponly.efi" not in text


@pytest.mark.parametrize("flavour", ["dnsmasq", "kea", "isc"])
def test_the_http_boot_answer_carries_option_60(small_inventory, flavour):
    text = dhcp_config(small_inventory, flavour)
    expected = {
        "dnsmasq": "dhcp-option-force=tag:!ipxe,tag:!secureboot,tag:efihttp,"
        "option:vendor-class,HTTPClient",
        "kea": r'"name": "vendor-class-identifier", "data": "HTTPClient", "always-send": true',
        "isc": r'option vendor-class-identifier "HTTPClient";',
    }[flavour]
    assert re.search(re.escape(expected), text)


SECURE = (
    SMALL.replace(
        b'<group name="gpu" nodes="g[1-2]" image="beta">',
        b'<group name="gpu" nodes="g[1-2]" image="beta" secure-boot="yes">',
    )
    .replace(
        b'<node name="c04" image="beta"/>', b'<node name="c04" image="beta" secure-boot="yes"/>'
    )
    .replace(
        b'<interface network="boot" ip="10.10.0.{100+i}"/>',
        b'<interface network="boot" ip="10.10.0.{100+i}"/><node name="g1" secure-boot="no"/>',
    )
)


def test_secure_boot_is_declared_per_group_and_per_node():
    cluster = parse(SECURE, "s.xml")
    declared = {n.name for n in cluster.nodes if n.secure_boot}
    assert declared == {"c04", "g2"}
    assert cluster.node("c04").image == "beta"  # the node's other overrides stay


def secure_config(small_inventory, flavour: str) -> str:
    data = SECURE.replace(b'dhcp="dnsmasq"', f'dhcp="{flavour}"'.encode())
    inventory = dataclasses.replace(small_inventory, cluster=parse(data, "s.xml"))
    files = render_all(RenderContext(inventory, "srv", Path("/var/lib/dim")))
    return "\n".join(f.content.decode() for f in files if f.service == flavour)


@pytest.mark.parametrize("flavour", ["dnsmasq", "kea", "isc"])
def test_a_secure_boot_node_is_sent_shim_by_its_mac_and_the_others_are_not(
    small_inventory, flavour
):
    text = secure_config(small_inventory, flavour)
    c04, c01 = "52:54:00:00:00:04", "52:54:00:00:00:01"  # MACs of small_inventory
    line = next(line for line in text.splitlines() if c04 in line)
    other = next(line for line in text.splitlines() if c01 in line)
    wanted = {
        "dnsmasq": "52:54:00:00:00:04,set:secureboot,10.10.0.14,c04",
        "kea": '"next-server": "10.10.0.2", "boot-file-name": "shimx64.efi"',
        "isc": 'filename "shimx64.efi";',
    }[flavour]
    assert wanted in line and "shimx64.efi" not in other and "secureboot" not in other
    if flavour == "dnsmasq":
        assert "dhcp-boot=tag:secureboot,shimx64.efi,srv,10.10.0.2" in text


def test_shim_is_shipped_only_to_a_server_with_secure_boot_nodes():
    server = server_with()
    assert not any("shim" in f.path for f in loader_files(server))
    shipped = {f.path: f.shipped for f in loader_files(server, secure_boot=True)}
    assert shipped["/srv/dim/tftp/shimx64.efi"].package == "shim-signed"
    assert shipped["/srv/dim/tftp/grubx64.efi"].source.endswith("grubnetx64.efi.signed")
    assert shipped["/srv/dim/tftp/mmx64.efi"].source == "/usr/lib/shim/mmx64.efi.signed"
    own = server_with(**{"secure-boot-loader": "site/shim.efi"})
    assert loader_for(own, "uefi-secureboot") == "site/shim.efi"
