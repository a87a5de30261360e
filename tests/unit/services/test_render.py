"""Renderers: golden files for every flavour, and the properties that matter per file.

Regenerate the golden files on purpose only: ``DIM_UPDATE_GOLDEN=1 pytest tests/unit/services``,
then review the diff.
"""

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from dim.errors import RenderError
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.render import render_all
from dim.services.rendering import HEADER, RenderContext
from tests.unit.conftest import SMALL

GOLDEN = Path(__file__).parent / "golden"
STATE = Path("/var/lib/dim")


def render(inventory, template_dir=None):
    files = render_all(RenderContext(inventory, "srv", STATE, template_dir))
    return {f.path: f for f in files}


def flavoured(small_inventory, dhcp="dnsmasq", nfs="ganesha") -> Inventory:
    data = SMALL.replace(b'dhcp="dnsmasq"', f'dhcp="{dhcp}"'.encode())
    data = data.replace(b'nfs="ganesha"', f'nfs="{nfs}"'.encode())
    cluster = parse(data, "small.xml")
    return dataclasses.replace(small_inventory, cluster=cluster)


CASES = {
    "dnsmasq.conf": ("dnsmasq", "ganesha", "/etc/dnsmasq.d/dim.conf"),
    "dnsmasq.hosts": ("dnsmasq", "ganesha", "/etc/dim/dnsmasq.hosts"),
    "dnsmasq-dns.conf": ("dnsmasq", "ganesha", "/etc/dim/dnsmasq-dns.conf"),
    "kea-dhcp4.conf": ("kea", "ganesha", "/etc/kea/kea-dhcp4.conf"),
    "dhcpd.conf": ("isc", "ganesha", "/etc/dhcp/dhcpd.conf"),
    "dim-tftp.conf": ("kea", "ganesha", "/etc/dnsmasq.d/dim-tftp.conf"),
    "ganesha.conf": ("dnsmasq", "ganesha", "/etc/ganesha/ganesha.conf"),
    "dim.exports": ("dnsmasq", "kernel", "/etc/exports.d/dim.exports"),
    "hosts": ("dnsmasq", "ganesha", "/etc/dim/hosts"),
    "boot.ipxe": ("dnsmasq", "ganesha", "/srv/dim/http/boot.ipxe"),
    "alpha.ipxe": ("dnsmasq", "ganesha", "/srv/dim/http/dim/images/alpha.ipxe"),
    "pxelinux-alpha": ("dnsmasq", "ganesha", "/srv/dim/tftp/pxelinux.cfg/dim-alpha"),
    "grub.cfg": ("dnsmasq", "ganesha", "/srv/dim/tftp/grub/grub.cfg"),
    "grub-alpha.cfg": ("dnsmasq", "ganesha", "/srv/dim/tftp/grub/dim-alpha.cfg"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_file_matches_golden(small_inventory, name):
    dhcp, nfs, path = CASES[name]
    content = render(flavoured(small_inventory, dhcp, nfs))[path].content.decode()
    golden = GOLDEN / name
    if os.environ.get("DIM_UPDATE_GOLDEN"):
        golden.write_text(content)
    assert content == golden.read_text()


def test_kea_config_is_json_with_one_reservation_per_known_mac(small_inventory):
    text = render(flavoured(small_inventory, "kea"))["/etc/kea/kea-dhcp4.conf"].content.decode()
    config = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    (subnet,) = config["Dhcp4"]["subnet4"]
    reservations = {
        r["hostname"]: (r["hw-address"], r["ip-address"]) for r in subnet["reservations"]
    }
    assert reservations == {
        "c01": ("52:54:00:00:00:01", "10.10.0.11"),
        "c02": ("52:54:00:00:00:02", "10.10.0.12"),
        "c04": ("52:54:00:00:00:04", "10.10.0.14"),
        "g1": ("52:54:00:00:01:01", "10.10.0.100"),
    }


def test_every_text_file_says_it_is_generated(small_inventory):
    for dhcp in ("dnsmasq", "kea", "isc"):
        for file in render(flavoured(small_inventory, dhcp)).values():
            if file.content is not None and not file.path.endswith(".hosts"):
                assert HEADER in file.content.decode(), file.path


def test_loader_links_follow_each_nodes_current_image(linked_inventory):
    files = render(linked_inventory)
    links = {p: f.link for p, f in files.items() if f.link is not None}
    assert links["/srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-01"] == "dim-alpha"
    # c02 was switched to beta in the state, c04 is beta in the layout
    assert links["/srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-02"] == "dim-beta"
    assert links["/srv/dim/tftp/grub/nodes/52:54:00:00:00:04.cfg"] == "../dim-beta.cfg"
    # no MAC, no per-node file; PXELINUX and GRUB for each of the four known MACs (iPXE
    # nodes ask dim serve, which answers their scripts itself)
    assert len(links) == 8
    assert not [p for p in files if p.startswith("/srv/dim/http/dim/nodes/")]


def test_no_link_per_mac_when_every_loader_is_ipxe_and_the_rest_is_the_same(
    small_inventory, linked_inventory
):
    """The default loaders (iPXE for every kind of client, shim for no node): nothing reads a
    file per MAC; every other file is what a server that sends PXELINUX and GRUB gets, but
    the DHCP files that name those loaders."""
    files = render(small_inventory)
    assert not [f.path for f in files.values() if f.link is not None]
    dhcp = {"/etc/dnsmasq.d/dim.conf"}
    linked = {
        p: (f.content, f.link)
        for p, f in render(linked_inventory).items()
        if "/pxelinux.cfg/01-" not in p and "/grub/nodes/" not in p and p not in dhcp
    }
    assert {p: (f.content, f.link) for p, f in files.items() if p not in dhcp} == linked


def test_a_server_whose_http_root_another_server_serves_gets_an_ipxe_link_per_mac(
    small_inventory,
):
    data = SMALL.replace(b'<server name="srv"', b'<server http="none" name="srv"')
    inventory = dataclasses.replace(small_inventory, cluster=parse(data, "small.xml"))
    files = render(inventory)
    links = {p: f.link for p, f in files.items() if f.link is not None}
    assert links["/srv/dim/http/dim/nodes/52-54-00-00-00-01.ipxe"] == "../images/alpha.ipxe"
    assert links["/srv/dim/http/dim/nodes/52-54-00-00-00-02.ipxe"] == "../images/beta.ipxe"
    assert len(links) == 4  # iPXE's for each of the four known MACs: every loader is iPXE
    # the rest is what a server that dim serve answers for gets
    others = {p: (f.content, f.link) for p, f in render(small_inventory).items()}
    assert {p: (f.content, f.link) for p, f in files.items() if "/dim/nodes/" not in p} == others


def test_a_secure_boot_node_alone_gets_a_grub_link_between_the_others_links(small_inventory):
    """shim loads GRUB, which reads the node's file by its MAC; with the default loaders the
    node declared secure-boot is the only one with a link per MAC. With http="none" every
    node has its iPXE link, c04's GRUB link after its own, in layout order."""
    data = SMALL.replace(
        b'<node name="c04" image="beta"/>', b'<node name="c04" image="beta" secure-boot="yes"/>'
    )
    secure = dataclasses.replace(small_inventory, cluster=parse(data, "small.xml"))
    links = [(f.path, f.link) for f in render_all(RenderContext(secure, "srv", STATE)) if f.link]
    assert links == [("/srv/dim/tftp/grub/nodes/52:54:00:00:00:04.cfg", "../dim-beta.cfg")]
    data = data.replace(b'<server name="srv"', b'<server http="none" name="srv"')
    served = dataclasses.replace(small_inventory, cluster=parse(data, "small.xml"))
    paths = [f.path for f in render_all(RenderContext(served, "srv", STATE)) if f.link]
    assert paths == [
        "/srv/dim/http/dim/nodes/52-54-00-00-00-01.ipxe",
        "/srv/dim/http/dim/nodes/52-54-00-00-00-02.ipxe",
        "/srv/dim/http/dim/nodes/52-54-00-00-00-04.ipxe",
        "/srv/dim/tftp/grub/nodes/52:54:00:00:00:04.cfg",
        "/srv/dim/http/dim/nodes/52-54-00-00-01-01.ipxe",
    ]


def test_tftp_root_links_each_images_current_boot_build_for_grub(small_inventory, tmp_path):
    build = tmp_path / "boot" / "alpha" / "3"
    build.mkdir(parents=True)
    (build / "vmlinuz").write_bytes(b"kernel")
    (build / "initrd.img").write_bytes(b"initrd")
    (tmp_path / "boot" / "alpha" / "2").mkdir()  # incomplete: never named
    files = {f.path: f for f in render_all(RenderContext(small_inventory, "srv", tmp_path))}
    assert files["/srv/dim/tftp/dim/images/alpha/vmlinuz"].link == str(build / "vmlinuz")
    assert files["/srv/dim/tftp/dim/images/alpha/initrd.img"].link == str(build / "initrd.img")
    assert not any(p.startswith("/srv/dim/tftp/dim/images/beta/") for p in files)  # no build
    grub = files["/srv/dim/tftp/grub/dim-alpha.cfg"].content.decode()
    assert "if linux /dim/images/alpha/vmlinuz dim.server=" in grub
    assert "if initrd /dim/images/alpha/initrd.img; then" in grub


def test_tftp_only_dnsmasq_beside_kea_and_isc_unless_the_site_runs_its_own(small_inventory):
    tftp = "/etc/dnsmasq.d/dim-tftp.conf"
    for dhcp in ("kea", "isc"):
        assert render(flavoured(small_inventory, dhcp=dhcp))[tftp].service == "tftp"
    assert tftp not in render(small_inventory)  # dnsmasq serves TFTP in its own file
    data = SMALL.replace(b'dhcp="dnsmasq"', b'dhcp="kea" tftp="none"')
    own = dataclasses.replace(small_inventory, cluster=parse(data, "small.xml"))
    assert tftp not in render(own)


def test_image_kernel_arguments_carry_paths_and_options(small_inventory):
    text = render(small_inventory)["/srv/dim/http/dim/images/alpha.ipxe"].content.decode()
    assert "dim.root=10.10.0.2:/var/lib/dim/images/alpha/live" in text
    assert "dim.rw=10.10.0.2:/var/lib/dim/nodes" in text
    assert "dim.nfsopts=actimeo=1" in text
    assert "dim.persist=/etc dim.volatile=/tmp" in text


def test_admin_template_overrides_the_packaged_one(small_inventory, tmp_path):
    (tmp_path / "hosts.j2").write_text("# site hosts {{ cluster }}\n")
    files = render(small_inventory, tmp_path)
    assert files["/etc/dim/hosts"].content == b"# site hosts t\n"


def test_template_error_names_the_template(small_inventory, tmp_path):
    (tmp_path / "hosts.j2").write_text("{{ nothing_here }}\n")
    with pytest.raises(RenderError, match="template hosts.j2.*nothing_here"):
        render(small_inventory, tmp_path)


def test_ganesha_export_ids_beyond_its_limit_are_refused(small_inventory, monkeypatch):
    from dim.services import nfs

    monkeypatch.setattr(nfs, "GANESHA_MAX_EXPORT_ID", nfs.FIRST_NODE_EXPORT_ID + 2)
    with pytest.raises(RenderError, match="nfs-ganesha exports"):
        render(small_inventory)


def test_a_template_edited_between_commands_is_compiled_again_not_read_from_the_cache(
    small_inventory, tmp_path
):
    from dim.services import templating

    (tmp_path / "hosts.j2").write_text("# first {{ cluster }}\n")
    assert render(small_inventory, tmp_path)["/etc/dim/hosts"].content == b"# first t\n"
    templating._environment.cache_clear()  # as the next command: a new environment
    (tmp_path / "hosts.j2").write_text("# second {{ cluster }}\n")  # same name, same file
    assert render(small_inventory, tmp_path)["/etc/dim/hosts"].content == b"# second t\n"
