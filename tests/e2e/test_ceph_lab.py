"""A lab whose state folder is a CephFS, every server an active ganesha head over it (issue 15).

One lab of its own (``dim lab up --servers 2 --store ceph``, namespace ``dimceph<pid>``): the
lab's Ceph cluster (dim.lab.store) in a namespace of its own on the bridge, its CephFS
mounted with ceph-fuse on the state folder before the images are imported, srv1 and srv2
each running ganesha on dim's rendered configuration (FSAL_CEPH, graceless: dim's default for
a failover set of heads; tests/e2e/test_ceph_failover.py runs rados_cluster too).
The tiny busybox image is enough: its root and its read-write replica are both NFS exports,
and nothing else can serve them but the heads' libcephfs. In order:

a. the state folder is the ceph-fuse mount, and the images dim imported are on it;
b. node01 boots through srv1 and node02 through srv2, each to its marker, root and replica
   mounted from its own head; each head is a client of the CephFS (the MDS's sessions);
c. a change of the image reaches the running nodes within seconds, made with ``dim image
   sync`` (both nodes) and with ``dim image exec`` (whose overlay lives off the store on a
   FUSE store: overlayfs refuses ceph-fuse as an upper layer, dim.images.sources);
d. what a node writes in its replica lands in the CephFS, read through the ceph-fuse mount.

    CI=true .venv/bin/pytest tests/e2e/test_ceph_lab.py
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from dim.lab import ceph, cluster
from dim.lab import store as lab_store
from dim.lab.processes import sleep_until
from tests.e2e.conftest import Lab, lab_up, require_ceph_lab

pytestmark = pytest.mark.e2e

NODES = {"node01": ("srv1", "10.77.0.1"), "node02": ("srv2", "10.77.0.2")}
WITHIN = 5.0  # seconds from the end of `dim image exec` to a node seeing the change


@pytest.fixture(scope="module")
def ceph_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_ceph_lab()
    folder = tmp_path_factory.mktemp("ceph-lab")
    options = {"nodes": 2, "servers": 2, "store": "ceph", "bmcs": False}
    started = time.monotonic()
    with lab_up(folder, f"dimceph{os.getpid()}", **options) as lab:
        lab.say(f"lab up in {time.monotonic() - started:.1f} s")
        yield lab


def fuse_mounts() -> dict[str, str]:
    """Mount point: file system type, of the host's FUSE mounts."""
    with open("/proc/self/mounts") as mounts:
        fields = [line.split() for line in mounts]
    return {f[1]: f[2] for f in fields if f[2].startswith("fuse")}


def test_a_the_state_folder_is_the_cephfs_and_holds_the_imported_images(ceph_lab: Lab) -> None:
    assert fuse_mounts().get(str(ceph_lab.state)) == "fuse.ceph-fuse"
    assert (ceph_lab.live("tiny") / "bin" / "busybox").exists()
    store = cluster.status(ceph_lab.folder)["store"]
    assert store["mounted"] and store["fuse_running"], store
    assert store["health"].startswith("HEALTH_OK"), store


def test_b_a_node_boots_through_each_head_with_root_and_replica_from_cephfs(
    ceph_lab: Lab,
) -> None:
    seconds = ceph_lab.boot(list(NODES))
    for node, (server, address) in NODES.items():
        assert ceph_lab.marker(node).group(3) == "ro"
        mounts = ceph_lab.ok(node, "mount")
        assert f"{address}:{ceph_lab.live('tiny')} on / type nfs4" in mounts, mounts
        replica = ceph_lab.replica(node, "tiny")
        assert f"{address}:{replica} on /run/dim/rw type nfs4" in mounts, mounts
        ceph_lab.say(f"{node} up through {server} in {seconds[node]:.1f} s")
    cephfs = lab_store.running_cluster(ceph_lab.folder)
    sessions = json.loads(ceph.ceph(cephfs, "tell", "mds.a", "session", "ls", "--format", "json"))
    heads = {s["client_metadata"].get("hostname") for s in sessions}
    assert {"srv1", "srv2"} <= heads, heads


def test_c_a_live_change_reaches_both_running_nodes_within_seconds(ceph_lab: Lab) -> None:
    for node in NODES:
        assert ceph_lab.run(node, "cat /bin/dim-ceph-change")[0] != 0
    tree = ceph_lab.folder / "trees" / "tiny"  # the tree the lab imported the image from
    (tree / "bin" / "dim-ceph-change").write_text("on-cephfs\n")
    ceph_lab.dim("image", "sync", "tiny", "--from", str(tree))
    changed = time.monotonic()
    for node in NODES:
        ceph_lab.wait_for(node, "cat /bin/dim-ceph-change", "on-cephfs\n", timeout=WITHIN)
    seen = time.monotonic() - changed
    assert seen <= WITHIN, f"the nodes saw the change after {seen:.1f} s"
    ceph_lab.say(f"live change (sync) seen by both nodes {seen:.1f} s after dim image sync")


def test_c_a_change_made_with_image_exec_reaches_a_running_node_within_seconds(
    ceph_lab: Lab,
) -> None:
    change = "echo by-exec > /bin/dim-ceph-exec"
    ceph_lab.dim("image", "exec", "tiny", "--", "sh", "-c", change)
    changed = time.monotonic()
    ceph_lab.wait_for("node01", "cat /bin/dim-ceph-exec", "by-exec\n", timeout=WITHIN)
    ceph_lab.say(f"live change (exec) seen {time.monotonic() - changed:.1f} s after dim image exec")


def test_d_a_nodes_replica_writes_land_in_the_cephfs(ceph_lab: Lab) -> None:
    for node in NODES:
        ceph_lab.ok(node, f"echo written-by-{node} > /root/on-cephfs && sync")
    for node in NODES:
        written = ceph_lab.replica(node, "tiny") / "root" / "on-cephfs"
        assert sleep_until(written.exists, 10.0), f"{written} not in the CephFS"
        assert written.read_text() == f"written-by-{node}\n"
