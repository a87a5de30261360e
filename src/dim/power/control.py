"""Remote control of layout nodes: their BMCs and credentials resolved, then one fan-out.

::

    store = credentials.load(credentials.resolve_path(None))
    results = control.run(nodes, store, fanout.power("off"), FanoutOptions(timeout=5))
    changes = control.boot_macs(cluster, results)       # {(node, "boot"): mac} for set_macs

A node without a ``<bmc>``, or whose credentials entry is not in the file, gets its error
result at once, without a fan-out slot.
"""

from __future__ import annotations

from collections.abc import Sequence

from dim.layout.model import Cluster, Node
from dim.power import fanout
from dim.power.credentials import DEFAULT_ENTRY, CredentialStore
from dim.power.fanout import FanoutOptions, Operation, Progress
from dim.power.interface import PowerResult, Target


def run(
    nodes: Sequence[Node],
    store: CredentialStore,
    operation: Operation,
    options: FanoutOptions,
    progress: Progress | None = None,
) -> list[PowerResult]:
    """One result per node, in the order of ``nodes``."""
    targets: list[Target] = []
    early: dict[str, PowerResult] = {}
    for node in nodes:
        target, problem = _target(node, store)
        if problem is not None:
            early[node.name] = problem
        else:
            targets.append(target)
    done = {r.node: r for r in fanout.execute(targets, operation, options, progress)}
    done.update(early)
    return [done[node.name] for node in nodes]


def _target(node: Node, store: CredentialStore) -> tuple[Target, PowerResult | None]:
    bmc = node.bmc
    if bmc is None:
        target = Target(node.name, "-", "-")
        return target, _error(target, "config", "no <bmc> declared for this node")
    name = bmc.credentials or DEFAULT_ENTRY
    target = Target(node.name, bmc.driver, bmc.address, store.get(name))
    if target.credential is None:
        return target, _error(
            target, "config", f"credentials entry {name!r} is not in {store.path}"
        )
    return target, None


def _error(target: Target, kind: str, message: str) -> PowerResult:
    return PowerResult(
        node=target.node,
        driver=target.driver,
        address=target.address,
        ok=False,
        outcome=f"error ({kind})",
        message=message,
        kind=kind,
        attempts=0,
    )


def boot_macs(
    cluster: Cluster, results: Sequence[PowerResult], nic: int = 1
) -> dict[tuple[str, str], str]:
    """The ``nic``-th MAC each BMC reported, as the MAC of its node's boot interface."""
    changes = {}
    for result in results:
        node = cluster.node(result.node)
        if result.ok and node is not None and len(result.macs) >= nic:
            changes[(node.name, node.boot.network)] = result.macs[nic - 1].mac
    return changes
