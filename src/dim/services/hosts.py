"""The hosts file (``/etc/dim/hosts``): every node interface and BMC with an IP address.

With ``dhcp="dnsmasq"``, a DNS-only dnsmasq serves it (``addn-hosts`` of
``/etc/dim/dnsmasq-dns.conf``, service ``dns``: restarted when the file changes, since dnsmasq
reads it at its start); other sites include it in their own resolver.

Its entries (:class:`dim.services.rows.HostRows`) are columns: a group kept as columns by the
parser (:mod:`dim.layout.columns`) gives its interfaces' and BMCs' own, joined node by node
in C by the compiled template; nodes made already are read one by one.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from itertools import repeat

from dim.layout.columns import GroupColumns, Nodes
from dim.layout.model import Node
from dim.services.rendering import RenderContext, RenderedFile
from dim.services.rows import HostColumns, HostRows

HOSTS_FILE = "/etc/dim/hosts"


def host_entries(context: RenderContext) -> HostRows:
    """(address, fully qualified name, short name) for every interface and BMC."""
    cluster = context.inventory.cluster
    suffix = f".{cluster.domain}" if cluster.domain else ""
    servers = cluster.servers.values()
    parts = [[([str(s.address) for s in servers], [s.name for s in servers], "")]]
    nodes = cluster.nodes
    blocks = nodes.blocks if isinstance(nodes, Nodes) and not nodes.made else (nodes,)
    for block in blocks:
        part = _group_columns(block) if isinstance(block, GroupColumns) else None
        if part is None:
            part = _node_columns(block.nodes() if isinstance(block, GroupColumns) else block)
        parts.append(part)
    return HostRows(suffix, parts)


def _group_columns(block: GroupColumns) -> list[HostColumns] | None:
    """The group's interfaces' and BMCs' columns; None if only some of its BMCs have an IPv4
    address (their nodes are then read one by one)."""
    part: list[HostColumns] = [(*pair, "") for pair in zip(block.ips, block.hostnames, strict=True)]
    if block.bmc is not None:
        addresses = block.bmc[1]
        try:  # a strict dotted quad each, as dim.names.ip_to_int takes it: in C
            list(map(socket.inet_pton, repeat(socket.AF_INET), addresses))
        except OSError:
            if any(map(_is_ipv4, addresses)):
                return None
        else:
            part.append((addresses, block.names, "-bmc"))
    return part


def _is_ipv4(address: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, address)
    except OSError:
        return False
    return True


def _node_columns(nodes: Sequence[Node]) -> list[HostColumns]:
    ips: list[str] = []
    hostnames: list[str] = []
    add_ip, add_name, pton, inet = ips.append, hostnames.append, socket.inet_pton, socket.AF_INET
    for node in nodes:  # once per node: locals and few calls
        for iface in node.interfaces:
            add_ip(iface.ip)
            add_name(iface.hostname)
        bmc = node.bmc
        if bmc is not None:
            try:  # a strict dotted quad, as dim.names.ip_to_int takes it, inlined
                pton(inet, bmc.address)
            except OSError:
                continue  # a host name or a URL: the BMC has no line
            add_ip(bmc.address)
            add_name(f"{node.name}-bmc")
    return [(ips, hostnames, "")]


def render(context: RenderContext) -> list[RenderedFile]:
    return [
        RenderedFile(
            HOSTS_FILE,
            context.render(
                "hosts.j2", entries=host_entries(context), cluster=context.inventory.cluster.name
            ),
            service="dns" if context.server.dhcp == "dnsmasq" else None,
        )
    ]
