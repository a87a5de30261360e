"""What is done to nodes: record MACs, assign and switch images, reset and diff replicas.

::

    set_mac(ctx, "node01", "52:54:00:00:00:01")          # MacChange(node='node01', …)
    import_macs(ctx, Path("macs.csv"), dry_run=True)    # MacImport(macs=120, changed=3, …)
    switch(ctx, "@rack1", "rhel9")                       # Switch(created=(…), found=(…))
    reset(ctx, reset_plan(ctx, "node01"))                # fresh replicas, old ones kept aside

Node sets are ClusterShell patterns (``c[01-04]``, ``@compute``); an unknown node, a malformed
MAC or a duplicate one is a :class:`dim.errors.UsageError` and nothing is recorded.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from dim.actions.context import Context
from dim.errors import UsageError
from dim.inventory import node_record, refuse_foreign, select
from dim.layout.model import Cluster, Inventory, Node
from dim.names import normalize_mac
from dim.structs import struct

TYPE_CHECKING = False  # typing's own: `dim node list` imports no typing (15 M instructions)
if TYPE_CHECKING:
    from dim.images.delta import Delta
    from dim.images.operations import Progress

# dim.images and dim.boot are imported by the functions that change replicas or loader files:
# `dim node list` and `dim node set` run at every keystroke of an administrator and must not
# pay for them (issue 14: start-up).


@struct(frozen=True, slots=True)
class MacChange:
    """One interface's MAC, as recorded."""

    node: str
    network: str
    mac: str  # normalised: lower case, colons
    changed: bool


@struct(frozen=True, slots=True)
class ImageAssignment:
    nodes: tuple[str, ...]
    image: str
    changed: int  # nodes whose image was another one


@struct(frozen=True, slots=True)
class MacImport:
    source: Path
    macs: int  # lines read
    changed: int  # MACs that differ from those recorded (or would, in a dry run)
    dry_run: bool


@struct(frozen=True, slots=True)
class Switch:
    nodes: tuple[str, ...]
    image: str
    switched: int  # nodes whose image was another one
    created: tuple[str, ...]  # nodes given a new replica
    found: tuple[str, ...]  # nodes whose replica of the image was kept from before
    links: int = 0  # per-node loader files pointed at the image (PXELINUX, GRUB, iPXE)


@struct(frozen=True, slots=True)
class ResetPlan:
    """The nodes to reset, by image: checked, nothing done yet (for a confirmation)."""

    cluster: Cluster  # the layout they were checked against
    by_image: Mapping[str, tuple[str, ...]]

    @property
    def nodes(self) -> list[str]:
        return [n for names in self.by_image.values() for n in names]


@struct(frozen=True, slots=True)
class Reset:
    image: str
    nodes: tuple[str, ...]
    kept_aside: tuple[str, ...]  # where the old replicas went, relative to the state folder


def records(ctx: Context, nodeset: str | None = None, exclude: str | None = None) -> list[dict]:
    """What is declared and observed of each node (all, or ``nodeset`` but ``exclude``), with
    its last network boot: :func:`dim.inventory.node_record`'s dicts, ready for JSON. A set
    that names no node (``@rack1!@rack1``) is an empty list here, an error where nodes act.

    A node named alone comes from the validated-layout cache, as in :func:`set_mac`."""
    one = ctx.one_node(nodeset) if nodeset and exclude is None else None
    if one is not None:
        observed = ctx.node_observed([nodeset])
        inventory = Inventory(one, observed.macs, observed.images)
    else:
        inventory = ctx.inventory(cached=True)
    boots = ctx.last_boots()
    return [
        node_record(inventory, node, boots.get(node.name))
        for node in select(inventory.cluster, nodeset, exclude, empty_ok=True)
    ]


def set_mac(ctx: Context, nodeset: str, mac: str, network: str | None = None) -> MacChange:
    """Record the MAC of one node's interface on ``network`` (default: its boot network).

    A node named alone is looked up in the validated-layout cache (:meth:`Context.one_node`),
    without expanding cluster.xml, when these bytes of it were validated in full before."""
    cluster = ctx.one_node(nodeset) or ctx.cluster()
    nodes = select(cluster, nodeset)
    if len(nodes) != 1:
        raise UsageError(f"--mac names one node, and {nodeset!r} names {len(nodes)}")
    node = nodes[0]
    net = network or node.boot.network
    try:
        value = normalize_mac(mac)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    changed = ctx.set_macs(cluster, {(node.name, net): value})
    return MacChange(node.name, net, value, bool(changed))


def set_image(ctx: Context, nodeset: str, image: str) -> ImageAssignment:
    """Assign ``image`` to every node of ``nodeset`` (replicas come with the next apply)."""
    cluster = ctx.one_node(nodeset) or ctx.cluster()
    chosen = select(cluster, nodeset)
    refuse_foreign(cluster, chosen, image, ctx.store().architecture(image))
    names = tuple(n.name for n in chosen)
    return ImageAssignment(names, image, ctx.set_images(cluster, names, image))


def import_macs(ctx: Context, csv_file: Path, *, dry_run: bool = False) -> MacImport:
    """Record the MACs of ``csv_file`` (lines of node,mac[,network]), all or none.

    The whole file is checked first; with ``dry_run`` nothing is recorded, and the count of
    changes is against the MACs recorded now.
    """
    from dim.state import parse_mac_csv

    cluster = ctx.cluster()
    try:
        data = csv_file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {csv_file}: {exc.strerror}") from None
    changes = parse_mac_csv(data, str(csv_file), cluster)
    if dry_run:
        current = ctx.inventory().macs
        changed = sum(1 for key, mac in changes.items() if current.get(key) != mac)
    else:
        changed = ctx.set_macs(cluster, changes, source=f"import {csv_file.name}")
    return MacImport(csv_file, len(changes), changed, dry_run)


def switch(
    ctx: Context, nodeset: str, image: str, progress: Progress = None, *, root: Path = Path("/")
) -> Switch:
    """Assign ``image`` to ``nodeset``, each node getting its replica (its old one if kept).

    The NFS exports do not depend on it and iPXE nodes ask ``dim serve``, which reads the
    state; the nodes' own loader files that ``dim apply`` installed under ``root`` (PXELINUX
    and GRUB read them over TFTP) are pointed at the image, each replaced atomically.
    """
    from dim.actions import boot_targets
    from dim.images import operations

    cluster = ctx.cluster()
    declared = operations.declared(cluster, image)
    chosen = select(cluster, nodeset)
    refuse_foreign(cluster, chosen, image, ctx.store().architecture(image))
    nodes = [n.name for n in chosen]
    created = operations.switch(ctx.store(), cluster, nodes, declared, progress=progress)
    switched = ctx.set_images(cluster, nodes, image)
    found = [n for n in nodes if n not in created]
    observed = ctx.node_observed(nodes)  # theirs alone: the layout is parsed already
    links = _point_node_links(cluster, observed.macs, chosen, image, root, ctx.template_dir)
    # dim serve answers from these while the state DB is unreachable: the switch holds there too
    boot_targets.refresh(ctx)
    return Switch(tuple(nodes), image, switched, tuple(created), tuple(found), links)


def _point_node_links(
    cluster: Cluster,
    macs: dict[tuple[str, str], str],
    chosen: list[Node],
    image: str,
    root: Path,
    template_dir: Path | None,
) -> int:
    """Retarget the installed per-node loader links of ``chosen`` to ``image``; how many.

    Only links that are there, of the loaders that ``dim apply`` links for the node (its
    server's :func:`~dim.services.loaders.link_rule`): a node never applied gets its files at
    the next ``dim apply``.
    """
    from dim.services.apply import install_link, target
    from dim.services.loaders import LinkRule, config_stem, link_rule, node_links

    count = 0
    rules: dict[str, LinkRule] = {}
    for node in chosen:
        mac = macs.get((node.name, node.boot.network))
        if mac is None:
            continue
        if node.server not in rules:
            rules[node.server] = link_rule(cluster, node.server, template_dir)
        stem = config_stem(cluster, node.server, image)
        server = cluster.servers[node.server]
        links = node_links(server, rules[node.server], mac, stem, secure_boot=node.secure_boot)
        for file in links:
            where = target(root, file.path)
            if os.path.islink(where) and os.readlink(where) != file.link:
                install_link(where, file.link or "")
                count += 1
    return count


def reset_plan(ctx: Context, nodeset: str) -> ResetPlan:
    """The nodes of ``nodeset`` by image; a node without an image is refused."""
    inventory = ctx.inventory()
    by_image: dict[str, list[str]] = defaultdict(list)
    for node in select(inventory.cluster, nodeset):
        image = inventory.image(node)
        if image is None:
            raise UsageError(f"node {node.name} has no image")
        by_image[image].append(node.name)
    frozen = {image: tuple(names) for image, names in by_image.items()}
    return ResetPlan(inventory.cluster, frozen)


def reset(ctx: Context, plan: ResetPlan) -> list[Reset]:
    """Fresh replicas for the planned nodes; the old ones are kept aside until ``image gc``."""
    from dim.images import operations

    store = ctx.store()
    done = []
    for image, names in plan.by_image.items():
        aside = operations.reset(store, operations.declared(plan.cluster, image), list(names))
        done.append(Reset(image, names, tuple(aside)))
    return done


def diff(ctx: Context, node: str) -> Delta:
    """What ``node`` changed in its persistent paths, against its image."""
    from dim.images import operations, replicas

    inventory = ctx.inventory()
    targets = select(inventory.cluster, node)
    if len(targets) != 1:
        raise UsageError(f"node diff takes one node, not {node!r} ({len(targets)} nodes)")
    image = inventory.image(targets[0])
    if image is None:
        raise UsageError(f"node {node} has no image")
    return replicas.differences(ctx.store(), operations.declared(inventory.cluster, image), node)
