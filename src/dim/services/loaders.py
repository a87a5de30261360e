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

The links per MAC are rendered only where a node can read them (:func:`link_rule`, one rule
for the full apply, the incremental one and ``dim node switch``). The iPXE ones only for a
server whose boot URL is not answered by ``dim serve`` (``http="none"``: the site's own HTTP
server at the HTTP root): ``dim serve`` answers ``/dim/nodes/<mac>.ipxe`` from the state DB
and never reads them. The PXELINUX and GRUB ones only when a server of the failover set sends
that loader (GRUB: also behind shim, to the nodes declared secure-boot), or when dim cannot
know what is sent (``dhcp="none"``, a DHCP or iPXE template overridden, a site's own loader).
With the default loaders (iPXE for every kind of client) and no secure-boot node, no file per
MAC at all, where 200,000 links at 100,000 nodes would be nearly all of a full apply's files,
for no reader::

    >>> rule = link_rule(cluster, "srv", None)  # bios-loader="lpxelinux.0", nothing else set
    >>> rule.ipxe, sorted(rule.loaders(False)), sorted(rule.loaders(True))
    (False, ['pxelinux'], ['grub', 'pxelinux'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import and_, is_not
from pathlib import Path

from dim.boot.builds import find_build
from dim.layout.columns import ServedColumns
from dim.layout.model import Cluster, Image, Server
from dim.paths import StatePaths
from dim.services.clients import PER_MAC_CONFIG, SECURE_BOOT, kinds_of, loader_for
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
    """:func:`node_links` of every node with a MAC and an image, as :func:`link_rule` says
    (none with the default loaders; 200,000 links at 100,000 nodes for PXELINUX and GRUB),
    built column by column (a comprehension, a ``map`` or :func:`affixed` per column, each a
    loop in C or nearly: a Python loop over the nodes, with a call and a list per node, cost
    three times as much), in the same order: each node's iPXE, PXELINUX and GRUB link."""
    server = context.server
    rule = link_rule(context.inventory.cluster, server.name, context.template_dir)
    served = context.served()
    if not rule.ipxe and not rule.every_node and True not in served.secure_boot:
        return []  # the set sends iPXE alone, dim serve answers it, no node uses shim
    found, stem_of, secure = _linked_nodes(context, served)
    stems = set(stem_of)
    # every MAC is a string now: their hyphenated forms by one replace over them all
    hyphens = "\n".join(found).replace(":", "-").split("\n") if found else []
    if len(hyphens) != len(found):  # a MAC with a newline (never from dim): one by one
        hyphens = [mac.replace(":", "-") for mac in found]
    every = rule.every_node | ({IPXE} if rule.ipxe else set())
    columns: list[Iterable[RenderedFile | None]] = []
    some = False  # a column of secure-boot nodes' links, None for the others
    for loader, prefix, keys, suffix, link in (
        (IPXE, f"{server.http_root}/dim/nodes/", hyphens, ".ipxe", "../images/{}.ipxe"),
        (PXELINUX, f"{server.tftp_root}/pxelinux.cfg/01-", hyphens, "", "dim-{}"),
        (GRUB, f"{server.tftp_root}/grub/nodes/", found, ".cfg", "../dim-{}.cfg"),
    ):
        if loader in every:
            columns.append(_links(prefix, keys, suffix, link, stem_of, stems))
        elif loader in rule.secure_boot and True in secure:
            theirs = (list(compress(keys, secure)), list(compress(stem_of, secure)))
            columns.append(
                _where(secure, _links(prefix, theirs[0], suffix, link, theirs[1], stems))
            )
            some = True
    files = chain.from_iterable(zip(*columns, strict=True))
    return list(filter(None, files) if some else files)


def _linked_nodes(
    context: RenderContext, served: ServedColumns
) -> tuple[list[str], list[str], list[bool]]:
    """Of the nodes ``served`` that have a MAC and an image, in layout order: the MACs, the
    config stems and whether each is declared secure-boot."""
    cluster, server = context.inventory.cluster, context.server_name
    macs, images = context.inventory.macs, context.inventory.images
    names, chosen, owners = served.name, served.image, served.server
    secure = served.secure_boot
    found = list(map(macs.get, zip(names, served.boot_network, strict=True)))
    if images:
        chosen = list(map(images.get, names, chosen))
    if None in found or None in chosen:
        none = repeat(None)
        linked = list(map(and_, map(is_not, found, none), map(is_not, chosen, none)))
        found, chosen, owners, secure = (
            list(compress(c, linked)) for c in (found, chosen, owners, secure)
        )
    if len(cluster.peers(server)) == 1:  # every node this server's: stem = image
        return found, chosen, secure  # type: ignore[return-value]  # None filtered out above
    # (server, image) -> its config_stem, for the few pairs there are
    pairs = {pair: config_stem(cluster, *pair) for pair in set(zip(owners, chosen, strict=True))}
    return found, list(map(pairs.__getitem__, zip(owners, chosen, strict=True))), secure  # type: ignore[return-value]


def _links(
    prefix: str, keys: list[str], suffix: str, link: str, stem_of: list[str], stems: set[str]
) -> Iterable[RenderedFile]:
    """A link ``prefix + key + suffix`` to ``link`` formatted with the stem, for each key and
    its stem (each stem's target formatted once)."""
    targets = {stem: link.format(stem) for stem in stems}
    paths = affixed(prefix, keys, suffix)
    return map(RenderedFile, paths, repeat(None), map(targets.__getitem__, stem_of))


def _where(chosen: list[bool], files: Iterable[RenderedFile]) -> list[RenderedFile | None]:
    """``files``, one for each true value of ``chosen``, in its places; None in the others."""
    each = iter(files)
    return [next(each) if wanted else None for wanted in chosen]


IPXE, PXELINUX, GRUB = "ipxe", "pxelinux", "grub"
#: Both loaders that read a file per MAC in the TFTP root: what a node may read when dim
#: cannot know which loader it is sent.
TFTP_LOADERS = frozenset({PXELINUX, GRUB})
#: The templates that say which loader a node is sent, and what iPXE loads next: an override
#: of any of them may send a node PXELINUX or GRUB whatever the servers' attributes say.
CHOOSING_TEMPLATES = (
    "dnsmasq.conf.j2",
    "dnsmasq.hosts.j2",
    "kea-dhcp4.conf.j2",
    "dhcpd.conf.j2",
    "dhcpd-boot.j2",
    "boot.ipxe.j2",
    "image.ipxe.j2",
)


@dataclass(frozen=True, slots=True)
class LinkRule:
    """Which links per MAC a server renders for the nodes of its failover set (each of them
    renders the same): iPXE's in the HTTP root for every node or none, and in the TFTP root
    the loaders (:data:`PXELINUX`, :data:`GRUB`) whose file a node can read."""

    ipxe: bool
    every_node: frozenset[str]
    secure_boot: frozenset[str]  # for a node declared secure-boot: every_node's and more

    def loaders(self, secure_boot: bool) -> frozenset[str]:
        """The TFTP loaders whose link per MAC a node (declared ``secure_boot`` or not) gets."""
        return self.secure_boot if secure_boot else self.every_node


def link_rule(cluster: Cluster, server: str, template_dir: Path | None) -> LinkRule:
    """The links per MAC that ``server`` renders: those a loader that its failover set's DHCP
    sends can read (:data:`dim.services.clients.PER_MAC_CONFIG`).

    A server of a set renders the files of every node of the set, and a node may be answered
    by any of them (each sends the node its own server's loaders): so the loaders of every
    server of the set count. Every node gets a loader's link if a server of the set sends
    that loader to some kind of client; a node declared secure-boot also gets those of the
    servers' Secure Boot loaders (shim: GRUB's). Where dim cannot know what is sent, every
    node gets both: a server of the set with ``dhcp="none"`` (the site's own DHCP server), a
    template of :data:`CHOOSING_TEMPLATES` overridden in ``template_dir``, a site's own
    loader (a name :data:`~dim.services.clients.PER_MAC_CONFIG` does not know).

    >>> rule = link_rule(cluster, "srv", None)  # the defaults: iPXE, shim, dim serve
    >>> rule.ipxe, sorted(rule.loaders(False)), sorted(rule.loaders(True))
    (False, [], ['grub'])
    """
    servers = [cluster.servers[name] for name in cluster.peers(server)]
    ipxe = needs_ipxe_links(cluster.servers[server])
    if any(s.dhcp == "none" for s in servers) or _overridden(template_dir):
        return LinkRule(ipxe, TFTP_LOADERS, TFTP_LOADERS)
    every_node = _reading(loader_for(s, kind) for s in servers for kind in kinds_of(cluster))
    secure_boot = _reading(loader_for(s, SECURE_BOOT.name) for s in servers)
    return LinkRule(ipxe, every_node, every_node | secure_boot)


def _reading(sent: Iterable[str]) -> frozenset[str]:
    """The TFTP loaders whose links per MAC the boot files ``sent`` read."""
    read: set[str | None] = set()
    for loader in sent:
        name = loader.rpartition("/")[2]  # efi/snponly.efi is snponly.efi too
        if name not in PER_MAC_CONFIG:
            return TFTP_LOADERS  # the site's own loader: it may read either
        read.add(PER_MAC_CONFIG[name])
    read.discard(None)
    return frozenset(read)  # type: ignore[arg-type]  # None discarded


def _overridden(template_dir: Path | None) -> bool:
    return template_dir is not None and any(
        (template_dir / name).exists() for name in CHOOSING_TEMPLATES
    )


def needs_ipxe_links(server: Server) -> bool:
    """Whether ``server``'s HTTP root needs a script per MAC: only when its boot URL is not
    answered by ``dim serve``, which answers ``/dim/nodes/<mac>.ipxe`` itself."""
    return server.http == "none"


def node_links(
    server: Server, rule: LinkRule, mac: str, image: str, *, secure_boot: bool = False
) -> list[RenderedFile]:
    """The node's own file for each loader that ``rule`` (``server``'s :func:`link_rule`)
    gives it, by its MAC: a link to its image's configuration (``image`` is its
    `config_stem`) in ``server``'s roots; ``secure_boot``: the node is declared so.

    ``dim node switch`` points the ones already installed at the new image (PXELINUX and GRUB
    read them over TFTP; iPXE nodes ask ``dim serve``, which reads the state).
    """
    hyphens = mac.replace(":", "-")
    http, tftp = server.http_root, server.tftp_root
    loaders = rule.loaders(secure_boot)
    links = []
    if rule.ipxe:
        links.append(
            RenderedFile(f"{http}/dim/nodes/{hyphens}.ipxe", link=f"../images/{image}.ipxe")
        )
    if PXELINUX in loaders:
        links.append(RenderedFile(f"{tftp}/pxelinux.cfg/01-{hyphens}", link=f"dim-{image}"))
    if GRUB in loaders:
        links.append(RenderedFile(f"{tftp}/grub/nodes/{mac}.cfg", link=f"../dim-{image}.cfg"))
    return links
