"""What the failover tests share (tests/e2e/test_failover.py on the shared folder,
tests/e2e/test_ceph_failover.py on CephFS): the workload of `dim.lab.workload` started on
the nodes, the lines they wrote, and which server holds which service address."""

from __future__ import annotations

import time

from dim.lab import network
from dim.lab.processes import sleep_until
from dim.lab.workload import LOOP, START, Trace
from tests.e2e.conftest import Lab

SERVICE = {"srv1": "10.77.0.1", "srv2": "10.77.0.2"}


def start_workload(lab: Lab, nodes: list[str]) -> None:
    """The workload's script in each node's replica, then started on the node."""
    for node in nodes:
        (lab.replica(node, "tiny") / "root" / "loop.sh").write_text(LOOP)
        # the node's attribute cache may hide the new file for a second
        assert sleep_until(lambda n=node: lab.run(n, "test -f /root/loop.sh")[0] == 0, 10)
        lab.ok(node, START)


def trace(lab: Lab, node: str) -> Trace:
    path = lab.replica(node, "tiny") / "root" / "lines"
    return Trace.parse(path.read_text() if path.exists() else "")


def uptime(lab: Lab, node: str) -> float:
    return float(lab.ok(node, "cat /proc/uptime").split()[0])


def held(lab: Lab) -> dict[str, list[str]]:
    """The service addresses each server holds now."""
    return {
        server: network.addresses(network.server_namespace(lab.namespace, server))[1:]
        for server in SERVICE
    }


def lines_after(lab: Lab, node: str, seconds: float) -> None:
    """Wait until the node has written ``seconds`` worth of new lines (at least 4)."""
    count = len(trace(lab, node).numbers)
    assert sleep_until(lambda: len(trace(lab, node).numbers) >= count + 4, seconds + 30), (
        f"{node} stopped writing lines:\n{stalled(lab, node)}"
    )
    time.sleep(seconds)


def stalled(lab: Lab, node: str) -> str:
    """What a stalled node and the servers show: the node's console, who holds which
    address, each keepalived log's end, then `Lab.why` (what the node's NFS client logged,
    if its shell still answers, and each ganesha log's end)."""
    parts = [lab.tail(node), f"addresses held: {held(lab)}"]
    for server in SERVICE:
        log = lab.folder / "servers" / server / "logs" / "keepalived.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-12:]
            parts.append(f"{server} keepalived.log:\n" + "\n".join(tail))
    return "\n".join(parts) + lab.why(node)


def reboot_during_outage(lab: Lab) -> None:
    """node01 rebooted while srv1 is down (a failover test's earlier step failed it): it
    boots from srv2, which holds srv1's address, with its persistent state (its lines), and
    its workload numbers on from its last line."""
    assert SERVICE["srv1"] in held(lab)["srv2"], "srv1 should be down (the test before)"
    lines = len(trace(lab, "node01").numbers)
    seconds = lab.boot(["node01"])
    assert f"{SERVICE['srv1']}:{lab.live('tiny')} on / type nfs4" in lab.ok("node01", "mount")
    assert len(trace(lab, "node01").numbers) >= lines
    lab.ok("node01", START)
    lines_after(lab, "node01", 2)
    assert trace(lab, "node01").numbers_ok
    lab.say(f"node01 rebooted during the outage in {seconds['node01']:.1f} s")
