"""Each node's state, from what dim can know without an agent on the nodes.

Three observations, each optional, are folded into one state per node:

- its last network boot, as ``dim serve`` recorded it (the state DB);
- whether it holds a live NFS session right now (:mod:`dim.services.sessions`: the NFS
  servers' connections on port 2049 from the node's addresses that carried data lately),
  read on this machine and recorded in the state DB by every image server's ``dim serve``
  (:func:`live_sessions`);
- its power state, from its BMC, when asked (``power=True``: a fan-out, seconds);

and, beside the state, the live version of its image that it sees and the paths its replica
kept against the image's changes (conflicts: :func:`dim.images.replicas.record_conflicts`).

::

    report = statuses(ctx, "@rack1", sessions=live_sessions(ctx, pid_files))
    report.counts                   # {'up': 40, 'booting': 2, 'down': 1, 'off': 0, 'unknown': 5}
    report.nodes[0].record()        # {'name': 'node01', 'state': 'up', 'session': '10.0.0.2', …}

The states, first match wins:

========== ===========================================================================
off        the BMC says the node is off
up         it holds an NFS session
unknown    no NFS server's sessions could be read: up cannot be told from down
booting    no session, and it fetched its boot script less than :data:`BOOTING` ago
down       no session, and it booted from dim before (it was up): it stopped, hangs, or
           lost its server
unknown    no session and no boot seen (never booted from dim serve, or booted by TFTP)
========== ===========================================================================
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

from dim.actions.context import Context
from dim.inventory import node_record, select
from dim.layout.model import Inventory, Node
from dim.records import Boot, NfsSession, NfsSessions
from dim.services import sessions as nfs
from dim.structs import struct

STATES = ("up", "booting", "down", "off", "unknown")
BOOTING = 300.0  # seconds after its boot script within which a node without a session boots


@struct(frozen=True, slots=True)
class NodeStatus:
    name: str
    group: str
    state: str  # one of STATES
    image: str | None  # the image the node boots next (None: the layout gives it none)
    booted: Mapping | None  # its last boot: at (ISO 8601), image, version, client; None
    session: str | None  # the server address its NFS session is connected to
    session_server: str | None  # the image server that saw it (None: seen on this machine)
    power: str | None  # "on", "off", None (not asked, or the BMC did not answer)
    power_error: str | None
    live_version: int | None  # the version of its image that it sees now (booted image's)
    conflicts: tuple[str, ...] = ()  # paths its replica kept against the image's changes

    def record(self) -> dict:
        """One object of ``--json`` output and of the REST API."""
        return {
            "name": self.name,
            "group": self.group,
            "state": self.state,
            "image": self.image,
            "booted": dict(self.booted) if self.booted else None,
            "session": self.session,
            "session_server": self.session_server,
            "power": self.power,
            "power_error": self.power_error,
            "live_version": self.live_version,
            "conflicts": ["/" + p for p in self.conflicts],
        }


@struct(frozen=True, slots=True)
class StatusReport:
    nodes: tuple[NodeStatus, ...]
    sessions_known: bool  # an NFS server's sessions were read
    at: float
    sessions_from: tuple[str, ...] = ()  # the image servers whose recorded sessions counted

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(n.state for n in self.nodes)
        return {state: found.get(state, 0) for state in STATES}

    def record(self) -> dict:
        return {
            "at": self.at,
            "sessions_known": self.sessions_known,
            "sessions_from": list(self.sessions_from),
            "counts": self.counts,
            "nodes": [n.record() for n in self.nodes],
        }


def statuses(
    ctx: Context,
    nodeset: str | None = None,
    exclude: str | None = None,
    *,
    sessions: NfsSessions | None = None,
    power: Mapping[str, tuple[str | None, str | None]] | None = None,
    now: float | None = None,
) -> StatusReport:
    """The state of each node of ``nodeset`` (all) but ``exclude``.

    ``sessions``: the live NFS sessions (:func:`live_sessions`), None when no server's
    sessions could be read. ``power``: node -> (state, error) from
    :func:`power_states`, None when not asked."""
    now = time.time() if now is None else now
    inventory = ctx.inventory(cached=True)
    boots = ctx.last_boots()
    chosen = select(inventory.cluster, nodeset, exclude, empty_ok=True)
    seen = {_seen_image(inventory, n, boots.get(n.name)) for n in chosen}
    live = _live_versions(ctx, seen)
    conflicts = _conflicts(ctx, seen)
    nodes = tuple(
        _status(inventory, node, boots.get(node.name), sessions, power, live, conflicts, now)
        for node in chosen
    )
    sources = tuple(sorted(sessions.servers)) if sessions is not None else ()
    return StatusReport(nodes, sessions is not None, now, sources)


def live_sessions(
    ctx: Context, pid_files: Iterable[str], now: float | None = None
) -> NfsSessions | None:
    """The live NFS sessions: those the servers of ``pid_files`` on this machine hold now,
    and those every image server's ``dim serve`` recorded in the state DB in the last
    :data:`dim.services.sessions.FRESH` seconds (which name their server); None when
    neither could be read."""
    now = time.time() if now is None else now
    here = nfs.clients(pid_files)
    recorded = ctx.nfs_sessions(now - nfs.FRESH)
    if here is None and not recorded.servers:
        return None
    found = {client: NfsSession(address) for client, address in (here or {}).items()}
    found.update(recorded.clients)  # the same connection, with its server's name
    return NfsSessions(found, recorded.servers)


def power_states(ctx: Context, nodeset: str | None, exclude: str | None = None) -> dict:
    """node -> (power state or None, error or None), asked of every node's BMC at once."""
    from dim.actions import power as remote

    chosen = remote.select_nodes(ctx, nodeset or "@all", exclude)
    run = remote.status(chosen)
    return {
        r.node: (r.state, None) if r.ok else (None, r.message or r.outcome) for r in run.results
    }


def state_of(
    boot: Boot | None, session: str | None, sessions_known: bool, power: str | None, now: float
) -> str:
    """The rule of the module's table."""
    if power == "off":
        return "off"
    if session is not None:
        return "up"
    if not sessions_known:
        return "unknown"
    if boot is not None and now - boot.at < BOOTING:
        return "booting"
    return "down" if boot is not None else "unknown"


def _status(
    inventory: Inventory,
    node: Node,
    boot: Boot | None,
    sessions: NfsSessions | None,
    power: Mapping[str, tuple[str | None, str | None]] | None,
    live: Mapping[str | None, int | None],
    conflicts: Mapping[str | None, Mapping[str, list[str]]],
    now: float,
) -> NodeStatus:
    session = None
    if sessions is not None and sessions.clients:
        found = sessions.clients
        addresses = [i.ip for i in node.interfaces] + ([boot.client] if boot else [])
        session = next((found[a] for a in addresses if a in found), None)
    state, error = (power or {}).get(node.name, (None, None))
    record = node_record(inventory, node, boot)
    image = _seen_image(inventory, node, boot)
    return NodeStatus(
        name=node.name,
        group=node.group,
        state=state_of(boot, session and session.address, sessions is not None, state, now),
        image=record["image"],
        booted=record["last_boot"],
        session=session and session.address,
        session_server=session and session.server,
        power=state,
        power_error=error,
        live_version=live.get(image),
        conflicts=tuple(conflicts.get(image, {}).get(node.name, ())),
    )


def _seen_image(inventory: Inventory, node: Node, boot: Boot | None) -> str | None:
    """The image a running node sees: the one it booted, else the one it will boot."""
    return boot.image if boot is not None else inventory.image(node)


def _conflicts(ctx: Context, images: set[str | None]) -> dict:
    """image -> node -> the paths its replica kept against the image's changes."""
    from dim.images.replicas import read_conflicts

    store = ctx.store()
    return {image: read_conflicts(store, image) for image in images if image}


def _live_versions(ctx: Context, images: set[str | None]) -> dict[str | None, int | None]:
    """Each image's live version; a node without an image sees none."""
    store = ctx.store()
    return {image: store.live_version(image) if image else None for image in images}
