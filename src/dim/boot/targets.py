"""The boot targets: what ``dim serve`` needs of the state DB, kept in a file for its outages.

``dim serve`` answers a node's boot script from the state DB (:meth:`StateDB.boot_target`).
So that nodes still boot while the DB cannot be reached (a PostgreSQL server down, the network
to it cut), ``dim apply`` and ``dim node switch`` also keep every MAC the DB records, with its
node, network and image override, in ``<state>/boot-targets.db``; the service answers from
that file meanwhile, as it stood at the last of those commands::

    >>> write(StatePaths(state), inventory.macs, inventory.images, journal=12)
    >>> Snapshot(StatePaths(state).boot_targets).target("52:54:00:00:00:01")
    BootTarget(node='node01', network='boot', image=None)

The file is an SQLite database (the standard library's ``sqlite3``), one row per MAC, keyed
by the MAC and indexed by node, so that a command that changed a few nodes rewrites their rows
alone (:func:`update`), in one transaction that the service never sees half done. It also
holds the last entry of the state DB's change journal that it reflects (:func:`journal`):
the nodes named after it are those to update. Rows are changed in place, never by renaming
another file over this one: SQLite's rollback journal belongs to the file's name, and a hot
journal left by a crash must meet the file it was made for::

    meta:    ("format", "1"), ("journal", "<last entry reflected>")
    targets: mac (key), node (indexed), network, image or NULL
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from dim.paths import StatePaths
from dim.records import BootTarget

FORMAT = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (mac TEXT PRIMARY KEY, node TEXT NOT NULL,
                                    network TEXT NOT NULL, image TEXT);
CREATE INDEX IF NOT EXISTS targets_node ON targets (node);
"""
BUSY_TIMEOUT = 30.0  # seconds a writer waits for the service's reads, and the reverse


def write(
    paths: StatePaths,
    macs: Mapping[tuple[str, str], str],
    images: Mapping[str, str],
    *,
    journal: int,
) -> None:
    """Replace every target by the MACs per (node, network) and image overrides per node,
    as of the change journal's entry ``journal``."""
    wanted = {mac: (node, network, images.get(node)) for (node, network), mac in macs.items()}
    with _writing(paths.boot_targets) as db:
        _replace_differing(db, wanted)
        _set_journal(db, journal)
    # the file of dim before 0.x's SQLite one: nothing reads it any more
    paths.boot_targets.with_suffix(".json").unlink(missing_ok=True)


def update(
    paths: StatePaths,
    nodes: Iterable[str],
    macs: Mapping[tuple[str, str], str],
    images: Mapping[str, str],
    *,
    journal: int,
) -> None:
    """Replace the targets of ``nodes`` alone by their MACs in ``macs`` (and the image
    overrides in ``images``), as of the change journal's entry ``journal``."""
    names = sorted(set(nodes))
    with _writing(paths.boot_targets) as db:
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM targets WHERE node IN ({marks})", chunk)
        wanted = set(names)
        _insert(db, {k: m for k, m in macs.items() if k[0] in wanted}, images)
        _set_journal(db, journal)


def journal(paths: StatePaths) -> int | None:
    """The change journal's last entry that the file reflects; None without a file of ours."""
    try:
        rows = _read_only(paths.boot_targets).execute("SELECT key, value FROM meta").fetchall()
    except (OSError, sqlite3.Error):
        return None
    meta = dict(rows)
    if meta.get("format") != FORMAT or "journal" not in meta:
        return None
    return int(meta["journal"])


class Snapshot:
    """The file, opened again when it is replaced (``dim apply`` writes it while we serve).

    Lookups come from the threads of ``dim serve``'s pool, and an SQLite connection belongs to
    the thread that opened it: each thread keeps its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def target(self, mac: str) -> BootTarget | None:
        """What the file says of ``mac``, None if it does not know it; OSError without a file
        (no ``dim apply`` yet), ValueError if it is not one this dim wrote."""
        query = "SELECT node, network, image FROM targets WHERE mac = ?"
        row = self._query(query, (mac,))
        return BootTarget(*row[0]) if row else None

    def targets(self) -> dict[str, BootTarget]:
        """Every target, by MAC."""
        rows = self._query("SELECT mac, node, network, image FROM targets ORDER BY mac", ())
        return {mac: BootTarget(*fields) for mac, *fields in rows}

    def _query(self, query: str, parameters: tuple) -> list[tuple]:
        st = os.stat(self.path)
        identity = (st.st_dev, st.st_ino)
        local = self._local
        if getattr(local, "identity", None) != identity:
            if getattr(local, "connection", None) is not None:
                local.connection.close()
            local.connection = _read_only(self.path)
            local.identity = identity
        try:
            formats = local.connection.execute("SELECT value FROM meta WHERE key = 'format'")
            if formats.fetchall() != [(FORMAT,)]:
                raise ValueError(f"not a boot targets file of format {FORMAT}")
            return local.connection.execute(query, parameters).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"not a boot targets file ({exc})") from None


def _read_only(path: Path) -> sqlite3.Connection:
    os.stat(path)  # FileNotFoundError rather than SQLite's own error
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)


class _writing:
    """One write transaction on the file, made (or made again, if it is not ours) first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._open()
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def _open(self) -> sqlite3.Connection:
        for attempt in (1, 2):
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
                found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchall()
                if found == [(FORMAT,)]:
                    os.chmod(self.path, 0o644)
                    return db
            except sqlite3.DatabaseError:
                if attempt == 2:
                    raise
            db.close()
            self.path.unlink()  # not a file this dim wrote (an older dim's JSON…): made anew
        raise AssertionError("unreachable")

    def __exit__(self, kind, value, traceback) -> bool:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.db.close()
        return False


def _insert(
    db: sqlite3.Connection, macs: Mapping[tuple[str, str], str], images: Mapping[str, str]
) -> None:
    db.executemany(
        "INSERT INTO targets VALUES (?, ?, ?, ?)",
        [(mac, node, network, images.get(node)) for (node, network), mac in macs.items()],
    )


def _replace_differing(db: sqlite3.Connection, wanted: dict[str, tuple]) -> None:
    """Make the rows ``mac -> (node, network, image)`` exactly ``wanted``, touching only the
    rows that differ: a full apply after a layout edit finds most of 100,000 rows as they
    were, and reading them costs far less than deleting and inserting them all again."""
    rows = db.execute("SELECT mac, node, network, image FROM targets")
    found = {mac: tuple(row) for mac, *row in rows}
    gone = [(mac,) for mac, row in found.items() if wanted.get(mac) != row]
    db.executemany("DELETE FROM targets WHERE mac = ?", gone)
    db.executemany(
        "INSERT INTO targets VALUES (?, ?, ?, ?)",
        [(mac, *row) for mac, row in wanted.items() if found.get(mac) != row],
    )


def _set_journal(db: sqlite3.Connection, entry: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES ('journal', ?)", (str(entry),))
