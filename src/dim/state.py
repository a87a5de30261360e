"""The state DB: what dim observed rather than what cluster.xml declares.

MAC addresses per node interface, image assignments that differ from the layout, the stale
leases that a MAC change left on the DHCP server (see :mod:`dim.services.leases`), each node's
last network boot (see :mod:`dim.boot.serve`), and an event log. SQLite in WAL mode by default,
through SQLAlchemy Core so that a PostgreSQL URL works too. Every change is one transaction
that starts with a write lock (``BEGIN IMMEDIATE`` on SQLite), so two commands never lose each
other's update; reads that must not wait for it (the boot service's) begin deferred::

    >>> db = StateDB.open(Path("/tmp/state"))
    >>> db.set_macs(cluster, {("node01", "boot"): "52:54:00:00:00:01"})
    >>> db.observed().macs[("node01", "boot")]
    '52:54:00:00:00:01'
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from dim.errors import StateError
from dim.layout.model import Cluster, Inventory
from dim.names import normalize_mac
from dim.paths import StatePaths
from dim.records import (  # noqa: F401
    BOOTS_TABLE,
    EVENTS_TABLE,
    MACS_TABLE,
    NODE_IMAGES_TABLE,
    STALE_LEASES_TABLE,
    Boot,
    BootTarget,
    Event,
    Observed,
    StaleLease,
)

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

    @classmethod
    def open(cls, state_dir: Path, *, create: bool = True) -> StateDB:
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
        engine = sa.create_engine(url)
        if engine.dialect.name == "sqlite":
            _sqlite_immediate_transactions(engine)
        db = cls(engine)
        if create:
            try:
                metadata.create_all(engine)
            except SQLAlchemyError as exc:
                raise StateError(f"cannot open the state DB {url}: {exc.orig or exc}") from exc
        return db

    # -- reading ---------------------------------------------------------------------------

    def observed(self) -> Observed:
        try:
            with self.engine.connect() as conn:
                macs = {(r.node, r.network): r.mac for r in conn.execute(sa.select(macs_table))}
                images = {r.node: r.image for r in conn.execute(sa.select(images_table))}
        except SQLAlchemyError:
            if not sa.inspect(self.engine).has_table(MACS_TABLE):
                return Observed({}, {})
            raise
        return Observed(macs, images)

    def inventory(self, cluster: Cluster) -> Inventory:
        observed = self.observed()
        return Inventory(cluster, observed.macs, observed.images)

    def stale_leases(self) -> list[StaleLease]:
        """The replaced MACs whose leases are still to be released, oldest first."""
        query = sa.select(stale_leases_table).order_by(
            stale_leases_table.c.at, stale_leases_table.c.node, stale_leases_table.c.network
        )
        try:
            with self.engine.connect() as conn:
                return [StaleLease(r.node, r.network, r.mac, r.at) for r in conn.execute(query)]
        except SQLAlchemyError:
            if not sa.inspect(self.engine).has_table(STALE_LEASES_TABLE):
                return []
            raise

    def boot_target(self, mac: str) -> BootTarget | None:
        """The interface that has ``mac`` (normalized), with its node's image override.

        One indexed query in a read transaction that takes no write lock: a boot server asks
        this for every node that boots, while other commands write.
        """
        try:
            with self._reading() as conn:
                row = conn.execute(_BOOT_TARGET, {"mac": mac}).first()
        except SQLAlchemyError as exc:
            raise StateError(f"cannot read the state DB: {exc.orig or exc}") from exc
        return BootTarget(row.node, row.network, row.image) if row else None

    def last_boots(self) -> dict[str, Boot]:
        """node -> its last boot, for the nodes that booted from dim's boot service."""
        try:
            with self._reading() as conn:
                rows = conn.execute(sa.select(boots_table)).all()
        except SQLAlchemyError:
            if not sa.inspect(self.engine).has_table(BOOTS_TABLE):
                return {}
            raise
        return {r.node: Boot(r.node, r.image, r.version, r.client, r.at) for r in rows}

    def events(self, node: str | None = None, limit: int = 100) -> list[Event]:
        query = sa.select(events_table).order_by(events_table.c.id.desc()).limit(limit)
        if node is not None:
            query = query.where(events_table.c.node == node)
        with self.engine.connect() as conn:
            return [Event(r.at, r.node, r.kind, r.detail) for r in conn.execute(query)]

    # -- changing --------------------------------------------------------------------------

    def set_macs(
        self, cluster: Cluster, changes: Mapping[tuple[str, str], str], *, source: str = "set"
    ) -> int:
        """Record MACs for (node, network) pairs in one transaction; returns how many changed.

        The result is checked as a whole before anything is written: every node and network
        must exist in the layout, and no MAC may belong to two interfaces afterwards. Each MAC
        that a change replaces is recorded as a stale lease, to be released by ``dim apply``.
        """
        for (node_name, network), _mac in changes.items():
            node = cluster.node(node_name)
            if node is None:
                raise StateError(f"unknown node {node_name!r}: it is not in {cluster.source}")
            if node.interface(network) is None:
                raise StateError(f"node {node_name} has no interface on network {network!r}")
        with self._transaction() as conn:
            current = {(r.node, r.network): r.mac for r in conn.execute(sa.select(macs_table))}
            final = dict(current)
            final.update(changes)
            owner: dict[str, tuple[str, str]] = {}
            for key, mac in final.items():
                other = owner.setdefault(mac, key)
                if other != key:
                    first, second = sorted([other, key])
                    raise StateError(
                        f"duplicate MAC address {mac}: {first[0]} ({first[1]}) and "
                        f"{second[0]} ({second[1]})"
                    )
            changed = {k: v for k, v in changes.items() if current.get(k) != v}
            if changed:
                conn.execute(
                    macs_table.delete().where(
                        macs_table.c.node == sa.bindparam("n"),
                        macs_table.c.network == sa.bindparam("net"),
                    ),
                    [{"n": n, "net": net} for n, net in changed],
                )
                conn.execute(
                    macs_table.insert(),
                    [{"node": n, "network": net, "mac": m} for (n, net), m in changed.items()],
                )
                self._record_stale(conn, current, changed)
                self._log(
                    conn,
                    [(n, "mac", f"{net} {m} ({source})") for (n, net), m in changed.items()],
                )
            return len(changed)

    def _record_stale(
        self,
        conn: sa.Connection,
        current: Mapping[tuple[str, str], str],
        changed: Mapping[tuple[str, str], str],
    ) -> None:
        """Remember each replaced MAC; a MAC set back on its interface is no longer stale.

        The row for a replaced MAC is deleted before it is inserted again (with a new time),
        so that replacing the same MAC twice keeps one row.
        """
        replaced = [(n, net, current[n, net]) for n, net in changed if (n, net) in current]
        back = [(n, net, m) for (n, net), m in changed.items()]
        _delete_stale(conn, back + replaced)
        if replaced:
            now = time.time()
            conn.execute(
                stale_leases_table.insert(),
                [{"node": n, "network": net, "mac": m, "at": now} for n, net, m in replaced],
            )

    def forget_stale_leases(self, leases: Iterable[StaleLease]) -> None:
        """Drop stale leases that were released, or that need no release."""
        keys = [(s.node, s.network, s.mac) for s in leases]
        if keys:
            with self._transaction() as conn:
                _delete_stale(conn, keys)

    def set_images(self, cluster: Cluster, nodes: Iterable[str], image: str) -> int:
        """Assign ``image`` to nodes; an image equal to the layout's choice clears the override."""
        if image not in cluster.images:
            raise StateError(f"unknown image {image!r}: it is not in {cluster.source}")
        names = list(nodes)
        for name in names:
            if cluster.node(name) is None:
                raise StateError(f"unknown node {name!r}: it is not in {cluster.source}")
        with self._transaction() as conn:
            current = {r.node: r.image for r in conn.execute(sa.select(images_table))}
            changed = [n for n in names if current.get(n, cluster.node(n).image) != image]
            if changed:
                conn.execute(
                    images_table.delete().where(images_table.c.node == sa.bindparam("n")),
                    [{"n": n} for n in changed],
                )
                overrides = [n for n in changed if cluster.node(n).image != image]
                if overrides:
                    conn.execute(
                        images_table.insert(), [{"node": n, "image": image} for n in overrides]
                    )
                self._log(conn, [(n, "image", image) for n in changed])
            return len(changed)

    def log(self, node: str | None, kind: str, detail: str = "") -> None:
        with self._transaction() as conn:
            self._log(conn, [(node, kind, detail)])

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

    def _log(self, conn: sa.Connection, entries: list[tuple[str | None, str, str]]) -> None:
        now = time.time()
        conn.execute(
            events_table.insert(),
            [{"at": now, "node": n, "kind": k, "detail": d} for n, k, d in entries],
        )

    def _transaction(self):
        return _Transaction(self.engine)

    def _reading(self) -> sa.Connection:
        """A connection for reads only: on SQLite its transactions begin DEFERRED, so that
        readers never wait for the write lock (WAL gives them a consistent snapshot)."""
        return self.engine.connect().execution_options(dim_read_only=True)


def _delete_stale(conn: sa.Connection, keys: list[tuple[str, str, str]]) -> None:
    table = stale_leases_table
    conn.execute(
        table.delete().where(
            table.c.node == sa.bindparam("n"),
            table.c.network == sa.bindparam("net"),
            table.c.mac == sa.bindparam("m"),
        ),
        [{"n": n, "net": net, "m": m} for n, net, m in keys],
    )


class _Transaction:
    """``with`` block around one write transaction; database errors become StateError."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def __enter__(self) -> sa.Connection:
        try:
            self.context = self.engine.begin()
            return self.context.__enter__()
        except SQLAlchemyError as exc:
            raise StateError(f"cannot write the state DB: {exc.orig or exc}") from exc

    def __exit__(self, kind, value, traceback) -> bool:
        try:
            self.context.__exit__(kind, value, traceback)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot write the state DB: {exc.orig or exc}") from exc
        if isinstance(value, SQLAlchemyError):
            raise StateError(f"cannot write the state DB: {value.orig or value}") from value
        return False


def _sqlite_immediate_transactions(engine: sa.Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so that writers queue instead of failing late."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        read_only = conn.get_execution_options().get("dim_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


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
