"""What every use case needs: the cluster layout's path, the state folder, and ways into them.

The CLI builds one :class:`Context` from its global options and hands it down; the lab and the
tests build their own, pointing into a temporary folder::

    ctx = Context(config=Path("/etc/dim/cluster.xml"), state=Path("/var/lib/dim"))
    inventory = ctx.inventory()        # the layout with the MACs and images recorded
    db = ctx.db()                      # the state DB, created if need be (SQLAlchemy)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dim.images.store import Store
from dim.layout import parser as layout
from dim.layout.model import Cluster, Inventory
from dim.paths import StatePaths
from dim.records import Boot, read_last_boots, read_observed

if TYPE_CHECKING:
    from dim.state import StateDB


@dataclass(frozen=True, slots=True)
class Context:
    """Where the layout and the state live; each accessor reads them afresh.

    Both paths are made absolute here, once, against the folder the command started in:
    renderers write them into NFS exports and kernel arguments, where ``state/images/…``
    would mean nothing to a daemon or a node.
    """

    config: Path
    state: Path
    debug: bool = False

    def __post_init__(self) -> None:
        # abspath, not resolve(): a state folder reached through a symbolic link keeps the
        # name the administrator gave it, as the exports name it
        object.__setattr__(self, "config", Path(os.path.abspath(self.config)))
        object.__setattr__(self, "state", Path(os.path.abspath(self.state)))

    def cluster(self) -> Cluster:
        return layout.load(self.config)

    def inventory(self) -> Inventory:
        """The layout, with the MACs and image assignments recorded in the state DB."""
        observed = read_observed(self.state)
        return Inventory(self.cluster(), observed.macs, observed.images)

    def db(self, *, create: bool = True) -> StateDB:
        # SQLAlchemy costs a tenth of a second: only commands that write pay for it.
        from dim.state import StateDB

        return StateDB.open(self.state, create=create)

    def existing_db(self) -> StateDB | None:
        """The state DB if there is one; reading commands need not create it."""
        return self.db(create=False) if StatePaths(self.state).db.exists() else None

    def last_boots(self) -> dict[str, Boot]:
        """Each node's last network boot, as ``dim serve`` recorded it (none without a DB)."""
        return read_last_boots(self.state)

    def store(self) -> Store:
        """The image store below the state folder."""
        return Store(self.state)

    @property
    def template_dir(self) -> Path:
        """Where the administrator's template overrides live: next to cluster.xml."""
        return self.config.parent / "templates"
