"""Questions about the inventory: which nodes a node set names, what is known of each node.

Node sets use ClusterShell's syntax everywhere: ``n[001-100]``, ``@group``, ``@all``, and the
operators ``,`` (union), ``!`` (difference), ``&`` (intersection) and ``^`` (xor)::

    >>> [n.name for n in select(cluster, "@nodes!node02")]
    ['node01', 'node03', 'node04']

A name the layout does not declare, anywhere in an expression (``@nodes!node99``), is an
error, not an empty operand; so is a set that would name more than the layout's
``nodeset-limit`` (counted before expanding, by :mod:`dim.layout.nodesets`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from datetime import datetime

from dim.errors import UsageError
from dim.layout import nodesets
from dim.layout.model import Cluster, Inventory, Node, Server
from dim.records import Boot


def select(
    cluster: Cluster, pattern: str | None, exclude: str | None = None, *, empty_ok: bool = False
) -> list[Node]:
    """The nodes named by ``pattern`` (every node when None) but ``exclude``, in layout order.

    Every node and group named anywhere in either expression must be in the layout, and an
    empty result is refused unless ``empty_ok`` (for listing): a typo never widens or empties
    the set a command acts on. Both are :class:`UsageError`s, raised before anything is done.
    """
    if pattern is None and exclude is None:
        return list(cluster.nodes)
    if exclude is None and pattern in cluster.by_name:
        return [cluster.by_name[pattern]]
    wanted = _names(cluster, "@all" if pattern is None else pattern)
    if exclude is not None:
        wanted -= _names(cluster, exclude)
    if not wanted and not empty_ok:
        asked = repr(pattern or "@all") + (f" without {exclude!r}" if exclude is not None else "")
        raise UsageError(f"the node set {asked} names no node", hint="nothing was done")
    if len(wanted) == len(cluster.nodes):
        return list(cluster.nodes)
    return [n for n in cluster.nodes if n.name in wanted]


def _names(cluster: Cluster, text: str) -> set[str]:
    """The names ``text`` makes, operators applied left to right as ClusterShell does."""
    try:
        terms = nodesets.scan(text, cluster.nodeset_limit)
        result: set[str] = set()
        for term in terms:
            names = _term_names(cluster, term, text)
            if term.op == ",":
                result |= names
            elif term.op == "!":
                result -= names
            elif term.op == "&":
                result &= names
            else:
                result ^= names
    except nodesets.NodeSetError as exc:
        raise UsageError(f"invalid node set {text!r}: {exc}") from None
    return result


def _term_names(cluster: Cluster, term: nodesets.Term, text: str) -> set[str]:
    if term.is_group:
        return _group_members(cluster, term, text)
    if term.is_wildcard:
        masks = [fnmatch.translate(mask) for mask in nodesets.expand(term)]
        matches = re.compile("|".join(masks)).match
        names = {name for name in cluster.by_name if matches(name)}
        if not names:
            raise UsageError(f"{term.text} (in {text!r}) matches no node of {cluster.source}")
        return names
    if term.least > len(cluster.by_name):  # not all in the layout: no need to make them
        raise UsageError(
            f"unknown nodes: {term.text} (in {text!r}) names {term.least} nodes, and "
            f"{cluster.source} has {len(cluster.by_name)}",
            hint="`dim node list` shows the nodes the layout declares",
        )
    names = set(nodesets.expand(term))
    unknown = [name for name in names if name not in cluster.by_name]
    if unknown:
        raise UsageError(
            f"unknown node(s) {fold(sorted(unknown))} in {text!r}: not in {cluster.source}",
            hint="`dim node list` shows the nodes the layout declares",
        )
    return names


def _group_members(cluster: Cluster, term: nodesets.Term, text: str) -> set[str]:
    if term.least > len(cluster.groups) + 1:  # @g[1-1000000] on a layout of three groups
        raise UsageError(
            f"unknown groups: {term.text} (in {text!r}) names {term.least} groups, and "
            f"{cluster.source} has {len(cluster.groups)} and @all"
        )
    groups = [nodesets.ALL_GROUP] if term.text == "@*" else nodesets.expand(term)
    unknown = [g for g in groups if g not in cluster.groups and g != nodesets.ALL_GROUP]
    if unknown:
        raise UsageError(
            f"unknown group(s) {', '.join('@' + g for g in unknown)} in {text!r}: "
            f"not in {cluster.source}",
            hint=f"groups: @all, {', '.join('@' + g for g in cluster.groups)}",
        )
    if nodesets.ALL_GROUP in groups:
        return set(cluster.by_name)
    wanted = set(groups)
    return {node.name for node in cluster.nodes if node.group in wanted}


FOLD_LIMIT = 5000


def fold(names: list[str]) -> str:
    """``['n01', 'n02', 'n03']`` -> ``'n[01-03]'``; a count beyond FOLD_LIMIT names.

    Folding is quadratic-ish in ClusterShell for multi-dimensional names: 100,000 names
    take seconds, and nobody reads a node set that long anyway.
    """
    if len(names) > FOLD_LIMIT:
        return f"{len(names)} nodes"
    if not names:
        return ""
    if len(set(names)) == 1:
        folded = nodesets.fold_plain(names[0])  # ClusterShell's answer, without importing it
        if folded is not None:
            return folded
    from ClusterShell.NodeSet import NodeSet  # here: a command with nothing to fold needs none

    return str(NodeSet.fromlist(names))


def fold_nodes(cluster: Cluster, names: list[str]) -> str:
    """:func:`fold` for names of ``cluster``'s nodes, a whole group taken from its pattern.

    ClusterShell folds multi-dimensional names slowly: the 2,576 blades ``s01c1b01`` …
    ``s46c4b14`` take 0.35 s from a list, 1 ms from the group's ``s[01-46]c[1-4]b[01-14]``,
    and a fresh layout has no MAC recorded for any node of any group.
    """
    if not names or len(names) > FOLD_LIMIT:
        return fold(names)
    wanted = set(names)
    members: dict[str, list[str]] = {name: [] for name in cluster.groups}
    for node in cluster.nodes:
        members[node.group].append(node.name)
    whole = [g for g, nodes in members.items() if nodes and wanted.issuperset(nodes)]
    if len(whole) == 1 and len(members[whole[0]]) == len(wanted):  # a fresh layout's one group
        folded = nodesets.fold_plain(cluster.groups[whole[0]].nodeset)
        if folded is not None:  # as ClusterShell folds it, without importing it
            return folded
    from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet  # as in fold

    folded = NodeSet.fromlist([cluster.groups[g].nodeset for g in whole], resolver=NOGROUP_RESOLVER)
    for group in whole:
        wanted.difference_update(members[group])
    folded.update(NodeSet.fromlist(sorted(wanted), resolver=NOGROUP_RESOLVER))
    return str(folded)


def node_record(inventory: Inventory, node: Node, last_boot: Boot | None = None) -> dict:
    """Everything known of one node, for ``--json`` and for tables.

    ``last_boot`` (from :meth:`dim.state.StateDB.last_boots`) becomes ``{"at": local time in
    ISO 8601, "image", "version", "client"}``, or None for a node that never booted from dim.
    """
    return {
        "name": node.name,
        "group": node.group,
        "arch": inventory.cluster.groups[node.group].arch,
        "image": inventory.image(node),
        "server": node.server,
        "secure_boot": node.secure_boot,
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
        "failover": {
            name: {
                "servers": list(f.servers),
                "own_addresses": {s: str(cluster.servers[s].own_address) for s in f.servers},
                "preempt": f.preempt,
            }
            for name, f in cluster.failover.items()
        },
        "images": {name: images_in_use.get(name, 0) for name in cluster.images},
        "nodes_without_mac": fold_nodes(cluster, without_mac),
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


def image_servers(inventory: Inventory, image: str) -> list[Server]:
    """The servers that export ``image``: those of the nodes whose current image it is, in
    layout order; every server of the layout while no node boots it (any may, once a node is
    switched to it)."""
    cluster = inventory.cluster
    names = {n.server for n in cluster.nodes if inventory.image(n) == image}
    return [s for name, s in cluster.servers.items() if name in names or not names]


def refuse_foreign(cluster: Cluster, nodes: Iterable[Node], image: str, arch: str | None) -> None:
    """A usage error naming the nodes whose group's architecture is not ``arch``, the
    architecture of ``image``'s binaries (None: none found, nothing to check), and both."""
    if arch is None:
        return
    foreign: dict[str, list[str]] = {}
    for node in nodes:
        group = cluster.groups[node.group]
        if group.arch != arch:
            foreign.setdefault(group.name, []).append(node.name)
    if foreign:
        group, names = next(iter(foreign.items()))
        more = len(foreign) - 1
        others = f"; nor can the nodes of {more} more group{'s' if more > 1 else ''}"
        raise UsageError(
            f"{fold(names)} (group {group}, {cluster.groups[group].arch}) cannot boot image "
            f"{image}, whose binaries are {arch}" + (others if more else ""),
            hint=f"give them an image of their architecture, or state the group's arch= in "
            f"{cluster.source}",
        )
