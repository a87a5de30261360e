"""The limits dim sizes for 2,000 nodes (dim.services.limits), read by the real dnsmasq.

``dhcp-lease-max`` and ``tftp-max`` appear only past dnsmasq's defaults; its own test mode must
accept them, in the DHCP server's file and in the TFTP-only file beside Kea. And the reason
for the first, shown by dnsmasq serving leases in the lab's namespaces.
"""

from __future__ import annotations

import pytest

from dim.errors import LabError
from dim.services.apply import validate
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.conftest import require_binary
from tests.doubles.dhcp import NoLeaseError
from tests.integration.test_dhcp_daemons import MACS, served
from tests.unit.services.test_limits import racks

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("dhcp", "service"), [("dnsmasq", "dnsmasq"), ("kea", "tftp")])
def test_dnsmasq_accepts_the_limits_sized_for_2000_nodes(dhcp, service, tmp_path):
    require_binary("dnsmasq", "dnsmasq")
    files = render_all(RenderContext(racks(dhcp), "srv", tmp_path / "state"))
    text = b"".join(f.content for f in files if f.service == service and f.content)
    assert b"tftp-max=1000" in text
    assert (b"dhcp-lease-max=4000" in text) == (dhcp == "dnsmasq")
    assert validate(files, [service], tmp_path) == ([service], [])


def test_a_reserved_address_takes_one_of_dnsmasqs_leases_so_past_the_limit_a_node_gets_none(
    tmp_path,
):
    """Why dhcp-lease-max grows with the reservations: dnsmasq counts reserved leases too.

    dim's three-node site with the limit lowered from 1,000 to 2: the third node, reserved
    like the others, is offered its address and refused it at its request ("no leases left"),
    over and over, as the 1,001st would be at the default: udhcpc never gets a lease and loops
    until the test's 11 s limit.
    """
    with served("dnsmasq", tmp_path) as site:
        conf = site.root / "etc/dnsmasq.d/dim.conf"
        conf.write_text(conf.read_text() + "dhcp-lease-max=2\n")
        site.serve()
        assert site.ask(MACS["node01"]).ip == "10.77.0.11"
        assert site.ask(MACS["node02"]).ip == "10.77.0.12"
        with pytest.raises((NoLeaseError, LabError)):
            site.ask(MACS["node03"], timeout=1)
    log = (tmp_path / "dnsmasq.log").read_text()
    assert f"DHCPNAK(br0) 10.77.0.13 {MACS['node03']} no leases left" in log
