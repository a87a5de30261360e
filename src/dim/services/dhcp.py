"""DHCP host reservations and boot-file choice for dnsmasq, Kea and ISC dhcpd.

Only the boot interface of each node that this server serves gets a reservation, and only when
its MAC is known. Every flavour sends the same boot file by client kind, the first that matches
in :data:`dim.services.clients.KINDS`:

- iPXE (user class ``iPXE`` or option 175 present): the HTTP script ``<boot url>/boot.ipxe``;
- UEFI HTTP boot (option 60 starting with ``HTTPClient`` and option 93 = 16): the full URL of
  the server's UEFI HTTP loader on ``dim serve`` (default ``snponly.efi``), with option 60 =
  ``HTTPClient`` in the answer, without which the firmware ignores the offer;
- UEFI x86-64 PXE (option 93 client architecture 7 or 9): the server's UEFI loader over TFTP
  (default ``snponly.efi``);
- anything else (legacy BIOS PXE): the server's BIOS loader over TFTP (default
  ``undionly.kpxe``).

A node declared ``secure-boot="yes"`` is sent the server's Secure Boot loader over TFTP
(default ``shimx64.efi``) whatever it asks as, by its MAC: nothing in a request tells a Secure
Boot client from a UEFI PXE one, and it can run nothing else (dnsmasq: a tag on its host line;
Kea: its reservation's boot-file-name; ISC: its host's filename).

iPXE is also sent the encapsulated option 175.176 (no-pxedhcp) = 1, so that it does not wait
for a ProxyDHCP offer.

In a failover set, each server's configuration holds the reservations of every node of the
set, each node marked with its own server, so that whichever server answers sends it its own
server's address, loaders and URLs (what that server would have sent): dnsmasq sets a tag
``dim-<server>`` on its host line and has a ``dhcp-boot`` line per tag and kind; ISC dhcpd puts
the hosts of each server in a ``group`` with that server's choice; Kea gives each reservation
the class ``dim-<server>``, and classes ``dim-<server>-<kind>`` that depend on ``KNOWN``, which
Kea evaluates only once it has found the reservation (measured with kea-dhcp4 2.2: a class
without ``member('KNOWN')`` is evaluated before, where the reservation's class is not yet set,
and again after, which its documentation does not promise); a Secure Boot node's reservation
names its server's address and loader, and wins over the classes.

Kea's configuration also loads the lease_cmds hook and opens a control socket, through which
``dim apply`` releases the lease a replaced MAC still holds (:mod:`dim.services.leases`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress, repeat
from operator import and_, eq, is_not

from dim.layout.columns import ServedColumns
from dim.layout.model import Server
from dim.services import clients, limits
from dim.services.clients import loader_for
from dim.services.rendering import RenderContext, RenderedFile
from dim.services.rows import Rows

DNSMASQ_CONF = "/etc/dnsmasq.d/dim.conf"
TFTP_CONF = "/etc/dnsmasq.d/dim-tftp.conf"  # beside Kea or ISC dhcpd: TFTP only
# beside dnsmasq's DHCP: DNS only, run by its own unit (contrib/dim-dns.service); not in
# /etc/dnsmasq.d, which Debian's dnsmasq reads whole into the DHCP instance
DNS_CONF = "/etc/dim/dnsmasq-dns.conf"
DNSMASQ_HOSTS = "/etc/dim/dnsmasq.hosts"
KEA_CONF = "/etc/kea/kea-dhcp4.conf"
KEA_LEASES = "/var/lib/kea/kea-leases4.csv"
KEA_LEASE_CMDS = "libdhcp_lease_cmds.so"
ISC_CONF = "/etc/dhcp/dhcpd.conf"
KEA_TEMPLATE = "kea-dhcp4.conf.j2"
ISC_TEMPLATE = "dhcpd.conf.j2"


# Not frozen: one per node when Jinja2 iterates them (Kea, ISC dhcpd: dim.services.rows), and
# a frozen dataclass's __init__ costs four times a plain one's (dim.layout.model.Node). Treat
# them as immutable all the same.
@dataclass(slots=True)
class DhcpHost:
    name: str
    mac: str
    ip: str
    hostname: str
    secure_boot: bool = False  # sent the Secure Boot loader, whatever it asks as
    tag: str = ""  # its server's tag, in a failover set's configuration (BootServer.tag)


@dataclass(frozen=True, slots=True)
class BootServer:
    """Where a node's boot goes: its own server's service address, loaders and URLs.

    A failover set's configuration names every server of the set, each with a ``tag`` that
    its nodes carry: the peer that holds a dead server's address answers its nodes exactly as
    that server would have. A lone server's one BootServer has no tag.
    """

    name: str
    tag: str
    address: str
    ipxe_url: str
    uefi_http_url: str
    bios_loader: str
    uefi_loader: str
    secure_boot_loader: str
    # what it sends each of DhcpContext.other_kinds, in their order: a URL (HTTP boot) or a
    # file of its TFTP root
    other_loaders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OtherKind:
    """A kind of client of another architecture than the default
    (:func:`dim.services.clients.foreign_kinds`), as the templates match it: by option 93
    alone, and for HTTP boot option 60 too."""

    name: str  # aarch64-uefi-pxe: dnsmasq's tag, Kea's class
    arch: tuple[int, ...]
    http: bool


@dataclass(frozen=True, slots=True)
class DhcpSubnet:
    id: int
    name: str
    address: str
    netmask: str
    cidr: str
    gateway: str | None
    dns: tuple[str, ...]
    ntp: tuple[str, ...]
    domain: str | None
    hosts: Rows[DhcpHost]


@dataclass(frozen=True, slots=True)
class DhcpContext:
    cluster: str
    server_name: str
    server_address: str
    interface: str | None
    subnets: tuple[DhcpSubnet, ...]
    ipxe_url: str
    bios_loader: str
    uefi_loader: str
    secure_boot_loader: str
    uefi_arch: tuple[int, ...]  # option 93 values of UEFI PXE clients
    uefi_http_url: str
    http_arch: tuple[int, ...]  # option 93 values of UEFI HTTP boot clients
    http_vendor_class: str  # what their option 60 starts with, and what the answer's holds
    tftp_root: str
    hosts_file: str
    dnsmasq_hosts_file: str
    kea_leases: str
    kea_lease_cmds: str
    kea_socket: str
    boot_servers: tuple[BootServer, ...] = ()
    other_kinds: tuple[OtherKind, ...] = ()  # the cluster's other architectures' clients
    # A failover set's dnsmasq listens on addresses that arrive later (its peers' service
    # addresses, for TFTP): bind-dynamic, not bind-interfaces.
    dynamic_bind: bool = False
    # dnsmasq's limits, sized from the nodes (dim.services.limits); None: its default holds
    lease_max: int | None = None
    tftp_max: int | None = None


def boot_server(
    server: Server, tag: str = "", others: tuple[clients.ClientKind, ...] = ()
) -> BootServer:
    return BootServer(
        name=server.name,
        tag=tag,
        address=str(server.address),
        ipxe_url=f"{server.boot_url}/boot.ipxe",
        uefi_http_url=f"{server.boot_url}/{loader_for(server, 'uefi-http').lstrip('/')}",
        bios_loader=loader_for(server, "bios-pxe"),
        uefi_loader=loader_for(server, "uefi-pxe"),
        secure_boot_loader=loader_for(server, "uefi-secureboot"),
        other_loaders=tuple(_sent(server, kind) for kind in others),
    )


def _sent(server: Server, kind: clients.ClientKind) -> str:
    loader = loader_for(server, kind)
    return f"{server.boot_url}/{loader.lstrip('/')}" if kind.transport == "http" else loader


def dhcp_context(context: RenderContext) -> DhcpContext:
    inventory = context.inventory
    cluster = inventory.cluster
    server = context.server
    peers = cluster.peers(server.name)
    tags = {name: f"dim-{name}" if len(peers) > 1 else "" for name in peers}
    others = clients.foreign_kinds(cluster.architectures)
    nodes = context.served()
    by_network = _hosts_by_network(nodes, inventory.macs, tags)
    # The server's own network is always declared, even before any MAC is known.
    by_network.setdefault(server.network, Rows(DhcpHost, *([],) * 6))
    subnets = []
    for number, name in enumerate(cluster.networks, start=1):
        if name not in by_network:
            continue
        network = cluster.networks[name]
        subnets.append(
            DhcpSubnet(
                id=number,
                name=name,
                address=str(network.subnet.network_address),
                netmask=str(network.subnet.netmask),
                cidr=str(network.subnet),
                gateway=str(network.gateway) if network.gateway else None,
                dns=tuple(str(a) for a in network.dns),
                ntp=tuple(str(a) for a in network.ntp),
                domain=network.domain or cluster.domain,
                hosts=by_network[name],
            )
        )
    return DhcpContext(
        cluster=cluster.name,
        server_name=server.name,
        server_address=str(server.address),
        interface=server.interface,
        subnets=tuple(subnets),
        ipxe_url=f"{server.boot_url}/boot.ipxe",
        bios_loader=loader_for(server, "bios-pxe"),
        uefi_loader=loader_for(server, "uefi-pxe"),
        secure_boot_loader=loader_for(server, "uefi-secureboot"),
        uefi_arch=clients.BY_NAME["uefi-pxe"].arch,
        uefi_http_url=f"{server.boot_url}/{loader_for(server, 'uefi-http').lstrip('/')}",
        http_arch=clients.BY_NAME["uefi-http"].arch,
        http_vendor_class=clients.BY_NAME["uefi-http"].vendor_class or "HTTPClient",
        tftp_root=server.tftp_root,
        hosts_file="/etc/dim/hosts",
        dnsmasq_hosts_file=DNSMASQ_HOSTS,
        kea_leases=KEA_LEASES,
        kea_lease_cmds=f"{server.kea_hooks.rstrip('/')}/{KEA_LEASE_CMDS}",
        kea_socket=server.kea_socket,
        boot_servers=tuple(boot_server(cluster.servers[n], tags[n], others) for n in peers),
        other_kinds=tuple(OtherKind(k.name, k.arch, k.transport == "http") for k in others),
        dynamic_bind=len(peers) > 1,
        lease_max=limits.dnsmasq_lease_max(len(nodes.name)),
        tftp_max=limits.tftp_max(len(nodes.name)),
    )


def _hosts_by_network(
    nodes: ServedColumns, macs: dict[tuple[str, str], str], tags: dict[str, str]
) -> dict[str, Rows[DhcpHost]]:
    """The reservations of the nodes with a boot MAC, by boot network, in layout order: a
    column per field (dim.services.rows), each as the layout's columns hold it or built by one
    ``map``."""
    names, networks = nodes.name, nodes.boot_network
    found = list(map(macs.get, zip(names, networks, strict=True)))
    columns = (
        names,
        found,
        nodes.boot_ip,
        nodes.boot_hostname,
        nodes.secure_boot,
        list(map(tags.__getitem__, nodes.server)),
    )
    with_mac = list(map(is_not, found, repeat(None)))
    distinct = dict.fromkeys(networks)  # the boot networks, most often one
    by_network = {}
    for network in distinct:
        chosen = with_mac
        if len(distinct) > 1:
            chosen = list(map(and_, with_mac, map(eq, networks, repeat(network))))
        if all(chosen):
            by_network[network] = Rows(DhcpHost, *columns)
        elif any(chosen):
            by_network[network] = Rows(DhcpHost, *(list(compress(c, chosen)) for c in columns))
    return by_network


def render(context: RenderContext) -> list[RenderedFile]:
    flavour = context.server.dhcp
    if flavour == "none":
        return []
    dhcp = dhcp_context(context)
    if flavour == "dnsmasq":
        return [
            RenderedFile(
                DNSMASQ_CONF, context.render("dnsmasq.conf.j2", dhcp=dhcp), service="dnsmasq"
            ),
            _dnsmasq_hosts(context, dhcp),
            RenderedFile(DNS_CONF, context.render("dnsmasq-dns.conf.j2", dhcp=dhcp), service="dns"),
        ]
    files = [_main_file(context, dhcp)]
    if context.server.tftp == "dnsmasq":  # Kea and dhcpd serve no TFTP: dnsmasq does
        files.append(
            RenderedFile(
                TFTP_CONF, context.render("dnsmasq-tftp.conf.j2", dhcp=dhcp), service="tftp"
            )
        )
    return files


def dnsmasq_hosts(context: RenderContext) -> RenderedFile:
    """dnsmasq's hosts file alone, as :func:`render` gives it (an incremental apply renders
    the lines of a few nodes, :mod:`dim.services.incremental`, and not the main file)."""
    return _dnsmasq_hosts(context, dhcp_context(context))


def main_file(context: RenderContext) -> RenderedFile:
    """Kea's or ISC dhcpd's file alone, as :func:`render` gives it (an incremental apply
    renders it for the changed nodes alone, :mod:`dim.services.incremental`)."""
    return _main_file(context, dhcp_context(context))


def _main_file(context: RenderContext, dhcp: DhcpContext) -> RenderedFile:
    if context.server.dhcp == "kea":
        return RenderedFile(KEA_CONF, context.render(KEA_TEMPLATE, dhcp=dhcp), service="kea")
    return RenderedFile(ISC_CONF, context.render(ISC_TEMPLATE, dhcp=dhcp), service="isc")


def _dnsmasq_hosts(context: RenderContext, dhcp: DhcpContext) -> RenderedFile:
    content = context.render("dnsmasq.hosts.j2", dhcp=dhcp)
    return RenderedFile(DNSMASQ_HOSTS, content, service="dnsmasq")
