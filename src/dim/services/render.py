"""Rendering: the inventory in, the files every service needs out, nothing written.

    >>> files = render_all(RenderContext(inventory, "img1", Path("/var/lib/dim")))
    >>> [f.path for f in files if f.service == "kea"]
    ['/etc/kea/kea-dhcp4.conf']

:func:`render_all` runs every renderer: :mod:`~dim.services.dhcp`, :mod:`~dim.services.nfs`,
:mod:`~dim.services.hosts` and :mod:`~dim.services.loaders` (boot loaders). Each is a pure
function ``(RenderContext) -> list[RenderedFile]`` whose types live in
:mod:`dim.services.rendering`, which the renderers import and this module does too: imports go
one way, from here to the renderers to their shared types.
"""

from __future__ import annotations

from dim.allocation import bulk_allocation
from dim.errors import RenderError
from dim.services import dhcp, hosts, loaders, nfs, sysctl, vrrp
from dim.services.rendering import RenderContext, RenderedFile


def render_all(context: RenderContext) -> list[RenderedFile]:
    """Every file dim installs on ``context.server``: DHCP, NFS, hosts, boot loaders, VRRP and
    the kernel's neighbour table when the nodes outgrow its defaults."""
    if context.server_name not in context.inventory.cluster.servers:
        raise RenderError(f"unknown server {context.server_name!r}")
    files: list[RenderedFile] = []
    with bulk_allocation():
        renderers = (
            dhcp.render,
            nfs.render,
            hosts.render,
            loaders.render,
            vrrp.render,
            sysctl.render,
        )
        for renderer in renderers:
            files.extend(renderer(context))
    return files
