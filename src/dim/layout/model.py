"""The declared cluster: networks, image servers, images, groups and their expanded nodes.

Everything here is immutable and pure. :func:`dim.layout.parser.parse` builds a
:class:`Cluster` from cluster.xml; what is observed rather than declared (MAC addresses, image
switches) lives in :class:`dim.state.Observed` and meets the layout in :class:`Inventory`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from dim.architectures import DEFAULT as DEFAULT_ARCH
from dim.layout.nodesets import DEFAULT_LIMIT
from dim.structs import field, struct


@struct(frozen=True, slots=True)
class Network:
    """A declared network: its subnet, and the gateway, DNS, NTP and domain its nodes get."""

    name: str
    subnet: IPv4Network
    gateway: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    ntp: tuple[IPv4Address, ...] = ()
    domain: str | None = None


@struct(frozen=True, slots=True)
class Server:
    """An image server: it answers DHCP, exports images over NFS and serves boot files."""

    name: str
    address: IPv4Address
    network: str
    dhcp: str  # dnsmasq | kea | isc | none
    nfs: str  # ganesha | kernel | none
    # TFTP beside Kea or ISC dhcpd, which have none: dnsmasq in TFTP-only mode, rendered by dim,
    # or none (the site runs its own). A dnsmasq server serves TFTP itself either way.
    tftp: str = "dnsmasq"
    # What answers the boot URL (http-port): dim serve, which answers each node's boot script
    # itself, or none (the site's own HTTP server at http_root, which needs the per-MAC
    # script links that dim serve does not: docs/booting.md).
    http: str = "dim"
    http_port: int = 8080
    interface: str | None = None
    tftp_root: str = "/srv/dim/tftp"
    http_root: str = "/srv/dim/http"
    # boot files by client kind; None: the default of dim.services.clients.KINDS
    bios_loader: str | None = None
    uefi_loader: str | None = None
    uefi_http_loader: str | None = None
    secure_boot_loader: str | None = None
    kea_hooks: str = "/usr/lib/x86_64-linux-gnu/kea/hooks"  # where libdhcp_lease_cmds.so is
    kea_socket: str = "/run/kea/kea4-ctrl-socket"  # Kea's control socket
    reload: tuple[tuple[str, str], ...] = ()  # (service, command) overrides
    # In a failover set: the server's fixed address, beside ``address``, the service address
    # that nodes are given and that floats (VRRP) to a peer when this server dies.
    own_address: IPv4Address | None = None
    failover: str | None = None  # the failover set the server belongs to
    store: str | None = None  # the CephFS store whose ganesha head the server is (Store)
    # health checks of the failover set's VRRP: (service, command) overrides of the defaults
    checks: tuple[tuple[str, str], ...] = ()

    @property
    def boot_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    def reload_command(self, service: str) -> str | None:
        return dict(self.reload).get(service)


@struct(frozen=True, slots=True)
class FailoverSet:
    """Image servers that back each other up. Each one's service address floats by VRRP to
    a peer when it dies; each one serves the nodes of all (DHCP, boot files, NFS exports), so
    that a peer holding a dead server's address answers its nodes as it would have."""

    name: str
    servers: tuple[str, ...]
    # A server that comes back takes its address back from the peer (a second interruption
    # for its nodes), after ``preempt_delay`` seconds; by default it does not.
    preempt: bool = False
    preempt_delay: int = 0
    line: int = 0


@struct(frozen=True, slots=True)
class Store:
    """The state folder on a CephFS: dim writes it through a mount (kernel or ceph-fuse) at
    the state folder's path, and each of ``servers`` (its heads) exports it with ganesha's
    CephFS back end (FSAL_CEPH), as the Ceph user ``user`` whose key ``ceph_conf`` leads to.
    ``root`` is the CephFS folder mounted as the state folder; by default the state folder's
    own path, so that each export's CephFS path is the path the nodes mount. Grace periods
    are coordinated across the heads by ganesha's ``rados_cluster`` recovery (its database in
    ``recovery_pool``, namespace the store's name), or not at all (``recovery="none"``: each
    head graceless, as a failover set on a shared folder is; the parser's default when every
    head is in a failover set)."""

    name: str
    cephfs: str
    servers: tuple[str, ...]
    user: str = "dim"
    ceph_conf: str = "/etc/ceph/ceph.conf"
    root: str | None = None
    recovery: str = "rados_cluster"
    recovery_pool: str = "dim_nfs"
    line: int = 0

    def path(self, local: str, state: str) -> str:
        """The CephFS path of ``local``, the state folder ``state`` or a path below it.

        >>> Store("s", "fs", ("a",), root="/dim").path("/var/lib/dim/images", "/var/lib/dim")
        '/dim/images'
        >>> Store("s", "fs", ("a",), root="/").path("/var/lib/dim", "/var/lib/dim")
        '/'
        >>> Store("s", "fs", ("a",)).path("/var/lib/dim/images", "/var/lib/dim")
        '/var/lib/dim/images'
        """
        root = state if self.root is None else self.root
        return root.rstrip("/") + local[len(state.rstrip("/")) :] or "/"


@struct(frozen=True, slots=True)
class Image:
    """A declared image: persistent, volatile and keep-out paths, NFS options, kernel arguments."""

    name: str
    persistent: tuple[str, ...] = ()
    volatile: tuple[str, ...] = ()
    keepout: tuple[str, ...] = ()
    nfs_options: str = "actimeo=1"
    kernel_args: str = ""


# Interface, Bmc and Node are not frozen: 400,000 of them at 100,000 nodes, and a frozen
# dataclass's __init__ (one object.__setattr__ call per field) costs four times a plain one's
# (0.08 s against 0.02 s per 100,000 here). Treat them as immutable all the same; they stay
# hashable (unsafe_hash) as the frozen ones were.
@struct(slots=True, unsafe_hash=True)
class Interface:
    """One interface of a node: its network, address and host name."""

    network: str
    ip: str  # dotted quad, canonical: the parser checked it with inet_pton
    hostname: str

    @property
    def address(self) -> IPv4Address:
        return IPv4Address(self.ip)


@struct(slots=True, unsafe_hash=True)
class Bmc:
    """A node's BMC: the driver that speaks to it, its address and its credentials' name."""

    driver: str  # ipmi | redfish | snmp
    address: str
    credentials: str | None = None


@struct(slots=True, unsafe_hash=True)
class Node:
    """One node of a group, expanded: its interfaces, image, server and BMC."""

    name: str
    group: str
    index: int
    interfaces: tuple[Interface, ...]
    image: str | None
    server: str
    bmc: Bmc | None = None
    line: int = 0  # where in cluster.xml the node was declared
    # UEFI Secure Boot on: DHCP sends the server's secure-boot-loader (shim), not iPXE
    secure_boot: bool = False

    @property
    def boot(self) -> Interface:
        """The interface the node boots from: its first one."""
        return self.interfaces[0]

    def interface(self, network: str) -> Interface | None:
        return next((i for i in self.interfaces if i.network == network), None)


@struct(frozen=True, slots=True)
class Group:
    """A declared group: its name, its node set and the line that declares it."""

    name: str
    nodeset: str
    line: int = 0
    arch: str = DEFAULT_ARCH  # its nodes' processor architecture (dim.architectures)


@struct(frozen=True, slots=True)
class Cluster:
    """The declared layout: its declarations and every node (``by_name``: the nodes by name)."""

    name: str
    domain: str | None
    networks: dict[str, Network]
    servers: dict[str, Server]
    images: dict[str, Image]
    groups: dict[str, Group]
    nodes: tuple[Node, ...]
    source: str = "<memory>"
    nodeset_limit: int = DEFAULT_LIMIT  # names one node set may make, before it is expanded
    failover: dict[str, FailoverSet] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)
    by_name: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.by_name:
            # the parser's nodes (dim.layout.columns.Nodes) are made when first looked up
            by_name = getattr(self.nodes, "by_name", None)
            index = by_name() if by_name else {n.name: n for n in self.nodes}
            object.__setattr__(self, "by_name", index)

    def node(self, name: str) -> Node | None:
        return self.by_name.get(name)

    @property
    def architectures(self) -> tuple[str, ...]:
        """The architectures of its groups' nodes, sorted (the default's alone if none)."""
        return tuple(sorted({g.arch for g in self.groups.values()} or {DEFAULT_ARCH}))

    def peers(self, server: str) -> tuple[str, ...]:
        """The servers that serve ``server``'s nodes: its failover set, or itself alone."""
        name = self.servers[server].failover
        return self.failover[name].servers if name else (server,)


@struct(frozen=True, slots=True)
class Inventory:
    """The layout with what the state DB observed: MACs and image switches."""

    cluster: Cluster
    macs: dict[tuple[str, str], str]  # (node, network) -> MAC, lower case with colons
    images: dict[str, str]  # node -> image assigned after the layout's own choice

    def mac(self, node: Node, network: str | None = None) -> str | None:
        return self.macs.get((node.name, network or node.boot.network))

    def image(self, node: Node) -> str | None:
        return self.images.get(node.name, node.image)
