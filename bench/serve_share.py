"""Benchmark: a storm's slow readers on ``dim serve``: how many its send floor cuts.

Run by hand, never as a test::

    .venv/bin/python bench/serve_share.py [--clients 500] [--stalled 20] [--rate 50]
        [--send-timeout 2] [--seconds 10] [--workers 1] [--src SRC ...] [--rounds 3]

A cluster.xml in a temporary folder with a 64 MiB (sparse) file in http-root, ``dim serve``
of each ``--src`` tree (default: this one) on a free port of 127.0.0.1; then ``--clients``
clients ask for the file at the same moment and read it at ``--rate`` kB/s each (a storm's
share of a link shared by thousands, below the per-connection floor of 256 KiB per
``--send-timeout``) for ``--seconds``, while ``--stalled`` more read nothing. Printed per tree
and round: the readers cut by the server (their connection ended before the end), the stalled
ones cut and when, the server's CPU seconds. Processes are stopped by process id.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYOUT = """<?xml version="1.0"?>
<cluster name="share" domain="share.example">
  <network name="boot" subnet="127.0.0.0/8"/>
  <server name="srv" address="127.0.0.1" dhcp="kea" nfs="ganesha" http-root="{root}"/>
  <image name="alpha"><persist path="/etc"/></image>
  <group name="share" nodes="n[1-10]" image="alpha">
    <interface network="boot" ip="127.80.0.{{n1}}"/>
  </group>
</cluster>
"""
SIZE = 64 << 20


async def reader(port: int, rate: float, seconds: float) -> tuple[bool, float]:
    """(cut, seconds until the end): ``rate`` bytes/s for ``seconds`` (0: read nothing, then
    see whether the connection still stands)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    started = time.monotonic()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, b"GET /big.img HTTP/1.0\r\n\r\n")
        if rate == 0:
            while time.monotonic() - started < seconds:
                await asyncio.sleep(0.2)
                if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 1:
                    return True, time.monotonic() - started  # not ESTABLISHED: cut
            return False, seconds
        chunk = 4096
        while time.monotonic() - started < seconds:
            data = await loop.sock_recv(sock, chunk)
            if not data:
                return True, time.monotonic() - started
            await asyncio.sleep(len(data) / rate)
        return False, seconds
    except OSError:
        return True, time.monotonic() - started
    finally:
        sock.close()


async def storm(port: int, args: argparse.Namespace) -> tuple[list, list]:
    rate = args.rate * 1000
    readers = [reader(port, rate, args.seconds) for _ in range(args.clients)]
    stalled = [reader(port, 0, args.seconds) for _ in range(args.stalled)]
    results = await asyncio.gather(*readers, *stalled)
    return results[: args.clients], results[args.clients :]


def cpu_seconds(pid: int) -> float:
    """User and system seconds of ``pid`` and its children waited for (its workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_one(tree: Path, work: Path, args: argparse.Namespace, name: str) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "dim", "--config", str(work / "cluster.xml")]
    argv += ["--state", str(work / "state"), "serve", "--port", str(port), "--listen"]
    argv += ["127.0.0.1", "--workers", str(args.workers), "--send-timeout", str(args.send_timeout)]
    log = work / f"serve-{name}.log"
    with log.open("w") as sink:
        serving = subprocess.Popen(argv, stderr=sink, env={**os.environ, "PYTHONPATH": str(tree)})
    try:
        deadline = time.monotonic() + 30
        while "serving boot scripts" not in log.read_text():
            if serving.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(log.read_text())
            time.sleep(0.1)
        readers, stalled = asyncio.run(storm(port, args))
        time.sleep(0.5)
        cpu = cpu_seconds(serving.pid)
    finally:
        serving.send_signal(signal.SIGTERM)
        serving.wait(30)
    cut_after = sorted(after for cut, after in stalled if cut)
    median = f"{cut_after[len(cut_after) // 2]:.1f} s" if cut_after else "-"
    return (
        f"readers cut {sum(cut for cut, _ in readers)}/{len(readers)}; stalled cut "
        f"{len(cut_after)}/{len(stalled)} (median after {median}); server CPU {cpu:.2f} s; "
        f"'cut:' lines {log.read_text().count(' cut: ')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--stalled", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="kB/s per reader")
    parser.add_argument("--send-timeout", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--src", action="append", type=Path, default=[])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = args.src or [Path(__file__).resolve().parents[1] / "src"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * args.clients + 1024), hard))
    with tempfile.TemporaryDirectory(prefix="dim-share-") as folder:
        work = Path(folder)
        (work / "http").mkdir()
        with open(work / "http" / "big.img", "wb") as big:
            big.truncate(SIZE)
        (work / "cluster.xml").write_text(LAYOUT.format(root=work / "http"))
        for round_ in range(1, args.rounds + 1):
            for number, tree in enumerate(trees):
                report = run_one(tree, work, args, f"{round_}-{number}")
                print(f"round {round_} {tree}: {report}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
