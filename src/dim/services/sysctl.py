"""The kernel settings a server needs for its nodes: ``/etc/sysctl.d/60-dim-neighbours.conf``.

Rendered only when the neighbour table's defaults are too small for the nodes the server
serves (:mod:`dim.services.limits`); ``dim apply`` installs it like any file and, when it
reloads (``--root /``), loads it with ``sysctl -p FILE``::

    net.ipv4.neigh.default.gc_thresh1 = 8192
    net.ipv4.neigh.default.gc_thresh2 = 16384
    net.ipv4.neigh.default.gc_thresh3 = 32768
"""

from __future__ import annotations

from dim.services import limits
from dim.services.limits import NEIGHBOURS_CONF, THRESHOLD_KEYS
from dim.services.rendering import RenderContext, RenderedFile


def render(context: RenderContext) -> list[RenderedFile]:
    needs = limits.server_needs(context.inventory, context.server_name)
    if needs.neighbour_thresholds == limits.KERNEL_NEIGHBOUR_THRESHOLDS:
        return []
    content = context.render(
        "sysctl-neighbours.conf.j2",
        needs=needs,
        settings=list(zip(THRESHOLD_KEYS, needs.neighbour_thresholds, strict=True)),
    )
    return [RenderedFile(NEIGHBOURS_CONF, content, service="sysctl")]
