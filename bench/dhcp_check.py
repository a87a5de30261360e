"""Benchmark: the DHCP daemons' test modes on dim's Kea and dhcpd files, all nodes against one.

Run by hand, never as a test::

    PYTHONPATH=src .venv/bin/python bench/dhcp_check.py [--size 100000] [--runs 7]

For Kea and ISC dhcpd: the cluster.xml of ``bench/layout.py`` with a MAC for every node,
the daemon's file rendered (:func:`dim.services.dhcp.main_file`) for every node and for the
middle node alone (what an incremental apply has the daemon check,
:mod:`dim.services.incremental`), each checked ``--runs`` times by ``kea-dhcp4 -t`` or
``dhcpd -4 -t -cf`` as ``dim apply`` runs them (Kea's copy listening on "*"). Prints the
median wall and CPU seconds of each.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layout as generated  # noqa: E402  (bench/layout.py: the same cluster as its bench)

from dim.layout.model import Inventory  # noqa: E402
from dim.layout.parser import parse  # noqa: E402
from dim.services import dhcp  # noqa: E402
from dim.services.apply import _KEA_INTERFACES  # noqa: E402
from dim.services.rendering import RenderContext  # noqa: E402


def timed(command: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``command``, which must succeed."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env=env)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} refused it:\n{done.stderr.decode()}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    names = generated.node_names(args.size)
    macs = {(n, "boot"): generated.mac("52:54", k) for k, n in enumerate(names, 1)}
    with tempfile.TemporaryDirectory(prefix="dim-dhcp-check-") as folder:
        env = dict(
            os.environ,
            KEA_PIDFILE_DIR=folder,
            KEA_LOCKFILE_DIR=folder,
            KEA_LOGGER_DESTINATION=f"{folder}/kea.log",
        )
        for flavour in ("kea", "isc"):
            cluster = parse(generated.cluster_xml(args.size, flavour, "kernel").encode(), "c.xml")
            server = next(iter(cluster.servers))
            one = replace(cluster, nodes=(cluster.nodes[args.size // 2],), by_name={})
            for label, layout in ((f"{args.size:,} nodes", cluster), ("one node", one)):
                context = RenderContext(Inventory(layout, macs, {}), server, Path("/var/lib/dim"))
                content = dhcp.main_file(context).content or b""
                path = Path(folder) / f"{flavour}.conf"
                if flavour == "kea":
                    path.write_bytes(_KEA_INTERFACES.sub(rb'\1[ "*" ]', content))
                    command = ["kea-dhcp4", "-t", str(path)]
                else:
                    path.write_bytes(content)
                    command = ["dhcpd", "-4", "-t", "-cf", str(path)]
                wall, cpu = timed(command, env, args.runs)
                print(
                    f"{flavour}, {label} ({len(content):,} bytes): {wall:.3f} s ({cpu:.3f} s CPU), "
                    f"median of {args.runs}, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
