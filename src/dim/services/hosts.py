"""The hosts file (``/etc/dim/hosts``): every node interface and BMC with an IP address.

dnsmasq serves it as DNS (``addn-hosts``); other sites include it in their own resolver.
"""

from __future__ import annotations

from dim.names import ip_to_int
from dim.services.rendering import RenderContext, RenderedFile

HOSTS_FILE = "/etc/dim/hosts"


def host_entries(context: RenderContext) -> list[tuple[str, str, str]]:
    """(address, fully qualified name, short name) for every interface and BMC."""
    cluster = context.inventory.cluster
    suffix = f".{cluster.domain}" if cluster.domain else ""
    entries = [(str(s.address), s.name + suffix, s.name) for s in cluster.servers.values()]
    add = entries.append
    for node in cluster.nodes:  # once per node: locals and few calls
        for iface in node.interfaces:
            add((iface.ip, iface.hostname + suffix, iface.hostname))
        bmc = node.bmc
        if bmc is not None and _is_ip(bmc.address):
            name = f"{node.name}-bmc"
            add((bmc.address, name + suffix, name))
    return entries


def _is_ip(text: str) -> bool:
    try:
        ip_to_int(text)  # inet_pton: a tenth of IPv4Address's cost, run once per BMC
    except OSError:
        return False
    return True


def render(context: RenderContext) -> list[RenderedFile]:
    return [
        RenderedFile(
            HOSTS_FILE,
            context.render(
                "hosts.j2", entries=host_entries(context), cluster=context.inventory.cluster.name
            ),
        )
    ]
