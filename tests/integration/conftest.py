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

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.lab import ceph
from dim.lab.netns import Segment, ip, segment
from tests.conftest import require, require_binary, require_root
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


# The session's Ceph cluster (dim.lab.ceph), shared by the tests of the CephFS store: its
# segment, the cluster's and a ganesha head's address, and two clients' (a node's, and one
# the tests' layouts do not know).
CEPH_SERVER = "10.78.0.1"
CEPH_NODE = "10.78.0.11"
CEPH_STRANGER = "10.78.0.99"
CEPH_RECOVERY_POOL, CEPH_STORE = "dim_nfs", "lab"


@pytest.fixture(scope="session")
def ceph_network() -> Iterator[Segment]:
    """A server namespace for the Ceph cluster and a head, two client namespaces."""
    require_root()
    require_binary("ip", "iproute2")
    with segment(f"{CEPH_SERVER}/24", clients=2) as seg:
        for client, address in zip(seg.clients, (CEPH_NODE, CEPH_STRANGER), strict=True):
            ip("-n", client.namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        yield seg


@pytest.fixture(scope="session")
def ceph_cluster(ceph_network, tmp_path_factory) -> Iterator[ceph.Cluster]:
    """One real Ceph cluster for the session (about 15 s to HEALTH_OK), with client.dim's
    rights on the store's grace database; removed at the end, by process id."""
    require(ceph.available(), f"Ceph is not installed (apt-get install {ceph.PACKAGES})")
    require_binary("ceph-fuse", "ceph-fuse")
    require(os.path.exists("/dev/fuse"), "no /dev/fuse: ceph-fuse cannot mount")
    folder = tmp_path_factory.mktemp("ceph") / "cluster"
    started = ceph.start(folder, host=CEPH_SERVER, namespace=ceph_network.server)
    try:
        ceph.wait_healthy(started)
        ceph.grant_recovery(started, CEPH_RECOVERY_POOL, CEPH_STORE)
        yield started
    finally:
        ceph.remove(started)


@pytest.fixture(scope="session")
def cephfs_mount(ceph_cluster, tmp_path_factory) -> Iterator[Path]:
    """The session's CephFS, mounted once with ceph-fuse as client.dim (as dim's writer on an
    image server mounts it), unmounted by process id at the end."""
    mount = ceph.mount_fuse(ceph_cluster, tmp_path_factory.mktemp("cephfs") / "store")
    try:
        yield Path(mount.path)
    finally:
        ceph.unmount(mount)


@pytest.fixture
def cephfs_folder(cephfs_mount, request) -> Iterator[Path]:
    """A new folder of the test's own on the session's CephFS, removed after the test."""
    folder = cephfs_mount / "tests" / f"{next(_folders)}-{_folder_name(request.node.name)}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_folders = itertools.count(1)


def _folder_name(test: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in test)[:200]
