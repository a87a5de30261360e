"""DHCP in the tests: run the servers dim renders for, and ask them for leases as firmware does.

A test double for boot firmware (its DHCP client), and the way integration tests start the
real servers on a `dim.lab.netns.Segment`; ``dim lab`` itself runs its DHCP server from
`dim.lab.daemons`.

::

    with segment("10.77.0.1/24") as seg:
        start_dhcp_server(seg, "kea", Path("/tmp/t/kea.json"), Path("/tmp/t"))
        client = seg.clients[0]
        lease = dhcp_request(client.namespace, client.iface, "52:54:00:00:00:11", ipxe=True)
        assert lease.boot_file == "http://10.77.0.1:8080/boot.ipxe"
        assert lease.encapsulated(175) == {176: b"\\x01"}

The client is busybox ``udhcpc``, run once; a small script dumps the variables it sets.
What it sends, as real boot firmware does:

- PXE ROM, BIOS: option 60 ``PXEClient:Arch:00000:UNDI:002001`` and option 93 = 0x0000.
- PXE ROM, UEFI x86-64: option 60 ``PXEClient:Arch:00007:UNDI:003016`` and option 93 = 0x0007
  (9 is also x86-64 UEFI: ``arch=9``).
- UEFI HTTP boot, x86-64: option 60 ``HTTPClient:Arch:00016:UNDI:003001`` and option 93 = 16
  (``arch=16, vendor_class=HTTP_CLIENT``); the answer must carry option 60 = ``HTTPClient``.
- iPXE: the above plus option 77 user class = the four bytes ``iPXE``, *not* in RFC 3004 form
  (iPXE's dhcp.c sends ``DHCP_STRING('i','P','X','E')``), and option 175 with iPXE's feature
  indicators (175.19 HTTP = 1 …); it asks for option 175 in its parameter request list.
- No client identifier (option 61): PXE ROMs and iPXE send none, servers know them by MAC.

How each daemon recognises those clients (tests/integration/test_lab_dhcp.py proves each line
against dnsmasq 2.90, Kea 2.2.0 and ISC dhcpd 4.4.3-P1):

- dnsmasq: ``dhcp-userclass=set:ipxe,iPXE`` (a user class that does not parse as RFC 3004 is
  taken as one string, matched as a substring) or ``dhcp-match=set:ipxe,175``;
  ``dhcp-match=set:efi,option:client-arch,7`` and ``…,9``; iPXE's 175.176 = 1 with
  ``dhcp-option=tag:ipxe,encap:175,176,1b``.
- Kea: ``"test": "substring(option[77].hex,0,4) == 'iPXE'"`` or ``"option[175].exists"``;
  ``"test": "option[93].hex == 0x0007 or option[93].hex == 0x0009"``; 175.176 = 1 needs
  ``option-def`` entries for 175 (``"type": "empty", "encapsulate": "ipxe"``) and for 176 in
  space ``ipxe`` (``uint8``), then both in the class's ``option-data``.
- ISC dhcpd: ``if exists user-class and option user-class = "iPXE"`` or ``if exists
  ipxe-encap-opts``; with ``option client-arch code 93 = unsigned integer 16;`` the test
  ``option client-arch = 00:07`` matches, while ``option client-arch = 7`` silently never does.

Where the boot file travels: dnsmasq puts it in option 67 when the client asks for option 67
(iPXE does, and so does this client) and in the BOOTP ``file`` field otherwise; Kea's
``boot-file-name`` and dhcpd's ``filename`` fill the ``file`` field. `DhcpLease.boot_file` is
what a loader uses: option 67 when present, else the ``file`` field.

Leases of a replaced MAC (tests/integration/test_dhcp_daemons.py): dnsmasq and Kea keep them
and refuse the node's reserved address to its new MAC; ISC dhcpd keeps none for a fixed-address
host. ``dhcp_release`` without a client id releases a dnsmasq lease whether the client sent
option 61 or not; Kea's ``lease4-del`` works by address. dnsmasq 2.90 crashes (SIGSEGV) on
SIGHUP, once it has handled a DHCP packet, if its ``dhcp-hostsfile`` lines carry ``set:``
tags, as dim's do: restart it instead. See `dim.services.leases`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dim.errors import LabError
from dim.lab.netns import PATH, Daemon, Segment, run, set_mac

#: The DHCP flavours dim renders, and the program each one runs.
DHCP_PROGRAMS = {"dnsmasq": "dnsmasq", "kea": "kea-dhcp4", "isc": "dhcpd"}

# Dumps the variables udhcpc passes to its script, NUL-separated, once a lease is bound.
_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && exec /usr/bin/env -0 > "$DIM_LEASE_FILE"
exit 0
"""
_SCRIPT_NOISE = frozenset({"PATH", "PWD", "OLDPWD", "SHLVL", "_", "DIM_LEASE_FILE"})

#: Option 60 of UEFI HTTP boot firmware (EDK2's HttpBootDxe) on x86-64.
HTTP_CLIENT = "HTTPClient:Arch:00016:UNDI:003001"

# iPXE 1.21.1's option 175: PXE extensions 2, HTTP, TFTP, DNS, bzImage, version 1.21.1.
_IPXE_FEATURES = "100102130101150101170101180101eb03011501"


class NoLeaseError(LabError):
    """A DHCP client got no lease: no server answered it, or none would."""

    def __init__(self, mac: str, output: str) -> None:
        super().__init__(f"no DHCP lease for {mac}", hint=output.strip() or None)
        self.mac = mac
        self.output = output


@dataclass(frozen=True, slots=True)
class DhcpLease:
    """What a DHCP server handed to one client, as udhcpc reported it.

    ``variables`` holds every variable udhcpc set: ``ip``, ``siaddr``, ``boot_file`` (the BOOTP
    file field), ``bootfile`` (option 67), ``tftp`` (option 66), ``opt175`` (hex) and so on.
    """

    mac: str
    ip: str
    hostname: str | None
    boot_file: str | None  # option 67 when sent, else the BOOTP file field
    next_server: str | None  # the BOOTP siaddr field
    server_id: str | None
    router: str | None
    subnet: str | None
    dns: str | None
    domain: str | None
    variables: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_variables(cls, mac: str, variables: dict[str, str]) -> DhcpLease:
        get = variables.get
        return cls(
            mac=mac,
            ip=variables["ip"],
            hostname=get("hostname"),
            boot_file=get("bootfile") or get("boot_file"),
            next_server=get("siaddr"),
            server_id=get("serverid"),
            router=get("router"),
            subnet=get("subnet"),
            dns=get("dns"),
            domain=get("domain"),
            variables=variables,
        )

    @property
    def vendor_class(self) -> str | None:
        """Option 60 of the answer (udhcpc names it ``vendor``): ``HTTPClient`` for HTTP boot."""
        return self.variables.get("vendor")

    def option(self, code: int) -> bytes | None:
        """The raw value of an option udhcpc has no name for (it passes those in hex)."""
        value = self.variables.get(f"opt{code}")
        return bytes.fromhex(value) if value is not None else None

    def encapsulated(self, code: int) -> dict[int, bytes]:
        """The sub-options of an encapsulating option: ``encapsulated(175)[176] == b"\\x01"``."""
        data, found = self.option(code) or b"", {}
        while len(data) >= 2:
            sub, size = data[0], data[1]
            found[sub] = data[2 : 2 + size]
            data = data[2 + size :]
        return found


def dhcp_request(
    client_ns: str,
    iface: str,
    mac: str,
    *,
    uefi: bool = False,
    ipxe: bool = False,
    arch: int | None = None,
    pxe: bool = True,
    vendor_class: str | None = None,
    send: Mapping[int, bytes] | None = None,
    ask: Sequence[int] = (),
    timeout: float = 3.0,
) -> DhcpLease:
    """Ask for one lease as a boot client with ``mac`` would, with busybox udhcpc.

    By default the client looks like a BIOS PXE ROM (option 60 ``PXEClient:…``, option 93 = 0);
    ``uefi`` makes it x86-64 UEFI (option 93 = 7, or ``arch``); ``ipxe`` adds iPXE's user class
    and option 175; ``pxe=False`` sends neither option 60 nor 93, like an initramfs;
    ``vendor_class`` replaces option 60 (`HTTP_CLIENT` with ``arch=16``: UEFI HTTP boot). ``send``
    adds raw options (``{175: bytes.fromhex("130101")}``). It asks for options 66 and 67 (and
    those in ``ask``) besides udhcpc's usual ones, discovers once a second for ``timeout``
    seconds, and raises `NoLeaseError` if no lease was bound by then.
    """
    set_mac(client_ns, iface, mac)
    tries = max(1, round(timeout))
    with tempfile.TemporaryDirectory(prefix="dim-udhcpc-") as tmp:
        script, lease_file = Path(tmp) / "script", Path(tmp) / "lease"
        script.write_text(_SCRIPT)
        script.chmod(0o755)
        argv = ["busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-C", "-s", str(script)]
        argv += ["-t", str(tries), "-T", "1", "-O", "66", "-O", "67"]
        argv += _client_options(uefi=uefi, ipxe=ipxe, arch=arch, pxe=pxe, vendor=vendor_class)
        for code, value in (send or {}).items():
            argv += ["-x", f"0x{code:02x}:{value.hex()}"]
        for code in ask:
            argv += ["-O", str(code)]
        env = {"PATH": PATH, "DIM_LEASE_FILE": str(lease_file)}
        result = run(client_ns, argv, env=env, timeout=tries + 10.0, check=False)
        if not lease_file.exists():
            raise NoLeaseError(mac, result.stdout + result.stderr)
        variables = _parse_variables(lease_file.read_bytes())
    return DhcpLease.from_variables(mac, variables)


def dhcp_server_command(
    flavour: str, config: Path, workdir: Path, iface: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run a DHCP server in the foreground.

    What the daemon writes (pid file, leases, Kea's lock and pid files) goes under ``workdir``,
    except Kea's memfile leases: ``config`` must name that file (``lease-database.name``).
    """
    env = {"PATH": PATH}
    if flavour == "dnsmasq":
        # --user=root: dnsmasq rereads its hosts files on SIGHUP after dropping privileges,
        # and a test's temporary folder is not readable by the dnsmasq user.
        argv = ["dnsmasq", "--keep-in-foreground", f"--conf-file={config}", "--user=root"]
        argv += [f"--pid-file={workdir / 'dnsmasq.pid'}", "--log-facility=-"]
        argv += [f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}"]
    elif flavour == "kea":
        run_dir = workdir / "kea-run"
        run_dir.mkdir(exist_ok=True)
        env |= {"KEA_PIDFILE_DIR": str(run_dir), "KEA_LOCKFILE_DIR": str(run_dir)}
        argv = ["kea-dhcp4", "-c", str(config)]
    elif flavour == "isc":
        leases = workdir / "dhcpd.leases"
        leases.touch()  # dhcpd refuses to start without it
        argv = ["dhcpd", "-f", "-d", "-4", "-cf", str(config), "-lf", str(leases)]
        argv += ["-pf", str(workdir / "dhcpd.pid"), iface]
    else:
        raise LabError(f"unknown DHCP flavour {flavour!r}", hint="use dnsmasq, kea or isc")
    return argv, env


def start_dhcp_server(seg: Segment, flavour: str, config: Path, workdir: Path) -> Daemon:
    """Start a DHCP server on the segment's bridge and wait until it listens on UDP 67."""
    argv, env = dhcp_server_command(flavour, config, workdir, seg.bridge)
    daemon = seg.start(argv, log=workdir / f"{flavour}.log", env=env)
    daemon.wait_udp(67)
    return daemon


def _client_options(
    *, uefi: bool, ipxe: bool, arch: int | None, pxe: bool, vendor: str | None = None
) -> list[str]:
    options: list[str] = []
    if pxe:
        arch = arch if arch is not None else (7 if uefi else 0)
        undi = "003016" if arch else "002001"
        vendor = vendor or f"PXEClient:Arch:{arch:05d}:UNDI:{undi}"
        options += ["-V", vendor, "-x", f"0x5d:{arch:04x}"]
    if ipxe:
        options += ["-x", "0x4d:" + b"iPXE".hex(), "-x", f"0xaf:{_IPXE_FEATURES}", "-O", "175"]
    return options


def _parse_variables(dump: bytes) -> dict[str, str]:
    variables: dict[str, str] = {}
    for item in dump.decode(errors="replace").split("\0"):
        name, sep, value = item.partition("=")
        if sep and name not in _SCRIPT_NOISE:
            variables[name] = value
    return variables
