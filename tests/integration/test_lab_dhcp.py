"""The lab's DHCP harness against hand-written configs for dnsmasq, Kea and ISC dhcpd.

These configs are the reference for dim's templates: each expression that tells iPXE, UEFI and
BIOS clients apart is proven here against the real daemon, with the client sending what real
firmware sends (see tests/doubles/dhcp.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from string import Template

import pytest

from dim.lab.netns import Segment, segment
from tests.doubles.dhcp import NoLeaseError, dhcp_request, start_dhcp_server
from tests.integration.conftest import require_dhcp_server, require_lab

pytestmark = pytest.mark.integration

MAC = "52:54:00:77:00:11"
IPXE_URL = "http://10.77.0.1:8080/boot.ipxe"

# dhcp-range "static": only dhcp-host MACs get an address. The iPXE rule comes first and the
# others exclude it, so an iPXE client running on UEFI still gets the script, not GRUB.
DNSMASQ = """\
port=0
interface=br0
bind-interfaces
log-dhcp
dhcp-range=10.77.0.0,static,255.255.255.0
dhcp-option=option:router,10.77.0.1
dhcp-host=$mac,10.77.0.11,node01
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:ipxe175,175
dhcp-match=set:efi,option:client-arch,7
dhcp-match=set:efi,option:client-arch,9
dhcp-option=tag:ipxe,encap:175,176,1b
dhcp-option=tag:ipxe175,option:domain-name,by175.lab
dhcp-boot=tag:ipxe,http://10.77.0.1:8080/boot.ipxe,,10.77.0.1
dhcp-boot=tag:!ipxe,tag:efi,grubx64.efi,,10.77.0.1
dhcp-boot=tag:!ipxe,tag:!efi,pxelinux.0,,10.77.0.1
"""

# No pool: only reservations get an address. A class's boot-file-name overrides the subnet's;
# "ipxe" is evaluated first and "uefi" excludes it.
KEA = """\
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["br0"]},
  "lease-database": {"type": "memfile", "name": "$leases", "lfc-interval": 0},
  "option-def": [
    {"name": "ipxe-encap-opts", "code": 175, "type": "empty", "encapsulate": "ipxe"},
    {"name": "no-pxedhcp", "code": 176, "space": "ipxe", "type": "uint8"}
  ],
  "client-classes": [
    {"name": "ipxe", "test": "substring(option[77].hex,0,4) == 'iPXE'",
     "boot-file-name": "http://10.77.0.1:8080/boot.ipxe",
     "option-data": [{"name": "ipxe-encap-opts"},
                     {"name": "no-pxedhcp", "space": "ipxe", "data": "1"}]},
    {"name": "uefi",
     "test": "not member('ipxe') and (option[93].hex == 0x0007 or option[93].hex == 0x0009)",
     "boot-file-name": "grubx64.efi"},
    {"name": "ipxe175", "test": "option[175].exists",
     "option-data": [{"name": "domain-name", "data": "by175.lab"}]}
  ],
  "subnet4": [{
    "id": 1, "subnet": "10.77.0.0/24", "next-server": "10.77.0.1",
    "boot-file-name": "pxelinux.0",
    "option-data": [{"name": "routers", "data": "10.77.0.1"}],
    "reservations": [{"hw-address": "$mac", "ip-address": "10.77.0.11", "hostname": "node01"}]
  }],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}],
               "severity": "INFO"}]
}}
"""

# No range: only host declarations get an address. "option client-arch = 7" would never match:
# the option is compared as data, so the value must be written as bytes, 00:07.
ISC = """\
authoritative;
option client-arch code 93 = unsigned integer 16;
option space ipxe;
option ipxe-encap-opts code 175 = encapsulate ipxe;
option ipxe.no-pxedhcp code 176 = unsigned integer 8;
subnet 10.77.0.0 netmask 255.255.255.0 {
  option routers 10.77.0.1;
  next-server 10.77.0.1;
  if exists user-class and option user-class = "iPXE" {
    filename "http://10.77.0.1:8080/boot.ipxe";
    option ipxe.no-pxedhcp 1;
  } elsif option client-arch = 00:07 or option client-arch = 00:09 {
    filename "grubx64.efi";
  } else {
    filename "pxelinux.0";
  }
  if exists ipxe-encap-opts {
    option domain-name "by175.lab";
  }
}
host node01 { hardware ethernet $mac; fixed-address 10.77.0.11; option host-name "node01"; }
"""

CONFIGS = {"dnsmasq": DNSMASQ, "kea": KEA, "isc": ISC}


@pytest.fixture(params=sorted(CONFIGS))
def served(request: pytest.FixtureRequest, lab: Segment, tmp_path: Path) -> Segment:
    """The lab with one DHCP server running its hand-written config."""
    flavour = request.param
    require_dhcp_server(flavour)
    config = tmp_path / f"{flavour}.conf"
    leases = tmp_path / "kea-leases4.csv"
    config.write_text(Template(CONFIGS[flavour]).substitute(mac=MAC, leases=leases))
    start_dhcp_server(lab, flavour, config, tmp_path)
    return lab


def ask(lab: Segment, mac: str = MAC, **kwargs):
    client = lab.clients[0]
    return dhcp_request(client.namespace, client.iface, mac, **kwargs)


def test_reserved_client_gets_its_address_hostname_router_and_next_server(served: Segment):
    lease = ask(served)
    assert (lease.ip, lease.hostname) == ("10.77.0.11", "node01")
    assert (lease.router, lease.next_server) == ("10.77.0.1", "10.77.0.1")


@pytest.mark.parametrize(
    ("client", "boot_file"),
    [
        ({}, "pxelinux.0"),
        ({"pxe": False}, "pxelinux.0"),
        ({"uefi": True}, "grubx64.efi"),
        ({"uefi": True, "arch": 9}, "grubx64.efi"),
        ({"ipxe": True}, IPXE_URL),
        ({"ipxe": True, "uefi": True}, IPXE_URL),
    ],
    ids=["bios", "plain-dhcp", "uefi-arch7", "uefi-arch9", "ipxe-bios", "ipxe-uefi"],
)
def test_boot_file_follows_the_client_type(served: Segment, client: dict, boot_file: str):
    assert ask(served, **client).boot_file == boot_file


def test_ipxe_client_is_told_not_to_wait_for_proxydhcp(served: Segment):
    assert ask(served, ipxe=True).encapsulated(175) == {176: b"\x01"}


def test_option_175_alone_identifies_ipxe(served: Segment):
    lease = ask(served, send={175: bytes.fromhex("130101")}, ask=[175])
    assert lease.domain == "by175.lab"
    assert ask(served).domain is None


def test_unknown_mac_gets_no_lease(served: Segment):
    ask(served)  # the server answers: the silence below is a refusal
    with pytest.raises(NoLeaseError):
        ask(served, "52:54:00:77:00:99", timeout=2)


def test_segment_stops_its_daemons_and_deletes_its_namespaces_even_on_error():
    require_lab()
    with pytest.raises(RuntimeError), segment(clients=2) as seg:
        daemon = seg.start(["sleep", "60"], log=Path("/dev/null"))
        names = list(seg.namespaces)
        raise RuntimeError("a failing test")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed.split() for name in names)
    assert daemon.process.poll() is not None
    assert len(names) == 3


def test_segments_get_names_of_their_own():
    require_lab()
    with segment() as first, segment() as second:
        names = [*first.namespaces, *second.namespaces]
        assert first.namespaces and second.namespaces
        assert not set(first.namespaces) & set(second.namespaces)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert set(names) <= {line.split()[0] for line in listed.splitlines() if line}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not set(names) & {line.split()[0] for line in listed.splitlines() if line}
