"""``dim layout check``: the layout summarised, and what this machine lacks for its nodes.

::

    report = check(ctx)   # summary(...) and "warnings": one line each (dim.services.limits)

The limits dim sets itself (daemon settings, the server's sysctl file) are not warnings; what
it cannot set is: more nodes than nfs-ganesha can hold, more than dnsmasq's DHCP answers in a
boot storm, and, on a machine that holds a server's address, a neighbour threshold or the
default receive buffer below what that server's nodes need (until ``dim apply`` loads its
sysctl file, or when something else lowered it since), or the DNS-only dnsmasq's unit
missing (:mod:`dim.services.units`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from dim.actions.context import Context
from dim.inventory import summary
from dim.layout.model import Cluster
from dim.services import limits, units


def check(ctx: Context) -> dict:
    """The layout's summary (:func:`dim.inventory.summary`) with its ``warnings``."""
    inventory = ctx.inventory(cached=True)  # these bytes validated before: not again
    report = summary(inventory)
    local = local_servers(inventory.cluster)
    current = _thresholds() if local else {}
    report["warnings"] = limits.shortfalls(inventory, local, current)
    report["warnings"] += units.missing(inventory.cluster, local, units.installed)
    return report


def local_servers(cluster: Cluster) -> list[str]:
    """The servers whose address (or own address, in a failover set) is this machine's."""
    local = _local_addresses()
    return [
        name
        for name, server in cluster.servers.items()
        if str(server.address) in local or str(server.own_address) in local
    ]


def _local_addresses() -> set[str]:
    """This machine's IPv4 addresses: the kernel's "/32 host LOCAL" routes.

    Not a bind() test: a keepalived server often sets ip_nonlocal_bind, and binds anywhere.
    """
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return set()
    return {
        before.split()[-1]
        for before, line in zip(lines, lines[1:], strict=False)
        if line.strip() == "/32 host LOCAL"
    }


def _thresholds() -> dict[str, int]:
    """This machine's neighbour thresholds and default receive buffer, as far as it shows them."""
    values = {}
    for key in (*limits.THRESHOLD_KEYS, limits.RECEIVE_BUFFER_KEY):
        with contextlib.suppress(OSError, ValueError):
            values[key] = int(Path("/proc/sys", *key.split(".")).read_text())
    return values
