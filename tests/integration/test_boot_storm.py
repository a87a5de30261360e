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
        "--json", str(output), "--http-workers", "3",
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
