"""Fixtures for tests that start real daemons in network namespaces they create (root only).

::

    def test_dnsmasq_answers(lab, tmp_path):      # a fresh bridge 10.77.0.1/24, one client
        require_dhcp_server("dnsmasq")
        start_dhcp_server(lab, "dnsmasq", tmp_path / "dnsmasq.conf", tmp_path)
        client = lab.clients[0]
        assert dhcp_request(client.namespace, client.iface, MAC).ip == "10.77.0.11"

Whatever a test starts through ``lab`` is stopped by its process id, and the namespaces are
deleted, when the test ends, failed or not. Without root or a program the test skips, and fails
under ``CI=true`` (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dim.lab.netns import Segment, segment
from tests.conftest import require_binary, require_root
from tests.doubles.dhcp import DHCP_PROGRAMS

PACKAGES = {"dnsmasq": "dnsmasq", "kea": "kea-dhcp4-server", "isc": "isc-dhcp-server"}


def require_dhcp_server(flavour: str) -> None:
    """Skip (fail under CI) unless the program of this DHCP flavour is installed."""
    require_binary(DHCP_PROGRAMS[flavour], PACKAGES[flavour])


def require_lab() -> None:
    """Skip (fail under CI) unless namespaces can be made and udhcpc run: root, ip, busybox."""
    require_root()
    require_binary("ip", "iproute2")
    require_binary("busybox", "busybox-static")


@pytest.fixture
def lab() -> Iterator[Segment]:
    """A server namespace with bridge br0 at 10.77.0.1/24 and one client namespace on it."""
    require_lab()
    with segment("10.77.0.1/24", clients=1) as seg:
        yield seg
