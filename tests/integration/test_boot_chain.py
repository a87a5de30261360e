"""Every boot chain dim sets up is complete: each kind of client, each DHCP flavour, for real.

dim's own configuration (a layout with one server and three nodes with MACs, ``dim apply`` into
a root, validated by the real daemons) runs in a network namespace: the real DHCP server, a TFTP
server (dnsmasq's own for dnsmasq; for Kea and ISC dhcpd, which have none, dnsmasq with the
TFTP-only file dim renders beside them) and a real ``dim serve``, each seeing the root's files
at their usual paths through private bind mounts, as ``dim lab`` runs them. From a client
namespace, the DHCP client double asks as each firmware would (tests/doubles/dhcp.py), and every
file of the chain is then fetched as the firmware and the loaders would: the loader over TFTP
(``curl tftp://``) or HTTP, then, as the loader is iPXE, DHCP again as iPXE, ``boot.ipxe``, the
node's own script, and the kernel and initrd it names. With PXELINUX, GRUB or Secure Boot's shim
and GRUB chosen instead, every path their configuration names is fetched the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dim.actions import nodes
from dim.actions.apply import apply
from dim.actions.context import Context
from dim.lab.daemons import BOUND
from dim.lab.netns import Segment, run, tcp_listening
from tests.conftest import require_binary
from tests.doubles.dhcp import HTTP_CLIENT, DhcpLease, dhcp_request, dhcp_server_command
from tests.integration.conftest import require_dhcp_server

pytestmark = pytest.mark.integration

SERVER = "10.77.0.1"
BOOT_URL = f"http://{SERVER}:8080"
MACS = {
    "n1": "52:54:00:77:00:11",
    "n2": "52:54:00:77:00:12",
    "n3": "52:54:00:77:00:13",
    "n4": "52:54:00:77:00:14",  # declared secure-boot="yes"
}
KERNEL = os.urandom(2 * 1024 * 1024 + 3)
INITRD = os.urandom(512 * 1024 + 7)

LAYOUT = """<?xml version="1.0"?>
<cluster name="chain" domain="chain.lab">
  <network name="boot" subnet="10.77.0.0/24" gateway="10.77.0.1"/>
  <server name="srv" address="{server}" dhcp="{flavour}" nfs="ganesha" interface="br0"{extra}/>
  <image name="tiny"><volatile path="/tmp"/></image>
  <group name="nodes" nodes="n[1-4]" image="tiny">
    <interface network="boot" ip="10.77.0.{{10+n1}}"/>
    <node name="n4" secure-boot="yes"/>
  </group>
</cluster>
"""

# What each kind of client sends (see tests/doubles/dhcp.py) and the loader it must get.
KINDS = {
    "bios-pxe": ({}, "undionly.kpxe"),
    "uefi-pxe": ({"uefi": True}, "snponly.efi"),
    "uefi-pxe-arch9": ({"uefi": True, "arch": 9}, "snponly.efi"),
    "uefi-http": ({"arch": 16, "vendor_class": HTTP_CLIENT}, f"{BOOT_URL}/snponly.efi"),
    "ipxe": ({"ipxe": True}, f"{BOOT_URL}/boot.ipxe"),
}
SHIPPED = {
    "undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe",
    "snponly.efi": "/usr/lib/ipxe/snponly.efi",
    "lpxelinux.0": "/usr/lib/PXELINUX/lpxelinux.0",
    "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32",
    "grubx64.efi": "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
    "shimx64.efi": "/usr/lib/shim/shimx64.efi.signed",
    "mmx64.efi": "/usr/lib/shim/mmx64.efi.signed",
}


@dataclass
class Site:
    seg: Segment
    folder: Path

    def ask(self, mac: str, **client) -> DhcpLease:
        """DHCP as a client kind would, then take the address, as the loader does next."""
        c = self.seg.clients[0]
        lease = dhcp_request(c.namespace, c.iface, mac, **client)  # option 60 not asked for
        run(c.namespace, ["ip", "address", "flush", "dev", c.iface])
        run(c.namespace, ["ip", "address", "add", f"{lease.ip}/24", "dev", c.iface])
        return lease

    def fetch(self, url: str) -> bytes:
        """GET over HTTP or TFTP from the client's namespace, as a loader would."""
        out = self.folder / "fetched"
        c = self.seg.clients[0]
        done = run(
            c.namespace, ["curl", "-sf", "--max-time", "20", "-o", str(out), url], check=False
        )
        assert done.returncode == 0, f"{url}: curl exited {done.returncode} {done.stderr}"
        return out.read_bytes()

    def tftp(self, lease: DhcpLease, name: str) -> bytes:
        assert lease.next_server == SERVER
        return self.fetch(f"tftp://{SERVER}/{name.lstrip('/')}")


def bound(command: list[str], folder: Path) -> list[str]:
    """``command`` in a mount namespace of its own that sees the root's files at their paths."""
    binds = {path: folder / "root" / path.lstrip("/") for path in BOUND}
    binds |= {"/var/lib/kea": folder / "kea", "/run/kea": folder / "kea"}
    lines = []
    for target, source in binds.items():
        source.mkdir(parents=True, exist_ok=True)
        lines.append(f"mkdir -p {shlex.quote(target)} && mount --bind {source} {target}")
    script = " && ".join([*lines, f"exec {shlex.join(command)}"])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


def make_site(seg: Segment, folder: Path, flavour: str, extra: str = "") -> Site:
    """dim's configuration applied into ``folder/root``, its daemons running on the segment."""
    require_dhcp_server(flavour)
    require_binary("dnsmasq", "dnsmasq")
    require_binary("curl", "curl")
    config = folder / "cluster.xml"
    config.write_text(LAYOUT.format(server=SERVER, flavour=flavour, extra=extra))
    ctx = Context(config=config, state=folder / "state")
    for node, mac in MACS.items():
        nodes.set_mac(ctx, node, mac)
    build = folder / "state" / "boot" / "tiny" / "1"
    build.mkdir(parents=True)
    (build / "vmlinuz").write_bytes(KERNEL)
    (build / "initrd.img").write_bytes(INITRD)
    report = apply(ctx, root=folder / "root", do_reload=False)  # validated by the daemons
    assert flavour in report.result.validated
    start_daemons(seg, folder, flavour, ctx)
    return Site(seg, folder)


def start_daemons(seg: Segment, folder: Path, flavour: str, ctx: Context) -> None:
    paths = {
        "dnsmasq": "/etc/dnsmasq.d/dim.conf",
        "kea": "/etc/kea/kea-dhcp4.conf",
        "isc": "/etc/dhcp/dhcpd.conf",
    }
    argv, env = dhcp_server_command(flavour, Path(paths[flavour]), folder, seg.bridge)
    daemon = seg.start(bound(argv, folder), log=folder / f"{flavour}.log", env=env)
    daemon.wait_udp(67)
    if flavour != "dnsmasq":  # Kea and dhcpd have no TFTP server: dim's TFTP-only dnsmasq
        conf = "--conf-file=/etc/dnsmasq.d/dim-tftp.conf"
        tftp = ["dnsmasq", "--keep-in-foreground", conf, "--user=root", "--pid-file="]
        tftp += ["--log-facility=-"]
        seg.start(bound(tftp, folder), log=folder / "tftp.log", env=env).wait_udp(69)
    else:
        daemon.wait_udp(69)
    python = [sys.executable, "-m", "dim", "--config", str(ctx.config), "--state", str(ctx.state)]
    serve = [*python, "serve", "--listen", SERVER, "--port", "8080"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = seg.start(bound(serve, folder), log=folder / "serve.log", env=environment)
    deadline = time.monotonic() + 20
    while not tcp_listening(seg.server, 8080):
        assert process.running and time.monotonic() < deadline, process.output()
        time.sleep(0.2)


@pytest.fixture(params=["dnsmasq", "kea", "isc"])
def flavour(request) -> str:
    return request.param


@pytest.fixture
def site(lab: Segment, tmp_path: Path, flavour: str) -> Iterator[Site]:
    yield make_site(lab, tmp_path, flavour)


def follow_ipxe(site: Site, mac: str, *, uefi: bool) -> None:
    """As iPXE: DHCP again, boot.ipxe, the node's script, and the kernel and initrd it names."""
    lease = site.ask(mac, ipxe=True, uefi=uefi)
    assert lease.boot_file == f"{BOOT_URL}/boot.ipxe"
    entry = site.fetch(lease.boot_file).decode()
    chain = re.search(r"^chain (\S+)", entry, re.M).group(1)
    script = site.fetch(chain.replace("${mac:hexhyp}", mac.replace(":", "-"))).decode()
    kernel = re.search(r"^kernel (\S+)", script, re.M).group(1)
    initrd = re.search(r"^initrd --name \S+ (\S+)", script, re.M).group(1)
    assert site.fetch(kernel) == KERNEL
    assert site.fetch(initrd) == INITRD


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_client_kind_gets_a_loader_that_exists_and_ends_in_its_kernel(site: Site, kind):
    client, boot_file = KINDS[kind]
    mac = MACS["n1"]
    lease = site.ask(mac, **client)
    assert lease.boot_file == boot_file
    if boot_file.startswith(f"{BOOT_URL}/boot.ipxe"):
        follow_ipxe(site, mac, uefi=False)
        return
    if boot_file.startswith("http://"):  # UEFI HTTP boot
        assert lease.vendor_class == "HTTPClient"  # firmware ignores the offer otherwise
        loader = site.fetch(boot_file)
    else:
        loader = site.tftp(lease, boot_file)
    assert loader == Path(SHIPPED[boot_file.rpartition("/")[2]]).read_bytes()
    follow_ipxe(site, mac, uefi=kind != "bios-pxe")  # the loader is iPXE: it asks again


def test_only_the_uefi_http_answer_carries_option_60(site: Site):
    assert site.ask(MACS["n2"], uefi=True).vendor_class is None
    assert site.ask(MACS["n2"], arch=16, vendor_class=HTTP_CLIENT).vendor_class == "HTTPClient"


@pytest.fixture
def site_with_pxelinux_and_grub(lab: Segment, tmp_path: Path, flavour: str) -> Site:
    return make_site(lab, tmp_path, flavour, ' bios-loader="lpxelinux.0" uefi-loader="grubx64.efi"')


def test_pxelinux_finds_every_file_its_configuration_names(site_with_pxelinux_and_grub: Site):
    site, mac = site_with_pxelinux_and_grub, MACS["n3"]
    lease = site.ask(mac)
    assert lease.boot_file == "lpxelinux.0"
    assert site.tftp(lease, "lpxelinux.0") == Path(SHIPPED["lpxelinux.0"]).read_bytes()
    assert site.tftp(lease, "ldlinux.c32") == Path(SHIPPED["ldlinux.c32"]).read_bytes()
    config = site.tftp(lease, f"pxelinux.cfg/01-{mac.replace(':', '-')}").decode()
    assert site.fetch(re.search(r"^\s*KERNEL (\S+)", config, re.M).group(1)) == KERNEL
    assert site.fetch(re.search(r"^\s*INITRD (\S+)", config, re.M).group(1)) == INITRD


def test_grub_finds_every_file_its_configuration_names(site_with_pxelinux_and_grub: Site):
    site, mac = site_with_pxelinux_and_grub, MACS["n3"]
    lease = site.ask(mac, uefi=True)
    assert lease.boot_file == "grubx64.efi"
    assert site.tftp(lease, "grubx64.efi") == Path(SHIPPED["grubx64.efi"]).read_bytes()
    grub_finds_kernel_and_initrd_over_tftp(site, lease, mac)


def grub_finds_kernel_and_initrd_over_tftp(site: Site, lease: DhcpLease, mac: str) -> None:
    """Debian's network GRUB has prefix /grub: it reads grub/grub.cfg, which sources the
    node's file; that one names kernel and initrd in the TFTP root GRUB came from."""
    grub_cfg = site.tftp(lease, "grub/grub.cfg").decode()
    assert 'source "$prefix/nodes/${net_default_mac}.cfg"' in grub_cfg
    config = site.tftp(lease, f"grub/nodes/{mac}.cfg").decode()
    kernel = re.search(r"^\s*if linux (\S+)", config, re.M).group(1)
    initrd = re.search(r"^\s*if initrd (\S+);", config, re.M).group(1)
    assert site.tftp(lease, kernel) == KERNEL
    assert site.tftp(lease, initrd) == INITRD


def test_a_secure_boot_node_gets_shim_and_its_chain_is_complete(site: Site):
    """n4 is declared secure-boot: shim over TFTP whatever it asks as, then shim loads
    grubx64.efi (and, with keys pending, mmx64.efi) from its own folder, GRUB the rest."""
    mac = MACS["n4"]
    for client in ({"uefi": True}, {"arch": 16, "vendor_class": HTTP_CLIENT}, {"ipxe": True}):
        lease = site.ask(mac, **client)
        assert lease.boot_file == "shimx64.efi", client  # (not a URL: HTTP boot moves on)
    for name in ("shimx64.efi", "grubx64.efi", "mmx64.efi"):
        assert site.tftp(lease, name) == Path(SHIPPED[name]).read_bytes()
    grub_finds_kernel_and_initrd_over_tftp(site, lease, mac)
    assert site.ask(MACS["n1"], uefi=True).boot_file == "snponly.efi"  # the others: iPXE
