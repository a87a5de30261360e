"""The limits dim sizes for 2,000 nodes (dim.services.limits), read by the real dnsmasq.

``dhcp-lease-max`` and ``tftp-max`` appear only past dnsmasq's defaults; its own test mode must
accept them, in the DHCP server's file and in the TFTP-only file beside Kea.
"""

from __future__ import annotations

import pytest

from dim.services.apply import validate
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.conftest import require_binary
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
