"""Benchmark: `dim node status` and `dim node list` at 10,000 nodes, as whole processes.

Run by hand, never as a test::

    .venv/bin/python bench/status.py [--size 10000] [--rounds 5]

In a temporary folder: the cluster.xml of ``bench/layout.py`` (``--size`` nodes), every MAC
imported, and a boot an hour ago recorded for every node, as ``dim serve`` records them. The
sessions are read with ``ss`` in this machine's own namespace (``--nfs-pid-file self``), which
serves no NFS: every node comes out ``down``, and the reading costs what it costs. Per round,
alternated: ``dim node list --json`` (the baseline: the same records without the state),
``dim node status --json``, and ``dim node status --json --nfs-pid-file none`` with every
node's session recorded in the state DB by two image servers' dim serve (half each, recorded
again before each round to stay fresh: every node comes out ``up``), each timed as a whole
process; medians printed. Then what a dim serve's reading costs to record, in process: the
whole set of its half of the nodes (when it changed), and the time alone (when it did not).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
import layout as generated  # noqa: E402

from dim.records import Boot  # noqa: E402
from dim.state import StateDB  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dim-bench-status-") as folder:
        work = Path(folder)
        config = work / "cluster.xml"
        config.write_text(generated.cluster_xml(args.size, "dnsmasq", "kernel"))
        names = generated.node_names(args.size)
        csv = work / "macs.csv"
        csv.write_text("".join(f"{n},{generated.mac('52:54', k)}\n" for k, n in enumerate(names)))
        state = work / "state"
        base = [sys.executable, "-m", "dim", "--config", str(config), "--state", str(state)]
        subprocess.run([*base, "node", "import-macs", str(csv)], check=True, capture_output=True)
        now = time.time()
        StateDB.open(state).record_boots(
            [Boot(n, "compute", "1", "10.0.0.1", now - 3600) for n in names]
        )
        recorded = "node status --json, recorded sessions"
        commands = {
            "node list --json": [*base, "node", "list", "--json"],
            "node status --json": [*base, "node", "status", "--json", "--nfs-pid-file", "self"],
            recorded: [*base, "node", "status", "--json", "--nfs-pid-file", "none"],
        }
        db = StateDB.open(state)
        halves = _sessions(config)
        times: dict[str, list[float]] = {name: [] for name in commands}
        writes: dict[str, list[float]] = {"whole set": [], "time alone": []}
        for _ in range(args.rounds):
            for server, clients in halves.items():
                start = time.perf_counter()
                db.record_nfs_sessions(server, clients, time.time())
                writes["whole set"].append(time.perf_counter() - start)
                start = time.perf_counter()
                db.record_nfs_sessions(server, None, time.time())
                writes["time alone"].append(time.perf_counter() - start)
            for name, command in commands.items():
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                times[name].append(time.perf_counter() - start)
                assert done.returncode == 0, done.stderr
                if name == recorded:
                    assert f'"up": {args.size}' in done.stdout, done.stdout[:300]
        for name, found in times.items():
            median = statistics.median(found)
            spread = f"min {min(found):.2f}, max {max(found):.2f}, {args.rounds} rounds"
            print(f"{args.size} nodes, {name}: median {median:.2f} s ({spread})")
        for name, found in writes.items():
            print(
                f"recording {args.size // 2} sessions, {name}: median "
                f"{statistics.median(found) * 1000:.1f} ms ({len(found)} writes)"
            )


def _sessions(config: Path) -> dict[str, dict[str, str]]:
    """Every node's first address, half held by srv1, half by srv2."""
    from dim.layout import parser

    nodes = parser.load(config).nodes
    return {
        server: {n.interfaces[0].ip: address for n in nodes[half::2]}
        for half, (server, address) in enumerate((("srv1", "10.0.0.1"), ("srv2", "10.0.0.2")))
    }


if __name__ == "__main__":
    main()
