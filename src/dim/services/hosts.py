"""The hosts file (``/etc/dim/hosts``): every node interface and BMC with an IP address.

With ``dhcp="dnsmasq"``, a DNS-only dnsmasq serves it (``addn-hosts`` of
``/etc/dim/dnsmasq-dns.conf``, service ``dns``: restarted when the file changes, since dnsmasq
reads it at its start); other sites include it in their own resolver.
"""

from __future__ import annotations

import socket

from dim.services.rendering import RenderContext, RenderedFile

HOSTS_FILE = "/etc/dim/hosts"


def host_entries(context: RenderContext) -> list[tuple[str, str, str]]:
    """(address, fully qualified name, short name) for every interface and BMC."""
    cluster = context.inventory.cluster
    suffix = f".{cluster.domain}" if cluster.domain else ""
    entries = [(str(s.address), s.name + suffix, s.name) for s in cluster.servers.values()]
    add, pton, inet = entries.append, socket.inet_pton, socket.AF_INET
    for node in cluster.nodes:  # once per node: locals and few calls
        for iface in node.interfaces:
            hostname = iface.hostname
            add((iface.ip, hostname + suffix, hostname))
        bmc = node.bmc
        if bmc is not None:
            try:  # a strict dotted quad, as dim.names.ip_to_int takes it, inlined
                pton(inet, bmc.address)
            except OSError:
                continue  # a host name or a URL: the BMC has no line
            name = f"{node.name}-bmc"
            add((bmc.address, name + suffix, name))
    return entries


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
