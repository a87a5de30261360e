"""A failover set's DHCP on real daemons: every node gets its own server's address and loaders,
from whichever server of the set answers, also when its own server's daemon is dead.

Two servers of set ``pair`` on one segment, each in a namespace of its own (`Segment.add_host`)
with its own daemon on the configuration ``dim apply --server S`` installed for it::

    srv1  own 10.77.0.2, service 10.77.0.1   node01, node02 (Secure Boot)   default loaders
    srv2  own 10.77.0.4, service 10.77.0.3   node03, node04 (Secure Boot)   loaders of its own

Both up, every node asks as each kind of client (BIOS, UEFI, iPXE, UEFI HTTP; the Secure Boot
nodes as UEFI) and must get its own server's next-server and boot file, whichever daemon
answered. Then srv1's daemon is stopped by its pid and its service address moved to srv2, as
keepalived would: srv2 alone answers, and node01 still gets srv1's address and loaders, and
fetches its loader and its PXELINUX configuration over TFTP from srv1's address, now srv2's.
The same the other way round. tests/integration/test_dhcp_daemons.py explains what the tests
change in dim's files to run the daemons from a test folder (`runnable_config`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import pytest

from dim.lab.netns import Client, Daemon, Segment, ip, run, segment
from tests.conftest import require_binary
from tests.doubles.dhcp import HTTP_CLIENT, DhcpLease, dhcp_request, dhcp_server_command
from tests.integration.conftest import require_dhcp_server, require_lab
from tests.integration.test_dhcp_daemons import DIM, cache_arm_grub, runnable_config

pytestmark = pytest.mark.integration

LAYOUT = Template("""\
<?xml version="1.0"?>
<cluster name="ftest" domain="ftest.dim">
  <network name="boot" subnet="10.77.0.0/24" gateway="10.77.0.254" dns="10.77.0.254"/>
  <server name="srv1" address="10.77.0.1" own-address="10.77.0.2" interface="eth0"
          dhcp="$flavour" nfs="ganesha" secure-boot-loader="sb1.efi"
          tftp-root="$folder/srv1/tftp" http-root="$folder/srv1/http"
          kea-socket="$folder/srv1/kea-socket"/>
  <server name="srv2" address="10.77.0.3" own-address="10.77.0.4" interface="eth0"
          dhcp="$flavour" nfs="ganesha" secure-boot-loader="sb2.efi" bios-loader="bios2.kpxe"
          uefi-loader="uefi2.efi" uefi-http-loader="http2.efi"
          tftp-root="$folder/srv2/tftp" http-root="$folder/srv2/http"
          kea-socket="$folder/srv2/kea-socket"/>
  <failover name="pair" servers="srv[1-2]"/>
  <image name="tiny"><persist path="/etc"/></image>
  <group name="one" nodes="node[01-02]" image="tiny" server="srv1">
    <interface network="boot" ip="10.77.0.{10+n1}"/>
    <node name="node02" secure-boot="yes"/>
  </group>
  <group name="two" nodes="node[03-04]" image="tiny" server="srv2">
    <interface network="boot" ip="10.77.0.{10+n1}"/>
    <node name="node04" secure-boot="yes"/>
  </group>
  <group name="arm1" nodes="node05" image="tiny" server="srv1" arch="aarch64">
    <interface network="boot" ip="10.77.0.15"/>
  </group>
  <group name="arm2" nodes="node06" image="tiny" server="srv2" arch="aarch64">
    <interface network="boot" ip="10.77.0.16"/>
  </group>
</cluster>
""")
MACS = {
    "node01": "52:54:00:77:01:01",
    "node02": "52:54:00:77:01:02",
    "node03": "52:54:00:77:02:03",
    "node04": "52:54:00:77:02:04",
    "node05": "52:54:00:77:01:05",  # aarch64
    "node06": "52:54:00:77:02:06",  # aarch64
}
OWNER = {
    "node01": "srv1",
    "node02": "srv1",
    "node03": "srv2",
    "node04": "srv2",
    "node05": "srv1",
    "node06": "srv2",
}
SERVICE = {"srv1": "10.77.0.1", "srv2": "10.77.0.3"}
OWN = {"srv1": "10.77.0.2", "srv2": "10.77.0.4"}
# What each server's nodes must be sent, by client kind: (boot file, next-server or None)
SENT = {
    "srv1": {
        "bios": ("undionly.kpxe", "10.77.0.1"),
        "uefi": ("snponly.efi", "10.77.0.1"),
        "ipxe": ("http://10.77.0.1:8080/boot.ipxe", None),
        "uefi-http": ("http://10.77.0.1:8080/snponly.efi", None),
        "secure-boot": ("sb1.efi", "10.77.0.1"),
        "aarch64-uefi": ("grubaa64.efi", "10.77.0.1"),
        "aarch64-uefi-http": ("http://10.77.0.1:8080/grubaa64.efi", None),
    },
    "srv2": {
        "bios": ("bios2.kpxe", "10.77.0.3"),
        "uefi": ("uefi2.efi", "10.77.0.3"),
        "ipxe": ("http://10.77.0.3:8080/boot.ipxe", None),
        "uefi-http": ("http://10.77.0.3:8080/http2.efi", None),
        "secure-boot": ("sb2.efi", "10.77.0.3"),
        "aarch64-uefi": ("grubaa64.efi", "10.77.0.3"),
        "aarch64-uefi-http": ("http://10.77.0.3:8080/grubaa64.efi", None),
    },
}
REQUESTS = {  # how each kind of client asks (tests/doubles/dhcp.py)
    "bios": {},
    "uefi": {"uefi": True},
    "ipxe": {"ipxe": True},
    "uefi-http": {"arch": 16, "vendor_class": HTTP_CLIENT},
    "secure-boot": {"uefi": True},
    "aarch64-uefi": {"uefi": True, "arch": 11},
    "aarch64-uefi-http": {"arch": 19, "vendor_class": "HTTPClient:Arch:00019:UNDI:003001"},
}


@dataclass(slots=True)
class Pair:
    """Two servers of one failover set, each with its namespace, configuration and daemon."""

    flavour: str
    lab: Segment
    folder: Path
    hosts: dict[str, Client] = field(default_factory=dict)
    daemons: dict[str, list[Daemon]] = field(default_factory=dict)

    def dim(self, server: str, *args: str) -> str:
        config, state = self.folder / "cluster.xml", self.folder / "state"
        argv = [*DIM, "--config", str(config), "--state", str(state), *args]
        return run(self.hosts[server].namespace, argv, env=dict(os.environ), timeout=120).stdout

    def configure(self) -> None:
        """cluster.xml, the MACs, and ``dim apply`` for each server in its own namespace."""
        layout = LAYOUT.substitute(flavour=self.flavour, folder=self.folder)
        (self.folder / "cluster.xml").write_text(layout)
        csv = self.folder / "macs.csv"
        csv.write_text("".join(f"{node},{mac}\n" for node, mac in MACS.items()))
        for server in SERVICE:  # own address first: the service address is keepalived's
            self.hosts[server] = self.lab.add_host(server, f"{OWN[server]}/24")
            ip("-n", self.hosts[server].namespace, "addr", "add", f"{SERVICE[server]}/24",
               "dev", "eth0")  # fmt: skip
        self.dim("srv1", "node", "import-macs", str(csv))
        cache_arm_grub(self.folder / "state")
        for server in SERVICE:
            root = self.folder / server / "root"
            self.dim(server, "apply", "--server", server, "--root", str(root), "--no-reload")
            # the daemons' tftp-root is where dim apply installed it
            (self.folder / server / "tftp").symlink_to(f"{root}{self.folder}/{server}/tftp")

    def serve(self, server: str) -> None:
        """Start ``server``'s DHCP daemon, and beside Kea or ISC dhcpd its TFTP-only dnsmasq."""
        workdir = self.folder / server
        config = runnable_config(self.flavour, workdir / "root", workdir)
        argv, env = dhcp_server_command(self.flavour, config, workdir, "eth0")
        namespace = self.hosts[server].namespace
        log = workdir / f"{self.flavour}.log"
        dhcp = self.lab.start(argv, log=log, env=env, namespace=namespace)
        self.daemons[server] = [dhcp]
        dhcp.wait_udp(67)
        if self.flavour != "dnsmasq":
            tftp_conf = workdir / "root/etc/dnsmasq.d/dim-tftp.conf"
            argv = ["dnsmasq", "--keep-in-foreground", f"--conf-file={tftp_conf}", "--user=root"]
            argv += [f"--pid-file={workdir / 'tftp.pid'}", "--log-facility=-"]
            tftp = self.lab.start(argv, log=workdir / "tftp.log", namespace=namespace)
            self.daemons[server].append(tftp)
            tftp.wait_udp(69)

    def fail(self, server: str, peer: str) -> None:
        """Stop ``server``'s daemons by their pids; its service address moves to ``peer``."""
        for daemon in self.daemons.pop(server):
            daemon.stop()
        address = f"{SERVICE[server]}/24"
        ip("-n", self.hosts[server].namespace, "addr", "del", address, "dev", "eth0")
        ip("-n", self.hosts[peer].namespace, "addr", "add", address, "dev", "eth0")

    def come_back(self, server: str, peer: str) -> None:
        address = f"{SERVICE[server]}/24"
        ip("-n", self.hosts[peer].namespace, "addr", "del", address, "dev", "eth0")
        ip("-n", self.hosts[server].namespace, "addr", "add", address, "dev", "eth0")
        self.serve(server)

    def ask(self, node: str, kind: str) -> DhcpLease:
        client = self.lab.clients[0]
        return dhcp_request(client.namespace, client.iface, MACS[node], **REQUESTS[kind])  # type: ignore[arg-type]

    def fetch(self, server: str, path: str) -> bytes:
        """``path`` over TFTP from ``server``, by the second client (it keeps its address and
        MAC: the first one's MAC changes with each DHCP request)."""
        local = self.folder / "fetched"
        client = self.lab.clients[1].namespace
        run(client, ["busybox", "tftp", "-g", "-r", path, "-l", str(local), server])
        return local.read_bytes()


@pytest.fixture(params=["dnsmasq", "kea", "isc"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    require_lab()
    require_dhcp_server(request.param)
    require_binary("keepalived", "keepalived")  # dim apply validates its configuration
    with segment("10.77.0.254/24", clients=2) as lab:
        ip("-n", lab.clients[1].namespace, "addr", "add", "10.77.0.50/24", "dev", "eth0")
        both = Pair(request.param, lab, tmp_path)
        both.configure()
        for server in SERVICE:
            both.serve(server)
        yield both


def kinds(node: str) -> list[str]:
    if node in ("node05", "node06"):
        return ["aarch64-uefi", "aarch64-uefi-http", "ipxe"]
    if node in ("node02", "node04"):
        return ["secure-boot"]
    return ["bios", "uefi", "ipxe", "uefi-http"]


def check_every_answer(pair: Pair, answering: set[str]) -> None:
    """Every node, as every kind of client it can be, gets its own server's address and boot
    file from one of the ``answering`` servers (known by the server identifier it sends)."""
    for node, owner in OWNER.items():
        ip = f"10.77.0.{10 + int(node[-2:])}"
        for kind in kinds(node):
            lease = pair.ask(node, kind)
            boot_file, next_server = SENT[owner][kind]
            assert (lease.ip, lease.hostname, lease.boot_file) == (ip, node, boot_file), kind
            if next_server is not None:
                assert lease.next_server == next_server, (node, kind)
            if kind == "ipxe":
                assert lease.encapsulated(175) == {176: b"\x01"}
            if kind.endswith("uefi-http"):
                assert lease.vendor_class == "HTTPClient"
            assert lease.server_id in {OWN[s] for s in answering}, (node, kind, lease.server_id)


def test_each_node_gets_its_own_servers_address_from_whichever_server_answers(pair: Pair):
    check_every_answer(pair, {"srv1", "srv2"})
    pair.fail("srv1", "srv2")
    check_every_answer(pair, {"srv2"})
    pair.come_back("srv1", "srv2")
    pair.fail("srv2", "srv1")
    check_every_answer(pair, {"srv1"})


def pxelinux_config(pair: Pair, server: str, node: str) -> str:
    """The PXELINUX configuration of ``node`` by its MAC, over TFTP from ``server``."""
    name = "01-" + MACS[node].replace(":", "-")
    return pair.fetch(server, f"pxelinux.cfg/{name}").decode()


def test_a_dead_servers_nodes_fetch_their_own_files_from_its_address_on_the_peer(pair: Pair):
    pair.fail("srv1", "srv2")
    lease = pair.ask("node01", "bios")  # from srv2
    assert (lease.next_server, lease.boot_file) == ("10.77.0.1", "undionly.kpxe")
    # srv2 holds srv1's address: it serves srv1's loader and node01's configuration
    loader = pair.fetch(lease.next_server, lease.boot_file)
    assert loader == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    assert " dim.server=10.77.0.1 " in pxelinux_config(pair, "10.77.0.1", "node01")
    pair.come_back("srv1", "srv2")
    pair.fail("srv2", "srv1")
    assert pair.ask("node03", "bios").next_server == "10.77.0.3"  # from srv1
    assert " dim.server=10.77.0.3 " in pxelinux_config(pair, "10.77.0.3", "node03")
