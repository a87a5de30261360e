"""Benchmark: how long a node's work stops when its image server loses power (issue 13).

Run by hand, as root, never as a test (about 10 minutes)::

    .venv/bin/python bench/failover.py [--dhcp dnsmasq] [--rounds 10] [--preempt-rounds 5]
                                       [--boots 3] [--dir /var/tmp/dim-bench-failover]
                                       [--stores folder,ceph,ceph-rados]

A lab with two servers in a failover set (``dim lab up --servers 2``), node01 on srv1 and
node02 on srv2, each running the workload of `dim.lab.workload` (a numbered line with fsync
every half second, programs started from the NFS root, files held open). Then:

- ``failover``: ``--rounds`` times, the server that holds node01's address (10.77.0.1) loses
  power (``dim lab fail``: SIGKILL to its daemons, link down); once the peer holds the address
  and node01 wrote 10 s of lines, the longest gap between two of node01's lines around the
  failure; the failed server is restored (no preemption: nothing moves back) before the next
  round, so each round moves node01 to the other server;
- ``takeback``: with ``preempt="yes"``, ``--preempt-rounds`` times: fail node01's server,
  restore it, and measure the gap of the second move, when the restored server takes its
  address back (the cost that the default, no preemption, spares);
- ``boot``: node01 rebooted ``--boots`` times with both servers up, and as many times while
  its server is down, alternated: seconds to the marker;
- ``live change``: ``--changes`` times, ``dim image exec`` writes a new file in the image,
  and the seconds from its return until both nodes read it (polled on their consoles, each
  poll about 0.1-0.3 s).

With ``--stores``, the same rounds for each store in turn, in one run (a lab each): ``folder``
(the host's shared state folder, heads on their own file system), ``ceph`` (the state folder
on the lab's CephFS, every server an active head, graceless: dim's default for a failover
set of heads, issue 15), ``ceph-rados`` (the same with ``recovery="rados_cluster"``). Each
round also gives node02's longest gap (``survivor_gap`` when node02's server stayed up) and
both nodes' longest gap after the failed server came back (``restore_gap``: with
rados_cluster, a head that starts puts every head in a grace period).

Every line of node01 must be there once: a lost or doubled line fails the bench.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dim.lab import cluster, network  # noqa: E402
from dim.lab.daemons import dim_argv  # noqa: E402
from dim.lab.processes import sleep_until  # noqa: E402
from dim.lab.workload import ERRORS, LOOP, START, Trace  # noqa: E402
from dim.paths import StatePaths  # noqa: E402

NAMESPACE = "dimbenchha"
ADDRESS = "10.77.0.1"  # node01's server's service address


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def trace(self, node: str = "node01") -> Trace:
        path = StatePaths(self.folder / "state").replica(node, "tiny") / "root" / "lines"
        return Trace.parse(path.read_text() if path.exists() else "")

    def uptime(self, node: str = "node01") -> float:
        return float(cluster.run(self.folder, node, "cat /proc/uptime")[1].split()[0])

    def holder(self, address: str = ADDRESS) -> str | None:
        for server in ("srv1", "srv2"):
            held = network.addresses(network.server_namespace(NAMESPACE, server))[1:]
            if address in held:
                return server
        return None

    def start(self, node: str) -> None:
        replica = StatePaths(self.folder / "state").replica(node, "tiny")
        (replica / "root" / "loop.sh").write_text(LOOP)
        time.sleep(1.5)  # the node's attribute cache
        cluster.run(self.folder, node, START)

    def lines_for(self, seconds: float, node: str = "node01") -> None:
        count = len(self.trace(node).numbers)
        if not sleep_until(lambda: len(self.trace(node).numbers) >= count + 4, seconds + 60):
            raise SystemExit(f"{node} stopped writing lines")
        time.sleep(seconds)

    def check(self) -> None:
        trace = self.trace()
        if not trace.numbers_ok:
            raise SystemExit(f"node01 lost or doubled a line: {trace.numbers}")
        errors = cluster.run(self.folder, "node01", ERRORS)[1].strip()
        if errors:
            raise SystemExit(f"node01 saw errors: {errors}")

    def move(self, preempt: bool, seen: dict[str, list[float]] | None = None) -> float:
        """Fail node01's server; with ``preempt``, restore it and time the move back. In
        ``seen``: node02's gap (``survivor`` when its server stayed up) and both nodes'
        longest gap after the restore (``restore``)."""
        holder = self.holder()
        assert holder is not None
        peer = "srv2" if holder == "srv1" else "srv1"
        self.lines_for(2)
        before = self.uptime()
        before2 = self.uptime("node02")
        stays = self.holder("10.77.0.2") != holder  # node02's server is not the one failed
        cluster.fail(self.folder, holder)
        if not sleep_until(lambda: self.holder() == peer, 20):
            raise SystemExit(f"{peer} did not take {ADDRESS}")
        self.lines_for(10)
        gap = self.trace().since(before).longest_gap
        if seen is not None and stays:
            seen["survivor"].append(self.trace("node02").since(before2).longest_gap)
        if not preempt:
            restored = {node: self.uptime(node) for node in ("node01", "node02")}
            cluster.restore(self.folder, holder, say=lambda _: None)
            for node in ("node01", "node02"):
                self.lines_for(10 if node == "node01" else 0, node)
            if seen is not None:
                seen["restore"] += [self.trace(n).since(u).longest_gap for n, u in restored.items()]
            return gap
        before = self.uptime()
        cluster.restore(self.folder, holder, say=lambda _: None)
        if not sleep_until(lambda: self.holder() == holder, 30):
            raise SystemExit(f"{holder} did not take {ADDRESS} back")
        self.lines_for(10)
        return self.trace().since(before).longest_gap

    def live_change(self, number: int) -> float:
        """``dim image exec`` writes a file; seconds until node01 and node02 both read it."""
        text = f"change-{number}-{time.time():.0f}"
        command = [*dim_argv(self.folder), "image", "exec", "tiny", "--", "sh", "-c"]
        command.append(f"echo {text} > /bin/dim-bench-change")
        env = {**os.environ, "DIM_ROOT": str(self.folder / "root")}
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=300)
        changed = time.monotonic()
        for node in ("node01", "node02"):
            if not sleep_until(lambda n=node: self.changed(n) == text, 60, step=0.1):
                raise SystemExit(f"{node} did not see the change within 60 s")
        return time.monotonic() - changed

    def changed(self, node: str) -> str:
        return cluster.run(self.folder, node, "cat /bin/dim-bench-change")[1].strip()

    def boot(self) -> float:
        cluster.boot(self.folder, ["node01"], say=lambda _: None)
        seconds = cluster.watch(self.folder, ["node01"], timeout=240, say=lambda _: None)["node01"]
        if seconds is None or seconds < 0:
            raise SystemExit("node01 did not boot")
        cluster.run(self.folder, "node01", START)
        return seconds


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
        "all": [round(v, 2) for v in values],
    }


def lab_up(folder: Path, dhcp: str, store: str) -> None:
    """The lab of ``store`` (folder, ceph, ceph-rados) in ``folder``."""
    kind = "ceph" if store.startswith("ceph") else "folder"
    cluster.up(
        folder, flavour=dhcp, nodes=2, servers=2, bmcs=False, say=say, namespace=NAMESPACE,
        store=kind,
    )  # fmt: skip
    if store == "ceph-rados":
        config = folder / "cluster.xml"
        layout = config.read_text()
        config.write_text(
            layout.replace(
                'recovery-pool="dim_nfs"/>', 'recovery-pool="dim_nfs" recovery="rados_cluster"/>'
            )
        )
        cluster.reload(folder, say=say)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dhcp", default="dnsmasq", choices=["dnsmasq", "isc", "kea"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--preempt-rounds", type=int, default=5)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/dim-bench-failover"))
    parser.add_argument("--stores", default="folder", help="folder, ceph, ceph-rados: a lab each")
    args = parser.parse_args()
    everything = {}
    for store in args.stores.split(","):
        say(f"store {store}")
        everything[store] = run(args, store, args.dir / store)
    print(json.dumps(everything, indent=1))


def run(args: argparse.Namespace, store: str, folder: Path) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args.dir = folder
    bench = Bench(args.dir)
    results: dict = {"dhcp": args.dhcp, "store": store}
    lab_up(args.dir, args.dhcp, store)
    try:
        cluster.boot(args.dir, ["node01", "node02"], say=say)
        cluster.watch(args.dir, ["node01", "node02"], timeout=240, say=lambda _: None)
        for node in ("node01", "node02"):
            bench.start(node)

        say("boots: all servers up, then node01's server down, alternated")
        up, down = [], []
        for _ in range(args.boots):
            up.append(bench.boot())
            holder = bench.holder()
            cluster.fail(args.dir, holder)
            sleep_until(lambda h=holder: bench.holder() not in (None, h), 20)
            down.append(bench.boot())
            cluster.restore(args.dir, holder, say=lambda _: None)
            time.sleep(6)
            say(f"boot up {up[-1]:.1f} s, during the outage {down[-1]:.1f} s")
        if args.boots:
            results["boot_all_up"] = summary(up)
            results["boot_server_down"] = summary(down)

        changes = [bench.live_change(number) for number in range(args.changes)]
        if changes:
            results["live_change"] = summary(changes)
            say(f"live changes seen by both nodes after {results['live_change']}")

        gaps: list[float] = []
        seen: dict[str, list[float]] = {"survivor": [], "restore": []}
        for number in range(args.rounds):
            gaps.append(bench.move(preempt=False, seen=seen))
            bench.check()
            say(f"failover {number + 1}: node01's longest gap {gaps[-1]:.2f} s, {seen}")
        results["failover_gap"] = summary(gaps)
        for name, values in seen.items():
            if values:
                results[f"{name}_gap"] = summary(values)

        if args.preempt_rounds:
            cluster.set_preempt(args.dir, True)
            time.sleep(8)
            takebacks = []
            for number in range(args.preempt_rounds):
                takebacks.append(bench.move(preempt=True))
                bench.check()
                say(f"takeback {number + 1}: node01's longest gap {takebacks[-1]:.2f} s")
            results["takeback_gap"] = summary(takebacks)
        results["lines"] = len(bench.trace().numbers)
        results["lines_ok"] = bench.trace().numbers_ok
    finally:
        cluster.down(args.dir)
    say(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
