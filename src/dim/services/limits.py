"""What an image server needs to hold the nodes it serves: the kernel's neighbour (ARP) table,
and the limits of the daemons dim configures, sized from those nodes (pure arithmetic).

Every default below suits a home router, not a segment of thousands of nodes::

    >>> needs = server_needs(inventory, "img1")        # 10,000 nodes, boot + BMC address each
    >>> needs.neighbour_thresholds                     # kernel default (128, 512, 1024)
    (32768, 65536, 131072)
    >>> needs.dnsmasq_lease_max, needs.tftp_max, needs.ganesha_connections
    (20000, 20000, 10000)
    >>> needs.receive_buffer                           # kernel default 212,992
    33554432

- **Neighbour table** (``net.ipv4.neigh.default.gc_thresh1/2/3``, one table for the whole
  machine): beyond ``gc_thresh3`` the kernel drops packets to a new neighbour ("neighbour
  table overflow"). Every node address the server may talk to (each interface and BMC of each
  node it serves) is a neighbour: ``gc_thresh1`` = that count (nothing is collected while only
  the cluster is known, so a boot storm does not re-resolve), ``gc_thresh2`` twice it,
  ``gc_thresh3`` four times, each a power of two and never below the kernel's default.
  :mod:`dim.services.sysctl` renders them; ``dim layout check`` says when this machine's are
  lower.
- **Receive buffer** (``net.core.rmem_default``, 208 KiB): the DHCP socket of dnsmasq, Kea or
  dhcpd gets the default, which holds the DISCOVERs of about 100 nodes; in a boot storm the
  kernel drops the rest, and each dropped node waits 4 s or more (its PXE ROM) to try again.
  2 KiB per node, a power of two, at most 64 MiB; rendered and checked as the thresholds.
- **dnsmasq** ``dhcp-lease-max`` (default 1,000): a reserved address takes a lease all the
  same, and the 1,001st node is offered its address and refused it ("no leases left"), over
  and over. Twice the nodes: a replaced MAC's lease stays until released or expired (the
  nodes declared, not the MACs known: a MAC set later changes only its host line).
- **dnsmasq** ``tftp-max`` (default 50 transfers at once): the PXE path of a whole rack.
  Two per node, at most 20,000. At its limit dnsmasq stops reading its TFTP port: the
  requests of a storm wait in the socket, overflow it, and each PXE ROM whose request was
  dropped waits 1 to 8 s to ask again, eight times at most. A ROM that asks again before
  its first answer came gets a second transfer (a new port each), and a transfer whose client
  went away holds its place until dnsmasq gives up on it: hence two per node. 2,500 nodes'
  PXELINUX files: 1,000 lost 2,204 nodes, 2,500 lost 526 (a heavier load), 5,000 none
  (docs/benchmarks.md, Boot storm). dnsmasq needs a file descriptor per transfer and does
  not raise its own limit (1,024 under systemd): it lowers a higher ``tftp-max`` itself
  ("restricting maximum simultaneous TFTP transfers") unless its unit allows more
  (``contrib/dnsmasq-limits.conf``, a drop-in with ``LimitNOFILE=65536``).
- **dim serve** ``--max-connections`` per worker (2,048 unless given): a node holds one
  connection from its boot script to its initrd, and the kernel hands a new connection to
  whichever worker accepts first, so in a storm one worker may take most of them: every node
  served, and 64 more, per worker. (dim serve raises its open-file limit to fit, or lowers
  the count to the hard limit and says so.)
- **nfs-ganesha** ``RPC_Max_Connections`` (default 1,024, at most 10,000): an NFSv4 client
  holds one TCP connection per server, and a rebooted node's old one lingers until
  ``RPC_Idle_Timeout_S`` (300 s): two per node. ganesha counts its own listening sockets
  (NFS over TCP and UDP) in that number, so one ganesha holds 9,998 clients at most: past
  that, nodes cannot mount at all, even at a first boot (a 10,000-node storm: 2 mounts
  refused, ``svc_xprt_lookup … max_connections 10000 exceeded``). ``dim layout check``
  warns past 4,999 nodes (reboots) and again past 9,998 (mounts refused). (ganesha raises
  its own open-file limit to the hard one.)
- **dnsmasq's DHCP** has no setting to raise: one process answers a storm one packet at a
  time. At 2,500 nodes booting at once it answered iPXE slower than iPXE's 1-second retries:
  1,400 to 2,000 nodes needed a second round of the iPXE DHCP, and 72 failed (median of three
  storms, docs/benchmarks.md, branch i14-dhcp4). Past about 1,000 nodes on one dnsmasq server
  ``dim layout check`` advises Kea or ISC dhcpd.

A value is None where the daemon's default already holds the nodes: small clusters' files do
not change. In a failover set a server may hold every node of the set, and is sized so.
"""

from __future__ import annotations

from dim.layout.columns import served_columns
from dim.layout.model import Cluster, Inventory, Node
from dim.structs import struct

SYSCTL_CONF = "/etc/sysctl.d/60-dim-server.conf"
THRESHOLD_KEYS = tuple(f"net.ipv4.neigh.default.gc_thresh{n}" for n in (1, 2, 3))
KERNEL_NEIGHBOUR_THRESHOLDS = (128, 512, 1024)
DNSMASQ_LEASE_MAX = 1000
DNSMASQ_TFTP_MAX = 50
TFTP_MAX_CEILING = 20_000  # a UDP port and a descriptor each: within 65,536 files, 28,232 ports
SERVE_CONNECTIONS = 2048
GANESHA_CONNECTIONS = 1024
GANESHA_MAX_CONNECTIONS = 10_000
GANESHA_LISTENERS = 2  # counted in RPC_Max_Connections: NFS over TCP and over UDP
# A head of a CephFS store: ganesha opens one CephFS client per export (per node), measured
# 14 threads, 1.4 MB and 0.08 s of start-up each (docs/benchmarks.md, session 12)
CEPH_HEAD_NODES = 500
CEPH_CLIENT_THREADS, CEPH_CLIENT_MB, CEPH_CLIENT_START_S = 14, 1.4, 0.08
DNSMASQ_STORM_NODES = 1000  # booting at once, past which dnsmasq's DHCP answers iPXE too late
# the default of datagram sockets that set none (rmem_max, the most one may ask, is left alone:
# a site may have raised it for other needs)
RECEIVE_BUFFER_KEY = "net.core.rmem_default"
KERNEL_RECEIVE_BUFFER = 212_992
# the receive buffer a DHCP packet takes (the kernel counts a packet's whole allocation: 1.3 KB
# for 300 bytes on a veth, half a page or a page per frame from many NIC drivers)
BUFFER_PER_NODE = 2048
RECEIVE_BUFFER_CEILING = 64 << 20  # the burst of 32,768 nodes


@struct(frozen=True, slots=True)
class ServerNeeds:
    """What one server needs for its nodes; None: the default holds them."""

    server: str
    nodes: int
    neighbours: int  # node addresses: interfaces and BMCs
    neighbour_thresholds: tuple[int, int, int]
    dnsmasq_lease_max: int | None
    tftp_max: int | None
    ganesha_connections: int | None
    ganesha_short: int  # connections beyond ganesha's maximum (0: none)
    ganesha_refused: int  # nodes that cannot mount at all, even at a first boot (0: none)
    receive_buffer: int | None  # net.core.rmem_default


def served(cluster: Cluster, server: str) -> list[Node]:
    """The nodes ``server`` serves: its own, and in a failover set its peers' too (as
    ``RenderContext.nodes``, whose module imports Jinja2, which ``layout check`` must not)."""
    peers = set(cluster.peers(server))
    return [n for n in cluster.nodes if n.server in peers]


def server_needs(inventory: Inventory, server: str) -> ServerNeeds:
    cluster = inventory.cluster
    # served(), as columns: no node made (dim.layout.columns)
    columns = served_columns(cluster.nodes, set(cluster.peers(server)))
    nodes = columns.name
    neighbours = sum(columns.addresses)  # each node's interfaces and BMC
    return ServerNeeds(
        server=server,
        nodes=len(nodes),
        neighbours=neighbours,
        neighbour_thresholds=neighbour_thresholds(neighbours),
        dnsmasq_lease_max=dnsmasq_lease_max(len(nodes)),
        tftp_max=tftp_max(len(nodes)),
        ganesha_connections=ganesha_connections(len(nodes)),
        ganesha_short=max(0, 2 * len(nodes) - GANESHA_MAX_CONNECTIONS),
        ganesha_refused=max(0, len(nodes) + GANESHA_LISTENERS - GANESHA_MAX_CONNECTIONS),
        receive_buffer=receive_buffer(len(nodes)),
    )


def shortfalls(inventory: Inventory, local: list[str], current: dict[str, int]) -> list[str]:
    """What ``dim layout check`` warns of, one line each: a ganesha server with more nodes
    than ganesha can hold, a dnsmasq server with more nodes than dnsmasq's DHCP answers in
    a storm, and for the servers of this machine (``local``), a neighbour threshold
    (``current``: key -> value here) below what their nodes need."""
    lines = []
    for name, server in inventory.cluster.servers.items():
        needs = server_needs(inventory, name)
        if server.nfs == "ganesha" and needs.ganesha_refused:
            lines.append(
                f"server {name} serves {needs.nodes} nodes over nfs-ganesha, which holds at most "
                f"{GANESHA_MAX_CONNECTIONS - GANESHA_LISTENERS} clients ({GANESHA_MAX_CONNECTIONS} "
                f"connections, its {GANESHA_LISTENERS} listeners included): "
                f"{needs.ganesha_refused} cannot mount even at a first boot; split the nodes "
                f"over more servers"
            )
        elif server.nfs == "ganesha" and needs.ganesha_short:
            lines.append(
                f"server {name} serves {needs.nodes} nodes over nfs-ganesha, which holds at most "
                f"{GANESHA_MAX_CONNECTIONS} connections (RPC_Max_Connections): after a reboot "
                f"of them all, {needs.ganesha_short} wait up to 300 s (RPC_Idle_Timeout_S) for "
                f"their old ones to go; split the nodes over more servers"
            )
        if server.store and needs.nodes > CEPH_HEAD_NODES:
            clients = needs.nodes + 1
            lines.append(
                f"server {name} exports {needs.nodes} nodes' folders from CephFS store "
                f"{server.store}: nfs-ganesha opens one CephFS client per export, {clients} "
                f"here, about {round(clients * CEPH_CLIENT_THREADS, -3):.0f} threads and "
                f"{clients * CEPH_CLIENT_MB / 1024:.1f} GiB, {clients * CEPH_CLIENT_START_S:.0f} s "
                f"to start; split the nodes over more heads"
            )
        if server.dhcp == "dnsmasq" and needs.nodes > DNSMASQ_STORM_NODES:
            lines.append(
                f"server {name} serves {needs.nodes} nodes with dnsmasq's DHCP, too slow past "
                f"about {DNSMASQ_STORM_NODES} booting at once (of 2500: 1400 to 2000 needed a "
                f'second iPXE DHCP round, 72 failed): take dhcp="kea" or dhcp="isc"'
            )
        if name not in local:
            continue
        for key, needed in zip(THRESHOLD_KEYS, needs.neighbour_thresholds, strict=True):
            if key in current and current[key] < needed:
                lines.append(
                    f"{key} is {current[key]} on this machine (server {name}), {needed} needed "
                    f"for its {needs.neighbours} node addresses: dim apply sets it in "
                    f"{SYSCTL_CONF}"
                )
        key, needed = RECEIVE_BUFFER_KEY, needs.receive_buffer
        if needed and key in current and current[key] < needed:
            lines.append(
                f"{key} is {current[key]} on this machine (server {name}), {needed} needed for "
                f"the DHCP burst of its {needs.nodes} nodes: dim apply sets it in {SYSCTL_CONF}"
            )
    return lines


def dnsmasq_lease_max(nodes: int) -> int | None:
    """``dhcp-lease-max`` for this many nodes: twice them (replaced MACs' leases). Sized from the
    nodes declared, not the MACs known, so that a MAC set later changes no more than its host
    line (what an incremental apply rewrites)."""
    return _above(2 * nodes, DNSMASQ_LEASE_MAX)


def tftp_max(nodes: int) -> int | None:
    """dnsmasq's ``tftp-max``: two transfers per node, at most 20,000 (dnsmasq lowers it to
    what its file limit allows, and logs it)."""
    return _above(min(2 * nodes, TFTP_MAX_CEILING), DNSMASQ_TFTP_MAX)


def ganesha_connections(nodes: int) -> int | None:
    """ganesha's ``RPC_Max_Connections``: two per node, at most its maximum (10,000)."""
    return _above(min(2 * nodes, GANESHA_MAX_CONNECTIONS), GANESHA_CONNECTIONS)


def serve_connections(nodes: int) -> int:
    """``dim serve``'s connections per worker: every node at once, and 64 more, at least
    the 2,048 of a small cluster.

    >>> serve_connections(100), serve_connections(2500), serve_connections(10_000)
    (2048, 2564, 10064)
    """
    return max(nodes + 64, SERVE_CONNECTIONS)


def receive_buffer(nodes: int) -> int | None:
    """``net.core.rmem_default`` for a DHCP socket to hold the burst of a
    boot storm: every node's DISCOVER at the same moment, 2 KiB each, a power of two, at most
    64 MiB (the default of every datagram socket of the machine; past it, a queued packet
    waits longer than a PXE ROM does anyway). None while the kernel's 208 KiB hold them.
    The DHCP servers take the default (dnsmasq's DHCP socket sets no SO_RCVBUF).

    >>> receive_buffer(100), receive_buffer(2500), receive_buffer(10_000)
    (None, 8388608, 33554432)
    """
    wanted = nodes * BUFFER_PER_NODE
    if wanted <= KERNEL_RECEIVE_BUFFER:
        return None
    return min(_power_of_two(wanted), RECEIVE_BUFFER_CEILING)


def neighbour_thresholds(neighbours: int) -> tuple[int, int, int]:
    """``gc_thresh1/2/3`` for ``neighbours`` addresses on the server's segments.

    >>> neighbour_thresholds(3), neighbour_thresholds(2576 * 3)
    ((128, 512, 1024), (8192, 16384, 32768))
    """
    wanted = (neighbours, 2 * neighbours, 4 * neighbours)
    return tuple(  # type: ignore[return-value]
        max(_power_of_two(w), default)
        for w, default in zip(wanted, KERNEL_NEIGHBOUR_THRESHOLDS, strict=True)
    )


def _power_of_two(value: int) -> int:
    return 1 << max(0, value - 1).bit_length()


def _above(value: int, default: int) -> int | None:
    return value if value > default else None
