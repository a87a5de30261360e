"""keepalived (VRRP) for a failover set: each server's service address floats to a peer.

One VRRP instance per server of the set, on every server of the set: the server that owns the
address has the highest priority, its peers lower ones in set order after it, so which peer
takes a dead server's address is known in advance. Every instance tracks the server's own
health checks: a server whose ganesha, DHCP daemon or ``dim serve`` stops answering goes into
FAULT and gives up every address it holds, as a dead host would::

    /etc/keepalived/keepalived.conf     global_defs, the checks, one vrrp_instance per server
    /etc/keepalived/dim-check-nfs       TCP connect to ganesha on the server's own address
    /etc/keepalived/dim-check-http      GET /dim/health from dim serve on its own address
    /etc/keepalived/dim-check-dhcp      the DHCP daemon's pid file names a running process
    /etc/keepalived/dim-fence           heads of a CephFS store only: fences a dead peer

A ``<check service="…" command="…"/>`` of the server replaces a default check. The peers talk
unicast between their own (fixed) addresses: no multicast to get through switches, and what
one nftables rule cuts in the split-brain test.

The master of an address sends a gratuitous ARP for it every second, not only the burst of
its takeover: a node that misses that burst keeps sending to the dead server's MAC until its
neighbour entry ages out, then waits for TCP's next backed-off retransmission. Measured in the
lab with the burst dropped on the bridge: node01's writes stopped for 55 and 59 s, against 4 to
12 s when the burst arrives (docs/ha.md).

When the set's servers are the heads of a CephFS store, the server that takes a peer's address
fences the peer first (``notify_master``): the store's Ceph cluster blocklists every client of
the peer's own address, which ends its ganesha's CephFS sessions at once; only a peer whose own
address does not answer at all is fenced: a living one (a failed check, its ganesha
restarting) ends its old sessions itself when its ganesha starts, and fenced, that new
ganesha would lose the CephFS under it (seen in the lab: a restart of srv1's ganesha made
srv2 take srv1's address and fence it while the new ganesha started). A dead head's
sessions otherwise hold the files its nodes had open (their capabilities) until the MDS gives
up on them, 300 s for ganesha's, and every open of those files through the survivor waits as
long (measured with a dead client: 67.9 s at ceph-fuse's 60 s timeout, 0 s once blocklisted;
docs/ha.md). The fenced server lifts its own entry before its ganesha starts again
(dim.services.nfs, ``dim-unfence``).

By default a server that comes back does not take its address back (``nopreempt``): its
nodes were moved once, a second move is a second interruption. ``preempt="yes"`` on the set
moves them back, ``preempt-delay`` seconds after the server's keepalived starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from dim.layout.model import Cluster, Server
from dim.services.rendering import RenderContext, RenderedFile

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
CHECKS = "/etc/keepalived"
FENCE = "/etc/keepalived/dim-fence"
# seconds the fence waits for a peer's own address to answer before taking it for dead: an
# address nobody holds fails ARP in about 3 s (EHOSTUNREACH)
FENCE_PROBE = 2
# Far apart: keepalived's instances start in BACKUP, and the first whose wait for an advert
# (3 adverts + (256 - priority)/256 s) ends becomes master. 250 against 100 gives the owner a
# lead of 0.6 s at a cold start of the whole set; with nopreempt whoever is master stays it.
OWNER_PRIORITY = 250
PEER_PRIORITY = 100  # the owner's successor; the next ones 5 less each (16 servers at most)
# Debian's pid files of each DHCP daemon, as its systemd unit starts it
DHCP_PID_FILES = {
    "dnsmasq": "/run/dnsmasq/dnsmasq.pid",
    "kea": "/run/kea/kea-dhcp4.kea-dhcp4.pid",
    "isc": "/run/dhcp-server/dhcpd.pid",
}


@dataclass(frozen=True, slots=True)
class Instance:
    name: str  # the server whose address this is
    vrid: int
    priority: int
    address: str
    prefix: int
    notify_master: str = ""  # a peer's address on a CephFS store's head: fence the peer


@dataclass(frozen=True, slots=True)
class VrrpContext:
    server: str
    interface: str
    own_address: str
    peers: tuple[str, ...]  # the other servers' own addresses
    instances: tuple[Instance, ...]
    checks: tuple[tuple[str, str], ...]  # (service, script path)
    preempt: bool
    preempt_delay: int


def vrid(cluster: Cluster, server: str) -> int:
    """The VRRP router id of ``server``'s address: its rank among the servers of failover
    sets, in layout order (the parser allows 255 of them)."""
    return [s for s in cluster.servers.values() if s.failover].index(cluster.servers[server]) + 1


def default_checks(server: Server) -> dict[str, str]:
    """The shell text of each health check, by service, before the layout's overrides."""
    own = server.own_address
    checks = {}
    if server.nfs == "ganesha":
        checks["nfs"] = f"exec 3<>/dev/tcp/{own}/2049"
    checks["http"] = (
        f"exec 3<>/dev/tcp/{own}/{server.http_port} || exit 1\n"
        f"printf 'GET /dim/health HTTP/1.0\\r\\nHost: {own}\\r\\n\\r\\n' >&3\n"
        "IFS= read -r -t 2 status <&3 || exit 1\n"
        '[[ $status == "HTTP/1."?" 200"* ]]'
    )
    if server.dhcp in DHCP_PID_FILES:
        checks["dhcp"] = f'pid=$(cat {DHCP_PID_FILES[server.dhcp]}) && kill -0 "$pid"'
    return checks


def render(context: RenderContext) -> list[RenderedFile]:
    server = context.server
    if server.failover is None:
        return []
    cluster = context.inventory.cluster
    members = cluster.failover[server.failover].servers
    rank = members.index(server.name)
    instances = []
    for name in members:
        owner = cluster.servers[name]
        network = cluster.networks[owner.network]
        # the owner first, then the peers in set order after it: a known successor
        behind = (rank - members.index(name)) % len(members)
        priority = OWNER_PRIORITY if behind == 0 else PEER_PRIORITY - 5 * (behind - 1)
        prefix = network.subnet.prefixlen
        notify = f"{FENCE} {owner.own_address}" if server.store and name != server.name else ""
        instances.append(
            Instance(name, vrid(cluster, name), priority, str(owner.address), prefix, notify)
        )
    checks = default_checks(server) | dict(server.checks)
    files = [
        RenderedFile(
            f"{CHECKS}/dim-check-{service}",
            context.render("keepalived-check.j2", service=service, lines=command.splitlines()),
            mode=0o755,
            service="keepalived",
        )
        for service, command in sorted(checks.items())
    ]
    vrrp = VrrpContext(
        server=server.name,
        interface=server.interface or "",
        own_address=str(server.own_address),
        peers=tuple(str(cluster.servers[n].own_address) for n in members if n != server.name),
        instances=tuple(instances),
        checks=tuple((s, f"{CHECKS}/dim-check-{s}") for s in sorted(checks)),
        preempt=cluster.failover[server.failover].preempt,
        preempt_delay=cluster.failover[server.failover].preempt_delay,
    )
    if server.store:
        store = cluster.stores[server.store]
        script = context.render("keepalived-fence.j2", vrrp=vrrp, store=store, probe=FENCE_PROBE)
        files.append(RenderedFile(FENCE, script, mode=0o755, service="keepalived"))
    files.append(
        RenderedFile(
            KEEPALIVED_CONF, context.render("keepalived.conf.j2", vrrp=vrrp), service="keepalived"
        )
    )
    return files
