"""The systemd unit that a default reload command of dim restarts and no package installs:
``dim-dns.service`` (``contrib/``), the DNS-only dnsmasq beside a ``dhcp="dnsmasq"`` server.

``dim apply`` on such a server installs ``/etc/dim/dnsmasq-dns.conf`` and runs
``systemctl restart dim-dns``; without the unit that command fails after the files are in
place, and the nodes' names go unserved (the DHCP dnsmasq serves no DNS). ``dim layout
check``, run on the server's machine, says so first::

    >>> missing(cluster, ["img1"], installed)
    ['dim-dns.service is not installed on this machine (server img1, dhcp=dnsmasq): ...']

A stat or a few per local dnsmasq server: ``layout check``'s start-up is measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dim.layout.model import Cluster

DNS_UNIT = "dim-dns.service"
DNS_RELOAD = "systemctl restart dim-dns"  # the reload command of the service "dns"
# where systemd finds a system unit that a file provides (systemd.unit(5)), the admin's first
UNIT_FOLDERS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)


def installed(unit: str) -> bool:
    """Whether a file provides systemd's system unit ``unit`` on this machine."""
    return any(os.path.exists(f"{folder}/{unit}") for folder in UNIT_FOLDERS)


def missing(cluster: Cluster, local: list[str], is_installed: Callable[[str], bool]) -> list[str]:
    """One line per server of this machine (``local``) whose DNS-only dnsmasq ``dim apply``
    would restart with the default command while ``is_installed`` finds no unit for it."""
    lines = []
    for name in local:
        server = cluster.servers[name]
        if server.dhcp != "dnsmasq" or server.reload_command("dns") not in (None, DNS_RELOAD):
            continue
        if not is_installed(DNS_UNIT):
            lines.append(
                f"{DNS_UNIT} is not installed on this machine (server {name}, dhcp=dnsmasq): "
                f"dim apply would fail to restart it ({DNS_RELOAD}) and the nodes' names go "
                f"unserved; install contrib/{DNS_UNIT} and enable it, or declare "
                f'<reload service="dns" command="..."/>'
            )
    return lines
