"""The validated-layout cache: a node of a cluster.xml parsed in full before, without expanding
every group again.

Expanding 100,000 nodes and checking that their addresses are unique takes seconds; ``dim node
set NODE --mac …`` needs one node. Every command that parses cluster.xml in full (through
:meth:`dim.actions.context.Context.cluster`) leaves ``<state>/layouts/<key>.db``: an SQLite
file (the standard library's ``sqlite3``) of every node's expanded record
(:mod:`dim.layout.records`), keyed by name, and the declarations without the nodes
(:mod:`dim.layout.declarations`). ``key`` digests the exact bytes parsed and the
code that parsed and checked them (the files of :mod:`dim.layout` and :mod:`dim.names`:
name, size, modification time), so a hit means "these exact bytes were validated, all of
them, by this code": an edited cluster.xml or another dim misses, and the next full parse
validates it and leaves its own file (the older ones are removed)::

    data = parser.read(config)
    node = lookup(paths, data, "r100n250")   # MISSING: parse in full; None: no such node
    cluster = declarations(paths, data, str(config))   # None: parse the declarations

Files are written whole under a temporary name and renamed: never changed in place.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

from dim import names
from dim.layout import declarations as declared
from dim.layout import records
from dim.layout.model import Cluster, Node
from dim.paths import StatePaths

FORMAT = b"dim-layout-cache 2"
FOLDER = "layouts"
MISSING = object()  # lookup's answer without a file for these bytes


def key(data: bytes) -> str:
    """The digest of ``data`` and of the code that validates it."""
    digest = hashlib.sha256(FORMAT)
    digest.update(len(data).to_bytes(8, "big") + data)
    layout = Path(records.__file__).parent
    for path in sorted([*layout.glob("*.py"), layout / "cluster.rng", Path(names.__file__)]):
        st = os.stat(path)
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:32]


def lookup(paths: StatePaths, data: bytes, name: str) -> Node | None | object:
    """Node ``name`` of the layout ``data``; None if it has no such node; :data:`MISSING`
    if these bytes have no cache (never parsed in full here, or by another dim)."""
    where = paths.root / FOLDER / f"{key(data)}.db"
    try:
        os.stat(where)
        connection = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT record FROM nodes WHERE name = ?", (name,)).fetchone()
        finally:
            connection.close()
    except (OSError, sqlite3.Error):
        return MISSING
    return records.decode(name, row[0]) if row else None


def declarations(paths: StatePaths, data: bytes, source: str) -> Cluster | None:
    """The layout ``data`` (read from ``source``) without its nodes, as validated in full;
    None if these bytes have no cache."""
    where = paths.root / FOLDER / f"{key(data)}.db"
    try:
        os.stat(where)
        connection = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
        try:
            (text,) = connection.execute("SELECT declarations FROM meta").fetchone()
        finally:
            connection.close()
        cluster = declared.decode(text)
    except (OSError, sqlite3.Error, TypeError, ValueError):
        return None
    # the same bytes may have been parsed from another file: errors name this one
    return replace(cluster, source=source)


def store(paths: StatePaths, data: bytes, cluster: Cluster) -> None:
    """Leave the cache of ``cluster``, parsed in full from ``data``, unless it is there; a
    state folder that does not exist is not made for it (a reading command)."""
    if not paths.root.is_dir():
        return
    folder = paths.root / FOLDER
    where = folder / f"{key(data)}.db"
    if where.exists():
        return
    folder.mkdir(exist_ok=True)
    temporary = folder / f".{where.name}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    try:
        connection = sqlite3.connect(temporary)
        try:
            connection.execute("CREATE TABLE nodes (name TEXT PRIMARY KEY, record TEXT NOT NULL)")
            rows = [(n.name, records.encode(n)) for n in cluster.nodes]
            connection.executemany("INSERT INTO nodes VALUES (?, ?)", rows)
            connection.execute("CREATE TABLE meta (declarations TEXT NOT NULL)")
            connection.execute("INSERT INTO meta VALUES (?)", (declared.encode(cluster),))
            connection.commit()
        finally:
            connection.close()
        os.replace(temporary, where)
    except (OSError, sqlite3.Error, ValueError):
        temporary.unlink(missing_ok=True)
        return  # a cache that cannot be written is a cache miss next time, nothing worse
    for old in folder.glob("*.db"):
        if old != where:
            old.unlink(missing_ok=True)
