"""Questions about the inventory: which nodes a node set names, what is known of each node.

Node sets use ClusterShell's syntax everywhere: ``n[001-100]``, ``@group``, ``@all``, and the
operators ``,`` (union), ``!`` (difference), ``&`` (intersection) and ``^`` (xor)::

    >>> [n.name for n in select(cluster, "@nodes!node02")]
    ['node01', 'node03', 'node04']
"""

from __future__ import annotations

from datetime import datetime

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupSource

from dim.errors import UsageError
from dim.layout.model import Cluster, Inventory, Node
from dim.records import Boot


def _resolver(cluster: Cluster) -> GroupResolver:
    groups = {name: group.nodeset for name, group in cluster.groups.items()}
    # The groups' own node-set texts, not a fold of 100,000 names: folding costs seconds.
    everything = ",".join(groups.values())
    groups["all"] = everything
    return GroupResolver(GroupSource("dim", groups, everything))


def select(cluster: Cluster, pattern: str | None, exclude: str | None = None) -> list[Node]:
    """The nodes named by ``pattern`` (every node when None), in layout order."""
    if pattern is None and exclude is None:
        return list(cluster.nodes)
    if exclude is None and pattern in cluster.by_name:
        return [cluster.by_name[pattern]]
    resolver = _resolver(cluster)
    try:
        wanted = NodeSet(pattern if pattern is not None else "@all", resolver=resolver)
        if exclude:
            wanted.difference_update(NodeSet(exclude, resolver=resolver))
    except NodeSetException as exc:
        raise UsageError(f"invalid node set {pattern!r}: {exc}") from None
    names = set(wanted)
    unknown = [n for n in names if n not in cluster.by_name]
    if unknown:
        raise UsageError(
            f"unknown node(s) {NodeSet.fromlist(unknown)}: not in {cluster.source}",
            hint="`dim node list` shows the nodes the layout declares",
        )
    return [n for n in cluster.nodes if n.name in names]


FOLD_LIMIT = 5000


def fold(names: list[str]) -> str:
    """``['n01', 'n02', 'n03']`` -> ``'n[01-03]'``; a count beyond FOLD_LIMIT names.

    Folding is quadratic-ish in ClusterShell for multi-dimensional names: 100,000 names
    take seconds, and nobody reads a node set that long anyway.
    """
    if len(names) > FOLD_LIMIT:
        return f"{len(names)} nodes"
    return str(NodeSet.fromlist(names)) if names else ""


def node_record(inventory: Inventory, node: Node, last_boot: Boot | None = None) -> dict:
    """Everything known of one node, for ``--json`` and for tables.

    ``last_boot`` (from :meth:`dim.state.StateDB.last_boots`) becomes ``{"at": local time in
    ISO 8601, "image", "version", "client"}``, or None for a node that never booted from dim.
    """
    return {
        "name": node.name,
        "group": node.group,
        "image": inventory.image(node),
        "server": node.server,
        "interfaces": [
            {
                "network": iface.network,
                "ip": iface.ip,
                "hostname": iface.hostname,
                "mac": inventory.macs.get((node.name, iface.network)),
            }
            for iface in node.interfaces
        ],
        "bmc": (
            {
                "driver": node.bmc.driver,
                "address": node.bmc.address,
                "credentials": node.bmc.credentials,
            }
            if node.bmc
            else None
        ),
        "last_boot": _boot_record(last_boot) if last_boot else None,
    }


def _boot_record(boot: Boot) -> dict:
    at = datetime.fromtimestamp(boot.at).astimezone().isoformat(timespec="seconds")
    return {"at": at, "image": boot.image, "version": boot.version, "client": boot.client}


def summary(inventory: Inventory) -> dict:
    """What ``dim layout check`` reports: counts per kind, and what is missing or stray."""
    cluster = inventory.cluster
    without_mac = [n.name for n in cluster.nodes if (n.name, n.boot.network) not in inventory.macs]
    stray = sorted({node for node, _net in inventory.macs if node not in cluster.by_name})
    images_in_use: dict[str, int] = {}
    for node in cluster.nodes:
        image = inventory.image(node)
        if image is not None:
            images_in_use[image] = images_in_use.get(image, 0) + 1
    return {
        "cluster": cluster.name,
        "source": cluster.source,
        "nodes": len(cluster.nodes),
        "groups": {
            name: sum(1 for n in cluster.nodes if n.group == name) for name in cluster.groups
        },
        "networks": {name: str(n.subnet) for name, n in cluster.networks.items()},
        "servers": {
            name: {"address": str(s.address), "dhcp": s.dhcp, "nfs": s.nfs}
            for name, s in cluster.servers.items()
        },
        "images": {name: images_in_use.get(name, 0) for name in cluster.images},
        "nodes_without_mac": fold(without_mac),
        "macs_of_unknown_nodes": fold(stray),
    }


def server_name(cluster: Cluster, requested: str | None) -> str:
    """The image server a command is for: ``requested``, or the layout's only one."""
    if requested is not None:
        if requested not in cluster.servers:
            raise UsageError(
                f"unknown server {requested!r}; the layout has {', '.join(cluster.servers)}"
            )
        return requested
    if len(cluster.servers) > 1:
        raise UsageError(
            "the cluster has several image servers: pass --server NAME",
            hint=f"servers: {', '.join(cluster.servers)}",
        )
    return next(iter(cluster.servers))
