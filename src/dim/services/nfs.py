"""NFS exports for the kernel server (``/etc/exports.d/dim.exports``) and nfs-ganesha.

The exports do not depend on which image a node boots, so that ``dim node switch`` and a reset
are all a switch takes, with no change to the NFS server:

- the image store (``<state>/images``, every image's live tree below it) is one export,
  read-only to every node of the server (their addresses folded into as few CIDR blocks as
  possible): any node may be switched to any image, and an image imported after the last
  ``dim apply`` is exported already; the initramfs mounts ``<image>/live`` below it;
- each node's folder of replicas (``<state>/nodes/<node>``, one replica per image it has
  booted) is exported read-write to that node's address alone, root not squashed; the
  initramfs mounts ``<node>/<image>`` below it.

With ganesha, ``Pseudo`` equals ``Path`` so that NFSv3 and NFSv4 clients mount the same path.

ganesha 4.3 (Debian 12's) reads its configuration in time quadratic in the exports: its lexer
looks every word up in a linked list of all the distinct words read so far, by ``strcmp``
(``save_token``, src/config_parsing/analyse.c; a tree since ganesha 6.1). Each node's export
line is therefore written with as few words, and as few new ones, as ganesha accepts: no
``Access_Type = None`` (EXPORT_DEFAULTS says it), and its path bare rather than quoted where
ganesha's path syntax allows (a quoted word is never found in that list, so ``Pseudo`` would
add the path a second time): 0.58 of the CPU time to load 2,500 exports, 0.33 at 5,000,
0.49 at 10,000 (docs/benchmarks.md, "ganesha with one export per node").

The template's ``MDCACHE { Dir_Chunk = 0; }`` keeps ganesha from caching directory entries, at
a price measured in a boot storm: about a fifth of ganesha's CPU (0.24 against 0.30 CPU s per
node's Debian boot reads, 500 nodes). With ganesha's default (128) a file replaced by a rename,
as images change, answered the next open with NFS4ERR_STALE, and a new name was listed about
a second late (tests/integration/test_nfs_ganesha.py; docs/benchmarks.md, "ganesha's cost per
booting node").
"""

from __future__ import annotations

import re
from _socket import AF_INET, inet_pton  # not socket.py: see dim.names
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, summarize_address_range
from itertools import repeat
from operator import sub

from dim.errors import RenderError
from dim.services import limits
from dim.services.rendering import RenderContext, RenderedFile
from dim.services.rows import Rows, affixed

KERNEL_EXPORTS = "/etc/exports.d/dim.exports"
GANESHA_CONF = "/etc/ganesha/ganesha.conf"
GANESHA_EPOCH = "/etc/ganesha/dim-epoch"  # a failover set's server only (_epoch_files)
GANESHA_DEBIAN = "/etc/ganesha/nfs-ganesha"  # Debian's service reads EPOCH_EXEC there
GANESHA_GRACE = "/etc/ganesha/dim-grace"  # a rados_cluster head's only (_start_files)
# a failover set's CephFS head only (_start_files): lifts the fence a peer put on it
GANESHA_UNFENCE = "/etc/ganesha/dim-unfence"
# runs dim-unfence and dim-grace, those of them rendered, before ganesha starts
GANESHA_GRACE_UNIT = "/etc/systemd/system/nfs-ganesha.service.d/dim-grace.conf"
GANESHA_MAX_EXPORT_ID = 65535
FIRST_NODE_EXPORT_ID = 1000


# A path ganesha's lexer reads as one word without quotes: LONGPATH in its conf_lex.l, two
# parts at least (one alone, "/12", might be read as a CIDR suffix).
_BARE_PATH = re.compile(r"(/[A-Za-z0-9._-]+){2,}")


def ganesha_path(path: str) -> str:
    """``path`` as a word of ganesha.conf: bare where ganesha's path syntax allows, else
    double-quoted with ``\\`` and ``"`` escaped.

    >>> ganesha_path("/var/lib/dim/nodes/n001"), ganesha_path("/srv/my nodes")
    ('/var/lib/dim/nodes/n001', '"/srv/my nodes"')
    >>> ganesha_path("/srv")
    '"/srv"'

    """
    if _BARE_PATH.fullmatch(path):
        return path
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class ImageExport:
    id: int
    path: str  # the image store
    clients: tuple[str, ...]  # CIDR blocks
    conf_path: str  # the path as a word of ganesha.conf (ganesha_path)
    fs_path: str  # ganesha's Path: conf_path, or on a CephFS store the CephFS path's word


# Not frozen: one per node, when Jinja2 iterates them (dim.services.rows).
@dataclass(slots=True)
class ReplicaExport:
    id: int
    node: str
    path: str  # the node's folder of replicas
    client: str
    conf_path: str  # the path as a word of ganesha.conf (ganesha_path)
    fs_path: str  # as ImageExport's


@dataclass(frozen=True, slots=True)
class NfsContext:
    cluster: str
    server_name: str
    server_address: str
    images: tuple[ImageExport, ...]
    replicas: Sequence[ReplicaExport]  # Rows, in dim.services.nfs.nfs_context
    # A failover set's server: every address (its peers' arrive when they die) and the set's
    # one NFSv4 identity, which a client compares before it reclaims its state on a peer.
    bind_address: str = ""
    identity: str | None = None
    lease: int = 15
    max_connections: int | None = None  # RPC_Max_Connections (dim.services.limits)
    # the FSAL block's settings: the server's own file system, or a CephFS store's
    fsal: str = "Name = VFS;"
    ceph: CephHead | None = None


@dataclass(frozen=True, slots=True)
class CephHead:
    """What a ganesha head of a CephFS store (dim.layout.model.Store) adds to its
    configuration: the Ceph configuration its libcephfs and librados read (and through it the
    user's keyring), and, with ``rados_cluster`` recovery, where the shared grace database is
    and this head's name in it."""

    ceph_conf: str
    user: str
    recovery: str  # rados_cluster | none
    pool: str
    namespace: str  # the store's name: one grace database per store
    nodeid: str  # the server's name
    grace: int  # Grace_Period, seconds


LEASE = 15
# A server of a failover set that gave up an address (a failed check) keeps serving; its
# ganesha keeps the state of the clients that moved away until their lease runs out, and a
# client that comes back sooner (preemption) waits for that: measured, a 16 s pause with a
# 15 s lease (docs/ha.md).
FAILOVER_LEASE = 5
# A CephFS head's grace period with rados_cluster recovery, in leases: long enough for every
# client of a restarted head to renew once and reclaim, and ganesha lifts it earlier when
# every client it knew has reclaimed. Meanwhile every head of the store refuses new state.
GRACE_LEASES = 3


def nfs_context(context: RenderContext) -> NfsContext:
    inventory = context.inventory
    served = context.served()
    folder = context.node_path("")  # <state>/nodes/, each node's name after it
    names = served.name
    addresses = served.boot_ip
    paths = affixed(folder, names, "")
    first = FIRST_NODE_EXPORT_ID
    server = context.server
    in_set = server.failover is not None
    store = inventory.cluster.stores[server.store] if server.store else None
    conf_paths = _ganesha_paths(folder, names, paths)
    images_path = context.images_path()
    fs_paths, fs_images = conf_paths, ganesha_path(images_path)
    ceph, fsal, lease = None, "Name = VFS;", FAILOVER_LEASE if in_set else LEASE
    if store is not None:
        state = str(context.state_dir)
        fs_folder = store.path(folder, state)
        if fs_folder != folder:
            fs_paths = _ganesha_paths(fs_folder, names, affixed(fs_folder, names, ""))
            fs_images = ganesha_path(store.path(images_path, state))
        fsal = f"Name = CEPH; Filesystem = {store.cephfs}; User_Id = {store.user};"
        ceph = CephHead(
            ganesha_path(store.ceph_conf),
            store.user,
            store.recovery,
            store.recovery_pool,
            store.name,
            server.name,
            GRACE_LEASES * lease,
        )
    # One row per node, kept as columns (dim.services.rows says why)
    replicas = Rows(
        ReplicaExport,
        range(first, first + len(names)),
        names,
        paths,
        addresses,
        conf_paths,
        fs_paths,
    )
    clients = cidr_blocks(addresses)
    images = (
        (ImageExport(1, images_path, clients, ganesha_path(images_path), fs_images),)
        if clients
        else ()
    )
    return NfsContext(
        inventory.cluster.name,
        server.name,
        str(server.address),
        images,
        replicas,
        bind_address="0.0.0.0" if in_set else str(server.address),
        identity=f"dim.{inventory.cluster.name}.{server.failover}" if in_set else None,
        lease=lease,
        max_connections=limits.ganesha_connections(len(names)),
        fsal=fsal,
        ceph=ceph,
    )


def _ganesha_paths(folder: str, names: list[str], paths: list[str]) -> list[str]:
    """:func:`ganesha_path` of each of ``paths`` (``folder`` and a name each): the paths
    themselves when the folder is bare and every name holds only what a bare path's part may
    (one pass in C over the names, not a regular expression per path)."""
    bare = ganesha_path(folder + "x") == folder + "x" and all(names)
    if bare and not "".join(names).encode("utf-8", "surrogatepass").translate(None, _BARE_PART):
        return paths
    return list(map(ganesha_path, paths))


_BARE_PART = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"


def cidr_blocks(addresses: list[str]) -> tuple[str, ...]:
    """The fewest CIDR blocks that hold exactly these addresses.

    >>> cidr_blocks(["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.9"])
    ('10.0.0.4/30', '10.0.0.9/32')
    """
    # dim.names.ip_to_int, in C: no Python call per address
    values = sorted(
        set(map(int.from_bytes, map(inet_pton, repeat(AF_INET), addresses), repeat("big")))
    )
    blocks: list[str] = []
    for first, last in _runs(values):
        blocks += map(str, summarize_address_range(IPv4Address(first), IPv4Address(last)))
    return tuple(blocks)


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """The first and last value of each run of consecutive integers in sorted ``values``,
    found in C: one byte per neighbouring pair, 1 where the next value follows, and a
    search for the zeros (the ends of runs), few where the addresses are consecutive.

    >>> _runs([4, 5, 6, 7, 9, 11, 12])
    [(4, 7), (9, 9), (11, 12)]
    """
    if not values:
        return []
    follows = bytes(map((1).__eq__, map(sub, values[1:], values)))
    runs, start, at = [], 0, follows.find(0)
    while at >= 0:
        runs.append((values[start], values[at]))
        start, at = at + 1, follows.find(0, at + 1)
    runs.append((values[start], values[-1]))
    return runs


def render(context: RenderContext) -> list[RenderedFile]:
    flavour = context.server.nfs
    if flavour == "none":
        return []
    nfs = nfs_context(context)
    if flavour == "kernel":
        return [
            RenderedFile(KERNEL_EXPORTS, context.render("exports.j2", nfs=nfs), service="kernel")
        ]
    if nfs.replicas and nfs.replicas[-1].id > GANESHA_MAX_EXPORT_ID:
        raise RenderError(
            f"server {nfs.server_name} would need {len(nfs.replicas)} nfs-ganesha exports; "
            f"ganesha numbers exports up to {GANESHA_MAX_EXPORT_ID}",
            hint='split the nodes across several servers, or use nfs="kernel" for this server',
        )
    return [
        RenderedFile(GANESHA_CONF, context.render("ganesha.conf.j2", nfs=nfs), service="ganesha"),
        *_epoch_files(context),
        *_start_files(context, nfs),
    ]


def _start_files(context: RenderContext, nfs: NfsContext) -> list[RenderedFile]:
    """What a head of a CephFS store runs before its ganesha starts, and the drop-in that
    runs it: in a failover set, a script that lifts the fence a peer may have put on this
    server (dim.services.vrrp); with rados_cluster recovery, a script that makes the server
    a member of the store's grace database (ganesha exits on a database that does not list
    it)."""
    if nfs.ceph is None:
        return []
    files = []
    if context.server.failover is not None:
        script = context.render(
            "ganesha-unfence.j2", ceph=nfs.ceph, address=str(context.server.own_address)
        )
        files.append(RenderedFile(GANESHA_UNFENCE, script, mode=0o755, service="ganesha"))
    if nfs.ceph.recovery == "rados_cluster":
        script = context.render("ganesha-grace.j2", ceph=nfs.ceph)
        files.append(RenderedFile(GANESHA_GRACE, script, mode=0o755, service="ganesha"))
    if not files:
        return []
    scripts = [f.path for f in files]
    unit = context.render("ganesha-grace-unit.j2", scripts=scripts)
    return [*files, RenderedFile(GANESHA_GRACE_UNIT, unit, service="ganesha")]


def _epoch_files(context: RenderContext) -> list[RenderedFile]:
    """For a server of a failover set: a script that prints ganesha's server epoch, unique
    among the set's servers (its rank in the low 4 bits: a set has 16 servers at most), and
    Debian's /etc/ganesha/nfs-ganesha naming it. ganesha's default epoch, its start time in
    seconds, is the same for two servers started in the same second: their client and
    session ids collide, and a node that fails over to the peer finds its session id taken
    by another node's there (CI saw node01 stop: ganesha logged "Not a replay request")."""
    server = context.server
    if server.failover is None:
        return []
    members = context.inventory.cluster.failover[server.failover].servers
    script = context.render(
        "ganesha-epoch.j2", server=server.name, set=server.failover, rank=members.index(server.name)
    )
    return [
        RenderedFile(GANESHA_EPOCH, script, mode=0o755, service="ganesha"),
        RenderedFile(
            GANESHA_DEBIAN,
            context.render("ganesha-debian.j2", script=GANESHA_EPOCH),
            service="ganesha",
        ),
    ]
