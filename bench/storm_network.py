"""The boot storm's network (bench/storm.py): the server's namespace and bridge, the nodes'
namespace with every node's address, the kernel settings the storm needs, and the packets
the kernel dropped.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from storm_cluster import BRIDGE, RELAY, SERVER, node_address

from dim.lab import netns
from dim.services import limits


@contextlib.contextmanager
def arp_room(count: int):
    """Room for every node in the host's neighbour table (one table for all namespaces; its
    gc_thresh3 is 1024 by default, beyond which the server cannot reach new nodes), raised
    only when the storm needs more, and restored after."""
    names = [Path(f"/proc/sys/net/ipv4/neigh/default/gc_thresh{n}") for n in (2, 3)]
    before = [int(p.read_text()) for p in names]
    wanted = [count + 1024, 2 * count + 2048]
    raise_it = count + 512 > before[1]
    if raise_it:
        for path, value in zip(names, wanted, strict=True):
            path.write_text(f"{value}\n")
    try:
        yield
    finally:
        if raise_it:
            for path, value in reversed(list(zip(names, before, strict=True))):
                path.write_text(f"{value}\n")


@contextlib.contextmanager
def receive_buffer(size: int | None):
    """The machine's ``net.core.rmem_default`` set to ``size`` while the storm runs, as the
    sysctl file ``dim apply`` renders for these nodes sets it on a server (None: left as it
    is), and restored after. One value for the whole machine: a namespace reads the host's
    (read-only there), so the other tests of the machine see it too, for minutes."""
    key = Path("/proc/sys", *limits.RECEIVE_BUFFER_KEY.split("."))
    before = key.read_text()
    if size:
        key.write_text(f"{size}\n")
    try:
        yield
    finally:
        key.write_text(before)


def softnet_drops() -> int:
    """Packets dropped for a full per-CPU input queue (netdev_max_backlog; the machine's)."""
    lines = Path("/proc/net/softnet_stat").read_text().splitlines()
    return sum(int(line.split()[1], 16) for line in lines)


def make_network(namespace: str, count: int) -> str:
    clients = f"{namespace}-c"
    for name in (clients, namespace):
        if netns.namespace_exists(name):
            netns.delete_namespace(name)
    netns.add_bridged_namespace(namespace, BRIDGE, f"{SERVER}/16")
    # the lab's router advertisements (dim.lab.daemons) need the bridge's IPv6 address
    netns.ip("-n", namespace, "-6", "addr", "add", "fd77::1/64", "dev", BRIDGE, "nodad")
    netns.add_namespace(clients)
    netns.join_bridge(namespace, BRIDGE, "vstorm", clients, "eth0")
    batch = [f"addr add {RELAY}/16 dev eth0"]
    batch += [f"addr add {node_address(n)}/16 dev eth0" for n in range(1, count + 1)]
    subprocess.run(
        ["ip", "-n", clients, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True
    )
    return clients


def delete_network(namespace: str) -> None:
    for name in (f"{namespace}-c", namespace):
        if netns.namespace_exists(name):
            netns.delete_namespace(name)


def kernel_drops(namespace: str) -> dict:
    """Packets the kernel dropped in a namespace: UDP datagrams for a full receive buffer,
    TCP connections for a full listen queue (/proc/net/snmp, /proc/net/netstat)."""
    counters = {}
    for table in ("snmp", "netstat"):
        text = netns.run(namespace, ["cat", f"/proc/net/{table}"]).stdout.splitlines()
        for names, values in zip(text[::2], text[1::2], strict=False):
            prefix = names.split(":")[0]
            counters |= {
                f"{prefix}.{n}": int(v)
                for n, v in zip(names.split()[1:], values.split()[1:], strict=False)
            }
    wanted = ("Udp.RcvbufErrors", "TcpExt.ListenOverflows", "TcpExt.ListenDrops")
    # (packet sockets, which Kea and dhcpd read, count their drops nowhere in /proc)
    return {name: counters.get(name, 0) for name in wanted}
