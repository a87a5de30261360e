"""Recording what was observed: MACs per node interface and image assignments, checked as a
whole, with their stale leases, events and change-journal entries, in the caller's transaction.

The logic is written once, in SQL with named parameters (``:node``), over a small
:class:`Executor`: :mod:`dim.state` runs it through SQLAlchemy on any state DB, and
:func:`dim.records.sqlite_writer` through the standard library's ``sqlite3`` on an SQLite one
that is up to date, so that ``dim node set`` does not import SQLAlchemy (a quarter of a second)
to change one row::

    writer = sqlite_writer(path)                 # None: the DB needs SQLAlchemy (to migrate)
    with writer as executor:
        changed = set_macs(executor, cluster, {("node01", "boot"): "52:54:00:00:00:01"})
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Protocol

from dim.errors import StateError
from dim.layout.model import Cluster
from dim.records import (
    EVENTS_TABLE,
    MACS_TABLE,
    NODE_CHANGES_TABLE,
    NODE_IMAGES_TABLE,
    STALE_LEASES_TABLE,
)

MANY = 5000  # changes above which one read of every MAC is faster than indexed lookups


class Executor(Protocol):
    """A write transaction that runs SQL with ``:name`` parameters."""

    def rows(self, sql: str, parameters: Mapping[str, object]) -> list[tuple]: ...

    def run(self, sql: str, parameters: list[dict[str, object]]) -> None: ...


def set_macs(
    db: Executor,
    cluster: Cluster,
    changes: Mapping[tuple[str, str], str],
    source: str = "set",
    actor: str | None = None,
) -> int:
    """Record MACs for (node, network) pairs; returns how many changed.

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
    current, holders = _macs_concerned(db, changes)
    owner: dict[str, tuple[str, str]] = {}
    staying = [(key, mac) for key, mac in holders if key not in changes]
    for key, mac in [*staying, *changes.items()]:
        other = owner.setdefault(mac, key)
        if other != key:
            first, second = sorted([other, key])
            raise StateError(
                f"duplicate MAC address {mac}: {first[0]} ({first[1]}) and "
                f"{second[0]} ({second[1]})"
            )
    changed = {k: v for k, v in changes.items() if current.get(k) != v}
    if changed:
        db.run(
            f"DELETE FROM {MACS_TABLE} WHERE node = :n AND network = :net",
            [{"n": n, "net": net} for n, net in changed],
        )
        db.run(
            f"INSERT INTO {MACS_TABLE} (node, network, mac) VALUES (:n, :net, :m)",
            [{"n": n, "net": net, "m": m} for (n, net), m in changed.items()],
        )
        _record_stale(db, current, changed)
        entries = [(n, "mac", f"{net} {m} ({source})") for (n, net), m in changed.items()]
        log(db, entries, actor)
        _journal(db, {n for n, _ in changed})
    return len(changed)


def set_images(
    db: Executor, cluster: Cluster, nodes: Iterable[str], image: str, actor: str | None = None
) -> int:
    """Assign ``image`` to nodes; an image equal to the layout's choice clears the override."""
    if image not in cluster.images:
        raise StateError(f"unknown image {image!r}: it is not in {cluster.source}")
    names = list(nodes)
    for name in names:
        if cluster.node(name) is None:
            raise StateError(f"unknown node {name!r}: it is not in {cluster.source}")
    if len(names) > MANY:
        current = dict(db.rows(f"SELECT node, image FROM {NODE_IMAGES_TABLE}", {}))
    else:
        query = f"SELECT node, image FROM {NODE_IMAGES_TABLE} WHERE node = :n"
        current = dict(row for n in names for row in db.rows(query, {"n": n}))
    changed = [n for n in names if current.get(n, cluster.node(n).image) != image]
    if changed:
        db.run(f"DELETE FROM {NODE_IMAGES_TABLE} WHERE node = :n", [{"n": n} for n in changed])
        overrides = [n for n in changed if cluster.node(n).image != image]
        if overrides:
            db.run(
                f"INSERT INTO {NODE_IMAGES_TABLE} (node, image) VALUES (:n, :i)",
                [{"n": n, "i": image} for n in overrides],
            )
        log(db, [(n, "image", image) for n in changed], actor)
        _journal(db, set(changed))
    return len(changed)


def log(db: Executor, entries: list[tuple[str | None, str, str]], actor: str | None = None) -> None:
    """Events, all at this moment, made by ``actor`` (None: the command line)."""
    now = time.time()
    db.run(
        f"INSERT INTO {EVENTS_TABLE} (at, node, kind, detail, actor) VALUES (:at, :n, :k, :d, :a)",
        [{"at": now, "n": n, "k": k, "d": d, "a": actor} for n, k, d in entries],
    )


def delete_stale(db: Executor, keys: list[tuple[str, str, str]]) -> None:
    if keys:
        db.run(
            f"DELETE FROM {STALE_LEASES_TABLE} WHERE node = :n AND network = :net AND mac = :m",
            [{"n": n, "net": net, "m": m} for n, net, m in keys],
        )


def _macs_concerned(
    db: Executor, changes: Mapping[tuple[str, str], str]
) -> tuple[dict[tuple[str, str], str], list[tuple[tuple[str, str], str]]]:
    """The MACs now on the interfaces ``changes`` names, and the interfaces that now hold one
    of the MACs it sets: what a change can collide with, found through the table's indexes
    (the primary key, the MAC's unique index) rather than by reading every MAC."""
    if len(changes) > MANY:  # an import of a whole cluster: one read of the table is faster
        rows = db.rows(f"SELECT node, network, mac FROM {MACS_TABLE}", {})
        everything = {(n, net): m for n, net, m in rows}
        current = {k: everything[k] for k in changes if k in everything}
        macs = set(changes.values())
        return current, [(k, m) for k, m in everything.items() if m in macs]
    current = {}
    query = f"SELECT mac FROM {MACS_TABLE} WHERE node = :n AND network = :net"
    for n, net in changes:
        for (mac,) in db.rows(query, {"n": n, "net": net}):
            current[n, net] = mac
    holders = []
    query = f"SELECT node, network, mac FROM {MACS_TABLE} WHERE mac = :m"
    for mac in sorted(set(changes.values())):
        holders += [((n, net), m) for n, net, m in db.rows(query, {"m": mac})]
    return current, holders


def _record_stale(
    db: Executor, current: Mapping[tuple[str, str], str], changed: Mapping[tuple[str, str], str]
) -> None:
    """Remember each replaced MAC; a MAC set back on its interface is no longer stale.

    The row for a replaced MAC is deleted before it is inserted again (with a new time),
    so that replacing the same MAC twice keeps one row.
    """
    replaced = [(n, net, current[n, net]) for n, net in changed if (n, net) in current]
    back = [(n, net, m) for (n, net), m in changed.items()]
    delete_stale(db, back + replaced)
    if replaced:
        now = time.time()
        db.run(
            f"INSERT INTO {STALE_LEASES_TABLE} (node, network, mac, at) VALUES (:n, :net, :m, :at)",
            [{"n": n, "net": net, "m": m, "at": now} for n, net, m in replaced],
        )


def _journal(db: Executor, nodes: set[str]) -> None:
    """Append the nodes whose MAC or image changed to the change journal."""
    query = f"INSERT INTO {NODE_CHANGES_TABLE} (node) VALUES (:n)"
    db.run(query, [{"n": n} for n in sorted(nodes)])
