"""Replica creation for many nodes (what `dim node switch` and the first `dim apply` do), in
seconds, for several source trees side by side in the same rounds.

    .venv/bin/python bench/replica_create.py --nodes 300 --rounds 3 src /tmp/old/src

Each SRC is a folder holding the ``dim`` package (``src`` of this checkout, or a ``git
archive`` of another commit unpacked somewhere); each round measures every SRC once, in a
child process, on a fresh state folder in /dev/shm: one image whose version holds /etc, /var,
/root and /usr (80 small files), /etc, /var and /root persistent. Prints each run and the
median per SRC. Replica creation starts one ``cp -a`` per node and destination folder; since
every child dim starts dies with it (a parent-death signal set between fork and exec), a child
costs a full fork of dim, which this measures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

WORKER = r"""
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from dim.images import replicas
from dim.images.store import Store
from dim.layout.parser import parse

LAYOUT = b'''<?xml version="1.0"?>
<cluster name="b" domain="b.dim">
  <network name="boot" subnet="10.9.0.0/16" gateway="10.9.0.1"/>
  <server name="s" address="10.9.0.2" dhcp="dnsmasq" nfs="ganesha"/>
  <image name="img"><persist path="/etc"/><persist path="/var"/><persist path="/root"/></image>
  <group name="g" nodes="n[1-9999]" image="img">
    <interface network="boot" ip="10.9.{n1//200}.{n1%200+10}"/>
  </group>
</cluster>'''
image = parse(LAYOUT).images["img"]
with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
    state = Path(folder)
    version = state / "images/img/versions/1"
    for top in ("etc", "var", "root", "usr"):
        for i in range(20):
            (version / top / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
            (version / top / f"d{i % 4}" / f"f{i}").write_text("x" * 100)
    (state / "images/img/live").mkdir()
    store = Store(state)
    started = time.perf_counter()
    for k in range(1, int(sys.argv[2]) + 1):
        replicas.create(store, image, f"n{k}")
    print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", metavar="SRC")
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {s: [] for s in args.sources}
    for round_number in range(1, args.rounds + 1):
        for source in args.sources:
            done = subprocess.run(
                [sys.executable, "-c", WORKER, source, str(args.nodes)],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds[source].append(float(done.stdout))
            print(f"round {round_number}: {source}: {seconds[source][-1]:.2f} s", flush=True)
    for source, runs in seconds.items():
        print(f"{source}: {args.nodes} replicas, median {statistics.median(runs):.2f} s")


if __name__ == "__main__":
    main()
