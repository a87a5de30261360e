"""The validated-layout cache: a node of a cluster.xml parsed in full before, without expanding
every group again.

Expanding 100,000 nodes and checking that their addresses are unique takes seconds; ``dim node
set NODE --mac …`` needs one node. Every command that parses cluster.xml in full (through
:meth:`dim.actions.context.Context.cluster`) leaves ``<state>/layouts/<key>.db``: an SQLite
file (the standard library's ``sqlite3``) of every node's expanded record
(:mod:`dim.layout.records`), keyed by name, and the declarations without the nodes
(:mod:`dim.layout.declarations`). ``key`` digests the exact bytes parsed and the
code that parsed and checked them (the files of :mod:`dim.layout`, :mod:`dim.names` and
:mod:`dim.architectures`:
name, size, modification time), so a hit means "these exact bytes were validated, all of
them, by this code": an edited cluster.xml or another dim misses, and the next full parse
validates it and leaves its own file (the older ones are removed)::

    data = parser.read(config)
    node = lookup(paths, data, "r100n250")   # MISSING: parse in full; None: no such node
    cluster = declarations(paths, data, str(config))   # None: parse the declarations

Files are written whole under a temporary name and renamed: never changed in place.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

from dim import architectures, names
from dim.allocation import bulk_allocation
from dim.layout import declarations as declared
from dim.layout import records
from dim.layout.model import Cluster, Node
from dim.paths import StatePaths
from dim.structs import replace

try:  # hashlib's BLAKE2 without hashlib, whose OpenSSL costs 12 M instructions to load
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b

FORMAT = b"dim-layout-cache 3"  # 3: the declarations in JSON
FOLDER = "layouts"
MISSING = object()  # lookup's answer without a file for these bytes
STALE_SECONDS = 3600  # a temporary file this old is a killed writer's


def key(data: bytes) -> str:
    """The digest of ``data`` and of the code that validates it."""
    digest = blake2b(FORMAT, digest_size=16)
    digest.update(len(data).to_bytes(8, "big") + data)
    layout = Path(records.__file__).parent
    table = Path(architectures.__file__)  # what arch= may name
    checked = [*layout.glob("*.py"), layout / "cluster.rng", Path(names.__file__), table]
    for path in sorted([*checked, table.with_suffix(".toml")]):
        st = os.stat(path)
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def lookup(paths: StatePaths, data: bytes, name: str) -> Node | None | object:
    """Node ``name`` of the layout ``data``; None if it has no such node; :data:`MISSING`
    if these bytes have no cache (never parsed in full here, or by another dim)."""
    found = _read(paths, data, ("SELECT record FROM nodes WHERE name = ?", (name,)))
    if found is None:
        return MISSING
    (rows,) = found
    return records.decode(name, rows[0][0]) if rows else None


def declarations(paths: StatePaths, data: bytes, source: str) -> Cluster | None:
    """The layout ``data`` (read from ``source``) without its nodes, as validated in full;
    None if these bytes have no cache."""
    found = _read(paths, data, ("SELECT declarations FROM meta", ()))
    if found is None:
        return None
    try:
        cluster = declared.decode(found[0][0][0])
    except (IndexError, TypeError, ValueError):
        return None
    # the same bytes may have been parsed from another file: errors name this one
    return replace(cluster, source=source)


def cluster(paths: StatePaths, data: bytes, source: str) -> Cluster | None:
    """The whole layout ``data`` (read from ``source``), its nodes in layout order, as
    validated in full; None if these bytes have no cache. For the commands that read every
    node without changing anything (``dim layout check``, ``dim node list``): at 2,576 blades
    the nodes are decoded in a tenth of the time a parse takes, without lxml, the schema or
    the template compiler."""
    found = _read(
        paths,
        data,
        ("SELECT declarations FROM meta", ()),
        ("SELECT name, record FROM nodes ORDER BY rowid", ()),  # rowid: the order inserted
    )
    if found is None:
        return None
    try:
        declarations = declared.decode(found[0][0][0])
        with bulk_allocation():  # 10,000 objects, no cycle among them: 10 % fewer instructions
            nodes = tuple([records.decode(name, record) for name, record in found[1]])
    except (IndexError, TypeError, ValueError):
        return None
    return replace(declarations, nodes=nodes, by_name={}, source=source)


def _read(paths: StatePaths, data: bytes, *queries: tuple[str, tuple]) -> list[list] | None:
    """Each query's rows in the cache of ``data``; None without a readable cache."""
    where = paths.root / FOLDER / f"{key(data)}.db"
    try:
        os.stat(where)
        connection = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
        try:
            return [connection.execute(sql, values).fetchall() for sql, values in queries]
        finally:
            connection.close()
    except (OSError, sqlite3.Error):
        return None


def store(paths: StatePaths, data: bytes, cluster: Cluster) -> None:
    """Leave the cache of ``cluster``, parsed in full from ``data``, unless it is there; a
    state folder that does not exist is not made for it (a reading command)."""
    if not paths.root.is_dir():
        return
    folder = paths.root / FOLDER
    where = folder / f"{key(data)}.db"
    if where.exists():
        return
    temporary = folder / f".{where.name}.{os.getpid()}"
    try:
        folder.mkdir(exist_ok=True)
        temporary.unlink(missing_ok=True)
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            # One transaction, and no rollback journal: a file that nobody reads until it is
            # renamed needs none (a failure removes it), and each CREATE TABLE committed on
            # its own synced the disk twice: 4 syncs, 40 ms of a cold `layout check` on
            # ext4, where the one COMMIT below syncs once, before the rename publishes it.
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("BEGIN")
            connection.execute("CREATE TABLE nodes (name TEXT PRIMARY KEY, record TEXT NOT NULL)")
            rows = [(n.name, records.encode(n)) for n in cluster.nodes]
            connection.executemany("INSERT INTO nodes VALUES (?, ?)", rows)
            connection.execute("CREATE TABLE meta (declarations TEXT NOT NULL)")
            connection.execute("INSERT INTO meta VALUES (?)", (declared.encode(cluster),))
            connection.execute("COMMIT")
        finally:
            connection.close()
        os.replace(temporary, where)
    except (OSError, sqlite3.Error, ValueError):
        _remove(temporary)
        return  # a cache that cannot be written is a cache miss next time, nothing worse
    now = time.time()
    for path in folder.iterdir():
        if path.suffix == ".db" and path != where:
            _remove(path)  # another layout's, or another dim's
        elif path.name.startswith(".") and now - _modified(path) > STALE_SECONDS:
            _remove(path)  # left by a writer killed half-way (one at work is seconds old)


def _modified(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


def _remove(path: Path) -> None:
    # not ours to remove (another user's state folder): nothing worse than a file left
    with suppress(OSError):
        path.unlink(missing_ok=True)
