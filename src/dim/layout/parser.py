"""cluster.xml -> :class:`Cluster`: schema, expansion of node sets and semantic checks.

    >>> cluster = parse(Path("examples/lab.xml").read_bytes(), "examples/lab.xml")
    >>> cluster.node("node01").boot.ip
    IPv4Address('10.77.0.11')

:func:`parse` is pure; :func:`load` reads the file. Every error is a :class:`LayoutError` that
names the file, the line and the offending value.
"""

from __future__ import annotations

import re
from _socket import AF_INET, inet_pton  # not socket.py: see dim.names
from collections.abc import Callable
from functools import cache
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from itertools import chain
from pathlib import Path

from lxml import etree

from dim import architectures
from dim.allocation import bulk_allocation
from dim.errors import LayoutError
from dim.layout import bulk, nodesets, read
from dim.layout.columns import GroupColumns, Nodes
from dim.layout.expressions import ExpressionError, Template, compile_template
from dim.layout.model import (
    Bmc,
    Cluster,
    FailoverSet,
    Group,
    Image,
    Interface,
    Network,
    Node,
    Server,
    Store,
)
from dim.names import (
    BMC_ADDRESS,
    HOST_NAME,
    MAX_HOST_NAME,
    MAX_NAME,
    check_bmc_address,
    check_boot_file,
    check_command,
    check_hostname,
    check_interface,
    check_keepout,
    check_kernel_args,
    check_name,
    check_nfs_options,
    check_path,
    check_socket_path,
    ip_to_int,
)
from dim.structs import replace

_NUMBERS = re.compile(r"[0-9]+")
RESERVED_GROUPS = {"all"}
MAX_FAILOVER_SET = 16  # VRRP priorities step down from the owner's (dim.services.vrrp)
# <server> attributes taken as text, and those of them that must be absolute paths.
SERVER_TEXT = (
    "interface",
    "tftp-root",
    "http-root",
    "bios-loader",
    "uefi-loader",
    "uefi-http-loader",
    "secure-boot-loader",
    "kea-hooks",
    "kea-socket",
)
Check = Callable[[str, str], str]
# Every attribute of cluster.xml and how its text is checked. (kind, check): a check of
# dim.names, run on the text as written before anything reads it, the kind naming it in the
# error. A string: the value is checked where it is read, for the reason given. The schema has
# no attribute outside this table (tests/unit/layout/test_values.py).
ATTRIBUTES: dict[tuple[str, str], tuple[str, Check] | str] = {
    ("cluster", "name"): ("cluster", check_name),
    ("cluster", "domain"): ("domain", check_hostname),
    ("cluster", "nodeset-limit"): "a positive number of nodes, 18 digits at most",
    ("network", "name"): ("network", check_name),
    ("network", "subnet"): "an IPv4 network in CIDR form",
    ("network", "gateway"): "an IPv4 address in the subnet",
    ("network", "dns"): "IPv4 addresses",
    ("network", "ntp"): "IPv4 addresses",
    ("network", "domain"): ("domain", check_hostname),
    # A server's name is in the hosts file and in dnsmasq's dhcp-boot: a host name.
    ("server", "name"): ("server name", check_hostname),
    ("server", "address"): "an IPv4 address in a declared network",
    ("server", "dhcp"): "one of the schema's values",
    ("server", "nfs"): "one of the schema's values",
    ("server", "tftp"): "one of the schema's values",
    ("server", "http"): "one of the schema's values",
    ("server", "http-port"): "a port number, 1 to 65535",
    ("server", "interface"): ("interface", check_interface),
    ("server", "tftp-root"): ("tftp-root", check_path),
    ("server", "http-root"): ("http-root", check_path),
    ("server", "bios-loader"): ("bios-loader", check_boot_file),
    ("server", "uefi-loader"): ("uefi-loader", check_boot_file),
    ("server", "uefi-http-loader"): ("uefi-http-loader", check_boot_file),
    ("server", "secure-boot-loader"): ("secure-boot-loader", check_boot_file),
    ("server", "kea-hooks"): ("kea-hooks", check_path),
    ("server", "kea-socket"): ("kea-socket", check_socket_path),
    ("server", "own-address"): "an IPv4 address in the network of the server's address",
    ("check", "service"): "one of the schema's values",
    ("check", "command"): ("check command", check_command),
    ("failover", "name"): ("failover set", check_name),
    ("failover", "servers"): "a node set of declared server names",
    ("failover", "preempt"): "one of the schema's values",
    ("failover", "preempt-delay"): "seconds, 0 to 3600",
    ("store", "name"): ("store", check_name),
    ("store", "cephfs"): ("CephFS", check_name),
    ("store", "servers"): "a node set of declared server names",
    ("store", "user"): ("Ceph user", check_name),
    ("store", "ceph-conf"): ("ceph-conf", check_path),
    ("store", "root"): ("store root", check_path),
    ("store", "recovery"): "one of the schema's values",
    ("store", "recovery-pool"): ("recovery pool", check_name),
    ("reload", "service"): "one of the schema's values",
    ("reload", "command"): ("reload command", check_command),
    ("image", "name"): ("image", check_name),
    ("image", "nfs-options"): ("nfs-options", check_nfs_options),
    ("image", "kernel-args"): ("kernel-args", check_kernel_args),
    ("persist", "path"): ("persist path", check_path),
    ("volatile", "path"): ("volatile path", check_path),
    ("keepout", "path"): ("keepout path", check_keepout),
    ("group", "name"): ("group", check_name),
    ("group", "nodes"): "a node set; each node name is a host name",
    ("group", "image"): ("image", check_name),
    ("group", "server"): ("server name", check_hostname),
    ("group", "secure-boot"): "one of the schema's values",
    ("group", "arch"): "a processor architecture dim boots",
    ("interface", "network"): ("network", check_name),
    ("interface", "ip"): "a template; each node's address is an IPv4 address in the network",
    ("interface", "hostname"): "a template; each node's value is a host name",
    ("bmc", "driver"): "one of the schema's values",
    ("bmc", "address"): "a template; each node's value is a BMC address",
    ("bmc", "credentials"): ("credentials", check_name),
    ("node", "name"): "a node set of the group's nodes",
    ("node", "image"): ("image", check_name),
    ("node", "server"): ("server name", check_hostname),
    ("node", "secure-boot"): "one of the schema's values",
}


@cache
def _schema() -> etree.RelaxNG:
    # next to this module, as the wheel installs it: importlib.resources would cost every
    # command that reads the layout 10 ms of imports (issue 14: start-up)
    text = Path(__file__).with_name("cluster.rng").read_bytes()
    return etree.RelaxNG(etree.fromstring(text))


def load(path: str | Path) -> Cluster:
    """Read and parse cluster.xml."""
    return parse(read(path), str(path))


def parse(data: bytes, source: str = "<memory>") -> Cluster:
    """Parse, validate and expand cluster.xml."""
    with bulk_allocation():
        return _Parser(source).parse(data)


def parse_declarations(data: bytes, source: str = "<memory>") -> Cluster:
    """cluster.xml without its nodes: networks, servers, failover sets, images and groups.

    For a caller that knows these bytes were parsed in full before (an incremental
    ``dim apply``, :mod:`dim.services.applied`): the groups are not expanded, so nothing that
    only their nodes could show is checked.
    """
    return _Parser(source).parse(data, expand=False)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.nodeset_limit = nodesets.DEFAULT_LIMIT

    def error(self, message: str, element: etree._Element | None, value: str | None = None):
        line = element.sourceline if element is not None else None
        return LayoutError(message, file=self.source, line=line, value=value)

    # -- structure -------------------------------------------------------------------------

    def parse(self, data: bytes, *, expand: bool = True) -> Cluster:
        try:
            root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            line = exc.lineno if exc.lineno else None
            message = re.sub(r"\s*, line \d+, column \d+$", "", exc.msg.strip())
            message = " ".join(message.split())  # libxml2's own may hold a newline: one line
            raise LayoutError(f"malformed XML: {message}", file=self.source, line=line) from exc
        schema = _schema()
        if not schema.validate(root):
            entries = [e for e in schema.error_log if e.line > 0]
            # libxml2 logs the innermost problem first and then each enclosing element.
            entry = next((e for e in entries if e.message.startswith("Invalid")), entries[0])
            raise LayoutError(
                f"does not match the cluster.xml schema: {entry.message}",
                file=self.source,
                line=entry.line,
                value=_offending_value(root, entry),
            )
        self._check_values(root)
        self.nodeset_limit = self._nodeset_limit(root)
        networks = self._networks(root)
        servers = self._servers(root, networks)
        failover = self._failover(root, networks, servers)
        stores = self._stores(root, servers, failover)
        images = self._images(root)
        if expand:
            groups, nodes = self._groups(root, networks, servers, images)
            _check_unique_addresses(self, nodes, root)
        else:
            groups = {
                g.get("name"): Group(g.get("name"), g.get("nodes"), g.sourceline)
                for g in root.iterfind("group")
            }
            nodes = ()
        return Cluster(
            name=root.get("name"),
            domain=root.get("domain"),
            networks=networks,
            servers=servers,
            images=images,
            groups=groups,
            nodes=nodes,
            source=self.source,
            nodeset_limit=self.nodeset_limit,
            failover=failover,
            stores=stores,
        )

    def _check_values(self, root) -> None:
        """Every attribute with a check in :data:`ATTRIBUTES`, before anything reads it."""
        for element in root.iter(tuple({tag for tag, _ in ATTRIBUTES})):
            for attribute, value in element.attrib.items():
                rule = ATTRIBUTES.get((element.tag, attribute))
                if isinstance(rule, tuple):
                    kind, check = rule
                    try:
                        check(kind, value)
                    except ValueError as exc:
                        raise self.error(str(exc), element) from None

    def _address(self, element, attribute: str) -> IPv4Address:
        text = element.get(attribute)
        try:
            return IPv4Address(text)
        except AddressValueError:
            raise self.error(f"{attribute} is not an IPv4 address", element, text) from None

    def _address_list(self, element, attribute: str) -> tuple[IPv4Address, ...]:
        text = element.get(attribute) or ""
        result = []
        for item in filter(None, (t.strip() for t in text.split(","))):
            try:
                result.append(IPv4Address(item))
            except AddressValueError:
                raise self.error(f"{attribute} is not an IPv4 address", element, item) from None
        return tuple(result)

    def _networks(self, root) -> dict[str, Network]:
        networks: dict[str, Network] = {}
        for el in root.iterfind("network"):
            name = el.get("name")
            if name in networks:
                raise self.error("duplicate network name", el, name)
            try:
                subnet = IPv4Network(el.get("subnet"))
            except (AddressValueError, NetmaskValueError, ValueError):
                raise self.error(
                    "subnet is not an IPv4 network in CIDR form (e.g. 10.0.0.0/16)",
                    el,
                    el.get("subnet"),
                ) from None
            gateway = self._address(el, "gateway") if el.get("gateway") else None
            if gateway is not None and gateway not in subnet:
                raise self.error(f"gateway is outside subnet {subnet}", el, str(gateway))
            networks[name] = Network(
                name=name,
                subnet=subnet,
                gateway=gateway,
                dns=self._address_list(el, "dns"),
                ntp=self._address_list(el, "ntp"),
                domain=el.get("domain"),
            )
        return networks

    def _servers(self, root, networks: dict[str, Network]) -> dict[str, Server]:
        servers: dict[str, Server] = {}
        for el in root.iterfind("server"):
            name = el.get("name")
            if name in servers:
                raise self.error("duplicate server name", el, name)
            address = self._address(el, "address")
            network = next((n for n in networks.values() if address in n.subnet), None)
            if network is None:
                raise self.error("server address is in no declared network", el, str(address))
            options = {}
            for attribute in SERVER_TEXT:
                if el.get(attribute):
                    options[attribute.replace("-", "_")] = el.get(attribute)
            if el.get("http-port") == "0":
                raise self.error("http-port must be a port number, 1 to 65535", el, "0")
            servers[name] = Server(
                name=name,
                address=address,
                network=network.name,
                dhcp=el.get("dhcp", "dnsmasq"),
                nfs=el.get("nfs", "ganesha"),
                tftp=el.get("tftp", "dnsmasq"),
                http=el.get("http", "dim"),
                http_port=int(el.get("http-port", "8080")),
                reload=tuple((r.get("service"), r.get("command")) for r in el.iterfind("reload")),
                checks=tuple((c.get("service"), c.get("command")) for c in el.iterfind("check")),
                own_address=self._address(el, "own-address") if el.get("own-address") else None,
                **options,
            )
            own = servers[name].own_address
            if own == address:
                raise self.error(
                    "own-address is the server's address: address is the service address, which "
                    "floats to a peer, own-address the fixed one that stays; they must differ",
                    el,
                    str(own),
                )
            if own is not None and own not in network.subnet:
                raise self.error(
                    f"own-address is outside network {network.name} ({network.subnet}) of the "
                    "server's address",
                    el,
                    str(own),
                )
        return servers

    def _failover(self, root, networks, servers: dict[str, Server]) -> dict[str, FailoverSet]:
        """The failover sets; each server of one is told which (``Server.failover``)."""
        sets: dict[str, FailoverSet] = {}
        elements = {s.get("name"): s for s in root.iterfind("server")}
        for el in root.iterfind("failover"):
            name = el.get("name")
            if name in sets:
                raise self.error("duplicate failover set name", el, name)
            members = self._servers_named(el, f"failover set {name}", servers)
            if len(members) < 2:
                raise self.error(
                    f"failover set {name} has one server: a failover set needs a peer to fail "
                    "over to",
                    el,
                    el.get("servers"),
                )
            if len(members) > MAX_FAILOVER_SET:
                raise self.error(
                    f"failover set {name} has {len(members)} servers, {MAX_FAILOVER_SET} at most",
                    el,
                    el.get("servers"),
                )
            for member in members:
                server = servers[member]
                where = elements[member]
                if server.failover is not None:
                    raise self.error(
                        f"server {member} is in failover sets {server.failover} and {name}: "
                        "a server backs up one set",
                        el,
                        member,
                    )
                if server.own_address is None:
                    raise self.error(
                        f"server {member} is in failover set {name} but has no own-address: "
                        "the address floats, the server needs a fixed one of its own",
                        where,
                        member,
                    )
                if server.network != servers[members[0]].network:
                    raise self.error(
                        f"failover set {name}: server {member} is on network {server.network}, "
                        f"{members[0]} on {servers[members[0]].network}: VRRP moves an address "
                        "within one network",
                        where,
                        str(server.address),
                    )
                if server.http_port != servers[members[0]].http_port:
                    raise self.error(
                        f"failover set {name}: server {member} has http-port "
                        f"{server.http_port}, {members[0]} {servers[members[0]].http_port}: "
                        "dim serve answers a dead peer's nodes on its own port",
                        where,
                        str(server.http_port),
                    )
                if server.nfs == "kernel":
                    raise self.error(
                        f'failover set {name}: server {member} has nfs="kernel"; takeover '
                        "is built on nfs-ganesha (the kernel server's state recovery is not)",
                        where,
                        "kernel",
                    )
                if not server.interface:
                    raise self.error(
                        f"failover set {name}: server {member} needs interface= (the one "
                        "keepalived moves its address on)",
                        where,
                        member,
                    )
                servers[member] = replace(server, failover=name)
            delay = el.get("preempt-delay", "0")
            if not delay.isdigit() or int(delay) > 3600:
                raise self.error("preempt-delay must be seconds, 0 to 3600", el, delay)
            sets[name] = FailoverSet(
                name=name,
                servers=tuple(members),
                preempt=el.get("preempt", "no") == "yes",
                preempt_delay=int(delay),
                line=el.sourceline or 0,
            )
        in_sets = [s for s in servers.values() if s.failover]
        if len(in_sets) > 255:
            raise self.error(
                f"{len(in_sets)} servers in failover sets: VRRP numbers 255 at most", None
            )
        return sets

    def _servers_named(self, el, owner: str, servers: dict[str, Server]) -> list[str]:
        """The declared servers of ``el``'s ``servers=`` node set (counted before it is
        expanded), in layout order, not the node set's: the same on every server, as exports
        must be."""
        named = self._nodeset(el, "servers")
        unknown = [m for m in named if m not in servers]
        if unknown:
            raise self.error(f"{owner}: no server {unknown[0]} in the layout", el, unknown[0])
        return [m for m in servers if m in named]

    def _stores(
        self, root, servers: dict[str, Server], failover: dict[str, FailoverSet]
    ) -> dict[str, Store]:
        """The CephFS stores; each head is told which (``Server.store``). A failover set's
        servers share one file system: all of them are heads of one store, or none is."""
        stores: dict[str, Store] = {}
        elements = {s.get("name"): s for s in root.iterfind("server")}
        for el in root.iterfind("store"):
            name = el.get("name")
            if name in stores:
                raise self.error("duplicate store name", el, name)
            heads = self._servers_named(el, f"store {name}", servers)
            for head in heads:
                server = servers[head]
                if server.store is not None:
                    raise self.error(
                        f"server {head} is a head of stores {server.store} and {name}: a "
                        "server exports one store",
                        el,
                        head,
                    )
                if server.nfs != "ganesha":
                    raise self.error(
                        f'store {name}: server {head} has nfs="{server.nfs}"; a CephFS store '
                        "is exported by nfs-ganesha's CephFS back end",
                        elements[head],
                        server.nfs,
                    )
                servers[head] = replace(server, store=name)
            root_path = el.get("root")
            root_path = None if root_path is None else root_path.rstrip("/") or "/"
            stores[name] = Store(
                name=name,
                cephfs=el.get("cephfs"),
                servers=tuple(heads),
                user=el.get("user", "dim"),
                ceph_conf=el.get("ceph-conf", "/etc/ceph/ceph.conf").rstrip("/"),
                root=root_path,
                recovery=el.get("recovery") or _default_recovery(heads, servers),
                recovery_pool=el.get("recovery-pool", "dim_nfs"),
                line=el.sourceline or 0,
            )
        for set_ in failover.values():
            held = {m: servers[m].store for m in set_.servers}
            if len(set(held.values())) > 1:
                first, other = (
                    set_.servers[0],
                    next(m for m in set_.servers if held[m] != held[set_.servers[0]]),
                )
                raise self.error(
                    f"failover set {set_.name}: server {first} exports "
                    f"{_store_words(held[first])}, {other} {_store_words(held[other])}: the "
                    "servers of a set share one file system",
                    elements[other],
                    other,
                )
        return stores

    def _images(self, root) -> dict[str, Image]:
        images: dict[str, Image] = {}
        for el in root.iterfind("image"):
            name = self._name("image", el, el.get("name"))
            if name in images:
                raise self.error("duplicate image name", el, name)
            paths: dict[str, list[str]] = {"persist": [], "volatile": [], "keepout": []}
            for child in el:
                if not isinstance(child.tag, str):
                    continue
                path = child.get("path")
                if not path.startswith("/") or "/../" in f"{path}/":
                    raise self.error(
                        f"{child.tag} path must be absolute, without '..'", child, path
                    )
                paths[child.tag].append(path.rstrip("/") or "/")
            images[name] = Image(
                name=name,
                persistent=tuple(paths["persist"]),
                volatile=tuple(paths["volatile"]),
                keepout=tuple(paths["keepout"]),
                nfs_options=el.get("nfs-options", "actimeo=1"),
                kernel_args=el.get("kernel-args", ""),
            )
        return images

    def _name(self, kind: str, element, value: str) -> str:
        try:
            return check_name(kind, value)
        except ValueError as exc:
            raise self.error(str(exc), element) from None

    def _nodeset(self, element, attribute: str) -> list[str]:
        """The names of a node set of the layout (plain names and ranges, checked and counted
        first), in ClusterShell's order."""
        text = element.get(attribute)
        try:
            terms = nodesets.scan(text, self.nodeset_limit)
        except nodesets.NodeSetError as exc:
            raise self.error(f"invalid node set ({exc})", element, text) from None
        if any(term.is_group for term in terms):
            raise self.error("group references are not allowed here", element, text)
        if any(term.is_wildcard for term in terms):
            raise self.error("wildcards are not allowed here", element, text)
        names = nodesets.product_names(terms[0].text) if len(terms) == 1 else None
        if names is not None:
            return names
        # here: a plain pattern, most layouts' only kind, needs none of ClusterShell's imports
        from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet, NodeSetException

        try:
            return list(NodeSet(text, resolver=NOGROUP_RESOLVER))
        except NodeSetException as exc:
            raise self.error(f"invalid node set ({exc})", element, text) from None

    def _nodeset_limit(self, root) -> int:
        text = root.get("nodeset-limit")
        if text is None:
            return nodesets.DEFAULT_LIMIT
        if not re.fullmatch(r"[1-9][0-9]{0,17}", text.strip()):
            raise self.error("nodeset-limit is not a positive number of nodes", root, text)
        return int(text)

    def _template(self, element, attribute: str, default: str | None = None) -> Template:
        text = element.get(attribute, default)
        try:
            return compile_template(text)
        except ExpressionError as exc:
            raise self.error(str(exc), element) from None

    # -- groups and nodes ------------------------------------------------------------------

    def _groups(self, root, networks, servers, images):
        groups: dict[str, Group] = {}
        blocks: list[GroupColumns | list[Node]] = []
        seen: dict[str, int] = {}
        for el in root.iterfind("group"):
            name = el.get("name")
            if name in groups:
                raise self.error("duplicate group name", el, name)
            if name in RESERVED_GROUPS:
                raise self.error("this group name is reserved", el, name)
            groups[name] = Group(name, el.get("nodes"), el.sourceline, self._arch(el))
            block = self._expand(el, networks, servers, images)
            names = block.names if isinstance(block, GroupColumns) else [n.name for n in block]
            # A node set names each node once (ClusterShell's is a set; a plain pattern's
            # brackets hold each number once): only another group's names can clash, and
            # with one group, as most layouts have, nothing is looked up.
            if not blocks:
                first = names, el.sourceline
            else:
                if not seen:
                    seen = dict.fromkeys(*first)
                fresh = dict.fromkeys(names, el.sourceline)
                if len(fresh) != len(names) or not seen.keys().isdisjoint(fresh):
                    self._duplicate_name(el, names, seen)
                seen.update(fresh)
            blocks.append(block)
        return groups, Nodes(blocks)

    def _arch(self, el) -> str:
        value = el.get("arch")
        if value is None:
            return architectures.DEFAULT
        found = architectures.canonical(value)
        if found is None:
            choices = ", ".join(architectures.choices())
            raise self.error(f"unknown architecture (dim boots {choices})", el, value)
        if found != architectures.DEFAULT:
            # DHCP sends a node declared so the Secure Boot loader, shimx64.efi: an x86-64
            # program (dim ships no shim of another architecture yet)
            for declared in (el, *el.iterfind("node")):
                if declared.get("secure-boot") == "yes":
                    raise self.error(
                        f'secure-boot="yes" is for x86_64 nodes only: dim sends shimx64.efi, '
                        f"which {found} nodes cannot run",
                        declared,
                        "yes",
                    )
        return found

    def _duplicate_name(self, el, names: list[str], seen: dict[str, int]) -> None:
        """Raise the error that names the group's first node declared before."""
        earlier = dict(seen)
        for name in names:
            if name in earlier:
                raise self.error(
                    f"duplicate node name (also declared at line {earlier[name]})", el, name
                )
            earlier[name] = el.sourceline

    def _reference(self, element, attribute: str, known: dict, kind: str) -> str | None:
        value = element.get(attribute)
        if value is not None and value not in known:
            raise self.error(f"unknown {kind}", element, value)
        return value

    def _default_server(self, element, servers) -> str:
        server = self._reference(element, "server", servers, "server")
        if server is None:
            if len(servers) != 1:
                raise self.error(
                    "group needs server= when the cluster has several servers", element
                )
            server = next(iter(servers))
        return server

    def _expand(self, el, networks, servers, images) -> GroupColumns | list[Node]:
        group = el.get("name")
        nodeset = self._nodeset(el, "nodes")
        image = self._reference(el, "image", images, "image")
        server = self._default_server(el, servers)
        secure_boot = el.get("secure-boot") == "yes"
        overrides = self._overrides(el, nodeset, servers, images)
        interfaces = []
        for position, iface in enumerate(el.iterfind("interface")):
            network = self._reference(iface, "network", networks, "network")
            default_host = "{name}" if position == 0 else "{name}-" + network
            interfaces.append(
                (
                    iface,
                    networks[network],
                    self._template(iface, "ip"),
                    self._template(iface, "hostname", default_host),
                )
            )
        if len({i[1].name for i in interfaces}) != len(interfaces):
            raise self.error("a group has at most one interface per network", el)
        bmc_el = el.find("bmc")
        bmc_template = self._template(bmc_el, "address") if bmc_el is not None else None
        # Per interface: its element, network, first and last address, the address template
        # and its compiled function, the host name's (None: the node's name), and the two
        # templates (the bulk build's).
        checks = [
            (
                i[0],
                i[1].name,
                *self._bounds(i[1]),
                i[2],
                i[2].function,
                None if i[3].text == "{name}" else i[3].function,
                None if i[3].text == "{name}" else i[3],
            )
            for i in interfaces
        ]
        templates = [t for i in interfaces for t in i[2:4]] + [bmc_template]
        uses_numbers = any(t is not None and t.uses_numbers for t in templates)
        room = self._hostname_room(el)
        name_room = min(room, MAX_NAME)
        bmc_room = min(room, 63) - 4  # the hosts file's <node>-bmc: the last label grows by 4
        line = el.sourceline
        element = el
        if bmc_el is not None:
            bmc_address = bmc_template.function
            bmc_driver, bmc_credentials = bmc_el.get("driver"), bmc_el.get("credentials")
        default = (image, server, secure_boot)
        # Every node valid (the common case): built column by column. Otherwise the loop
        # below finds the first faulty one and says why.
        built = bulk.build(
            group,
            line,
            nodeset,
            uses_numbers,
            [(c[1], c[2], c[3], c[4], c[7]) for c in checks],
            None if bmc_el is None else (bmc_template, bmc_driver, bmc_credentials),
            default,
            overrides,
            (name_room, room, bmc_room),
        )
        if built is not None:
            return built
        nodes: list[Node] = []
        host_name, numbers = HOST_NAME.fullmatch, _NUMBERS.findall
        pton, inet, from_bytes = inet_pton, AF_INET, int.from_bytes
        # The loop below runs once per node (100,000 and more): locals and few calls.
        try:
            for index, name in enumerate(nodeset):
                element = el
                if len(name) > name_room or not host_name(name):
                    self._bad_hostname(el, name, "node name", name, room)
                nums = tuple(map(int, numbers(name))) if uses_numbers else ()
                node_image, node_server, node_secure = overrides.get(name, default)
                built = []
                for element, network, first, last, ip_t, ip_of, hostname_of, _ in checks:
                    ip = ip_of(nums, index, name)
                    try:  # dim.names.ip_to_int, inlined
                        value = from_bytes(pton(inet, ip), "big")
                    except OSError:
                        value = -1
                    if not first <= value <= last:
                        self._bad_ip(element, name, networks[network], ip_t, ip)
                    if hostname_of is None:
                        hostname = name
                    else:
                        hostname = hostname_of(nums, index, name)
                        if len(hostname) > room or not host_name(hostname):
                            self._bad_hostname(element, name, "hostname", hostname, room)
                    built.append(Interface(network, ip, hostname))
                bmc = None
                if bmc_el is not None:
                    element = bmc_el
                    address = bmc_address(nums, index, name)
                    if not BMC_ADDRESS.fullmatch(address):
                        check_bmc_address("BMC address", address)
                    if len(name) > bmc_room:
                        self._bmc_hostname(bmc_el, name, address, room)
                    bmc = Bmc(bmc_driver, address, bmc_credentials)
                nodes.append(
                    Node(
                        name,
                        group,
                        index,
                        tuple(built),
                        node_image,
                        node_server,
                        bmc,
                        line,
                        node_secure,
                    )
                )
        except (IndexError, ZeroDivisionError):  # from a template's compiled function
            self._template_error(interfaces, bmc_el, bmc_template, nums, index, name)
        except ExpressionError as exc:
            raise self.error(f"node {name}: {exc}", element) from None
        except ValueError as exc:  # from check_bmc_address
            raise self.error(f"node {name}: {exc}", element) from None
        return nodes

    def _template_error(self, interfaces, bmc_el, bmc_template, nums, index, name) -> None:
        """Evaluate a node's templates again, in the same order, field by field: the one whose
        compiled function failed raises the ExpressionError that says why."""
        if not nums:
            nums = tuple(map(int, _NUMBERS.findall(name)))
        evaluations = [(i[0], t) for i in interfaces for t in i[2:4]]
        if bmc_el is not None:
            evaluations.append((bmc_el, bmc_template))
        for element, template in evaluations:
            try:
                template.render(nums, index, name)
            except ExpressionError as exc:
                raise self.error(f"node {name}: {exc}", element) from None
        raise AssertionError(f"node {name}: a template failed only when compiled")

    def _hostname_room(self, element) -> int:
        """How long a host name may be: 253 characters with the cluster's domain after it."""
        domain = element.getparent().get("domain")
        return MAX_HOST_NAME - len(domain) - 1 if domain else MAX_HOST_NAME

    def _bad_hostname(self, element, node: str, kind: str, value: str, room: int):
        """Raise the error that says why the node name or host name ``value`` is refused."""
        # The node's name goes in front only once it is known to be a plain name.
        where = "" if kind == "node name" else f"node {node}: "
        if kind == "node name" and len(value) > MAX_NAME:
            raise self.error(f"node name longer than {MAX_NAME} characters", element, value)
        try:
            check_hostname(kind, value)
        except ValueError as exc:
            raise self.error(f"{where}{exc}", element) from None
        raise self.error(
            f"{where}{kind} is longer than {room} characters, the room the domain leaves in 253",
            element,
            value,
        )

    def _bmc_hostname(self, element, node: str, address: str, room: int) -> None:
        """A BMC with an IPv4 address is ``<node>-bmc`` in the hosts file: a host name too."""
        try:
            ip_to_int(address)
        except OSError:
            return
        name = f"{node}-bmc"
        if len(name) > room or not HOST_NAME.fullmatch(name):
            self._bad_hostname(element, node, "BMC host name", name, room)

    @staticmethod
    def _bounds(network: Network) -> tuple[int, int]:
        """The addresses a node may have: the subnet without its network and broadcast."""
        subnet = network.subnet
        first, last = int(subnet.network_address), int(subnet.broadcast_address)
        return (first, last) if subnet.prefixlen >= 31 else (first + 1, last - 1)

    def _overrides(self, el, nodeset, servers, images) -> dict[str, tuple[str | None, str, bool]]:
        overrides: dict[str, tuple[str | None, str, bool]] = {}
        group_image = el.get("image")
        group_server = self._default_server(el, servers)
        group_secure = el.get("secure-boot", "no")
        node_elements = list(el.iterfind("node"))
        in_group = set(nodeset) if node_elements else set()
        for node_el in node_elements:
            members = self._nodeset(node_el, "name")
            outside = [name for name in members if name not in in_group]
            if outside:
                from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet  # the message: folded

                raise self.error(
                    "node override names nodes outside its group",
                    node_el,
                    str(NodeSet.fromlist(outside, resolver=NOGROUP_RESOLVER)),
                )
            image = self._reference(node_el, "image", images, "image") or group_image
            server = self._reference(node_el, "server", servers, "server") or group_server
            secure = node_el.get("secure-boot", group_secure) == "yes"
            for name in members:
                overrides[name] = (image, server, secure)
        return overrides

    def _bad_ip(self, element, node: str, network: Network, template: Template, text: str):
        """Raise the error that says why ``text`` is not a valid address on ``network``."""
        try:
            value = ip_to_int(text)
        except OSError:
            raise self.error(
                f"node {node}: address {text} is not a valid IPv4 address", element, template.text
            ) from None
        subnet = network.subnet
        if value == int(subnet.network_address) or value == int(subnet.broadcast_address):
            what = "network" if value == int(subnet.network_address) else "broadcast"
            raise self.error(
                f"node {node}: address {text} is the {what} address of {network.name}",
                element,
                template.text,
            )
        raise self.error(
            f"node {node}: address {text} is outside network {network.name} ({subnet})",
            element,
            template.text,
        )


def _check_unique_addresses(parser: _Parser, nodes: Nodes, root) -> None:
    """Every IP (interfaces, BMCs, servers) and every host name appears once."""
    owners: dict[str, str] = {}
    for server in root.iterfind("server"):
        name = f"server {server.get('name')}"
        for attribute in ("address", "own-address"):  # the two differ (_Parser._servers)
            if server.get(attribute) is None:
                continue
            ip = str(IPv4Address(server.get(attribute)))
            owner = owners.setdefault(ip, name)
            if owner != name:
                raise parser.error(f"duplicate IP address: {name} and {owner}", server, ip)
    if _all_distinct(nodes, owners):
        return  # the common case, in C: the loop below is only to name the first duplicate
    hostnames: dict[str, str] = {}
    group_lines = {g.get("name"): g for g in root.iterfind("group")}
    ip_owner, host_owner = owners.setdefault, hostnames.setdefault
    for node in nodes:  # once per node: locals, and no call but the dictionaries'
        name, interfaces = node.name, node.interfaces
        known_ips, known_hosts = len(owners), len(hostnames)
        for iface in interfaces:
            owner = ip_owner(iface.ip, name)
            if owner != name:
                raise parser.error(
                    f"duplicate IP address: node {name} and {owner}",
                    group_lines[node.group],
                    iface.ip,
                )
            owner = host_owner(iface.hostname, name)
            if owner != name:
                raise parser.error(
                    f"duplicate host name: node {name} and {owner}",
                    group_lines[node.group],
                    iface.hostname,
                )
        # Fewer new entries than interfaces: the node has one address or host name twice.
        count = len(interfaces)
        if len(owners) - known_ips < count or len(hostnames) - known_hosts < count:
            _check_distinct_interfaces(parser, node, group_lines[node.group])
        if node.bmc is not None:
            bmc = f"the BMC of {name}"
            owner = ip_owner(node.bmc.address, bmc)
            if owner != bmc:
                raise parser.error(
                    f"duplicate BMC address: node {name} and {owner}",
                    group_lines[node.group],
                    node.bmc.address,
                )


def _all_distinct(nodes: Nodes, servers: dict[str, str]) -> bool:
    """Whether no two interfaces or BMCs share an address, none of them a server's, and no two
    interfaces share a host name: sets compared with lists, 0.1 s at 100,000 nodes where the
    owner of each value, looked up one by one, takes 0.4 s; a group's columns as they are."""
    ips: list[str] = []
    hostnames: list[str] = []
    for block in nodes.blocks:
        if isinstance(block, GroupColumns):
            ips += chain.from_iterable(block.ips)
            if block.bmc is not None:
                ips += block.bmc[1]
            hostnames += chain.from_iterable(block.hostnames)
        else:
            ips += [iface.ip for node in block for iface in node.interfaces]
            ips += [node.bmc.address for node in block if node.bmc is not None]
            hostnames += [iface.hostname for node in block for iface in node.interfaces]
    unique = set(ips)
    if len(unique) != len(ips) or not unique.isdisjoint(servers):
        return False
    return len(set(hostnames)) == len(hostnames)


def _check_distinct_interfaces(parser: _Parser, node: Node, element) -> None:
    for kind, values in (
        ("IP address", [i.ip for i in node.interfaces]),
        ("host name", [i.hostname for i in node.interfaces]),
    ):
        twice = next((v for v in values if values.count(v) > 1), None)
        if twice is not None:
            raise parser.error(f"duplicate {kind}: node {node.name} twice", element, twice)


def _store_words(store: str | None) -> str:
    return f"store {store}" if store else "the state folder (no store)"


def _offending_value(root, entry) -> str | None:
    """The value of the attribute a schema error names, found by its element's line."""
    match = re.match(r"Invalid attribute (\S+) for element (\S+)", entry.message)
    if match is None:
        return None
    attribute, tag = match.groups()
    for element in root.iter(tag):
        if element.sourceline == entry.line and element.get(attribute) is not None:
            return element.get(attribute)
    return None


def _default_recovery(heads: list[str], servers: dict[str, Server]) -> str:
    """A store's recovery when cluster.xml names none: ``none`` when every head is in a
    failover set, whose nodes move to a peer when their head dies and never reclaim on it,
    so that a grace period on its return would stop every node of every head for its
    length (measured 17-20 s, docs/ha.md); ``rados_cluster`` otherwise, where a head's
    nodes wait for it and reclaim their state when it is back."""
    if all(servers[head].failover is not None for head in heads):
        return "none"
    return "rados_cluster"
