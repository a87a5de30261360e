"""Benchmark: the lab's Ceph cluster (dim.lab.ceph): start-up, memory, and small files on CephFS.

Run by hand, as root, never as a test::

    .venv/bin/python bench/ceph.py [--dir /var/tmp/dim-bench-ceph] [--files 10000] [--rounds 3]
                                   [--local /var/tmp/dim-bench-ceph-local] [--keep]

In order, each figure in wall seconds:

    make       a new cluster, from nothing until its CephFS has an active MDS
    healthy    until ``ceph status`` says HEALTH_OK with every PG active+clean
    mount      a ceph-fuse mount as client.dim, until the folder is a mount point
    stop       every daemon stopped by its process id
    restart    the same cluster started again, until HEALTH_OK and every PG active+clean

then each daemon's resident memory once idle (after 10 s), and ``--rounds`` rounds of the
small-file loop, alternating the CephFS mount and a local folder (``--local``, on the disk
that holds the cluster's files): ``--files`` files each written to a temporary name and
renamed into place (how the store writes), hard-linked into a second folder (a version), then
all renamed over again with new content (a live update), then removed. For each: wall
seconds, the CPU seconds of this process, and on CephFS those of ceph-fuse and the daemons.
Finally, the rename-over-a-file loop of tests/integration/test_ceph_store.py, 30 renames
while nobody, the same client or a second client reads the file (in a loop, or every 10 ms,
100 ms, 1 s) or another file of its folder: milliseconds per rename (``--renames-only``: only
these, after the start-up figures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from proc_cpu import cpu_seconds

from dim.lab import ceph


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def small_files(folder: Path, files: int) -> None:
    """Write, rename, link, rename over, remove ``files`` small files under ``folder``."""
    live, version = folder / "live", folder / "versions"
    live.mkdir(parents=True)
    version.mkdir()
    for n in range(files):
        temporary = live / f".f{n}.tmp"
        temporary.write_bytes(b"version 1 of a small file\n")
        os.rename(temporary, live / f"f{n}")
        os.link(live / f"f{n}", version / f"f{n}")
    for n in range(files):
        temporary = live / f".f{n}.tmp"
        temporary.write_bytes(b"version 2 of a small file\n")
        os.rename(temporary, live / f"f{n}")
    shutil.rmtree(folder)


def renames(written: Path, read: Path | None, times: int = 50, pause: float = 0.0) -> float:
    """Seconds per rename of a new file over ``written`` while ``read`` is read in a loop,
    ``pause`` seconds between two reads."""
    written.write_bytes(b"old" * 4096)
    if read is not None and not read.exists():
        read.write_bytes(b"another file of the folder\n")
    stop = threading.Event()

    def reader() -> None:
        while read is not None and not stop.is_set():
            read.read_bytes()
            stop.wait(pause)

    thread = threading.Thread(target=reader)
    thread.start()
    start = time.monotonic()
    try:
        for n in range(times):
            temporary = written.with_name(f".{written.name}.{n}")
            temporary.write_bytes(f"{n:03d}".encode() * 4096)
            os.rename(temporary, written)
    finally:
        elapsed = time.monotonic() - start
        stop.set()
        thread.join()
    written.unlink()
    return elapsed / times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/dim-bench-ceph"))
    parser.add_argument("--local", type=Path, default=Path("/var/tmp/dim-bench-ceph-local"))
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--renames-only", action="store_true", help="no small-file loop")
    args = parser.parse_args(argv)
    if (args.dir / "cluster.json").exists():
        sys.exit(f"bench/ceph.py: {args.dir} holds a cluster already; remove it first")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    start = time.monotonic()
    cluster = ceph.start(args.dir)
    made = time.monotonic() - start
    try:
        ceph.wait_healthy(cluster)
        print(f"make {made:.1f} s, healthy {time.monotonic() - start:.1f} s", flush=True)
        stopped = timed(lambda: ceph.stop(cluster))
        start = time.monotonic()
        cluster = ceph.start(args.dir)
        ceph.wait_healthy(cluster)
        print(f"stop {stopped:.1f} s, restart to healthy {time.monotonic() - start:.1f} s")
        time.sleep(10)
        for daemon in cluster.daemons:
            print(f"  {daemon.name:8} RSS {rss_mib(daemon.pid):6.0f} MiB", flush=True)
        measure(cluster, args)
    finally:
        if not args.keep:
            ceph.remove(cluster)
    print(f"load average at end: {os.getloadavg()}")
    return 0


def measure(cluster: ceph.Cluster, args: argparse.Namespace) -> None:
    where = args.dir / "mounts"
    start = time.monotonic()
    first = ceph.mount_fuse(cluster, where / "a")
    print(f"mount {time.monotonic() - start:.2f} s", flush=True)
    second = ceph.mount_fuse(cluster, where / "b")
    try:
        print(f"  ceph-fuse RSS {rss_mib(first.process.pid):6.0f} MiB (mounted, idle)")
        if not args.renames_only:
            small_file_rounds(cluster, Path(first.path), first.process.pid, args)
        for process in (*cluster.daemons, first.process):
            print(f"  {process.name:8} RSS {rss_mib(process.pid):6.0f} MiB (after the loops)")
        a, b = Path(first.path), Path(second.path)
        for label, reader, pause in (
            ("nobody reads", None, 0.0),
            ("same client reads", a / "lib", 0.0),
            ("other client reads", b / "lib", 0.0),
            ("other client reads every 10 ms", b / "lib", 0.01),
            ("other client reads every 100 ms", b / "lib", 0.1),
            ("other client reads every 1 s", b / "lib", 1.0),
            ("other client reads another file of the folder", b / "other", 0.0),
        ):
            per = renames(a / "lib", reader, 30, pause)
            print(f"rename over a file, {label}: {per * 1000:.1f} ms each", flush=True)
        if args.renames_only:
            return
        args.local.mkdir(parents=True, exist_ok=True)
        for label, reader in (("nobody reads", None), ("same folder read", args.local / "lib")):
            per = renames(args.local / "lib", reader)
            print(f"rename over a file, local, {label}: {per * 1000:.2f} ms each", flush=True)
    finally:
        ceph.unmount(second)
        ceph.unmount(first)
        shutil.rmtree(args.local, ignore_errors=True)


def small_file_rounds(
    cluster: ceph.Cluster, mount: Path, fuse: int, args: argparse.Namespace
) -> None:
    daemons = [d.pid for d in cluster.daemons]
    results: dict[str, list[tuple[float, float, float]]] = {"cephfs": [], "local": []}
    for n in range(args.rounds):
        for name, base in (("cephfs", mount), ("local", args.local)):
            folder = base / f"loop{n}"
            folder.parent.mkdir(parents=True, exist_ok=True)
            before = (os.times(), cpu_seconds([fuse]), cpu_seconds(daemons))
            wall = timed(lambda folder=folder: small_files(folder, args.files))
            after = (os.times(), cpu_seconds([fuse]), cpu_seconds(daemons))
            own = (after[0].user + after[0].system) - (before[0].user + before[0].system)
            results[name].append((wall, own, (after[1] - before[1]) + (after[2] - before[2])))
            print(
                f"  round {n} {name:6} {wall:6.2f} s wall, {own:5.2f} s CPU here,"
                f" {results[name][-1][2]:5.2f} s CPU in ceph-fuse and daemons",
                flush=True,
            )
    for name, rows in results.items():
        wall, own, theirs = (statistics.median(column) for column in zip(*rows, strict=True))
        print(
            f"small files x{args.files} {name}: median {wall:.2f} s wall, {own:.2f} s CPU"
            f" here, {theirs:.2f} s CPU in Ceph; {args.files / wall:.0f} files/s"
        )


if __name__ == "__main__":
    sys.exit(main())
