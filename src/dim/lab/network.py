"""The lab's network: one named namespace whose bridge holds the image server's addresses.

Built with `dim.lab.netns.add_bridged_namespace`, the mechanism the tests' `Segment` uses
(namespace, bridge, veth keeper), with two additions: an IPv6 address on the bridge, from
which dnsmasq sends router advertisements (without them iPXE waits 16 s for IPv6
autoconfiguration), and a tap device per QEMU node. Unlike a segment, the namespace has a
fixed name (``dimlab`` by default) and outlives the command that made it; ``dim lab down``
deletes it by the name ``lab.json`` recorded::

    make("dimlab")               # br0 = 10.77.0.1/24 and fd77::1/64, kept up
    tap = add_tap("dimlab")      # "tap0": the first free tapN, a port of br0
    remove_tap("dimlab", tap)
    delete("dimlab")

Traffic never leaves the namespace: the bridge has no uplink.
"""

from __future__ import annotations

import re

from dim.lab.netns import (
    add_bridged_namespace,
    add_namespace,
    attach,
    delete_namespace,
    ip,
    join_bridge,
    namespace_exists,
    run,
)

NAMESPACE = "dimlab"
BRIDGE = "br0"
SERVER = "10.77.0.1"
SERVER_V6 = "fd77::1/64"
# With several servers, each in a namespace of its own, the bridge's namespace holds only the
# nodes; its bridge keeps an address that no server has, for the tests to reach the segment.
SWITCH = "10.77.0.254"
SERVER_IFACE = "eth0"


def make(namespace: str, *, servers: bool = False) -> None:
    """The namespace with its bridge, the server's IPv4 and IPv6 addresses, and the keeper
    (``servers``: the bridge without the server's IPv4 address, which `add_server` places)."""
    add_bridged_namespace(namespace, BRIDGE, f"{SWITCH if servers else SERVER}/24")
    try:
        # nodad: the address is usable at once, before dnsmasq starts advertising it
        ip("-n", namespace, "-6", "addr", "add", SERVER_V6, "dev", BRIDGE, "nodad")
    except BaseException:
        delete_namespace(namespace)
        raise


def server_namespace(namespace: str, server: str) -> str:
    return f"{namespace}-{server}"


def add_server(namespace: str, server: str, own_address: str) -> str:
    """A namespace for one image server of the lab: ``eth0`` with the server's own address,
    its peer (``v<server>``) a port of the bridge. Its service address is keepalived's to add.
    """
    name = server_namespace(namespace, server)
    add_namespace(name)
    port = f"v{server}"[:15]
    try:
        join_bridge(namespace, BRIDGE, port, name, SERVER_IFACE)
        ip("-n", name, "addr", "add", f"{own_address}/24", "dev", SERVER_IFACE)
    except BaseException:
        delete_namespace(name)
        raise
    return name


def set_server_link(namespace: str, server: str, up: bool) -> None:
    """Take a server's link to the bridge down (a dead server: nothing in, nothing out) or up."""
    ip("-n", namespace, "link", "set", f"v{server}"[:15], "up" if up else "down")


def forget_service_addresses(namespace: str, server: str) -> None:
    """Remove from a server's ``eth0`` every IPv4 address but its own (the first), as a
    rebooted machine comes up without the addresses keepalived had given it."""
    name = server_namespace(namespace, server)
    for address in addresses(name)[1:]:
        ip("-n", name, "addr", "del", f"{address}/24", "dev", SERVER_IFACE)


def addresses(namespace: str) -> list[str]:
    """The IPv4 addresses of a server namespace's ``eth0`` (its own, and those it holds)."""
    text = run(namespace, ["ip", "-4", "-o", "addr", "show", "dev", SERVER_IFACE]).stdout
    return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", text)


def exists(namespace: str) -> bool:
    """Whether the lab's namespace exists (a lab is up, or was not brought down)."""
    return namespace_exists(namespace)


def delete(namespace: str) -> None:
    """Delete the namespace if it exists; the processes in it must be stopped first."""
    if namespace_exists(namespace):
        delete_namespace(namespace)


def add_tap(namespace: str) -> str:
    """A new tap device on the bridge, up, named after the first free ``tapN``."""
    links = run(namespace, ["ip", "-o", "link"]).stdout
    used = set(re.findall(r"\d+: (tap\d+)", links))
    tap = next(f"tap{i}" for i in range(4096) if f"tap{i}" not in used)
    ip("-n", namespace, "tuntap", "add", "dev", tap, "mode", "tap")
    attach(namespace, BRIDGE, tap)
    return tap


def remove_tap(namespace: str, tap: str) -> None:
    """Delete a node's tap device; one already gone is no error."""
    run(namespace, ["ip", "link", "del", tap], check=False)
