"""The kernel arguments that the initramfs's /init reads: its contract with the boot loaders.

Per image, :func:`dim.services.loaders.kernel_args` renders ``dim.server``, ``dim.image``,
``dim.root=SERVER:LIVE``, ``dim.rw=SERVER:<state>/nodes``, ``dim.nfsopts``, ``dim.persist``
and ``dim.volatile``. Per node, the boot service adds :func:`node_arguments`::

    >>> node_arguments("node01", "52:54:00:77:00:01")
    'dim.node=node01 dim.mac=52:54:00:77:00:01'

Without ``dim.node`` /init names the node by the host name DHCP gave; without ``dim.mac`` it
takes the NIC of pxelinux's ``BOOTIF=01-52-54-00-77-00-01`` (``IPAPPEND 2``), else the first
Ethernet interface. ``dim.init=PATH`` replaces /sbin/init; ``dim.shell=N`` opens a shell on
the console before step N of /init, for debugging. See src/dim/boot/init.sh.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def node_arguments(node: str, mac: str | None = None) -> str:
    """``dim.node=NODE`` and, if known, ``dim.mac=MAC`` (lower case, colons)."""
    if not _NAME.fullmatch(node):
        raise ValueError(f"not a node name for a kernel command line: {node!r}")
    args = [f"dim.node={node}"]
    if mac is not None:
        mac = mac.lower().replace("-", ":")
        if not _MAC.fullmatch(mac):
            raise ValueError(f"not a MAC address: {mac!r}")
        args.append(f"dim.mac={mac}")
    return " ".join(args)
