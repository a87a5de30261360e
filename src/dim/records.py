"""What the state DB observed, as plain records, and a fast way to read them.

The records are shared by :mod:`dim.state` (which writes them through SQLAlchemy) and by the
commands that only read: those read an SQLite state DB with the standard library's ``sqlite3``,
because importing SQLAlchemy alone costs about 0.2 s, more than the rest of a small ``dim
apply``. A state DB of another kind (PostgreSQL) is read through :class:`dim.state.StateDB`
instead: :func:`sqlite_file` tells which (:class:`dim.actions.context.Context` chooses). The
table names have their home here (:mod:`dim.state` defines its tables by them), so that this
module stays free of SQLAlchemy::

    >>> path = sqlite_file(Path("/var/lib/dim"), None)     # no --database: the default
    >>> read_observed(path).macs[("node01", "boot")]
    '52:54:00:00:00:01'
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dim import migrations
from dim.errors import StateError
from dim.paths import StatePaths
from dim.structs import struct

MACS_TABLE = "interface_macs"
NODE_IMAGES_TABLE = "node_images"
STALE_LEASES_TABLE = "stale_leases"
EVENTS_TABLE = "events"
BOOTS_TABLE = "boots"
VERSION_TABLE = "alembic_version"  # Alembic's: the revision the DB's schema is at
NODE_CHANGES_TABLE = "node_changes"  # the change journal: see dim.state
NFS_SAMPLES_TABLE = "nfs_samples"  # when each image server last read its NFS sessions
NFS_SESSIONS_TABLE = "nfs_sessions"  # what it read: see dim.state


@struct(frozen=True, slots=True)
class Observed:
    """The MACs (by node and network) and image assignments the state DB recorded."""

    macs: dict[tuple[str, str], str]
    images: dict[str, str]


@struct(frozen=True, slots=True)
class Changes:
    """What the change journal holds after an entry: its last entry's number (0: none), and
    the nodes the entries after the one asked name. A last entry lower than the one asked
    means another journal (a state DB made again): nothing can be told from it."""

    last: int
    nodes: set[str]


@struct(frozen=True, slots=True)
class StaleLease:
    """The MAC that ``node`` had on ``network`` before it was replaced, and since when."""

    node: str
    network: str
    mac: str
    at: float = 0.0


@struct(frozen=True, slots=True)
class Event:
    """One entry of the state DB's event log."""

    at: float
    node: str | None
    kind: str
    detail: str
    id: int = 0  # its number in the log: later events have greater ones
    actor: str | None = None  # who made the change: ``api:TOKEN-NAME``; None from the CLI


@struct(frozen=True, slots=True)
class Boot:
    """A node fetched its boot script: ``image`` at boot build ``version``, from ``client``."""

    node: str
    image: str
    version: str
    client: str
    at: float = 0.0

    @property
    def detail(self) -> str:
        return f"{self.image} v{self.version} from {self.client}"


@struct(frozen=True, slots=True)
class NfsSession:
    """A node's live NFS session: the server address its connection reaches, and the image
    server whose ``dim serve`` read it (None: read on this machine)."""

    address: str
    server: str | None = None


@struct(frozen=True, slots=True)
class NfsSessions:
    """The sessions the image servers read lately: client address -> its session, and when
    each server last read (a server with no client still counts: its nodes are not up)."""

    clients: Mapping[str, NfsSession]
    servers: Mapping[str, float]


@struct(frozen=True, slots=True)
class BootTarget:
    """Whose interface a MAC is, and the node's image override (None: the layout's image)."""

    node: str
    network: str
    image: str | None


def sqlite_file(state_dir: Path, database: str | None) -> Path | None:
    """The file of the state DB if it is SQLite, None if ``database`` is another kind.

    ``database`` is the ``--database`` URL, None for the default (``state.db`` in the state
    folder). SQLAlchemy's forms: ``sqlite:///relative/file``, ``sqlite:////absolute/file``,
    with a driver (``sqlite+pysqlite``) and a query string; an in-memory DB (``sqlite://``)
    has no file, and is read through SQLAlchemy like any other.
    """
    if database is None:
        return StatePaths(state_dir).db
    scheme, _, rest = database.partition("://")
    if scheme.split("+", 1)[0] != "sqlite":
        return None
    path = rest.removeprefix("/").split("?", 1)[0]
    return Path(path) if path else None


def _connect(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    # read-only, and never waiting on a writer: WAL lets readers see the last commit
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _rows(path: Path, query: str, parameters: Sequence = ()) -> list[tuple]:
    connection = _connect(path)
    if connection is None:
        return []
    try:
        return connection.execute(query, parameters).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a DB made by an older dim
            return []
        raise
    finally:
        connection.close()


class SqliteWriter:
    """One write transaction on an SQLite state DB through ``sqlite3``, as
    :class:`dim.state.StateDB` would run it: ``BEGIN IMMEDIATE`` (writers queue), the same
    busy timeout; an :class:`dim.observations.Executor`. Errors become :class:`StateError`."""

    def __init__(self, connection: sqlite3.Connection, shown: str) -> None:
        self.connection, self.shown = connection, shown

    def rows(self, sql: str, parameters: Mapping[str, object]) -> list[tuple]:
        return self.connection.execute(sql, parameters).fetchall()

    def run(self, sql: str, parameters: list[dict[str, object]]) -> None:
        if parameters:
            self.connection.executemany(sql, parameters)

    def __enter__(self) -> SqliteWriter:
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.connection.close()
            raise StateError(f"cannot write the state DB {self.shown}: {exc}") from exc
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        try:
            self.connection.execute("COMMIT" if kind is None else "ROLLBACK")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the state DB {self.shown}: {exc}") from exc
        finally:
            self.connection.close()
        if isinstance(value, sqlite3.Error):
            raise StateError(f"cannot write the state DB {self.shown}: {value}") from value
        return False


def sqlite_writer(path: Path) -> SqliteWriter | None:
    """A writer on the SQLite state DB ``path`` if it exists, in WAL mode, at the newest
    migration; None otherwise: then :class:`dim.state.StateDB` creates, converts or
    migrates it (and needs SQLAlchemy and Alembic to)."""
    if not path.exists():
        return None
    try:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        connection.execute("PRAGMA busy_timeout=30000")
        mode = connection.execute("PRAGMA journal_mode").fetchone()
        revision = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        if mode != ("wal",) or revision != [(migrations.HEAD,)]:
            connection.close()
            return None
        connection.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error:
        connection.close()
        return None
    return SqliteWriter(connection, f"sqlite:///{path}")


def read_observed(path: Path) -> Observed:
    """MACs per (node, network) and image overrides per node in the SQLite DB ``path``;
    empty without a DB."""
    rows = _rows(path, f"SELECT node, network, mac FROM {MACS_TABLE}")
    macs = {(node, network): mac for node, network, mac in rows}
    images = dict(_rows(path, f"SELECT node, image FROM {NODE_IMAGES_TABLE}"))
    return Observed(macs, images)


def read_node_observed(path: Path, names: Iterable[str]) -> Observed:
    """The MACs and image overrides of the nodes ``names`` alone: indexed queries."""
    wanted = list(names)
    macs, images = {}, {}
    for chunk in _chunks(wanted):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT node, network, mac FROM {MACS_TABLE} WHERE node IN ({marks})"
        macs.update({(n, net): mac for n, net, mac in _rows(path, query, chunk)})
        query = f"SELECT node, image FROM {NODE_IMAGES_TABLE} WHERE node IN ({marks})"
        images.update(_rows(path, query, chunk))
    return Observed(macs, images)


def read_changes(path: Path, after: int) -> Changes:
    """The nodes the change journal names after its entry ``after`` (0: from the start)."""
    rows = _rows(path, f"SELECT id, node FROM {NODE_CHANGES_TABLE} WHERE id > ?", (after,))
    last = max((r[0] for r in rows), default=None)
    if last is None:  # nothing new: the journal's end says whether it is the one recorded
        top = _rows(path, f"SELECT max(id) FROM {NODE_CHANGES_TABLE}")
        last = (top[0][0] if top else None) or 0
    return Changes(last, {r[1] for r in rows})


def _chunks(items: list, size: int = 500) -> Iterable[list]:
    """SQLite allows a limited number of parameters per statement."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_last_boots(path: Path) -> dict[str, Boot]:
    rows = _rows(path, f"SELECT node, image, version, client, at FROM {BOOTS_TABLE}")
    return {r[0]: Boot(*r) for r in rows}


def read_nfs_sessions(path: Path, since: float) -> NfsSessions:
    """The sessions of the servers that read theirs at ``since`` or later."""
    servers = dict(
        _rows(path, f"SELECT server, at FROM {NFS_SAMPLES_TABLE} WHERE at >= ?", (since,))
    )
    query = f"SELECT client, address, server FROM {NFS_SESSIONS_TABLE}"
    clients = {c: NfsSession(a, s) for c, a, s in _rows(path, query) if s in servers}
    return NfsSessions(clients, servers)


def read_stale_leases(path: Path) -> list[StaleLease]:
    query = f"SELECT node, network, mac, at FROM {STALE_LEASES_TABLE} ORDER BY at, node, network"
    rows = _rows(path, query)
    return [StaleLease(*r) for r in rows]
