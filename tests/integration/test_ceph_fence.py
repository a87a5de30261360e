"""A head of a CephFS store fences a dead peer, and lifts the fence on itself (issue 15).

A dead head's CephFS sessions keep the capabilities of the files its nodes had open until the
MDS gives up on them (60 s for a ceph-fuse client, 300 s for ganesha's): another head that
opens those files for the same nodes waits as long. dim's keepalived runs the rendered
``/etc/keepalived/dim-fence`` when a server takes a peer's address (dim.services.vrrp); the
store's Ceph cluster blocklists every client of the peer's own address. Here, on the session's
real Ceph cluster:

- the "dead peer" is a ceph-fuse client at the stranger's address (10.78.0.99) that wrote to a
  file without closing it, then froze (SIGSTOP: it answers no revocation) and lost its link,
  as a dead box (the fence probes the peer's address first: one that answers is alive);
- the survivor's open of that file (dim's writer, at the cluster's address) waits, until the
  rendered fence script, run with the peer's own address, blocklists it: then it goes through
  at once, long before the peer's session would have timed out;
- the rendered ``dim-unfence`` of the peer lifts the entry, as the peer's ganesha start does.

Needs root and Debian's ceph packages (scripts/bootstrap installs them): skips without them,
fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.errors import LabError
from dim.lab import ceph
from dim.lab.netns import Segment, run
from dim.lab.processes import sleep_until
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.nfs import GANESHA_UNFENCE
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from dim.services.vrrp import FENCE
from tests.integration.conftest import CEPH_SERVER, CEPH_STRANGER

pytestmark = pytest.mark.integration

# srv1, the peer that dies, reaches Ceph from the stranger's address; srv2 from the cluster's
LAYOUT = """<?xml version="1.0"?>
<cluster name="fence">
  <network name="boot" subnet="10.78.0.0/24"/>
  <server name="srv1" address="10.78.0.51" own-address="{peer}" interface="eth0"
          dhcp="none" nfs="ganesha"/>
  <server name="srv2" address="10.78.0.52" own-address="{survivor}" interface="eth0"
          dhcp="none" nfs="ganesha"/>
  <failover name="pair" servers="srv[1-2]"/>
  <store name="fence" cephfs="{fs}" servers="srv[1-2]" root="/" ceph-conf="{conf}"/>
  <image name="alpha"/>
</cluster>
"""
WAIT = 6.0  # how long the survivor's open is seen to wait before the fence


def rendered(cluster: ceph.Cluster, server: str) -> dict[str, str]:
    xml = LAYOUT.format(peer=CEPH_STRANGER, survivor=CEPH_SERVER, fs=ceph.FS, conf=cluster.conf)
    inventory = Inventory(parse(xml.encode(), "fence.xml"), {}, {})
    files = render_all(RenderContext(inventory, server, Path("/var/lib/dim")))
    return {f.path: f.content.decode() for f in files if f.content is not None}


def link(network: Segment, *, up: bool) -> None:
    """The stranger's link, down as a dead box's, or up again."""
    namespace = network.clients[1].namespace
    state = "up" if up else "down"
    subprocess.run(["ip", "-n", namespace, "link", "set", "eth0", state], check=True)


def blocklist(cluster: ceph.Cluster) -> str:
    return ceph.ceph(cluster, "osd", "blocklist", "ls")


@pytest.fixture
def dead_peer(
    ceph_network: Segment, ceph_cluster, cephfs_mount, cephfs_folder, tmp_path
) -> Iterator[Path]:
    """A ceph-fuse client at the stranger's address that appended to ``held`` in
    ``cephfs_folder`` and keeps it open, frozen; thawed, stopped and unmounted afterwards."""
    (cephfs_folder / "held").write_text("")
    where = tmp_path / "peer"
    mount = ceph.mount_fuse(ceph_cluster, where, namespace=ceph_network.clients[1].namespace)
    held = where / cephfs_folder.relative_to(cephfs_mount) / "held"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "f = open(sys.argv[1], 'a'); f.write('from the peer\\n'); f.flush()\n"
            "print('open', flush=True); time.sleep(600)",
            str(held),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "open\n"
        os.kill(mount.process.pid, signal.SIGSTOP)
        link(ceph_network, up=False)
        yield cephfs_folder / "held"
    finally:
        link(ceph_network, up=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(mount.process.pid, signal.SIGCONT)
        writer.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            writer.wait(timeout=10)
        ceph.unmount(mount)
        with contextlib.suppress(LabError):
            ceph.ceph(ceph_cluster, "osd", "blocklist", "rm", CEPH_STRANGER)


def test_the_survivor_fences_a_dead_peer_and_its_open_file_is_free_at_once(
    ceph_network: Segment, ceph_cluster: ceph.Cluster, dead_peer: Path, tmp_path: Path
) -> None:
    # the survivor opens the file the dead peer holds: it waits for the peer's capabilities
    opener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "f = open(sys.argv[1], 'a'); f.write('from the survivor\\n'); f.flush()\n"
            "os.fsync(f.fileno())",
            str(dead_peer),
        ]
    )
    try:
        assert opener.poll() is None
        time.sleep(WAIT)
        assert opener.poll() is None, "the open did not wait: nothing held the file"

        fence = tmp_path / "dim-fence"
        fence.write_text(rendered(ceph_cluster, "srv2")[FENCE])
        fenced_at = time.monotonic()
        said = run(ceph_network.server, ["sh", str(fence), CEPH_STRANGER], timeout=120.0)
        assert said.returncode == 0, said.stderr
        assert f"{CEPH_STRANGER}:0/0" in blocklist(ceph_cluster)
        assert sleep_until(lambda: opener.poll() is not None, 30.0, step=0.1)
        freed = time.monotonic() - fenced_at
    finally:
        opener.kill()
    assert opener.returncode == 0
    # well before the frozen peer's session times out (60 s) and the MDS evicts it itself
    assert freed < 20.0, f"the file was free {freed:.1f} s after the fence"
    assert dead_peer.read_text().endswith("from the survivor\n")
    print(f"survivor's open: waited {WAIT:.0f} s unfenced, through {freed:.1f} s after the fence")

    # the peer, back, lifts its own fence before its ganesha starts
    link(ceph_network, up=True)
    unfence = tmp_path / "dim-unfence"
    unfence.write_text(rendered(ceph_cluster, "srv1")[GANESHA_UNFENCE])
    said = run(ceph_network.clients[1].namespace, ["sh", str(unfence)], timeout=120.0)
    assert said.returncode == 0, said.stderr
    assert f"{CEPH_STRANGER}:0/0" not in blocklist(ceph_cluster)
    # and again, with nothing to lift: no error
    said = run(ceph_network.clients[1].namespace, ["sh", str(unfence)], timeout=120.0)
    assert said.returncode == 0, said.stderr
