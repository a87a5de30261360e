"""Bring the boot targets file (:mod:`dim.boot.targets`) in line with the state DB.

The file remembers the last entry of the state DB's change journal it reflects; the nodes
the journal names after it are the ones whose rows are replaced, read alone from the DB. A
file that is missing, not ours, or ahead of the journal (another state DB) is written whole::

    refresh(ctx)                    # after dim node switch, dim apply
    refresh(ctx, everything=obs)    # a full dim apply, which read every MAC already
"""

from __future__ import annotations

from dim.actions.context import Context
from dim.boot import targets
from dim.paths import StatePaths
from dim.records import Observed


def refresh(
    ctx: Context, *, everything: Observed | None = None, journal: int | None = None
) -> None:
    """Update the file from the journal; with ``everything`` (every MAC and image, read after
    the journal's entry ``journal``), write it whole from those."""
    paths = StatePaths(ctx.state)
    if everything is None:
        since = targets.journal(paths)
        if since is not None:
            changes = ctx.changes(since)  # read before the values: a later change is seen again
            if changes.last >= since:
                if changes.nodes:
                    observed = ctx.node_observed(changes.nodes)
                    targets.update(
                        paths, changes.nodes, observed.macs, observed.images, journal=changes.last
                    )
                return
        journal = ctx.journal_end()
        everything = ctx.observed()
    targets.write(paths, everything.macs, everything.images, journal=journal or 0)
