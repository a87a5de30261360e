"""Benchmark: the one-node change at 100,000 nodes, as two whole processes, against a baseline.

Run by hand, never as a test::

    git archive 4e8cc8a src | tar -x -C /tmp/base      # the tree to compare with
    .venv/bin/python bench/onechange.py --src /tmp/base/src --src src [--size 100000] [--rounds 5]
        [--flavour dnsmasq|kea|isc]

For each tree given by ``--src`` (the first is the baseline), in a folder of its own under
``--work`` (default: a temporary folder on the working disk; roots on ``--tmpfs``): the
cluster.xml of ``bench/layout.py`` (DHCP by ``--flavour``, default dnsmasq; nfs=kernel; two
interfaces and a BMC per node), every
MAC imported with ``dim node import-macs``, one full ``dim apply --skip-validation`` into a root
on tmpfs. Then ``--rounds`` rounds, the trees alternated within each round: ``dim node set
NODE --mac NEW`` and ``dim apply`` (validated by the DHCP daemon's test mode, incremental where
the tree can),
each timed as a whole process (wall time, and CPU time of the process and its children from
``getrusage``). At the end, ``dim apply --full --dry-run`` on each tree's root must find
nothing to change: the one-node applies left what a full apply would. Medians are printed,
and the ratio of the sum (node set + apply) to the baseline's. Each tree's modules are compiled
to bytecode by its first command (in ``WORK/pycache``) and read back by the others, as from an
installed wheel.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layout as generated  # noqa: E402  (bench/layout.py: the same files as its bench)

DIM = Path(sys.executable).with_name("dim")


def run(src: Path, work: Path, *args: str) -> tuple[float, float, str]:
    """One dim command from the tree ``src``: (wall seconds, CPU seconds, stdout)."""
    command = [str(DIM), "--config", str(work / "cluster.xml"), "--state", str(work / "state")]
    # dim's modules compiled once and read back, as an installed wheel's are: this
    # environment sets PYTHONDONTWRITEBYTECODE, and compiling every module at each command
    # would add some 0.3 s to each (measured: apply 0.70 s without, 0.40 s with)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(src), PYTHONPYCACHEPREFIX=str(work / "pycache"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*command, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} from {src} exited {done.returncode}:\n{done.stderr}")
    return wall, cpu, done.stdout


def prepare(src: Path, work: Path, root: Path, size: int, flavour: str) -> None:
    work.mkdir(parents=True)
    (work / "cluster.xml").write_text(generated.cluster_xml(size, flavour, "kernel"))
    names = generated.node_names(size)
    csv = work / "macs.csv"
    csv.write_text("".join(f"{n},{generated.mac('52:54', k)}\n" for k, n in enumerate(names, 1)))
    run(src, work, "node", "import-macs", str(csv))
    wall, cpu, _ = run(src, work, "apply", "--root", str(root), "--no-reload", "--skip-validation")
    print(f"  {src}: full apply {wall:.1f} s ({cpu:.1f} s CPU)", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, action="append", required=True)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flavour", choices=generated.FLAVOURS, default="dnsmasq")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--tmpfs", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # the report shows before the long cleanup
    work = Path(tempfile.mkdtemp(prefix="dim-onechange-", dir=args.work))
    roots = Path(tempfile.mkdtemp(prefix="dim-onechange-", dir=args.tmpfs))
    trees = [src.resolve() for src in args.src]
    node = generated.node_names(args.size)[args.size // 2]
    try:
        for number, src in enumerate(trees):
            prepare(src, work / str(number), roots / str(number), args.size, args.flavour)
        times: dict[int, dict[str, list[tuple[float, float]]]] = {
            n: {"set": [], "apply": []} for n in range(len(trees))
        }
        for round_number in range(args.rounds):
            mac = generated.mac("02:00", round_number + 1)
            for number, src in enumerate(trees):
                where, root = work / str(number), str(roots / str(number))
                times[number]["set"].append(run(src, where, "node", "set", node, "--mac", mac)[:2])
                times[number]["apply"].append(
                    run(src, where, "apply", "--root", root, "--no-reload")[:2]
                )
                (sw, sc), (aw, ac) = times[number]["set"][-1], times[number]["apply"][-1]
                print(
                    f"    {src}: node set {sw:.2f} s ({sc:.2f} CPU), apply {aw:.2f} s "
                    f"({ac:.2f} CPU)",
                    file=sys.stderr,
                )
            print(
                f"  round {round_number + 1} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr
            )
        for number, src in enumerate(trees):
            out = run(
                src,
                work / str(number),
                "apply",
                "--root",
                str(roots / str(number)),
                "--no-reload",
                "--full",
                "--dry-run",
            )[2]
            if ": 0 files would change" not in out:
                raise SystemExit(f"{src}: a full apply would still change files:\n{out[-500:]}")
        report(trees, times, args)
    finally:
        if args.keep:
            print(f"kept {work} and {roots}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(roots, ignore_errors=True)
    return 0


def report(trees, times, args) -> None:

    def median(pairs, index):
        return statistics.median(p[index] for p in pairs)

    print(
        f"{args.size:,} nodes, {args.flavour}, {args.rounds} rounds alternated, load at end "
        f"{os.getloadavg()[0]:.1f}; median wall (median CPU)"
    )
    base = None
    for number, src in enumerate(trees):
        s, a = times[number]["set"], times[number]["apply"]
        total = [x[0] + y[0] for x, y in zip(s, a, strict=True)]
        total_cpu = [x[1] + y[1] for x, y in zip(s, a, strict=True)]
        line = (
            f"{src}: node set {median(s, 0):.2f} s ({median(s, 1):.2f}), "
            f"apply {median(a, 0):.2f} s ({median(a, 1):.2f}), "
            f"total {statistics.median(total):.2f} s ({statistics.median(total_cpu):.2f})"
        )
        if base is None:
            base = statistics.median(total)
        else:
            line += f", {base / statistics.median(total):.1f}x faster than the first"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
