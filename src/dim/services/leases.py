"""Release the DHCP leases that replaced MACs still hold on their nodes' reserved addresses.

When a node's NIC is replaced (``dim node set node02 --mac NEW``), dnsmasq and Kea keep the
lease of the old MAC and refuse the reserved address to the new one until that lease ends:
dnsmasq logs "not using configured address 10.77.0.12 because it is leased to <old MAC>" (and
dim's reservations are infinite), Kea ALLOC_ENGINE_V4_DISCOVER_ADDRESS_CONFLICT for the whole
valid-lifetime. The state DB records every replaced MAC (:meth:`StateDB.stale_leases`); once
``dim apply`` has installed and reloaded the new configuration, it settles them::

    >>> results = settle(db, cluster.servers["srv"], cluster)
    >>> [(r.lease.node, r.ip, r.outcome) for r in results]
    [('node02', '10.77.0.12', 'released')]

How each flavour releases the lease of MAC m on the node's reserved address a (measured with
dnsmasq 2.90, Kea 2.2.0 and ISC dhcpd 4.4.3-P1 in tests/integration/test_dhcp_daemons.py):

- dnsmasq: ``dhcp_release <interface> <a> <m>`` (Debian's dnsmasq-utils) sends the local
  dnsmasq a DHCPRELEASE as if from m, through the server's ``interface``. It is sent without a
  client identifier: dnsmasq then finds the lease by hardware address, so one release works
  for a lease taken by a PXE ROM or iPXE (no option 61) as for one taken by the initramfs'
  udhcpc (option 61 = 01:m); measured both ways, with and without client id. dnsmasq answers
  nothing, so "released" means sent; it is accepted before and after dnsmasq restarts on the
  configuration that no longer knows m. dim's dnsmasq keeps its leases in memory only
  (``leasefile-ro``: every address is a reservation), so its restart forgets them as well.
- Kea: on the control socket (``kea-socket``) ``lease4-get`` of a, then ``lease4-del`` of a if
  m holds it, through the lease_cmds hook that dim's configuration loads from ``kea-hooks``.
  A lease on a that another MAC holds (the new one, once the old lease was gone) is left.
- ISC dhcpd: nothing to do; it keeps no lease for a fixed-address host.

Only the boot interface has a reservation, so a replaced MAC on another network needs no
release. One lease's failure is a result, not an exception: it stays recorded, and the next
``dim apply`` that reloads tries it again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dim import processes
from dim.layout.model import Cluster, Server
from dim.records import StaleLease

if TYPE_CHECKING:  # the state DB's module imports SQLAlchemy: only when writing
    import socket

    from dim.state import StateDB

RELEASED = "released"
NOT_NEEDED = "not needed"
FAILED = "failed"

COMMAND_TIMEOUT = 10.0
KEA_TIMEOUT = 10.0
# `systemctl reload kea-dhcp4-server` returns before Kea has reopened its control socket.
KEA_CONNECT_WAIT = 5.0

NO_LEASE_KEPT = {
    "isc": "ISC dhcpd keeps no lease for a fixed-address host",
    "none": "this server runs no DHCP",
}


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """What became of one stale lease: ``released``, ``not needed`` or ``failed`` (why)."""

    lease: StaleLease
    ip: str | None
    outcome: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the lease is settled: released, or there was nothing to release."""
        return self.outcome != FAILED


class Transport:
    """The seam between dim and the daemons: run a command, ask Kea. Tests plug in a fake.

    Errors are raised as they come (OSError, subprocess.TimeoutExpired, ValueError for an
    answer that is not JSON); :func:`release` turns them into results.
    """

    def __init__(self, kea_connect_wait: float = KEA_CONNECT_WAIT) -> None:
        self.kea_connect_wait = kea_connect_wait

    def run(self, argv: list[str]) -> tuple[int, str]:
        """Run a command to its end: its exit status and output."""
        done = processes.run(argv, timeout=COMMAND_TIMEOUT)
        return done.returncode, done.stdout + done.stderr

    def kea(self, path: str, command: dict) -> dict:
        """Send one command to Kea's control socket and return its answer."""
        with self._connect(path) as sock:
            sock.sendall(json.dumps(command).encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                try:  # Kea closes the connection after its answer; don't rely on it
                    answer = json.loads(data)
                    break
                except ValueError:
                    continue
            else:
                answer = json.loads(data)
        return answer[0] if isinstance(answer, list) and answer else answer

    def _connect(self, path: str) -> socket.socket:
        import socket  # here: every dim apply imports this module; few ask Kea (11 M instr.)

        deadline = time.monotonic() + self.kea_connect_wait
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(KEA_TIMEOUT)
            try:
                sock.connect(path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline:
                    self.kea_connect_wait = 0.0  # Kea is not coming: don't wait per lease
                    raise
                time.sleep(0.1)
            except BaseException:
                sock.close()
                raise


def served_by(lease: StaleLease, server: Server, cluster: Cluster) -> bool:
    """Whether ``server`` settles this lease: its node is served there, or is gone."""
    node = cluster.node(lease.node)
    return node is None or node.server == server.name


def pending(stale: Iterable[StaleLease], server: Server, cluster: Cluster) -> list[StaleLease]:
    """Of the recorded stale leases, those that ``server`` is to release."""
    return [lease for lease in stale if served_by(lease, server, cluster)]


def release(
    server: Server,
    cluster: Cluster,
    stale: Iterable[StaleLease],
    *,
    transport: Transport | None = None,
) -> list[ReleaseResult]:
    """Release each stale lease on ``server``'s DHCP daemon; one result per lease."""
    transport = transport or Transport()
    return [_release(server, cluster, lease, transport) for lease in stale]


def settle(
    db: StateDB, server: Server, cluster: Cluster, *, transport: Transport | None = None
) -> list[ReleaseResult]:
    """Release the server's pending stale leases and forget those that are settled."""
    todo = pending(db.stale_leases(), server, cluster)
    results = release(server, cluster, todo, transport=transport)
    db.forget_stale_leases(r.lease for r in results if r.ok)
    return results


def _release(
    server: Server, cluster: Cluster, lease: StaleLease, transport: Transport
) -> ReleaseResult:
    node = cluster.node(lease.node)
    if node is None:
        return ReleaseResult(lease, None, NOT_NEEDED, "the node is no longer in the layout")
    interface = node.interface(lease.network)
    ip = interface.ip if interface is not None else None
    if interface is None or interface != node.boot:
        return ReleaseResult(lease, ip, NOT_NEEDED, "dim's DHCP serves boot interfaces only")
    if server.dhcp == "dnsmasq":
        return _release_dnsmasq(server, lease, interface.ip, transport)
    if server.dhcp == "kea":
        return _release_kea(server, lease, interface.ip, transport)
    return ReleaseResult(lease, ip, NOT_NEEDED, NO_LEASE_KEPT[server.dhcp])


def _release_dnsmasq(
    server: Server, lease: StaleLease, ip: str, transport: Transport
) -> ReleaseResult:
    if not server.interface:
        return ReleaseResult(
            lease,
            ip,
            FAILED,
            "dnsmasq releases a lease only through the interface it serves: "
            f'set interface= on <server name="{server.name}"> in cluster.xml',
        )
    argv = ["dhcp_release", server.interface, ip, lease.mac]
    try:
        status, output = transport.run(argv)
    except FileNotFoundError:
        message = "dhcp_release is not installed (apt-get install dnsmasq-utils)"
        return ReleaseResult(lease, ip, FAILED, message)
    except subprocess.TimeoutExpired:
        return ReleaseResult(lease, ip, FAILED, f"dhcp_release did not end in {COMMAND_TIMEOUT} s")
    except OSError as exc:
        return ReleaseResult(lease, ip, FAILED, f"cannot run dhcp_release: {exc}")
    if status != 0:
        detail = output.strip().splitlines()[-1] if output.strip() else "no output"
        return ReleaseResult(lease, ip, FAILED, f"dhcp_release exited {status}: {detail}")
    return ReleaseResult(lease, ip, RELEASED)


class _KeaError(Exception):
    """Kea could not be asked, or refused: the message is for the user."""


def _release_kea(server: Server, lease: StaleLease, ip: str, transport: Transport) -> ReleaseResult:
    try:
        held = _ask_kea(transport, server, "lease4-get", ip)
        if held is None:
            return ReleaseResult(lease, ip, NOT_NEEDED, f"Kea has no lease on {ip} any more")
        holder = str(held.get("hw-address", "")).lower()
        if holder != lease.mac:
            return ReleaseResult(lease, ip, NOT_NEEDED, f"{ip} is leased to {holder} now")
        _ask_kea(transport, server, "lease4-del", ip)
    except _KeaError as exc:
        return ReleaseResult(lease, ip, FAILED, str(exc))
    return ReleaseResult(lease, ip, RELEASED)


def _ask_kea(transport: Transport, server: Server, command: str, ip: str) -> dict | None:
    """A lease command's arguments; None when Kea has no such lease (result 3, "empty")."""
    path = server.kea_socket
    request = {"command": command, "arguments": {"ip-address": ip}}
    try:
        answer = transport.kea(path, request)
    except FileNotFoundError:
        raise _KeaError(
            f"Kea's control socket {path} does not exist: is kea-dhcp4 running with dim's "
            "configuration (kea-socket= in cluster.xml)?"
        ) from None
    except ConnectionRefusedError:
        raise _KeaError(f"nothing answers on Kea's control socket {path}") from None
    except TimeoutError:
        raise _KeaError(f"Kea did not answer {command} on {path} in {KEA_TIMEOUT} s") from None
    except OSError as exc:
        raise _KeaError(f"cannot reach Kea on {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise _KeaError(f"Kea's answer to {command} on {path} is not JSON") from None
    result = answer.get("result") if isinstance(answer, dict) else None
    if result == 0:
        return answer.get("arguments") or {}
    if result == 3:
        return None
    text = answer.get("text", "no explanation") if isinstance(answer, dict) else answer
    if result == 2:  # command not supported
        raise _KeaError(
            f"Kea does not know {command} ({text}): load the lease_cmds hook "
            "(dim's configuration does, from kea-hooks= in cluster.xml)"
        )
    raise _KeaError(f"Kea refused {command} of {ip}: {text}")
