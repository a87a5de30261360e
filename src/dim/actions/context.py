"""What every use case needs: the cluster layout's path, the state folder, the state DB's URL,
and ways into them.

The CLI builds one :class:`Context` from its global options and hands it down; the lab and the
tests build their own, pointing into a temporary folder::

    ctx = Context(config=Path("/etc/dim/cluster.xml"), state=Path("/var/lib/dim"))
    inventory = ctx.inventory()        # the layout with the MACs and images recorded
    db = ctx.db()                      # the state DB, created if need be (SQLAlchemy)

Reads choose their way here, once: an SQLite state DB is read with the standard library's
``sqlite3`` (:mod:`dim.records`: no SQLAlchemy to import), any other (``database`` a
``postgresql://`` URL) through :class:`~dim.state.StateDB`. So are the changes of MACs and
images (:meth:`Context.set_macs`, :meth:`Context.set_images`), on an SQLite DB that needs no
migration; the same code (:mod:`dim.observations`) runs through SQLAlchemy otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from dim import layout_cache
from dim.layout import read as read_layout
from dim.layout.model import Cluster, Inventory, Node
from dim.paths import StatePaths
from dim.records import (
    Boot,
    Changes,
    NfsSessions,
    Observed,
    SqliteWriter,
    StaleLease,
    read_changes,
    read_last_boots,
    read_nfs_sessions,
    read_node_observed,
    read_observed,
    read_stale_leases,
    sqlite_file,
    sqlite_writer,
)
from dim.structs import field, replace, struct

TYPE_CHECKING = False  # typing's own, without importing typing (15 M instructions)
if TYPE_CHECKING:
    from dim.images.store import Store
    from dim.state import StateDB


JOURNAL_END = 2**31 - 1  # after every entry of the change journal: an INTEGER key's largest


@struct(frozen=True, slots=True)
class Context:
    """Where the layout and the state live; each accessor reads them afresh.

    Both paths are made absolute here, once, against the folder the command started in:
    renderers write them into NFS exports and kernel arguments, where ``state/images/…``
    would mean nothing to a daemon or a node. ``database`` is the state DB's URL (None:
    ``state.db`` in the state folder). ``later``: where to leave the work that the answer
    does not wait for (the validated-layout cache's writing), for the caller to run once
    the answer is out (:mod:`dim.quick` does, in a child process); None: done at once.
    """

    config: Path
    state: Path
    debug: bool = False
    database: str | None = None
    actor: str | None = None  # who changes things, in the event log: ``api:NAME``; None: CLI
    later: list[Callable[[], None]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # abspath, not resolve(): a state folder reached through a symbolic link keeps the
        # name the administrator gave it, as the exports name it
        object.__setattr__(self, "config", Path(os.path.abspath(self.config)))
        object.__setattr__(self, "state", Path(os.path.abspath(self.state)))

    def cluster(self, data: bytes | None = None, *, cached: bool = False) -> Cluster:
        """cluster.xml (or ``data``, its bytes as read already) parsed and validated in full;
        its nodes kept in the validated-layout cache (:mod:`dim.layout_cache`) for
        :meth:`one_node`. ``cached``: taken from that cache instead when these very bytes
        were validated in full by this very code before (the cache's key says so), for a
        command that only reads the layout."""
        data = read_layout(self.config) if data is None else data
        if cached:
            found = layout_cache.cluster(StatePaths(self.state), data, str(self.config))
            if found is not None:
                return found
        # here: a command that finds what it needs in the cache imports no parser (lxml,
        # the schema, ClusterShell)
        from dim.layout import parser

        cluster = parser.parse(data, str(self.config))
        paths = StatePaths(self.state)
        if self.later is None:
            layout_cache.store(paths, data, cluster)
        else:
            self.later.append(lambda: layout_cache.store(paths, data, cluster))
        return cluster

    def declarations(self, data: bytes) -> Cluster:
        """The layout ``data`` (the bytes of cluster.xml) without its nodes: from the
        validated-layout cache when these bytes were parsed in full before, else parsed
        (groups not expanded, nothing checked that only their nodes could show)."""
        found = layout_cache.declarations(StatePaths(self.state), data, str(self.config))
        if found is not None:
            return found
        from dim.layout import parser

        return parser.parse_declarations(data, str(self.config))

    def one_node(self, name: str) -> Cluster | None:
        """The layout with node ``name`` alone, from the validated-layout cache of the bytes
        of cluster.xml as they are now: no group is expanded. None when the cache cannot
        tell (these bytes not parsed in full yet, or ``name`` not one of its nodes): then
        :meth:`cluster` parses in full, validates, and says what is wrong."""
        data = read_layout(self.config)
        node = layout_cache.lookup(StatePaths(self.state), data, name)
        if not isinstance(node, Node):
            return None
        return replace(self.declarations(data), nodes=(node,), by_name={})

    def inventory(self, *, cached: bool = False) -> Inventory:
        """The layout, with the MACs and image assignments recorded in the state DB;
        ``cached`` as in :meth:`cluster`."""
        observed = self.observed()
        return Inventory(self.cluster(cached=cached), observed.macs, observed.images)

    def observed(self) -> Observed:
        """The MACs and image assignments recorded in the state DB (none without a DB)."""
        path = self._sqlite_file()
        return read_observed(path) if path else self.db(create=False).observed()

    def node_observed(self, names: Iterable[str]) -> Observed:
        """The MACs and image assignments of the nodes ``names`` alone."""
        path = self._sqlite_file()
        if path is None:
            return self.db(create=False).node_observed(names)
        return read_node_observed(path, names)

    def changes(self, after: int) -> Changes:
        """The nodes the state DB's change journal names after its entry ``after``."""
        path = self._sqlite_file()
        return read_changes(path, after) if path else self.db(create=False).changes(after)

    def journal_end(self) -> int:
        """The last entry of the state DB's change journal (0: none)."""
        return self.changes(JOURNAL_END).last

    def last_boots(self) -> dict[str, Boot]:
        """Each node's last network boot, as ``dim serve`` recorded it (none without a DB)."""
        path = self._sqlite_file()
        return read_last_boots(path) if path else self.db(create=False).last_boots()

    def nfs_sessions(self, since: float) -> NfsSessions:
        """The NFS sessions the image servers recorded at ``since`` or later (none without
        a DB)."""
        path = self._sqlite_file()
        if path:
            return read_nfs_sessions(path, since)
        return self.db(create=False).nfs_sessions(since)

    def stale_leases(self) -> list[StaleLease]:
        """The replaced MACs whose DHCP leases are still to be released, oldest first."""
        path = self._sqlite_file()
        return read_stale_leases(path) if path else self.db(create=False).stale_leases()

    def set_macs(
        self, cluster: Cluster, changes: Mapping[tuple[str, str], str], *, source: str = "set"
    ) -> int:
        """Record MACs (:func:`dim.observations.set_macs`); how many changed."""
        writer = self._writer()
        if writer is None:
            return self.db().set_macs(cluster, changes, source=source, actor=self.actor)
        from dim import observations  # here: reading commands need neither it nor typing

        with writer as db:
            return observations.set_macs(db, cluster, changes, source, self.actor)

    def set_images(self, cluster: Cluster, nodes: Iterable[str], image: str) -> int:
        """Assign ``image`` to ``nodes`` (:func:`dim.observations.set_images`); how many
        changed."""
        writer = self._writer()
        if writer is None:
            return self.db().set_images(cluster, nodes, image, actor=self.actor)
        from dim import observations

        with writer as db:
            return observations.set_images(db, cluster, nodes, image, self.actor)

    def log_events(self, entries: list[tuple[str | None, str, str]]) -> None:
        """Events (node or None, kind, detail), all at this moment, by :attr:`actor`."""
        if not entries:
            return
        writer = self._writer()
        if writer is None:
            self.db().log_events(entries, actor=self.actor)
            return
        from dim import observations

        with writer as db:
            observations.log(db, entries, self.actor)

    def _writer(self) -> SqliteWriter | None:
        """An SQLite state DB's writer without SQLAlchemy, when it needs no migration."""
        path = self._sqlite_file()
        return sqlite_writer(path) if path is not None else None

    def db(self, *, create: bool = True) -> StateDB:
        # SQLAlchemy costs a tenth of a second: only commands that write pay for it (and
        # every command on a PostgreSQL state DB).
        from dim.state import StateDB

        return StateDB.open(self.state, url=self.database, create=create)

    def has_db(self) -> bool:
        """Whether the state DB exists (a PostgreSQL one always does)."""
        path = self._sqlite_file()
        return path is None or path.exists()

    def existing_db(self) -> StateDB | None:
        """The state DB if there is one; reading commands need not create it."""
        path = self._sqlite_file()
        return None if path and not path.exists() else self.db(create=False)

    def _sqlite_file(self) -> Path | None:
        """The SQLite file of the state DB, None if the DB is another kind's (PostgreSQL)."""
        return sqlite_file(self.state, self.database)

    def store(self) -> Store:
        """The image store below the state folder."""
        from dim.images.store import Store  # here: only image commands pay for its imports

        return Store(self.state)

    @property
    def template_dir(self) -> Path:
        """Where the administrator's template overrides live: next to cluster.xml."""
        return self.config.parent / "templates"
