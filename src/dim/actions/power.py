"""Remote control of a node set: choose the nodes and their credentials, then one fan-out.

Two steps, so that a caller can ask before a disruptive action on many nodes, knowing how
many and which::

    chosen = select_nodes(ctx, "@rack1", credentials_file=None)   # the 0600 file, loaded
    run = power(chosen, "cycle", FanoutOptions(timeout=5))
    run.results      # one PowerResult per node, in the order of the node set
    run.raise_for_failures()

A node's failure is its result, never an exception; :meth:`PowerRun.raise_for_failures`
turns "some failed" into a :class:`dim.errors.DimError` once the results are shown.

Changes (power, boot device) are logged per node in the state DB, whoever asked (the command
line, the API), by :func:`log_outcomes`: the dashboard's feed and the API's metrics read them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dim.actions.context import Context
from dim.errors import DimError
from dim.inventory import select
from dim.layout.model import Cluster, Node
from dim.power import credentials
from dim.power.credentials import CredentialStore
from dim.power.interface import FanoutOptions, PowerResult
from dim.printable import counted

if TYPE_CHECKING:
    from dim.power.fanout import Operation

Progress = Callable[[int, int], None]  # (nodes done, nodes in all)
DEFAULT_OPTIONS = FanoutOptions()


@dataclass(frozen=True, slots=True)
class Selection:
    """The nodes to act on, with the layout they come from and the credentials to use."""

    cluster: Cluster
    nodes: tuple[Node, ...]
    credentials: CredentialStore

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]


@dataclass(frozen=True, slots=True)
class PowerRun:
    results: tuple[PowerResult, ...]  # one per node, in the order of the selection
    seconds: float

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)

    def raise_for_failures(self) -> None:
        """Raise :class:`DimError` if any node failed."""
        if self.failed:
            raise DimError(f"{self.failed} of {counted(len(self.results), 'node')} failed")


@dataclass(frozen=True, slots=True)
class Discovery:
    run: PowerRun
    saved: dict[tuple[str, str], str]  # {(node, boot network): MAC} recorded; {} unless saved
    changed: int  # of those, MACs that differ from what was recorded before


def select_nodes(
    ctx: Context,
    nodeset: str,
    exclude: str | None = None,
    *,
    credentials_file: Path | None = None,
) -> Selection:
    """The nodes of ``nodeset`` but ``exclude``, and the credentials (by default the file
    ``credentials`` beside the layout, see :func:`dim.power.credentials.resolve_path`).

    A missing or group-readable credentials file is refused here, before anything is asked.
    """
    cluster = ctx.cluster()
    nodes = tuple(select(cluster, nodeset, exclude))
    store = credentials.load(credentials.resolve_path(credentials_file, ctx.config))
    return Selection(cluster, nodes, store)


def status(
    chosen: Selection, options: FanoutOptions = DEFAULT_OPTIONS, progress: Progress | None = None
) -> PowerRun:
    """Each node's power state."""
    from dim.power import fanout

    return _run(chosen, fanout.status, options, progress)


def power(
    chosen: Selection,
    action: str,
    options: FanoutOptions = DEFAULT_OPTIONS,
    progress: Progress | None = None,
) -> PowerRun:
    """``action`` (one of :data:`dim.power.interface.ACTIONS`) on every node."""
    from dim.power import fanout

    return _run(chosen, fanout.power(action), options, progress)


def bootdev(
    chosen: Selection,
    device: str,
    *,
    persistent: bool = False,
    options: FanoutOptions = DEFAULT_OPTIONS,
    progress: Progress | None = None,
) -> PowerRun:
    """Boot ``device`` (pxe or disk) next time, or every time with ``persistent``."""
    from dim.power import fanout

    return _run(chosen, fanout.bootdev(device, persistent), options, progress)


def log_outcomes(ctx: Context, kind: str, asked: str, run: PowerRun) -> None:
    """Each node's outcome of ``asked`` (``on``, ``pxe``…) as an event ``kind`` (power,
    bootdev), or ``kind-failed``, by the context's actor; nothing without a state DB (a
    power command never creates one)."""
    if not ctx.has_db():
        return
    ctx.log_events(
        [(r.node, kind if r.ok else f"{kind}-failed", f"{asked}: {r.outcome}") for r in run.results]
    )


def discover(
    ctx: Context,
    chosen: Selection,
    *,
    nic: int = 1,
    save: bool = False,
    options: FanoutOptions = DEFAULT_OPTIONS,
    progress: Progress | None = None,
) -> Discovery:
    """The MACs the BMCs report; with ``save``, the ``nic``-th recorded as the boot MAC."""
    from dim.power import control, fanout

    run = _run(chosen, fanout.discover, options, progress)
    if not save:
        return Discovery(run, {}, 0)
    changes = control.boot_macs(chosen.cluster, run.results, nic)
    changed = ctx.set_macs(chosen.cluster, changes, source="discover") if changes else 0
    return Discovery(run, changes, changed)


def _run(
    chosen: Selection, operation: Operation, options: FanoutOptions, progress: Progress | None
) -> PowerRun:
    # asyncio and the drivers come with the fan-out: imported by the commands that run one,
    # not when dim starts
    from dim.power import control

    start = time.monotonic()
    results = control.run(chosen.nodes, chosen.credentials, operation, options, progress)
    return PowerRun(tuple(results), time.monotonic() - start)
