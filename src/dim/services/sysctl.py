"""The kernel settings a server needs for its nodes: ``/etc/sysctl.d/60-dim-server.conf``.

Rendered only when a kernel default is too small for the nodes the server serves
(:mod:`dim.services.limits`): the neighbour table's thresholds, and the default receive
buffer a DHCP burst needs (``rmem_default``: the DHCP servers size no buffer of their own).
``dim apply`` installs it like any file and, when it reloads (``--root /``), loads it with
``sysctl -p FILE``::

    net.ipv4.neigh.default.gc_thresh1 = 8192
    net.ipv4.neigh.default.gc_thresh2 = 16384
    net.ipv4.neigh.default.gc_thresh3 = 32768
    net.core.rmem_default = 8388608
"""

from __future__ import annotations

from dim.services import limits
from dim.services.limits import RECEIVE_BUFFER_KEY, SYSCTL_CONF, THRESHOLD_KEYS
from dim.services.rendering import RenderContext, RenderedFile


def render(context: RenderContext) -> list[RenderedFile]:
    needs = limits.server_needs(context.inventory, context.server_name)
    neighbours = []
    if needs.neighbour_thresholds != limits.KERNEL_NEIGHBOUR_THRESHOLDS:
        neighbours = list(zip(THRESHOLD_KEYS, needs.neighbour_thresholds, strict=True))
    buffers = [(RECEIVE_BUFFER_KEY, needs.receive_buffer)] if needs.receive_buffer else []
    if not neighbours and not buffers:
        return []
    content = context.render(
        "sysctl-server.conf.j2", needs=needs, neighbours=neighbours, buffers=buffers
    )
    return [RenderedFile(SYSCTL_CONF, content, service="sysctl")]
