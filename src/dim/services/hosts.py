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
    entries = []
    for server in cluster.servers.values():
        entries.append((str(server.address), server.name))
    for node in cluster.nodes:
        for iface in node.interfaces:
            entries.append((iface.ip, iface.hostname))
        if node.bmc is not None and _is_ip(node.bmc.address):
            entries.append((node.bmc.address, f"{node.name}-bmc"))
    domain = cluster.domain
    return [(ip, f"{name}.{domain}" if domain else name, name) for ip, name in entries]


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
