"""What the servers of a failover set render: the same exports and loader files on each, DHCP
that sends every node its own server's address whichever server answers, keepalived.

`tests.unit.conftest.PAIR`: srv1 and srv2 in set ``pair`` (srv2 with loaders of its own),
``solo`` beside them. tests/integration/test_dhcp_failover.py runs the DHCP part on real
daemons; the golden files here pin srv1's text (``DIM_UPDATE_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.unit.conftest import PAIR, PAIR_MACS

GOLDEN = Path(__file__).parent / "golden"
STATE = Path("/var/lib/dim")
TFTP = "/srv/dim/tftp"

# What each server's nodes are sent, by client kind (srv2 overrides every loader).
SENT = {
    "srv1": {
        "ipxe": "http://10.20.0.1:8080/boot.ipxe",
        "uefi-http": "http://10.20.0.1:8080/snponly.efi",
        "uefi-pxe": "snponly.efi",
        "bios-pxe": "undionly.kpxe",
        "secure-boot": "shimx64.efi",
    },
    "srv2": {
        "ipxe": "http://10.20.0.2:8080/boot.ipxe",
        "uefi-http": "http://10.20.0.2:8080/ipxe.efi",
        "uefi-pxe": "grubx64.efi",
        "bios-pxe": "lpxelinux.0",
        "secure-boot": "sb.efi",
    },
}
ADDRESS = {"srv1": "10.20.0.1", "srv2": "10.20.0.2"}
NODE_SERVER = {"a1": "srv1", "a2": "srv1", "b1": "srv2", "b2": "srv2"}


def flavoured(inventory: Inventory, dhcp: str) -> Inventory:
    data = PAIR.replace(b'dhcp="dnsmasq"', f'dhcp="{dhcp}"'.encode())
    return dataclasses.replace(inventory, cluster=parse(data, "pair.xml"))


def render(inventory: Inventory, server: str, template_dir: Path | None = None) -> dict:
    files = render_all(RenderContext(inventory, server, STATE, template_dir))
    return {f.path: f for f in files}


def text(files: dict, path: str) -> str:
    return files[path].content.decode()


def body(content: str) -> list[str]:
    """A file's lines without its comments, which name the server that rendered it."""
    return [ln for ln in content.splitlines() if not ln.lstrip().startswith(("#", "!", "//"))]


# -- golden files ----------------------------------------------------------------------------

GOLDEN_CASES = {
    "pair-srv1-dnsmasq.conf": ("dnsmasq", "/etc/dnsmasq.d/dim.conf"),
    "pair-srv1-dnsmasq.hosts": ("dnsmasq", "/etc/dim/dnsmasq.hosts"),
    "pair-srv1-dnsmasq-dns.conf": ("dnsmasq", "/etc/dim/dnsmasq-dns.conf"),
    "pair-srv1-dhcpd.conf": ("isc", "/etc/dhcp/dhcpd.conf"),
    "pair-srv1-kea-dhcp4.conf": ("kea", "/etc/kea/kea-dhcp4.conf"),
    "pair-srv1-ganesha.conf": ("dnsmasq", "/etc/ganesha/ganesha.conf"),
    "pair-srv1-keepalived.conf": ("dnsmasq", "/etc/keepalived/keepalived.conf"),
    "pair-srv1-dim-check-http": ("dnsmasq", "/etc/keepalived/dim-check-http"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_a_failover_sets_file_matches_golden(pair_inventory, name):
    dhcp, path = GOLDEN_CASES[name]
    content = text(render(flavoured(pair_inventory, dhcp), "srv1"), path)
    golden = GOLDEN / name
    if os.environ.get("DIM_UPDATE_GOLDEN"):
        golden.write_text(content)
    assert content == golden.read_text()


# -- a lone server beside a set ----------------------------------------------------------------


@pytest.mark.parametrize("dhcp", ["dnsmasq", "isc", "kea"])
def test_a_lone_server_beside_a_set_renders_as_without_sets(pair_inventory, dhcp):
    files = render(flavoured(pair_inventory, dhcp), "solo")
    assert not any("keepalived" in path or "@" in path for path in files)
    everything = "".join(
        f.content.decode() for p, f in files.items() if f.content and p != "/etc/dim/hosts"
    )
    assert "dim-srv" not in everything and not re.search(r"\b10\.20\.0\.[12]\b", everything)
    assert not re.search(r"\b(a1|b1)\b", everything)  # the set's nodes are not its own
    ganesha = text(files, "/etc/ganesha/ganesha.conf")
    assert "Bind_addr = 10.20.0.3;" in ganesha and "Server_Scope" not in ganesha
    assert "/etc/ganesha/dim-epoch" not in files  # Debian's defaults: its start time


def test_the_servers_of_a_set_start_ganesha_with_epochs_no_other_server_of_it_has(
    pair_inventory, tmp_path
):
    """ganesha numbers its client and session ids from its epoch: two servers started in the
    same second must still have different ones, and one server a new one at each start."""
    epochs = {}
    for rank, server in enumerate(("srv1", "srv2")):
        files = render(pair_inventory, server)
        script = files["/etc/ganesha/dim-epoch"]
        assert script.mode == 0o755 and script.service == "ganesha"
        debian = text(files, "/etc/ganesha/nfs-ganesha")
        assert 'EPOCH_EXEC="/etc/ganesha/dim-epoch"' in debian
        assert 'OPTIONS="-L /var/log/ganesha/ganesha.log -f /etc/ganesha/ganesha.conf' in debian
        # run it as Debian's nfs-ganesha-config.sh does, with the clock stopped at one second
        clock = tmp_path / "bin"
        clock.mkdir(exist_ok=True)
        (clock / "date").write_text("#!/bin/sh\necho 1764660000\n")
        (clock / "date").chmod(0o755)
        path = tmp_path / f"{server}-epoch"
        path.write_bytes(script.content)
        path.chmod(0o755)
        printed = subprocess.run(
            [str(path)], capture_output=True, text=True, check=True,
            env={"PATH": f"{clock}:/usr/bin:/bin"},
        ).stdout  # fmt: skip
        epochs[server] = int(printed)
        assert epochs[server] == (1764660000 << 4 | rank) & 0xFFFFFFFF
    assert epochs["srv1"] != epochs["srv2"]


# -- the same exports and loader files on every server of the set -------------------------------


def test_both_servers_export_every_node_of_the_set_with_the_same_ids_and_paths(pair_inventory):
    exports = {}
    for server in ("srv1", "srv2"):
        ganesha = text(render(pair_inventory, server), "/etc/ganesha/ganesha.conf")
        exports[server] = re.findall(r"^EXPORT \{.*$", ganesha, re.M)
        assert "Bind_addr = 0.0.0.0;" in ganesha
        assert 'Server_Scope = "dim.ha.pair";' in ganesha
        assert 'Server_Owner = "dim.ha.pair";' in ganesha
    assert exports["srv1"] == exports["srv2"]
    ids = [re.search(r"Export_Id = (\d+);", e).group(1) for e in exports["srv1"]]
    paths = [re.search(r'Path = "?([^";]+)"?;', e).group(1) for e in exports["srv1"]]
    assert ids == ["1", "1000", "1001", "1002", "1003"]
    assert paths == [f"{STATE}/images", *(f"{STATE}/nodes/{n}" for n in NODE_SERVER)]


def test_both_servers_render_the_same_loader_files_each_node_with_its_own_servers(
    pair_inventory,
):
    # HTTP roots served by another server than dim serve: the iPXE links per MAC too
    data = PAIR.replace(b"<server ", b'<server http="none" ')
    served_elsewhere = dataclasses.replace(pair_inventory, cluster=parse(data, "pair.xml"))
    rendered = {}
    for server in ("srv1", "srv2"):
        files = render(served_elsewhere, server)
        rendered[server] = {
            path: (f.content, f.link)
            for path, f in files.items()
            if path.startswith("/srv/dim/") and path != "/srv/dim/http/boot.ipxe"
        }
    assert rendered["srv1"] == rendered["srv2"]
    files = rendered["srv1"]
    for image in ("alpha", "beta"):
        for server in ("srv1", "srv2"):
            address = ADDRESS[server]
            ipxe = files[f"/srv/dim/http/dim/images/{image}@{server}.ipxe"][0].decode()
            pxelinux = files[f"/srv/dim/tftp/pxelinux.cfg/dim-{image}@{server}"][0].decode()
            grub = files[f"/srv/dim/tftp/grub/dim-{image}@{server}.cfg"][0].decode()
            assert f"kernel http://{address}:8080/dim/images/{image}/vmlinuz" in ipxe
            assert f"KERNEL http://{address}:8080/dim/images/{image}/vmlinuz" in pxelinux
            for config in (ipxe, pxelinux, grub):
                assert f" dim.server={address} " in config
                assert f" dim.root={address}:{STATE}/images/{image}/live " in config
                assert f" dim.rw={address}:{STATE}/nodes " in config
    assert files["/srv/dim/http/dim/nodes/52-54-00-20-00-01.ipxe"][1] == "../images/alpha@srv1.ipxe"
    assert files["/srv/dim/tftp/pxelinux.cfg/01-52-54-00-20-01-01"][1] == "dim-beta@srv2"
    assert files["/srv/dim/tftp/grub/nodes/52:54:00:20:01:02.cfg"][1] == "../dim-beta@srv2.cfg"


def test_a_switched_node_of_a_peer_links_to_the_image_of_its_own_server(pair_inventory):
    switched = dataclasses.replace(pair_inventory, images={"b1": "alpha"})
    for server in ("srv1", "srv2"):
        files = render(switched, server)
        link = files["/srv/dim/tftp/pxelinux.cfg/01-52-54-00-20-01-01"].link
        assert link == "dim-alpha@srv2"


# -- DHCP: every node its own server's address, for every client kind ----------------------------

DNSMASQ_KINDS = {  # the tags dnsmasq sets for each kind of client (dnsmasq.conf.j2)
    "ipxe": {"ipxe"},
    "uefi-http": {"httpclient", "httparch", "efihttp"},
    "uefi-pxe": {"efi64"},
    "bios-pxe": set(),
}


def dnsmasq_answer(conf: str, tags: set[str]) -> tuple[str, str | None]:
    """The one dhcp-boot line whose tags a client with ``tags`` matches: (file, address)."""
    found = []
    for line in conf.splitlines():
        if not line.startswith("dhcp-boot="):
            continue
        fields = line.removeprefix("dhcp-boot=").split(",")
        needed = [f[4:] for f in fields if f.startswith("tag:")]
        rest = [f for f in fields if not f.startswith("tag:")]
        if all((t[1:] not in tags) if t.startswith("!") else (t in tags) for t in needed):
            found.append((rest[0], rest[2] if len(rest) > 2 else None))
    assert len(found) == 1, (tags, found)
    return found[0]


@pytest.mark.parametrize("server", ["srv1", "srv2"])
def test_dnsmasq_sends_each_node_its_own_servers_loader_and_address(pair_inventory, server):
    files = render(pair_inventory, server)
    conf = text(files, "/etc/dnsmasq.d/dim.conf")
    hosts = {
        line.split(",")[0]: {f[4:] for f in line.split(",") if f.startswith("set:")}
        for line in text(files, "/etc/dim/dnsmasq.hosts").splitlines()
    }
    assert "\nbind-dynamic\n" in conf and "bind-interfaces" not in conf
    for node, owner in NODE_SERVER.items():
        tags = hosts[PAIR_MACS[(node, "boot")]]
        assert f"dim-{owner}" in tags
        kinds = ["secure-boot"] if node.endswith("2") else list(DNSMASQ_KINDS)
        for kind in kinds:
            client = tags | DNSMASQ_KINDS.get(kind, {"efi64"})
            boot_file, address = dnsmasq_answer(conf, client)
            assert boot_file == SENT[owner][kind], (node, kind)
            if not boot_file.startswith("http://"):
                assert address == ADDRESS[owner], (node, kind)
    uefi_http = "tag:dim-srv2,tag:!ipxe,tag:!secureboot,tag:efihttp,option:vendor-class"
    assert f"dhcp-option-force={uefi_http},HTTPClient" in conf


def isc_block(conf: str, host: str) -> str:
    """The ``group { … }`` of dhcpd.conf that holds ``host``."""
    for block in conf.split("\ngroup {\n")[1:]:
        if f"  host {host} {{" in block:
            return block
    raise AssertionError(f"host {host} is in no group")


@pytest.mark.parametrize("server", ["srv1", "srv2"])
def test_isc_dhcpd_sends_each_node_its_own_servers_loader_and_address(pair_inventory, server):
    conf = text(render(flavoured(pair_inventory, "isc"), server), "/etc/dhcp/dhcpd.conf")
    for node, owner in NODE_SERVER.items():
        block = isc_block(conf, node)
        assert block.startswith(f"  next-server {ADDRESS[owner]};\n")
        branches = re.findall(r'filename "([^"]+)";', block.split("  host ")[0])
        sent = SENT[owner]
        assert branches == [
            sent["ipxe"], sent["ipxe"], sent["uefi-http"], sent["uefi-pxe"], sent["bios-pxe"]
        ]  # fmt: skip
        host = next(ln for ln in block.splitlines() if f"host {node} " in ln)
        assert (f'filename "{sent["secure-boot"]}";' in host) == node.endswith("2")
        assert PAIR_MACS[(node, "boot")] in host


KEA_KINDS = {"ipxe": "ipxe", "uefi-http": "uefi-http", "uefi-pxe": "uefi", "bios-pxe": "bios"}


def kea_config(files: dict) -> dict:
    lines = text(files, "/etc/kea/kea-dhcp4.conf").splitlines()
    return json.loads("\n".join(ln for ln in lines if not ln.lstrip().startswith("//")))


@pytest.mark.parametrize("server", ["srv1", "srv2"])
def test_kea_sends_each_node_its_own_servers_loader_and_address(pair_inventory, server):
    dhcp4 = kea_config(render(flavoured(pair_inventory, "kea"), server))["Dhcp4"]
    classes = {c["name"]: c for c in dhcp4["client-classes"]}
    for kind in KEA_KINDS.values():  # the kinds' own classes send nothing in a set
        assert not {"next-server", "boot-file-name"} & set(classes[kind])
    for owner, sent in SENT.items():
        assert classes[f"dim-{owner}"] == {"name": f"dim-{owner}"}  # set by the reservations
        for kind, name in KEA_KINDS.items():
            found = classes[f"dim-{owner}-{name}"]
            # depends on KNOWN: evaluated once the reservation (and its class) is found
            assert (
                found["test"] == f"member('KNOWN') and member('dim-{owner}') and member('{name}')"
            )
            assert found["boot-file-name"] == sent[kind]
            http = sent[kind].startswith("http://")
            assert found.get("next-server") == (None if http else ADDRESS[owner])
    (subnet,) = dhcp4["subnet4"]
    reservations = {r["hostname"]: r for r in subnet["reservations"]}
    for node, owner in NODE_SERVER.items():
        reservation = reservations[node]
        assert reservation["client-classes"] == [f"dim-{owner}"]
        secure = (reservation.get("next-server"), reservation.get("boot-file-name"))
        expected = (ADDRESS[owner], SENT[owner]["secure-boot"])
        assert secure == (expected if node.endswith("2") else (None, None))


DHCP_FILES = {
    "dnsmasq": "/etc/dnsmasq.d/dim.conf",
    "isc": "/etc/dhcp/dhcpd.conf",
    "kea": "/etc/kea/kea-dhcp4.conf",
}


@pytest.mark.parametrize("dhcp", sorted(DHCP_FILES))
def test_both_servers_of_a_set_render_the_same_dhcp_but_for_the_comments(pair_inventory, dhcp):
    inventory = flavoured(pair_inventory, dhcp)
    one, two = (text(render(inventory, s), DHCP_FILES[dhcp]) for s in ("srv1", "srv2"))
    # each listens on its own interface (srv1 eth0, srv2 eth1); the rest is the same
    one = one.replace("interface=eth0", "interface=eth1").replace('[ "eth0" ]', '[ "eth1" ]')
    assert body(one) == body(two)


@pytest.mark.parametrize("dhcp", ["kea", "isc"])
def test_tftp_beside_kea_or_isc_binds_the_addresses_that_arrive_on_takeover(pair_inventory, dhcp):
    # bind-interfaces binds the addresses present at start only: a peer's service address
    # moved here later got no TFTP answer (tests/integration/test_dhcp_failover.py)
    conf = text(render(flavoured(pair_inventory, dhcp), "srv1"), "/etc/dnsmasq.d/dim-tftp.conf")
    assert body(conf)[-4:] == ["interface=eth0", "bind-dynamic", "enable-tftp", f"tftp-root={TFTP}"]
    assert "bind-interfaces" not in conf
