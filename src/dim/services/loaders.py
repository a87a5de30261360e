"""Boot-loader configuration: iPXE scripts, PXELINUX and GRUB files.

One configuration per image, and per node with a known MAC one symbolic link named after the
MAC that points at its image's configuration. Switching a node to another image changes one
link per loader; the node's own identity comes from DHCP (host name and address)::

    <http_root>/boot.ipxe                        chains to dim/nodes/${mac:hexhyp}.ipxe
    <http_root>/dim/images/<image>.ipxe          kernel, initrd and arguments of an image
    <http_root>/dim/nodes/52-54-00-00-00-01.ipxe -> ../images/<image>.ipxe
    <tftp_root>/pxelinux.cfg/dim-<image>         PXELINUX, legacy BIOS
    <tftp_root>/pxelinux.cfg/01-52-54-00-00-00-01 -> dim-<image>
    <tftp_root>/grub/grub.cfg                    GRUB for UEFI, sources grub/nodes/<mac>.cfg
    <tftp_root>/grub/dim-<image>.cfg
    <tftp_root>/grub/nodes/52:54:00:00:00:01.cfg -> ../dim-<image>.cfg

Kernel and initrd of an image are served by ``dim serve`` only, at
``<boot url>/dim/images/<image>/vmlinuz`` and ``…/initrd.img``: every loader fetches them over
HTTP. iPXE and PXELINUX (``lpxelinux.0``) name the URL; GRUB names the device
``(http,SERVER:PORT)``. The loader programs themselves are not rendered: ``dim apply`` copies
them from Debian's packages (:mod:`dim.services.clients`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dim.layout.model import Image
from dim.paths import StatePaths
from dim.services.rendering import RenderContext, RenderedFile


@dataclass(frozen=True, slots=True)
class BootImage:
    name: str
    kernel: str  # path below the HTTP and TFTP roots
    initrd: str
    args: str


def kernel_args(context: RenderContext, image: Image) -> str:
    """The ``dim.*`` arguments that the initramfs's /init reads, then the image's own."""
    server = context.server
    address = server.address
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


def render(context: RenderContext) -> list[RenderedFile]:
    server = context.server
    inventory = context.inventory
    images = [
        BootImage(
            name=image.name,
            kernel=f"dim/images/{image.name}/vmlinuz",
            initrd=f"dim/images/{image.name}/initrd.img",
            args=kernel_args(context, image),
        )
        for image in inventory.cluster.images.values()
    ]
    http, tftp = server.http_root, server.tftp_root
    http_device = f"(http,{server.address}:{server.http_port})"
    files = [
        RenderedFile(f"{http}/boot.ipxe", context.render("boot.ipxe.j2", boot_url=server.boot_url)),
        RenderedFile(f"{tftp}/pxelinux.cfg/default", context.render("pxelinux-default.j2")),
        RenderedFile(f"{tftp}/grub/grub.cfg", context.render("grub.cfg.j2")),
    ]
    for image in images:
        files += [
            RenderedFile(
                f"{http}/dim/images/{image.name}.ipxe",
                context.render("image.ipxe.j2", image=image, boot_url=server.boot_url),
            ),
            RenderedFile(
                f"{tftp}/pxelinux.cfg/dim-{image.name}",
                context.render("pxelinux-image.j2", image=image, boot_url=server.boot_url),
            ),
            RenderedFile(
                f"{tftp}/grub/dim-{image.name}.cfg",
                context.render("grub-image.cfg.j2", image=image, http_device=http_device),
            ),
        ]
    for node in context.nodes():
        mac = inventory.macs.get((node.name, node.boot.network))
        image = inventory.images.get(node.name, node.image)
        if mac is None or image is None:
            continue
        hyphens = mac.replace(":", "-")
        files += [
            RenderedFile(f"{http}/dim/nodes/{hyphens}.ipxe", link=f"../images/{image}.ipxe"),
            RenderedFile(f"{tftp}/pxelinux.cfg/01-{hyphens}", link=f"dim-{image}"),
            RenderedFile(f"{tftp}/grub/nodes/{mac}.cfg", link=f"../dim-{image}.cfg"),
        ]
    return files
