"""What the last ``dim apply`` rendered from: so that the next one re-renders only what changed.

Every file dim renders is a function of the layout (cluster.xml, template overrides, dim's own
code), of a little of the state folder (images stored, their boot builds) and, per node, of
what the state DB observed: the boot MAC and the image assigned. After each apply that wrote,
``<state>/applied/<digest>.db`` (one per server and root; an SQLite file read and written with
the standard library) records the first kind as one fingerprint, and per node its place in the
layout, its expanded record and the observed values rendered::

    meta:  format, fingerprint, files rendered, secure boot 1|0, root stamp, journal entry
    nodes: name (key), position, served 1|0, boot network, MAC or NULL, image or NULL, record

The root stamp is the identity of the root's journal of installed files
(:mod:`dim.services.manifest`) as that apply left it: a root emptied, replaced or written by
another dim since does not match, and neither does its record. The journal entry is the last
entry of the state DB's change journal (:data:`dim.state.node_changes_table`) that the apply
had read before it read the MACs and images it rendered: the next apply with the same
fingerprint and stamp reads only the journal's later entries, looks up those nodes alone
(:meth:`Applied.entries`, by the primary key) and compares their observed values with the
recorded ones; only those that differ are rebuilt from their records (no expansion of
cluster.xml) and rendered again (:mod:`dim.services.incremental`), and only their rows are
updated, in one transaction. A different fingerprint, a file that is missing or of another
format, or a journal that ends before the recorded entry (another state DB) means a full
apply, which writes a new file and renames it over the old one::

    previous = Applied.read(paths.applied(server, str(root)), fingerprint, stamp)
    if previous is not None:
        entries = previous.entries(ctx.changes(previous.journal).nodes)

Values are those the layout parser checked (names, addresses, host names, BMC addresses):
none holds a tab or the unit separator (U+001F) that joins a node's interfaces.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dim.layout.model import Node
from dim.layout.records import decode, encode

FORMAT = "dim-applied 2"


def fingerprint(parts: Iterable[object]) -> str:
    """One digest of every input that is not a node's own (see the module's docstring)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def code_fingerprint() -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file of the dim package: a dim that is not
    the one of the last apply (an upgrade, a developer's change) renders everything again."""
    package = Path(__file__).resolve().parent.parent
    found = []
    for folder, folders, files in os.walk(package):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            found.append(
                (os.path.join(folder, name)[len(str(package)) :], st.st_size, st.st_mtime_ns)
            )
    return found


@dataclass(slots=True)
class NodeEntry:
    """One node as the last apply saw it."""

    position: int  # in the layout's order
    served: bool  # by the server applied: DHCP and boot loader files name it
    network: str  # its boot network
    mac: str | None  # on its boot network
    image: str | None  # assigned in the state DB (None: the layout's)
    record: str  # the expanded node, encoded (:func:`encode`)

    def node(self, name: str) -> Node:
        """The expanded node, as recorded."""
        return decode(name, self.record)


_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE nodes (name TEXT PRIMARY KEY, position INTEGER NOT NULL, served INTEGER NOT NULL,
                    network TEXT NOT NULL, mac TEXT, image TEXT, record TEXT NOT NULL);
"""
# made once the rows are in: one sort, not 100,000 insertions into a second B-tree
_INDEX = "CREATE INDEX hosts ON nodes (network, position) WHERE served = 1 AND mac IS NOT NULL"
# The file is filled under a temporary name that nothing reads, so SQLite keeps no rollback
# journal and does not sync while it fills it; it is synced once before its rename
# (write()). A crash meanwhile leaves a temporary that is never read: no record, a full apply.
_FILLING = "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
_COLUMNS = "name, position, served, network, mac, image, record"


@dataclass(slots=True)
class Applied:
    """The inputs of one server's last apply into one root, as a file open for lookups."""

    fingerprint: str
    files: int  # how many files (and links) that apply rendered
    secure_boot: bool  # whether a node the server boots is declared secure-boot
    stamp: str  # the root's journal as the apply left it (root_stamp)
    journal: int  # the last entry of the state DB's change journal read before rendering
    connection: sqlite3.Connection

    @classmethod
    def read(cls, path: Path, fingerprint: str, stamp: str) -> Applied | None:
        """The record at ``path`` if it was made with ``fingerprint`` into a root whose journal
        is as it left it (``stamp``), else None."""
        if not path.is_file():
            return None
        try:
            connection = sqlite3.connect(path, isolation_level=None)
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        except sqlite3.Error:
            return None
        if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
            connection.close()
            return None
        if meta.get("stamp") != stamp:
            connection.close()
            return None
        files, secure, journal = int(meta["files"]), meta["secure_boot"] == "1", meta["journal"]
        return cls(fingerprint, files, secure, stamp, int(journal), connection)

    def entries(self, names: Iterable[str]) -> dict[str, NodeEntry]:
        """The recorded nodes among ``names``, in layout order (others are not in the layout)."""
        wanted, found = sorted(names), []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = f"SELECT {_COLUMNS} FROM nodes WHERE name IN ({','.join('?' * len(chunk))})"
            found += self.connection.execute(query, chunk).fetchall()
        found.sort(key=lambda row: row[1])
        return {row[0]: NodeEntry(row[1], row[2] == 1, *row[3:]) for row in found}

    def networks_with_hosts(self, networks: Iterable[str], leaving: set[str]) -> set[str]:
        """Those of ``networks`` that have a served node with a MAC, ``leaving`` nodes out."""
        found = set()
        for network in networks:
            query = (
                "SELECT name FROM nodes WHERE network = ? AND served = 1 AND mac IS NOT NULL "
                "ORDER BY position LIMIT ?"
            )
            names = self.connection.execute(query, (network, len(leaving) + 1)).fetchall()
            if any(name not in leaving for (name,) in names):
                found.add(network)
        return found

    def next_host(self, networks: list[str], entry: NodeEntry, leaving: set[str]) -> str | None:
        """The MAC of the first served node with a MAC after ``entry`` in dnsmasq's hosts
        file's order (boot networks in ``networks``' order, nodes in layout order within
        each), ``leaving`` nodes out; None if it is the last."""
        after = networks[networks.index(entry.network) + 1 :] if entry.network in networks else []
        for network, position in [(entry.network, entry.position), *((n, -1) for n in after)]:
            query = (
                "SELECT name, mac FROM nodes WHERE network = ? AND served = 1 "
                "AND mac IS NOT NULL AND position > ? ORDER BY position"
            )
            for name, mac in self.connection.execute(query, (network, position)):
                if name not in leaving:
                    return mac
        return None

    def update(self, entries: dict[str, NodeEntry], files: int, stamp: str, journal: int) -> None:
        """Record the observed values the nodes ``entries`` were rendered with, and the
        apply's counts, stamp and journal entry, in one transaction."""
        self.files, self.stamp, self.journal = files, stamp, journal
        with _transaction(self.connection) as db:
            db.executemany(
                "UPDATE nodes SET mac = ?, image = ? WHERE name = ?",
                [(e.mac, e.image, name) for name, e in entries.items()],
            )
            db.executemany("UPDATE meta SET value = ? WHERE key = ?", self._meta()[2:])

    def _meta(self) -> list[tuple[str, str]]:
        return [
            (FORMAT, "format"),
            (self.fingerprint, "fingerprint"),
            (str(self.files), "files"),
            ("1" if self.secure_boot else "0", "secure_boot"),
            (self.stamp, "stamp"),
            (str(self.journal), "journal"),
        ]

    def close(self) -> None:
        self.connection.close()


class _transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind, value, traceback) -> bool:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")
        return False


def root_stamp(journal: str) -> str:
    """The identity of a root's journal of installed files: inode, size, modification time."""
    try:
        st = os.stat(journal)
    except OSError:
        return "none"
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def write(
    path: Path,
    nodes: Iterable[Node],
    served: set[str],
    macs: Mapping[tuple[str, str], str],
    images: Mapping[str, str],
    head: tuple[str, int, str, int],
) -> None:
    """Record an apply that rendered ``nodes`` with these observed values; ``head`` is its
    fingerprint, files rendered, root stamp and journal entry. A new file is filled, then
    renamed over the old one: a reader sees one or the other."""
    fingerprint, files, stamp, journal = head
    rows, secure_boot = [], False
    for position, node in enumerate(nodes):
        secure_boot = secure_boot or (node.secure_boot and node.server in served)
        boot = node.interfaces[0].network if node.interfaces else ""
        rows.append(
            (
                node.name,
                position,
                1 if node.server in served else 0,
                boot,
                macs.get((node.name, boot)),
                images.get(node.name),
                encode(node),
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.executescript(_FILLING + _TABLES)
            with _transaction(connection) as db:
                db.executemany(f"INSERT INTO nodes ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)", rows)
                db.execute(_INDEX)
                record = Applied(fingerprint, files, secure_boot, stamp, journal, connection)
                db.executemany("INSERT INTO meta (value, key) VALUES (?, ?)", record._meta())
        finally:
            connection.close()
        _sync(temporary)  # what synchronous = OFF left to the file system
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
