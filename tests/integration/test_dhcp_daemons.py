"""dim's rendered DHCP configuration, served by the real dnsmasq, Kea and ISC dhcpd.

For each flavour: write a cluster.xml, record MACs with ``dim node import-macs``, run
``dim apply --root R --no-reload`` in the lab's server namespace (Kea's test mode refuses an
interface that the machine does not have), start the daemon on what dim wrote, and ask for
leases from a client namespace as BIOS PXE, UEFI PXE and iPXE firmware would.

What the tests change in dim's files before the daemon reads them, and why:

- dnsmasq: ``dhcp-hostsfile`` (and the DNS-only file's ``addn-hosts``) name their final paths
  under /etc/dim; they are pointed into R, where ``dim apply --root R`` wrote them.
- Kea: the config names Debian's lease file in /var/lib/kea; the tests set
  ``lease-database.name`` to a temporary file (after dropping the ``//`` comment lines, to read
  it as JSON) and send any loggers to stdout. Its control socket is in the test's folder
  through cluster.xml's ``kea-socket``.
- ISC dhcpd: nothing; the lease and pid files are given on its command line.

A test that runs ``dim apply --reload`` (releasing stale leases comes after a reload) wraps it in
`Site.restarting_on_reload`: the layout's ``<reload>`` command then asks the test to restart its
daemon on the new configuration, as ``systemctl restart`` would, and waits until it has. A
SIGHUP will not do for dnsmasq 2.90: it crashes (SIGSEGV) when it rereads a ``dhcp-hostsfile``
whose lines carry ``set:`` tags after it has handled a DHCP packet.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest

from dim.debs import unpacked
from dim.lab.netns import Daemon, Segment, run, segment
from dim.services.clients import SIGNED_GRUB_ARM64
from tests.conftest import require_binary
from tests.doubles.dhcp import DhcpLease, NoLeaseError, dhcp_request, start_dhcp_server
from tests.doubles.dns import resolve
from tests.integration.conftest import require_dhcp_server, require_lab

pytestmark = pytest.mark.integration

FLAVOURS = ("dnsmasq", "kea", "isc")
MACS = {"node01": "52:54:00:77:00:01", "node02": "52:54:00:77:00:02", "node03": "52:54:00:77:00:03"}
ARM_MAC = "52:54:00:77:0a:01"  # arm01, of the group of arch="aarch64"
UNKNOWN_MAC = "52:54:00:77:00:99"
SERVER = "10.77.0.1"
RESOLVER = "10.77.0.50"
# Debian's arm64 GRUB, which dim apply takes from its package for the aarch64 group's nodes
DEBS_CACHE = Path("/var/cache/dim-lab/debs-cache")
IPXE_URL = f"http://{SERVER}:8080/boot.ipxe"

LAYOUT = Template("""\
<?xml version="1.0"?>
<cluster name="itest" domain="itest.dim">
  <network name="boot" subnet="10.77.0.0/24" gateway="10.77.0.1"/>
  <server name="srv" address="10.77.0.1" dhcp="$flavour" nfs="ganesha" interface="$bridge"
          tftp-root="$folder/tftp" http-root="$folder/http" kea-socket="$folder/kea4-ctrl-socket">
    <reload service="$flavour" command="$folder/reload"/>
    <reload service="dns" command="true"/>
    <reload service="ganesha" command="true"/>
  </server>
  <image name="tiny"><persist path="/etc"/><volatile path="/tmp"/></image>
  <group name="nodes" nodes="node[01-03]" image="tiny">
    <interface network="boot" ip="10.77.0.{10+n1}"/>
  </group>
  <group name="arm" nodes="arm01" image="tiny" arch="aarch64">
    <interface network="boot" ip="10.77.0.21"/>
  </group>
</cluster>
""")

# dim's reload command here: ask the test to restart the daemon, and wait until it has.
RELOAD = """#!/bin/sh
cd "$(dirname "$0")" || exit 1
rm -f reloaded reload-failed
touch reload-asked
for _ in $(seq 200); do
    [ -e reloaded ] && exit 0
    [ -e reload-failed ] && exit 1
    sleep 0.05
done
echo "nothing restarted the DHCP daemon in 10 s: use Site.restarting_on_reload" >&2
exit 1
"""

# Runs dim's entry point with the test's interpreter, whatever the environment calls it.
DIM = [sys.executable, "-c", "import sys; from dim.cli import main; sys.exit(main())"]


@dataclass(slots=True)
class Site:
    """One image server's dim configuration, served by a real DHCP daemon in the lab."""

    flavour: str
    lab: Segment
    folder: Path
    daemon: Daemon | None = None

    @property
    def root(self) -> Path:
        return self.folder / "root"

    def dim(self, *args: str) -> str:
        """Run the dim CLI in the server namespace, where the bridge is; its output."""
        config, state = self.folder / "cluster.xml", self.folder / "state"
        argv = [*DIM, "--config", str(config), "--state", str(state), *args]
        return run(self.lab.server, argv, env=dict(os.environ), timeout=120).stdout

    def configure(self, macs: dict[str, str]) -> None:
        """Write cluster.xml, record the MACs, and apply under ``root``."""
        (self.folder / "tftp").mkdir()  # dnsmasq's enable-tftp wants tftp-root to exist
        layout = LAYOUT.substitute(flavour=self.flavour, bridge=self.lab.bridge, folder=self.folder)
        (self.folder / "cluster.xml").write_text(layout)
        (self.folder / "reload").write_text(RELOAD)
        (self.folder / "reload").chmod(0o755)
        csv = self.folder / "macs.csv"
        csv.write_text("".join(f"{node},{mac}\n" for node, mac in macs.items()))
        csv.write_text(csv.read_text() + f"arm01,{ARM_MAC}\n")
        self.dim("node", "import-macs", str(csv))
        cache_arm_grub(self.folder / "state")
        self.apply()

    def apply(self) -> None:
        self.dim("apply", "--root", str(self.root), "--no-reload")

    def serve(self) -> None:
        """(Re)start the daemon on the configuration dim installed; leases are kept."""
        if self.daemon is not None:
            self.daemon.stop()
        config = runnable_config(self.flavour, self.root, self.folder)
        self.daemon = start_dhcp_server(self.lab, self.flavour, config, self.folder)

    @contextmanager
    def restarting_on_reload(self) -> Iterator[None]:
        """Restart the daemon on dim's new configuration whenever dim's reload command asks.

        The command (`RELOAD`) touches ``reload-asked`` and waits; a thread here restarts the
        daemon, then touches ``reloaded`` (or ``reload-failed``, and re-raises after).
        """
        asked, stop, failures = self.folder / "reload-asked", threading.Event(), []

        def restart_when_asked() -> None:
            while not stop.wait(0.05):
                if asked.exists():
                    asked.unlink()
                    try:
                        self.serve()
                    except Exception as exc:  # handed to the test below
                        failures.append(exc)
                        (self.folder / "reload-failed").touch()
                    else:
                        (self.folder / "reloaded").touch()

        thread = threading.Thread(target=restart_when_asked, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        if failures:
            raise failures[0]

    def ask(self, mac: str, **kwargs: object) -> DhcpLease:
        client = self.lab.clients[0]
        return dhcp_request(client.namespace, client.iface, mac, **kwargs)  # type: ignore[arg-type]


def cache_arm_grub(state: Path) -> None:
    """Debian's arm64 GRUB, which ``dim apply`` installs for the aarch64 nodes, in the cache
    of ``state``: downloaded once per session into `DEBS_CACHE`, not once per site."""
    arm_grub = unpacked(SIGNED_GRUB_ARM64.package, DEBS_CACHE)
    cached = state / "cache" / "debs" / arm_grub.name
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.symlink_to(arm_grub)


def runnable_config(flavour: str, root: Path, folder: Path) -> Path:
    """The configuration dim installed under ``root``, made runnable from there (see above)."""
    if flavour == "dnsmasq":
        return runnable_dnsmasq(root, "etc/dnsmasq.d/dim.conf", folder / "dnsmasq.conf")
    if flavour == "kea":
        text = (root / "etc/kea/kea-dhcp4.conf").read_text()
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(("//", "#"))]
        config = json.loads("\n".join(lines))
        dhcp4 = config["Dhcp4"]
        dhcp4["lease-database"]["name"] = str(folder / "kea-leases4.csv")
        for logger in dhcp4.get("loggers", []):
            logger["output_options"] = [{"output": "stdout"}]
        path = folder / "kea-dhcp4.json"
        path.write_text(json.dumps(config, indent=2))
        return path
    return root / "etc/dhcp/dhcpd.conf"


def runnable_dnsmasq(root: Path, conf: str, path: Path) -> Path:
    """dnsmasq's file ``conf`` under ``root``, with its hosts files' paths under ``root``."""
    lines = (root / conf).read_text().splitlines()
    for index, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key in ("addn-hosts", "dhcp-hostsfile"):
            lines[index] = f"{key}={root}{value}"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def served(flavour: str, folder: Path) -> Iterator[Site]:
    require_lab()
    require_dhcp_server(flavour)
    with segment(f"{SERVER}/24", clients=1) as lab:
        site = Site(flavour, lab, folder)
        site.configure(MACS)
        site.serve()
        yield site


@pytest.fixture(scope="module", params=FLAVOURS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A daemon serving dim's configuration, shared by the tests that only ask for leases."""
    with served(request.param, tmp_path_factory.mktemp(request.param)) as site:
        yield site


@pytest.fixture(params=FLAVOURS)
def own_site(request: pytest.FixtureRequest, tmp_path: Path):
    """A daemon serving dim's configuration, for a test that changes it."""
    with served(request.param, tmp_path) as site:
        yield site


@pytest.fixture(scope="module")
def named_site(tmp_path_factory: pytest.TempPathFactory):
    """dnsmasq as dim renders it for a site: DHCP only (port=0) and, at the same time in the
    same namespace, the DNS-only dnsmasq on the hosts file (dim-dns.service's command)."""
    folder = tmp_path_factory.mktemp("named")
    with served("dnsmasq", folder) as site:
        conf = runnable_dnsmasq(site.root, "etc/dim/dnsmasq-dns.conf", folder / "dns.conf")
        argv = ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--pid-file="]
        dns = site.lab.start([*argv, "--user=root", "--log-facility=-"], log=folder / "dns.log")
        dns.wait_udp(53)
        site.lab.add_host("resolver", f"{RESOLVER}/24")  # a node with its address, asking
        yield site


def test_dnsmasq_answers_every_name_of_the_layout_from_its_dns_instance(named_site: Site):
    client = named_site.lab.hosts[0].namespace
    hosts = (named_site.root / "etc/dim/hosts").read_text().splitlines()
    asked = 0
    for line in (ln for ln in hosts if ln and not ln.startswith("#")):
        address, *names = line.split()
        for name in names:
            assert resolve(client, name, SERVER) == [address], name
            asked += 1
        assert resolve(client, _reverse(address), SERVER, "PTR") == [names[0]]
    assert asked == 10  # the server and four nodes, each by its full and its short name
    assert resolve(client, "node99.itest.dim", SERVER) == []


def test_dnsmasq_dhcp_sends_the_hostname_and_this_server_as_dns_without_serving_dns(
    named_site: Site,
):
    lease = named_site.ask(MACS["node02"])
    assert (lease.ip, lease.hostname, lease.dns) == ("10.77.0.12", "node02", SERVER)
    dhcp_conf = (named_site.root / "etc/dnsmasq.d/dim.conf").read_text().splitlines()
    assert "port=0" in dhcp_conf  # the DHCP daemon has no DNS, so no DNS records per lease


def _reverse(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def test_bios_client_gets_its_address_hostname_loader_and_next_server(site: Site):
    lease = site.ask(MACS["node01"])
    assert (lease.ip, lease.hostname) == ("10.77.0.11", "node01")
    assert (lease.boot_file, lease.next_server) == ("undionly.kpxe", SERVER)
    assert lease.router == SERVER


def test_every_recorded_node_gets_its_own_address(site: Site):
    leases = {node: site.ask(mac) for node, mac in MACS.items()}
    assert {node: (lease.ip, lease.hostname) for node, lease in leases.items()} == {
        "node01": ("10.77.0.11", "node01"),
        "node02": ("10.77.0.12", "node02"),
        "node03": ("10.77.0.13", "node03"),
    }
    assert site.ask(ARM_MAC).ip == "10.77.0.21"


@pytest.mark.parametrize("arch", [7, 9])
def test_uefi_client_gets_the_uefi_loader(site: Site, arch: int):
    lease = site.ask(MACS["node01"], uefi=True, arch=arch)
    assert (lease.ip, lease.boot_file, lease.next_server) == ("10.77.0.11", "snponly.efi", SERVER)


def test_aarch64_uefi_client_gets_debians_arm64_grub_over_tftp(site: Site):
    lease = site.ask(ARM_MAC, uefi=True, arch=11)
    assert (lease.ip, lease.boot_file, lease.next_server) == ("10.77.0.21", "grubaa64.efi", SERVER)
    grub = site.root / str(site.folder / "tftp/grubaa64.efi").lstrip("/")
    assert pe_machine(grub) == 0xAA64  # an arm64 EFI program, from Debian's package


def test_aarch64_uefi_http_client_gets_the_url_of_grub_and_its_vendor_class(site: Site):
    lease = site.ask(ARM_MAC, arch=19, vendor_class="HTTPClient:Arch:00019:UNDI:003001")
    assert (lease.ip, lease.boot_file) == ("10.77.0.21", f"http://{SERVER}:8080/grubaa64.efi")
    assert lease.vendor_class == "HTTPClient"  # without it the firmware ignores the offer
    assert pe_machine(site.root / str(site.folder / "http/grubaa64.efi").lstrip("/")) == 0xAA64


@pytest.mark.parametrize(
    ("client", "boot_file"),
    [
        ({"arch": 19}, "undionly.kpxe"),  # arch 19 without HTTPClient: not an HTTP boot
        ({"uefi": True, "arch": 7}, "snponly.efi"),
        ({}, "undionly.kpxe"),
    ],
    ids=["arch19-pxe", "arch7", "bios"],
)
def test_x86_kinds_are_unchanged_beside_an_aarch64_group(site: Site, client: dict, boot_file):
    assert site.ask(MACS["node03"], **client).boot_file == boot_file


def pe_machine(path: Path) -> int:
    """The Machine field of a PE (EFI) program's COFF header."""
    data = path.read_bytes()
    offset = int.from_bytes(data[0x3C:0x40], "little")
    assert data[:2] == b"MZ" and data[offset : offset + 4] == b"PE\0\0", path
    return int.from_bytes(data[offset + 4 : offset + 6], "little")


@pytest.mark.parametrize("uefi", [False, True], ids=["bios", "uefi"])
def test_ipxe_client_gets_the_http_script_and_no_proxydhcp_wait(site: Site, uefi: bool):
    lease = site.ask(MACS["node01"], ipxe=True, uefi=uefi)
    assert (lease.ip, lease.boot_file) == ("10.77.0.11", IPXE_URL)
    assert lease.encapsulated(175) == {176: b"\x01"}


def test_unknown_mac_gets_no_lease(site: Site):
    site.ask(MACS["node01"])  # the server answers: the silence below is a refusal
    with pytest.raises(NoLeaseError):
        site.ask(UNKNOWN_MAC, timeout=2)


def test_a_new_mac_spliced_in_gets_the_nodes_address_and_the_old_one_nothing(own_site: Site):
    old, new = MACS["node02"], "52:54:00:77:02:02"
    (record,) = (own_site.folder / "state/applied").glob("*.db")
    written = record.stat().st_ino
    own_site.dim("node", "set", "node02", "--mac", new)
    own_site.apply()
    # the record updated where it is, not made anew: the apply spliced node02's new line into
    # the installed file (dim.services.incremental) rather than rendering everything
    assert record.stat().st_ino == written
    full = own_site.dim("apply", "--root", str(own_site.root), "--full", "--dry-run")
    assert ": 0 files would change" in full
    own_site.serve()
    lease = own_site.ask(new)
    assert (lease.ip, lease.hostname) == ("10.77.0.12", "node02")
    with pytest.raises(NoLeaseError):
        own_site.ask(old, timeout=2)


# dnsmasq and Kea keep the lease the old MAC holds, and refuse the reserved address to the new
# MAC until that lease ends: dnsmasq logs "not using configured address 10.77.0.12 because it is
# leased to 52:54:00:77:00:02" (and dim's dhcp-host lines make that lease infinite), Kea logs
# ALLOC_ENGINE_V4_DISCOVER_ADDRESS_CONFLICT (valid-lifetime 43200 s). ISC dhcpd keeps no lease
# for a fixed-address host. `dim apply` releases the old MAC's lease after the reload. (dnsmasq
# keeps its leases in memory only, leasefile-ro: a restart forgets them too.)
RELEASE_REPORT = {
    "dnsmasq": "released stale leases: node[02-03]",
    "kea": "released stale leases: node[02-03]",
    "isc": "stale leases need no release: node[02-03] (ISC dhcpd keeps no lease for a fixed-",
}
REPLACED = {"node02": "52:54:00:77:02:02", "node03": "52:54:00:77:03:03"}


def require_release_tool(flavour: str) -> None:
    if flavour == "dnsmasq":
        require_binary("dhcp_release", "dnsmasq-utils")


def client_id(mac: str) -> dict[int, bytes]:
    """Option 61 as busybox udhcpc sends it by default (in an initramfs): 01 and the MAC."""
    return {61: bytes.fromhex("01" + mac.replace(":", ""))}


def test_replaced_nics_get_the_addresses_their_old_macs_held(own_site: Site):
    require_release_tool(own_site.flavour)
    # node02's old NIC took its lease as a PXE ROM or iPXE does, without a client identifier;
    # node03's as the initramfs' udhcpc does, with option 61 = 01:MAC. One release fits both.
    assert own_site.ask(MACS["node02"]).ip == "10.77.0.12"
    node03 = MACS["node03"]
    assert own_site.ask(node03, pxe=False, send=client_id(node03)).ip == "10.77.0.13"
    csv = own_site.folder / "replaced.csv"
    csv.write_text("".join(f"{node},{mac}\n" for node, mac in REPLACED.items()))
    own_site.dim("node", "import-macs", str(csv))
    with own_site.restarting_on_reload():
        report = own_site.dim("apply", "--root", str(own_site.root), "--reload")
    assert f"reloaded: {own_site.flavour}" in report
    assert RELEASE_REPORT[own_site.flavour] in report
    for node, mac in REPLACED.items():
        lease = own_site.ask(mac, timeout=2)
        assert (lease.ip, lease.hostname) == (f"10.77.0.{10 + int(node[-2:])}", node)


def test_a_stale_lease_waits_for_an_apply_that_reloads(own_site: Site):
    require_release_tool(own_site.flavour)
    old, new = MACS["node02"], "52:54:00:77:02:02"
    assert own_site.ask(old).ip == "10.77.0.12"
    own_site.dim("node", "set", "node02", "--mac", new)
    root = str(own_site.root)
    assert "stale leases pending: node02" in own_site.dim("apply", "--root", root, "--no-reload")
    own_site.serve()
    # Kea's old MAC's lease keeps the address across the restart; dnsmasq keeps its leases in
    # memory only (leasefile-ro: dim's addresses are all reservations), so a restart forgets it
    if own_site.flavour == "kea":
        with pytest.raises(NoLeaseError):
            own_site.ask(new, timeout=2)
    with own_site.restarting_on_reload():
        report = json.loads(own_site.dim("apply", "--root", root, "--reload", "--json"))
    assert report["changes"] == [] and report["reloaded"] == []  # nothing to reload, still settled
    settled = report["released"] or report["release_not_needed"]
    assert [(r["node"], r["mac"], r["ip"]) for r in settled] == [("node02", old, "10.77.0.12")]
    assert report["release_failed"] == []
    assert own_site.ask(new, timeout=2).ip == "10.77.0.12"
