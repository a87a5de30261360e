"""Boot-loader configuration: iPXE scripts, PXELINUX and GRUB files.

One configuration per image, and per node with a known MAC one symbolic link named after the
MAC that points at its image's configuration. Switching a node to another image changes one
link per loader; the node's own identity comes from DHCP (host name and address)::

    <http_root>/boot.ipxe                        chains to dim/nodes/${mac:hexhyp}.ipxe
    <http_root>/dim/images/<image>.ipxe          kernel, initrd and arguments of an image
    <http_root>/dim/nodes/52-54-00-00-00-01.ipxe -> ../images/<image>.ipxe   (http="none")
    <tftp_root>/pxelinux.cfg/dim-<image>         PXELINUX, legacy BIOS
    <tftp_root>/pxelinux.cfg/01-52-54-00-00-00-01 -> dim-<image>
    <tftp_root>/grub/grub.cfg                    GRUB for UEFI, sources grub/nodes/<mac>.cfg
    <tftp_root>/grub/dim-<image>.cfg
    <tftp_root>/grub/nodes/52:54:00:00:00:01.cfg -> ../dim-<image>.cfg
    <tftp_root>/dim/images/<image>/vmlinuz       -> <state>/boot/<image>/<N>/vmlinuz
    <tftp_root>/dim/images/<image>/initrd.img    -> <state>/boot/<image>/<N>/initrd.img

iPXE and PXELINUX (``lpxelinux.0``) fetch kernel and initrd from ``dim serve`` over HTTP, at
``<boot url>/dim/images/<image>/vmlinuz`` and ``…/initrd.img``. GRUB fetches them over TFTP
from the root it was loaded from: Debian's signed network GRUB, the one Secure Boot accepts,
has no HTTP module built in and may load no other (``(http,SERVER:PORT)/…`` is "disk not
found" there, measured in the lab). So the TFTP root holds a link to each image's current
boot build (as of this ``dim apply``; none while the image has no build). The loader programs
themselves are not rendered: ``dim apply`` copies them from Debian's packages
(:mod:`dim.services.clients`).

The iPXE links per MAC are rendered only for a server whose boot URL is not answered by
``dim serve`` (``http="none"``: the site's own HTTP server at the HTTP root). ``dim serve``
answers ``/dim/nodes/<mac>.ipxe`` from the state DB and never reads them: on its servers (the
default) they would be a third of the files of a full apply, 100,000 links at 100,000 nodes,
for no reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import and_, is_not

from dim.boot.builds import find_build
from dim.layout.model import Cluster, Image, Server
from dim.paths import StatePaths
from dim.services.rendering import RenderContext, RenderedFile
from dim.services.rows import affixed


@dataclass(frozen=True, slots=True)
class BootImage:
    name: str
    kernel: str  # path below the HTTP and TFTP roots
    initrd: str
    args: str


def kernel_args(context: RenderContext, image: Image, server: Server | None = None) -> str:
    """The ``dim.*`` arguments that the initramfs's /init reads, then the image's own.

    ``server`` is the node's own (default: the one rendered for): in a failover set, a peer
    boots a dead server's nodes from that server's service address, which it now holds.
    """
    address = (server or context.server).address
    args = [
        f"dim.server={address}",
        f"dim.image={image.name}",
        f"dim.root={address}:{context.live_path(image.name)}",
        f"dim.rw={address}:{StatePaths(context.state_dir).nodes}",
        f"dim.nfsopts={image.nfs_options}",
    ]
    if image.persistent:
        args.append("dim.persist=" + ",".join(image.persistent))
    if image.volatile:
        args.append("dim.volatile=" + ",".join(image.volatile))
    if image.kernel_args:
        args.append(image.kernel_args)
    return " ".join(args)


def config_stem(cluster: Cluster, server: str, image: str) -> str:
    """The name of ``image``'s loader configurations for the nodes of ``server``: the image's
    own, or in a failover set ``<image>@<server>``, one per server of the set (each names its
    server's service address), so that every server of the set holds the same files."""
    return image if len(cluster.peers(server)) == 1 else f"{image}@{server}"


def render(context: RenderContext) -> list[RenderedFile]:
    server = context.server
    inventory = context.inventory
    cluster = inventory.cluster
    http, tftp = server.http_root, server.tftp_root
    paths = StatePaths(context.state_dir)
    files = [
        RenderedFile(f"{http}/boot.ipxe", context.render("boot.ipxe.j2", boot_url=server.boot_url)),
        RenderedFile(f"{tftp}/pxelinux.cfg/default", context.render("pxelinux-default.j2")),
        RenderedFile(f"{tftp}/grub/grub.cfg", context.render("grub.cfg.j2")),
    ]
    for image in cluster.images.values():
        for name in cluster.peers(server.name):
            owner = cluster.servers[name]
            stem = config_stem(cluster, name, image.name)
            boot = BootImage(
                name=image.name,
                kernel=f"dim/images/{image.name}/vmlinuz",
                initrd=f"dim/images/{image.name}/initrd.img",
                args=kernel_args(context, image, owner),
            )
            files += [
                RenderedFile(
                    f"{http}/dim/images/{stem}.ipxe",
                    context.render("image.ipxe.j2", image=boot, boot_url=owner.boot_url),
                ),
                RenderedFile(
                    f"{tftp}/pxelinux.cfg/dim-{stem}",
                    context.render("pxelinux-image.j2", image=boot, boot_url=owner.boot_url),
                ),
                RenderedFile(
                    f"{tftp}/grub/dim-{stem}.cfg",
                    context.render("grub-image.cfg.j2", image=boot),
                ),
            ]
        build = find_build(paths, image.name)
        if build is not None:  # GRUB's kernel and initrd, over TFTP
            files += [
                RenderedFile(f"{tftp}/dim/images/{image.name}/vmlinuz", link=str(build.kernel)),
                RenderedFile(f"{tftp}/dim/images/{image.name}/initrd.img", link=str(build.initrd)),
            ]
    return files + _all_node_links(context)


def _all_node_links(context: RenderContext) -> list[RenderedFile]:
    """:func:`node_links` of every node with a MAC and an image: 200,000 links at 100,000
    nodes (300,000 with ``http="none"``), built column by column (a comprehension, a ``map``
    or :func:`affixed` per column, each a loop in C or nearly: a Python loop over the nodes,
    with a call and a list per node, cost three times as much), in the same order: each
    node's iPXE (``http="none"`` only), PXELINUX and GRUB link in turn."""
    server, cluster = context.server, context.inventory.cluster
    macs, images = context.inventory.macs, context.inventory.images
    served = context.served()
    names, chosen, owners = served.name, served.image, served.server
    found = list(map(macs.get, zip(names, served.boot_network, strict=True)))
    if images:
        chosen = list(map(images.get, names, chosen))
    if None in found or None in chosen:
        none = repeat(None)
        linked = list(map(and_, map(is_not, found, none), map(is_not, chosen, none)))
        found, chosen, owners = (list(compress(c, linked)) for c in (found, chosen, owners))
    if len(cluster.peers(server.name)) == 1:  # every node this server's: stem = image
        stem_of: list[str] = chosen  # type: ignore[assignment]  # None filtered out above
        stems = set(stem_of)
    else:  # (server, image) -> its config_stem, for the few pairs there are
        pairs = {
            pair: config_stem(cluster, *pair) for pair in set(zip(owners, chosen, strict=True))
        }
        stem_of = list(map(pairs.__getitem__, zip(owners, chosen, strict=True)))
        stems = set(pairs.values())
    ipxe, pxelinux, grub = ({}, {}, {})  # each stem's link target, once per stem
    for stem in stems:
        ipxe[stem], pxelinux[stem], grub[stem] = (
            f"../images/{stem}.ipxe",
            f"dim-{stem}",
            f"../dim-{stem}.cfg",
        )
    # every MAC is a string now: their hyphenated forms by one replace over them all
    hyphens = "\n".join(found).replace(":", "-").split("\n") if found else []  # type: ignore[arg-type]
    if len(hyphens) != len(found):  # a MAC with a newline (never from dim): one by one
        hyphens = [mac.replace(":", "-") for mac in found]  # type: ignore[union-attr]
    none = repeat(None)
    columns = [
        map(
            RenderedFile,
            affixed(f"{server.tftp_root}/pxelinux.cfg/01-", hyphens, ""),
            none,
            map(pxelinux.__getitem__, stem_of),
        ),
        map(
            RenderedFile,
            affixed(f"{server.tftp_root}/grub/nodes/", found, ".cfg"),  # type: ignore[arg-type]
            none,
            map(grub.__getitem__, stem_of),
        ),
    ]
    if needs_ipxe_links(server):
        ipxe_links = map(
            RenderedFile,
            affixed(f"{server.http_root}/dim/nodes/", hyphens, ".ipxe"),
            none,
            map(ipxe.__getitem__, stem_of),
        )
        columns.insert(0, ipxe_links)
    return list(chain.from_iterable(zip(*columns, strict=True)))


def needs_ipxe_links(server: Server) -> bool:
    """Whether ``server``'s HTTP root needs a script per MAC: only when its boot URL is not
    answered by ``dim serve``, which answers ``/dim/nodes/<mac>.ipxe`` itself."""
    return server.http == "none"


def node_links(server: Server, mac: str, image: str) -> list[RenderedFile]:
    """The node's own file for each loader, by its MAC: a link to its image's configuration
    (``image`` is its `config_stem`) in ``server``'s roots.

    ``dim node switch`` points the ones already installed at the new image (PXELINUX and GRUB
    read them over TFTP; iPXE nodes ask ``dim serve``, which reads the state).
    """
    hyphens = mac.replace(":", "-")
    http, tftp = server.http_root, server.tftp_root
    links = [
        RenderedFile(f"{tftp}/pxelinux.cfg/01-{hyphens}", link=f"dim-{image}"),
        RenderedFile(f"{tftp}/grub/nodes/{mac}.cfg", link=f"../dim-{image}.cfg"),
    ]
    if needs_ipxe_links(server):
        links.insert(
            0, RenderedFile(f"{http}/dim/nodes/{hyphens}.ipxe", link=f"../images/{image}.ipxe")
        )
    return links
