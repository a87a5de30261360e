"""NFS exports for the kernel server (``/etc/exports.d/dim.exports``) and nfs-ganesha.

Each image's live tree is exported read-only to exactly the nodes that boot it (their addresses
folded into as few CIDR blocks as possible); each node's replica of its current image is
exported read-write to that node's address alone, root not squashed. With ganesha, ``Pseudo``
equals ``Path`` so that NFSv3 and NFSv4 clients mount the same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, summarize_address_range

from dim.errors import RenderError
from dim.names import ip_to_int
from dim.services.rendering import RenderContext, RenderedFile

KERNEL_EXPORTS = "/etc/exports.d/dim.exports"
GANESHA_CONF = "/etc/ganesha/ganesha.conf"
GANESHA_MAX_EXPORT_ID = 65535
FIRST_NODE_EXPORT_ID = 1000


@dataclass(frozen=True, slots=True)
class ImageExport:
    id: int
    image: str
    path: str
    clients: tuple[str, ...]  # CIDR blocks


@dataclass(frozen=True, slots=True)
class ReplicaExport:
    id: int
    node: str
    image: str
    path: str
    client: str


@dataclass(frozen=True, slots=True)
class NfsContext:
    cluster: str
    server_name: str
    server_address: str
    images: tuple[ImageExport, ...]
    replicas: tuple[ReplicaExport, ...]


def nfs_context(context: RenderContext) -> NfsContext:
    inventory = context.inventory
    users: dict[str, list[str]] = {}
    replicas = []
    for node in context.nodes():
        image = inventory.images.get(node.name, node.image)
        if image is None:
            continue
        users.setdefault(image, []).append(node.boot.ip)
        replicas.append(
            ReplicaExport(
                id=FIRST_NODE_EXPORT_ID + len(replicas),
                node=node.name,
                image=image,
                path=context.replica_path(node.name, image),
                client=node.boot.ip,
            )
        )
    images = tuple(
        ImageExport(
            id=number,
            image=name,
            path=context.live_path(name),
            clients=cidr_blocks(users[name]),
        )
        for number, name in enumerate(inventory.cluster.images, start=1)
        if name in users
    )
    server = context.server
    return NfsContext(
        inventory.cluster.name, server.name, str(server.address), images, tuple(replicas)
    )


def cidr_blocks(addresses: list[str]) -> tuple[str, ...]:
    """The fewest CIDR blocks that hold exactly these addresses.

    >>> cidr_blocks(["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.9"])
    ('10.0.0.4/30', '10.0.0.9/32')
    """
    values = sorted(set(map(ip_to_int, addresses)))
    blocks: list[str] = []
    start = 0
    for position in range(1, len(values) + 1):
        if position == len(values) or values[position] != values[position - 1] + 1:
            first, last = IPv4Address(values[start]), IPv4Address(values[position - 1])
            blocks += [str(net) for net in summarize_address_range(first, last)]
            start = position
    return tuple(blocks)


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
        RenderedFile(GANESHA_CONF, context.render("ganesha.conf.j2", nfs=nfs), service="ganesha")
    ]
