"""A small boot storm (bench/storm.py) against the real daemons: every virtual node goes
through every stage of a network boot, for both boot paths, and none fails.

The bench at a size CI can afford: 8 nodes, dnsmasq, a cut of the recorded Debian boot
reads. It proves the simulator itself (DHCP through the relay with each node's MAC, TFTP, the
iPXE DHCP, dim serve's scripts and files, NFSv4 mounts of the image and of each node's own
export over one connection per node from the node's own address, which ganesha checks: another
node's address is refused that export; the replayed reads), so that the figures the big storms
give in docs/benchmarks.md come from nodes that really booted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require, require_binary, require_root

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"
NODES = 8


def require_storm() -> None:
    require_root()
    for program, package in [
        ("ip", "iproute2"),
        ("dnsmasq", "dnsmasq"),
        ("ganesha.nfsd", "nfs-ganesha"),
        ("cc", "gcc"),
        ("busybox", "busybox-static"),
    ]:
        require_binary(program, package)
    require(Path("/usr/include/nfsc/libnfs.h").exists(), "needs libnfs-dev (libnfs's headers)")


def test_every_node_of_a_small_storm_boots_through_every_stage_on_both_paths(
    tmp_path: Path,
) -> None:
    require_storm()
    # a cut of the Debian boot: reads of both exports, a directory listing and a link
    lines = (BENCH / "data/boot-reads-debian12.txt").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("#")][:60]
    assert {line.split()[0] for line in kept} == {"read", "list", "link"}
    assert any(line.startswith("read node ") for line in kept)
    reads = tmp_path / "reads.txt"
    reads.write_text("\n".join(kept) + "\n")
    output = tmp_path / "storm.json"
    command = [
        sys.executable, str(BENCH / "storm.py"), "--nodes", str(NODES), "--dhcp", "dnsmasq",
        "--boot", "http,tftp", "--reads", str(reads), "--dir", str(tmp_path / "storm"),
        "--namespace", f"dimstorm{os.getpid() % 100000}", "--timeout", "120",
        "--json", str(output), "--http-workers", "3", "--tftp-nfs-workers", "3",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    results = {result["boot"]: result for result in json.loads(output.read_text())}
    assert set(results) == {"http", "tftp"}
    for boot, result in results.items():
        assert result["failed_nodes"] == 0, (boot, result["errors"])
        assert result["daemons_kept_running"], boot
        for stage, figures in result["stages"].items():
            assert figures["through"] == NODES, (boot, stage, figures)
        sizes = result["bytes_per_node"]
        assert sizes["kernel"] > 1_000_000 and sizes["reads"] > 100_000, (boot, sizes)
        # one connection per node, as a kernel client; the per-node export rule exercised
        assert result["nfs_connections"] == NODES, boot
        assert "NFS4ERR" in result["foreign_export"], (boot, result["foreign_export"])
        # TFTP and NFS spread over 3 C processes (8 nodes: 3, 3, 2), each with its figures:
        # a process whose answers were lost fails its nodes above
        workers = result["client_processes"]["tftp_nfs"]
        assert len(workers) == 3, (boot, workers)
        assert all(w["cpu_s"] >= 0 and 0 <= w["loop_lag_max_s"] < 60 for w in workers), workers
        # the DHCP of every node in a process of its own, with its figures
        [dhcp] = result["client_processes"]["dhcp"]
        assert dhcp["cpu_s"] > 0 and 0 <= dhcp["loop_lag_max_s"] < 60, (boot, dhcp)
    assert list(results["http"]["stages"]) == [
        "dhcp", "loader", "dhcp2", "script", "kernel", "mount", "reads",
    ]  # fmt: skip
    # the nodes' HTTP spread over 3 processes (8 nodes: 3, 3, 2), each with its figures
    workers = results["http"]["client_processes"]["http"]
    assert len(workers) == 3 and all(w["cpu_s"] > 0 for w in workers), workers
    assert all(0 <= w["loop_lag_max_s"] < 60 for w in workers), workers
    assert results["tftp"]["client_processes"]["http"] == []
    assert list(results["tftp"]["stages"]) == [
        "dhcp",
        "loader",
        "script",
        "kernel",
        "mount",
        "reads",
    ]


def test_a_client_process_that_ends_fails_its_own_nodes_at_once_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_binary("cc", "gcc")
    require(Path("/usr/include/nfsc/libnfs.h").exists(), "needs libnfs-dev (libnfs's headers)")
    monkeypatch.syspath_prepend(str(BENCH))
    from storm_cluster import Failed
    from storm_nodes import client_answer
    from storm_setup import client_binary
    from storm_workers import WorkerPool

    reads = tmp_path / "reads.txt"
    reads.write_text("")
    command = [str(client_binary(tmp_path)), "127.0.0.1", str(reads)]

    async def two_processes() -> tuple[dict, list[dict]]:
        pool = await WorkerPool.start(command, 2, client_answer, "TFTP and NFS client")
        # no TFTP server on 127.0.0.1: each transfer is retried for a minute
        answers = {n: pool.expect(n, ("tftp", f"n{n}")) for n in range(1, 5)}
        for n in answers:
            pool.send(n, f"tftp n{n} 127.0.0.1 undionly.kpxe")
        await asyncio.sleep(0.5)
        pool.processes[1].kill()  # nodes 1 and 3's process
        await asyncio.wait([answers[1], answers[3]], timeout=10)
        later = pool.expect(5, ("tftp", "n5"))
        outcome = {
            n: answer.exception() if answer.done() else None for n, answer in answers.items()
        }
        outcome[5] = later.exception() if later.done() else None
        figures = await pool.stop()
        return outcome, figures

    outcome, figures = asyncio.run(two_processes())
    for n in (1, 3, 5):
        assert isinstance(outcome[n], Failed), outcome
        assert "TFTP and NFS client process 1 ended" in str(outcome[n]), outcome
    assert outcome[2] is None and outcome[4] is None, outcome
    assert figures[0]["cpu_s"] >= 0 and figures[0]["loop_lag_max_s"] < 60, figures
    assert figures[1] == {}, figures
