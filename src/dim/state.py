"""The state DB: what dim observed rather than what cluster.xml declares.

MAC addresses per node interface, image assignments that differ from the layout, the stale
leases that a MAC change left on the DHCP server (see :mod:`dim.services.leases`), each node's
last network boot (see :mod:`dim.boot.serve`), and an event log. Through SQLAlchemy Core, on
either of two kinds of database, chosen by a URL (``--database``, ``$DIM_DATABASE``):

- SQLite in WAL mode, ``state.db`` in the state folder: the default, nothing to start;
- PostgreSQL (``postgresql://user:password@host/db``, psycopg 3), which several image servers
  share.

Every change is one transaction that starts with the one write lock, so two commands never
lose each other's update: ``BEGIN IMMEDIATE`` on SQLite, the transaction-scoped advisory lock
:data:`WRITE_LOCK` on PostgreSQL. Reads take no lock: those that must not wait for a writer
(the boot service's) begin deferred on SQLite, and PostgreSQL never makes a reader wait.

Opening a DB brings its schema to the newest revision of :mod:`dim.migrations` (Alembic): one
query finds the DB at :data:`dim.migrations.HEAD`, as it nearly always is; otherwise the
migrations run under the write lock, which creates a new DB and upgrades one that an older dim
made. Errors never show the URL's password::

    >>> db = StateDB.open(Path("/tmp/state"))        # or url="postgresql://dim:…@db1/dim"
    >>> db.set_macs(cluster, {("node01", "boot"): "52:54:00:00:00:01"})
    >>> db.observed().macs[("node01", "boot")]
    '52:54:00:00:00:01'
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from dim import migrations, observations
from dim.errors import StateError, StateUnavailable
from dim.layout.model import Cluster, Inventory
from dim.names import normalize_mac
from dim.paths import StatePaths
from dim.records import (  # noqa: F401
    BOOTS_TABLE,
    EVENTS_TABLE,
    MACS_TABLE,
    NFS_SAMPLES_TABLE,
    NFS_SESSIONS_TABLE,
    NODE_CHANGES_TABLE,
    NODE_IMAGES_TABLE,
    STALE_LEASES_TABLE,
    VERSION_TABLE,
    Boot,
    BootTarget,
    Changes,
    Event,
    NfsSession,
    NfsSessions,
    Observed,
    StaleLease,
)

# The key of PostgreSQL's advisory lock that each write transaction takes first ("dim" in
# ASCII): any other program that shares the database server must not use it.
WRITE_LOCK = 0x64696D
# Seconds to wait for a PostgreSQL server to answer a connection (libpq waits forever by
# default): a boot served from the snapshot after 5 s beats one that never is.
CONNECT_TIMEOUT = 5

T = TypeVar("T")

metadata = sa.MetaData()

macs_table = sa.Table(
    MACS_TABLE,
    metadata,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("network", sa.String, primary_key=True),
    sa.Column("mac", sa.String, nullable=False, unique=True),
)

images_table = sa.Table(
    NODE_IMAGES_TABLE,
    metadata,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("image", sa.String, nullable=False),
)

# A MAC replaced on an interface: the DHCP server may still hold a lease for it on the node's
# reserved address, which keeps that address from the new MAC until the lease is released.
stale_leases_table = sa.Table(
    STALE_LEASES_TABLE,
    metadata,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("network", sa.String, primary_key=True),
    sa.Column("mac", sa.String, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)

events_table = sa.Table(
    EVENTS_TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("node", sa.String, nullable=True, index=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("detail", sa.String, nullable=False, default=""),
    sa.Column("actor", sa.String, nullable=True),
)

# The last boot script each node fetched: one row per node, replaced at every boot, so that
# `dim node list` reads one small table instead of searching the event log.
boots_table = sa.Table(
    BOOTS_TABLE,
    metadata,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("image", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("client", sa.String, nullable=False),
)

# The change journal: a row per node whose MAC or image a change touched, in the change's
# transaction, so that `dim apply` reads what changed since the entry it last consumed instead
# of every MAC and image (dim.services.applied). Never rewritten: entries only grow.
node_changes_table = sa.Table(
    NODE_CHANGES_TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node", sa.String, nullable=False),
)

# Each image server's dim serve reads the NFS sessions on its own machine every few seconds
# (dim.boot.serve): when it last did, and what it found, so that `dim node status` anywhere
# sees the nodes of every server. A server that stopped reading goes stale, not down.
nfs_samples_table = sa.Table(
    NFS_SAMPLES_TABLE,
    metadata,
    sa.Column("server", sa.String, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)

nfs_sessions_table = sa.Table(
    NFS_SESSIONS_TABLE,
    metadata,
    sa.Column("server", sa.String, primary_key=True),
    sa.Column("client", sa.String, primary_key=True),
    sa.Column("address", sa.String, nullable=False),
)

# Built once: constructing the statement costs more than running it (0.5 ms against 0.2 ms).
_BOOT_TARGET = (
    sa.select(macs_table.c.node, macs_table.c.network, images_table.c.image)
    .select_from(macs_table.outerjoin(images_table, images_table.c.node == macs_table.c.node))
    .where(macs_table.c.mac == sa.bindparam("mac"))
)


class StateDB:
    """Access to the state DB. Open it with :meth:`open` (a folder) or :meth:`connect` (a URL)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.shown = engine.url.render_as_string(hide_password=True)  # for errors and logs

    @classmethod
    def open(cls, state_dir: Path, *, url: str | None = None, create: bool = True) -> StateDB:
        """The DB at ``url``, or without one the SQLite file of ``state_dir`` (made if need be).

        ``create`` False: a DB without dim's tables is left so (a reading command does not
        create one); a DB an older dim made is still upgraded.
        """
        if url is not None:
            return cls.connect(url, create=create)
        path = StatePaths(state_dir).db
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create the state folder {path.parent}: {exc.strerror}",
                    hint="pass --state DIR or set DIM_STATE",
                ) from exc
        return cls.connect(f"sqlite:///{path}", create=create or path.exists())

    @classmethod
    def connect(cls, url: str, *, create: bool = True) -> StateDB:
        """The DB at ``url`` (see :func:`database_url`), its schema brought up to date."""
        db = cls(_engine(database_url(url)))
        try:
            db._migrate(create)
        except BaseException:
            db.engine.dispose()  # dim serve tries again and again while the DB is down
            raise
        return db

    def _migrate(self, create: bool) -> None:
        """Bring the schema to :data:`dim.migrations.HEAD`; one query when it is there."""
        try:
            with self._reading() as conn:
                revision = _revision(conn)
                if revision == migrations.HEAD:
                    return
                if revision is None and not create and not _has_table(conn, MACS_TABLE):
                    return
        except SQLAlchemyError as exc:
            raise self._failure("open", exc) from exc
        with self._transaction() as conn:
            # again under the write lock: another command may have migrated meanwhile
            if _revision(conn) != migrations.HEAD:
                migrations.upgrade(conn)

    def _failure(self, doing: str, exc: SQLAlchemyError) -> StateError:
        """``exc`` as dim's error: :class:`StateUnavailable` when the DB cannot be reached."""
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())  # one line
        if _unreachable(exc):
            return StateUnavailable(
                f"cannot {doing} the state DB {self.shown}: {detail}",
                hint="is the database server up, and are the URL's host, port, user and "
                "password right?",
            )
        return StateError(f"cannot {doing} the state DB {self.shown}: {detail}")

    # -- reading ---------------------------------------------------------------------------

    def observed(self) -> Observed:
        def read(conn: sa.Connection) -> Observed:
            macs = {(r.node, r.network): r.mac for r in conn.execute(sa.select(macs_table))}
            images = {r.node: r.image for r in conn.execute(sa.select(images_table))}
            return Observed(macs, images)

        return self._read(read, MACS_TABLE, Observed({}, {}))

    def inventory(self, cluster: Cluster) -> Inventory:
        observed = self.observed()
        return Inventory(cluster, observed.macs, observed.images)

    def node_observed(self, names: Iterable[str]) -> Observed:
        """The MACs and image overrides of the nodes ``names`` alone (indexed queries)."""
        wanted = list(names)

        def read(conn: sa.Connection) -> Observed:
            macs, images = {}, {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = sa.select(macs_table).where(macs_table.c.node.in_(chunk))
                macs.update({(r.node, r.network): r.mac for r in conn.execute(query)})
                query = sa.select(images_table).where(images_table.c.node.in_(chunk))
                images.update({r.node: r.image for r in conn.execute(query)})
            return Observed(macs, images)

        return self._read(read, MACS_TABLE, Observed({}, {}))

    def changes(self, after: int) -> Changes:
        """The nodes the change journal names after its entry ``after``, and its last entry."""
        table = node_changes_table

        def read(conn: sa.Connection) -> Changes:
            rows = conn.execute(sa.select(table.c.id, table.c.node).where(table.c.id > after))
            found = {r.id: r.node for r in rows}
            last = max(found, default=None)
            if last is None:
                last = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
            return Changes(last, set(found.values()))

        return self._read(read, NODE_CHANGES_TABLE, Changes(0, set()))

    def stale_leases(self) -> list[StaleLease]:
        """The replaced MACs whose leases are still to be released, oldest first."""
        query = sa.select(stale_leases_table).order_by(
            stale_leases_table.c.at, stale_leases_table.c.node, stale_leases_table.c.network
        )

        def read(conn: sa.Connection) -> list[StaleLease]:
            return [StaleLease(r.node, r.network, r.mac, r.at) for r in conn.execute(query)]

        return self._read(read, STALE_LEASES_TABLE, [])

    def boot_target(self, mac: str) -> BootTarget | None:
        """The interface that has ``mac`` (normalized), with its node's image override.

        One indexed query in a read transaction that takes no write lock: a boot server asks
        this for every node that boots, while other commands write. Raises
        :class:`StateUnavailable` when the DB cannot be reached.
        """
        try:
            with self._reading() as conn:
                row = conn.execute(_BOOT_TARGET, {"mac": mac}).first()
        except SQLAlchemyError as exc:
            raise self._failure("read", exc) from exc
        return BootTarget(row.node, row.network, row.image) if row else None

    def last_boots(self) -> dict[str, Boot]:
        """node -> its last boot, for the nodes that booted from dim's boot service."""

        def read(conn: sa.Connection) -> dict[str, Boot]:
            rows = conn.execute(sa.select(boots_table)).all()
            return {r.node: Boot(r.node, r.image, r.version, r.client, r.at) for r in rows}

        return self._read(read, BOOTS_TABLE, {})

    def nfs_sessions(self, since: float) -> NfsSessions:
        """The sessions of the servers that read theirs at ``since`` or later."""

        def read(conn: sa.Connection) -> NfsSessions:
            samples = nfs_samples_table.c
            servers = {
                r.server: r.at
                for r in conn.execute(sa.select(nfs_samples_table).where(samples.at >= since))
            }
            rows = conn.execute(sa.select(nfs_sessions_table))
            clients = {
                r.client: NfsSession(r.address, r.server) for r in rows if r.server in servers
            }
            return NfsSessions(clients, servers)

        return self._read(read, NFS_SAMPLES_TABLE, NfsSessions({}, {}))

    def events(
        self,
        node: str | None = None,
        limit: int = 100,
        after: int | None = None,
        kinds: tuple[str, ...] = (),
        oldest_first: bool = False,
    ) -> list[Event]:
        """The newest ``limit`` events (of ``node``; after the event numbered ``after``; of
        ``kinds``), newest first; or with ``oldest_first``, the oldest ``limit`` of them, in
        order (to page through them with ``after``)."""
        order = events_table.c.id.asc() if oldest_first else events_table.c.id.desc()
        query = sa.select(events_table).order_by(order).limit(limit)
        if node is not None:
            query = query.where(events_table.c.node == node)
        if kinds:
            query = query.where(events_table.c.kind.in_(kinds))
        if after is not None:
            query = query.where(events_table.c.id > after)

        def read(conn: sa.Connection) -> list[Event]:
            return [
                Event(r.at, r.node, r.kind, r.detail, r.id, r.actor) for r in conn.execute(query)
            ]

        return self._read(read, EVENTS_TABLE, [])

    def _read(self, read: Callable[[sa.Connection], T], table: str, empty: T) -> T:
        """``read`` in a read transaction; ``empty`` if ``table`` is missing (a DB opened
        without ``create`` that no command wrote yet)."""
        try:
            with self._reading() as conn:
                return read(conn)
        except SQLAlchemyError as exc:
            failure = exc
        if not _unreachable(failure):  # an unreachable DB is not asked twice
            try:
                with self._reading() as conn:
                    if not _has_table(conn, table):
                        return empty
            except SQLAlchemyError:
                pass
        raise self._failure("read", failure) from failure

    # -- changing --------------------------------------------------------------------------

    def set_macs(
        self,
        cluster: Cluster,
        changes: Mapping[tuple[str, str], str],
        *,
        source: str = "set",
        actor: str | None = None,
    ) -> int:
        """Record MACs for (node, network) pairs in one transaction; returns how many changed
        (:func:`dim.observations.set_macs`: checked as a whole, replaced MACs kept as stale
        leases)."""
        with self._transaction() as conn:
            return observations.set_macs(_Executor(conn), cluster, changes, source, actor)

    def forget_stale_leases(self, leases: Iterable[StaleLease]) -> None:
        """Drop stale leases that were released, or that need no release."""
        keys = [(s.node, s.network, s.mac) for s in leases]
        if keys:
            with self._transaction() as conn:
                observations.delete_stale(_Executor(conn), keys)

    def set_images(
        self, cluster: Cluster, nodes: Iterable[str], image: str, *, actor: str | None = None
    ) -> int:
        """Assign ``image`` to nodes; an image equal to the layout's choice clears the override."""
        with self._transaction() as conn:
            return observations.set_images(_Executor(conn), cluster, nodes, image, actor)

    def log(
        self, node: str | None, kind: str, detail: str = "", *, actor: str | None = None
    ) -> None:
        self.log_events([(node, kind, detail)], actor=actor)

    def log_events(
        self, entries: list[tuple[str | None, str, str]], *, actor: str | None = None
    ) -> None:
        """Events (node or None, kind, detail), in one transaction."""
        with self._transaction() as conn:
            observations.log(_Executor(conn), entries, actor)

    def record_boots(self, boots: list[Boot]) -> None:
        """Log each boot as a ``boot`` event and remember it as its node's last, in one
        transaction: a boot server batches the boots of many nodes into one write."""
        if not boots:
            return
        last = {b.node: b for b in boots}  # a node that booted twice in a batch: its latest
        with self._transaction() as conn:
            conn.execute(
                events_table.insert(),
                [{"at": b.at, "node": b.node, "kind": "boot", "detail": b.detail} for b in boots],
            )
            conn.execute(
                boots_table.delete().where(boots_table.c.node == sa.bindparam("n")),
                [{"n": n} for n in last],
            )
            conn.execute(
                boots_table.insert(),
                [
                    {
                        "node": b.node,
                        "at": b.at,
                        "image": b.image,
                        "version": b.version,
                        "client": b.client,
                    }
                    for b in last.values()
                ],
            )

    def record_nfs_sessions(
        self, server: str, clients: Mapping[str, str] | None, at: float
    ) -> None:
        """Server ``server`` read its NFS sessions at ``at``: client address -> server address,
        replacing those it read before; None: they are unchanged since its last call (only
        the time is written, as a server polling every few seconds mostly finds)."""
        with self._transaction() as conn:
            conn.execute(nfs_samples_table.delete().where(nfs_samples_table.c.server == server))
            conn.execute(nfs_samples_table.insert(), [{"server": server, "at": at}])
            if clients is None:
                return
            table = nfs_sessions_table
            conn.execute(table.delete().where(table.c.server == server))
            if clients:
                conn.execute(
                    table.insert(),
                    [{"server": server, "client": c, "address": a} for c, a in clients.items()],
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _reading(self) -> sa.Connection:
        """A connection for reads only: on SQLite its transactions begin DEFERRED, so that
        readers never wait for the write lock (WAL gives them a consistent snapshot); on
        PostgreSQL they take no advisory lock."""
        return self.engine.connect().execution_options(dim_read_only=True)


class _Executor:
    """:class:`dim.observations.Executor` over an SQLAlchemy connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, parameters: Mapping[str, object]) -> list[tuple]:
        return [tuple(r) for r in self.conn.execute(sa.text(sql), dict(parameters))]

    def run(self, sql: str, parameters: list[dict[str, object]]) -> None:
        if parameters:
            self.conn.execute(sa.text(sql), parameters)


class _Transaction:
    """``with`` block around one write transaction; database errors become StateError."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def __enter__(self) -> sa.Connection:
        try:
            self.context = self.db.engine.begin()
            return self.context.__enter__()
        except SQLAlchemyError as exc:
            raise self.db._failure("write", exc) from exc

    def __exit__(self, kind, value, traceback) -> bool:
        try:
            self.context.__exit__(kind, value, traceback)
        except SQLAlchemyError as exc:
            raise self.db._failure("write", exc) from exc
        if isinstance(value, SQLAlchemyError):
            raise self.db._failure("write", value) from value
        return False


def database_url(url: str) -> sa.URL:
    """``url`` parsed, ``postgresql://`` meaning psycopg 3 (SQLAlchemy's default is psycopg2).

    Only SQLite and PostgreSQL are accepted: the write lock is known for those two. A
    malformed URL is refused without being repeated, since it may hold a password.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StateError(
            "the state DB's URL is malformed",
            hint="--database sqlite:////var/lib/dim/state.db or "
            "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        shown = parsed.render_as_string(hide_password=True)
        raise StateError(
            f"unsupported state DB {shown}: dim keeps its state in SQLite or PostgreSQL"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url)
        _sqlite_immediate_transactions(engine)
        return engine
    try:
        # pre-ping: after a restart of the server, the pool's connections are dead ones
        engine = sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT}
        )
    except ImportError as exc:
        raise StateError(
            f"cannot open the state DB {url.render_as_string(hide_password=True)}: "
            f"its driver is not installed ({exc.name})",
            hint="pip install 'dim[postgresql]' (psycopg 3)",
        ) from None
    _postgresql_write_lock(engine)
    return engine


def _unreachable(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` means the DB could not be reached or answered no more (the server
    down, a refused login, a lost connection, SQLite's file locked or unreadable), as
    opposed to a statement it refused."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.exc.OperationalError):
        # SQLite reports a missing table so too: a DB that an older dim made, not an outage
        return "no such table" not in str(exc.orig)
    return isinstance(exc, sa.exc.InterfaceError)


def _revision(conn: sa.Connection) -> str | None:
    """The migration the DB's schema is at; None for a DB that Alembic never touched."""
    if not _has_table(conn, VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _has_table(conn: sa.Connection, name: str) -> bool:
    return conn.dialect.has_table(conn, name)


def _postgresql_write_lock(engine: sa.Engine) -> None:
    """Each write transaction takes :data:`WRITE_LOCK` first; PostgreSQL releases it at its
    end. Writers queue there, so a change reads what the previous one committed."""

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        if not conn.get_execution_options().get("dim_read_only", False):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")


def _sqlite_immediate_transactions(engine: sa.Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so that writers queue instead of failing late."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _write_ahead_log(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        read_only = conn.get_execution_options().get("dim_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _write_ahead_log(cursor, patience: float = 30.0) -> None:
    """Switch the DB to WAL (a setting the file keeps). Switching a DB that is in another mode
    (an older dim's) needs its exclusive lock, and SQLite refuses at once ("database is
    locked"), without its busy handler, while another connection opens the file at the same
    moment: two commands started together on such a DB. Try again until ``patience`` is out."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


CSV_FIELD_LIMIT = 256  # characters in one field of a MAC file: a node, a MAC, a network


def parse_mac_csv(data: bytes | str, source: str, cluster: Cluster) -> dict[tuple[str, str], str]:
    """Rows ``node,mac[,network]`` (a header line is allowed) -> changes for :meth:`set_macs`.

    ``data`` is the file as read: UTF-8, with or without the byte-order mark that spreadsheets
    write. Errors name the file and the line where the record starts (a quoted field may span
    lines): bytes that are not UTF-8, an overlong field, a malformed row, an unknown node; a
    node or MAC given twice in one file is refused.
    """
    changes: dict[tuple[str, str], str] = {}
    seen_macs: dict[str, int] = {}
    for number, row in _csv_records(_csv_text(data, source), source):
        fields = [f.strip() for f in row]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        if number == 1 and fields[0].lower() in ("node", "name"):
            continue
        if len(fields) not in (2, 3):
            raise StateError(f"{source}:{number}: expected node,mac[,network], got {row!r}")
        name = fields[0]
        node = cluster.node(name)
        if node is None:
            raise StateError(f"{source}:{number}: unknown node {name!r}")
        network = fields[2] if len(fields) == 3 and fields[2] else node.boot.network
        try:
            mac = normalize_mac(fields[1])
        except ValueError as exc:
            raise StateError(f"{source}:{number}: {exc}") from None
        if (name, network) in changes:
            raise StateError(f"{source}:{number}: node {name} ({network}) appears twice")
        if mac in seen_macs:
            raise StateError(
                f"{source}:{number}: duplicate MAC address {mac} (also on line {seen_macs[mac]})"
            )
        seen_macs[mac] = number
        changes[(name, network)] = mac
    return changes


def _csv_text(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise StateError(
            f"{source}:{line}: byte 0x{data[exc.start]:02x} is not UTF-8 text",
            hint='save the file as UTF-8 ("CSV UTF-8" in a spreadsheet)',
        ) from None


def _csv_records(text: str, source: str) -> Iterable[tuple[int, list[str]]]:
    """(line where the record starts, its fields) for each record of ``text``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise StateError(f"{source}:{start}: malformed CSV: {exc}") from None
        longest = max(map(len, row), default=0)
        if longest > CSV_FIELD_LIMIT:
            raise StateError(
                f"{source}:{start}: a field of {longest} characters, more than the "
                f"{CSV_FIELD_LIMIT} a node, a MAC or a network name may have"
            )
        yield start, row
        start = reader.line_num + 1
