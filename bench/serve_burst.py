"""Benchmark: a boot storm's burst of connections on ``dim serve``: how many are refused.

Run by hand, never as a test::

    .venv/bin/python bench/serve_burst.py [--nodes 2500] [--workers 2] [--max-connections N]
                                          [--src SRC ...]

A cluster.xml of ``--nodes`` nodes (racks of 250) in a temporary folder, ``dim serve`` of
each ``--src`` tree (default: this one) on a free port of 127.0.0.1 with ``--workers``; then
every node opens its connection at the same moment and asks ``/dim/health``, keeping the
connection open (as iPXE does from its script to its initrd) until all have their answer.
Printed per tree and round: the answers (200, 503 when the worker that accepted had
``--max-connections`` open, errors), how many workers reached their limit, and the limit.
Processes are stopped by process id.
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
<cluster name="burst" domain="burst.example">
  <network name="boot" subnet="127.0.0.0/8"/>
  <server name="srv" address="127.0.0.1" dhcp="dnsmasq" nfs="ganesha" http-root="{root}"/>
  <image name="alpha"><persist path="/etc"/></image>
  <group name="burst" nodes="r[1-{racks}]n[1-250]" image="alpha">
    <interface network="boot" ip="127.80.{{n1}}.{{n2}}"/>
  </group>
</cluster>
"""


async def node(port: int, answers: dict[str, int], hold: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /dim/health HTTP/1.1\r\nHost: srv\r\n\r\n")
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 60)).split(b" ")[1:2]
        key = status[0].decode() if status else "closed"
        answers[key] = answers.get(key, 0) + 1
        await hold.wait()
        writer.close()
    except (TimeoutError, OSError, IndexError) as exc:
        name = type(exc).__name__
        answers[name] = answers.get(name, 0) + 1


async def burst(port: int, nodes: int) -> tuple[dict[str, int], float]:
    answers: dict[str, int] = {}
    hold = asyncio.Event()
    started = time.perf_counter()
    tasks = [asyncio.create_task(node(port, answers, hold)) for _ in range(nodes)]
    while sum(answers.values()) < nodes and time.perf_counter() - started < 90:
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    hold.set()
    await asyncio.gather(*tasks)
    return answers, seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-connections", type=int, default=None)
    parser.add_argument("--src", action="append", type=Path, default=[])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = args.src or [Path(__file__).resolve().parents[1] / "src"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * args.nodes + 1024), hard))
    with tempfile.TemporaryDirectory(prefix="dim-burst-") as folder:
        work = Path(folder)
        (work / "http").mkdir()
        racks = -(-args.nodes // 250)
        (work / "cluster.xml").write_text(LAYOUT.format(root=work / "http", racks=racks))
        for round_ in range(1, args.rounds + 1):
            for tree in trees:
                port = free_port()
                argv = [sys.executable, "-m", "dim", "--config", str(work / "cluster.xml")]
                argv += ["--state", str(work / "state"), "serve", "--port", str(port)]
                argv += ["--workers", str(args.workers), "--listen", "127.0.0.1"]
                if args.max_connections:
                    argv += ["--max-connections", str(args.max_connections)]
                log = work / f"serve-{round_}.log"
                env = {**os.environ, "PYTHONPATH": str(tree)}
                with log.open("w") as sink:
                    serving = subprocess.Popen(argv, stderr=sink, env=env)
                try:
                    deadline = time.monotonic() + 30
                    while "serving boot scripts" not in log.read_text():
                        if serving.poll() is not None or time.monotonic() > deadline:
                            print(log.read_text(), file=sys.stderr)
                            return 1
                        time.sleep(0.1)
                    answers, seconds = asyncio.run(burst(port, args.nodes))
                finally:
                    serving.send_signal(signal.SIGTERM)
                    serving.wait(30)
                text = log.read_text()
                limit = [line for line in text.splitlines() if "at most" in line][0]
                refusing = text.count("refusing new ones")
                print(
                    f"round {round_} {tree}: {args.nodes} nodes in {seconds:.1f} s: "
                    f"{dict(sorted(answers.items()))}; workers that reached their limit: "
                    f"{refusing}; {limit.split('(')[-1].rstrip(')')}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
