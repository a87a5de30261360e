"""Failover with the store on CephFS: an OSD and a head die under running nodes (issue 15).

One lab of its own (``dim lab up --servers 2 --store ceph``, namespace ``dimcephha<pid>``):
srv1 and srv2 both active ganesha heads over the lab's CephFS, in one failover set. node01
boots through srv1 and node02 through srv2, and both run the failover workload
(dim.lab.workload: every half second programs and reads from the root, a line through a file
held open, a numbered fsync'd line). In order:

a. an OSD is killed (``dim lab fail osd.1``): 3 copies, 2 needed; both nodes write on, no
   line lost, no error; the OSD is started again;
b. srv1 loses power (``dim lab fail srv1``): srv2 takes its address and fences it (the Ceph
   cluster blocklists srv1's own address, dim-fence), so that the files node01 held open
   through srv1 are free at once; node01 carries on through srv2, and node02 on srv2
   notices nothing;
c. ``dim image exec`` changes the image during the outage: node01 sees it within 10 s;
d. node01 reboots during the outage and comes up from srv2 with its persistent state;
e. srv1 comes back: its ganesha lifts its own fence first (dim-unfence) and runs again, and
   no node pauses for it: the heads are graceless, dim's default for a failover set of heads
   (with rados_cluster, the grace of srv1's return stopped both nodes 17-20 s, which
   ``bench/failover.py --stores ceph,ceph-rados`` measures).

tests/e2e/test_failover.py runs the same failures on the shared local folder.

    CI=true .venv/bin/pytest tests/e2e/test_ceph_failover.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dim.lab import ceph, cluster
from dim.lab import store as lab_store
from dim.lab.processes import sleep_until
from dim.lab.workload import ERRORS
from tests.e2e.conftest import Lab, lab_up, require_ceph_lab
from tests.e2e.workload import (
    SERVICE,
    held,
    lines_after,
    reboot_during_outage,
    start_workload,
    trace,
    uptime,
)

pytestmark = pytest.mark.e2e

GAP_LIMIT = 15.0  # as test_failover's: one failover under TCG
OWN = {"srv1": "10.77.0.101", "srv2": "10.77.0.102"}  # where each head reaches Ceph from
NODES = ("node01", "node02")


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_ceph_lab()
    folder = tmp_path_factory.mktemp("ceph-ha")
    options = {"nodes": 2, "servers": 2, "store": "ceph", "bmcs": False}
    with lab_up(folder, f"dimcephha{os.getpid()}", **options) as lab:
        lab.boot(list(NODES))
        start_workload(lab, list(NODES))
        yield lab


def store(lab: Lab) -> ceph.Cluster:
    return lab_store.running_cluster(lab.folder)


def blocklist(lab: Lab) -> str:
    return ceph.ceph(store(lab), "osd", "blocklist", "ls")


def assert_whole(lab: Lab, node: str, since: float, limit: float) -> float:
    """Every line of ``node`` there once, none failed, the longest gap since ``since`` (the
    node's uptime) within ``limit``; that gap."""
    lines = trace(lab, node)
    assert lines.numbers_ok, f"{node} lost or doubled a line: {lines.numbers[-20:]}"
    gap = lines.since(since).longest_gap
    assert gap <= limit, f"{node} wrote nothing for {gap} s{lab.why(node)}"
    assert lab.ok(node, ERRORS).strip() == "", f"{node} saw errors{lab.why(node)}"
    return gap


def test_a_nodes_write_on_while_an_osd_is_killed(ha: Lab) -> None:
    lines_after(ha, "node01", 3)
    before = {node: uptime(ha, node) for node in NODES}
    cluster.fail(ha.folder, "osd.1", say=ha.say)
    try:
        assert sleep_until(lambda: "1 up" not in ceph.ceph(store(ha), "osd", "stat"), 30)
        ha.say(f"osd.1 down: {ceph.ceph(store(ha), 'osd', 'stat').strip()}")
        for node in NODES:
            lines_after(ha, node, 10)
    finally:
        cluster.restore(ha.folder, "osd.1", say=ha.say)
    gaps = {node: assert_whole(ha, node, before[node], GAP_LIMIT) for node in NODES}
    ha.say(f"an OSD killed: longest gap node01 {gaps['node01']} s, node02 {gaps['node02']} s")


def test_b_a_dead_head_is_fenced_and_its_node_carries_on_through_the_other(ha: Lab) -> None:
    lines_after(ha, "node01", 3)
    before = {node: uptime(ha, node) for node in NODES}
    assert f"{OWN['srv1']}:0/0" not in blocklist(ha)
    cluster.fail(ha.folder, "srv1", say=ha.say)
    assert sleep_until(lambda: SERVICE["srv1"] in held(ha)["srv2"], 15), held(ha)
    assert sleep_until(lambda: f"{OWN['srv1']}:0/0" in blocklist(ha), 30), blocklist(ha)
    for node in NODES:
        lines_after(ha, node, 10)
    moved = assert_whole(ha, "node01", before["node01"], GAP_LIMIT)
    stayed = assert_whole(ha, "node02", before["node02"], GAP_LIMIT)
    ha.say(f"head srv1 killed: longest gap node01 {moved} s (moved), node02 {stayed} s (stayed)")


def test_c_a_change_made_during_the_outage_reaches_the_node(ha: Lab) -> None:
    assert SERVICE["srv1"] in held(ha)["srv2"], "srv1 should be down (test b)"
    ha.dim("image", "exec", "tiny", "--", "sh", "-c", "echo during-outage > /bin/dim-outage")
    seen = ha.wait_for("node01", "cat /bin/dim-outage", "during-outage\n", timeout=10)
    ha.say(f"change seen during the outage after {seen:.1f} s")


def test_d_a_node_rebooted_during_the_outage_boots_from_the_peer_with_its_state(
    ha: Lab,
) -> None:
    reboot_during_outage(ha)


def test_e_a_restored_head_lifts_its_own_fence_and_serves_again(ha: Lab) -> None:
    before = {node: uptime(ha, node) for node in NODES}
    cluster.restore(ha.folder, "srv1", say=ha.say)
    assert f"{OWN['srv1']}:0/0" not in blocklist(ha)

    # its ganesha is a CephFS client again, from its own address
    def sessions() -> str:
        return ceph.ceph(store(ha), "tell", "mds.a", "session", "ls", "--format", "json")

    assert sleep_until(lambda: f"{OWN['srv1']}:" in sessions(), 60), sessions()
    for node in NODES:
        lines_after(ha, node, 10)
    conf = ha.folder / "servers" / "srv1" / "root" / "etc" / "ganesha" / "ganesha.conf"
    assert "Graceless = true;" in conf.read_text()
    gaps = {node: assert_whole(ha, node, before[node], GAP_LIMIT) for node in NODES}
    ha.say(f"srv1 restored: longest gap node01 {gaps['node01']} s, node02 {gaps['node02']} s")
