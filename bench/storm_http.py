"""The boot storm's HTTP clients (bench/storm_nodes.py starts ``--http-workers`` of them):
for each node it is given, a worker fetches what iPXE fetches from dim serve, ``boot.ipxe``,
the node's own script, then the kernel and initrd that script names, over one keep-alive
connection from the node's own address. Several processes, because one cannot read 10,000
nodes' boot files (131 GB) fast enough: it left 27 connections unread for 20 s, and dim serve
cut them as stalled clients (docs/benchmarks.md, session 10).

A worker reads one node per line on stdin, ``NAME ADDRESS MAC URL LAST`` (LAST: ``script``
or ``kernel``, the last stage fetched), and writes one line per node on stdout,
``NAME SCRIPT_END KERNEL_END BYTES ERROR`` (times from CLOCK_MONOTONIC, as
``time.monotonic``; ``-`` for a stage not reached). At the end of stdin it writes
``- CPU_SECONDS LAG_SECONDS``: its CPU time and the longest its event loop ran late, which
tells a starved simulator from a node the server cut::

    python bench/storm_http.py < nodes.txt
"""

from __future__ import annotations

import asyncio
import re
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storm_cluster import Failed

LAG_TICK = 0.1  # seconds between two looks at the event loop's lateness


@dataclass
class Fetched:
    """What a worker did for one node: when each stage ended, the boot files' bytes, the error
    that stopped it (empty: none)."""

    script_end: float | None
    kernel_end: float | None
    size: int
    error: str

    @classmethod
    def parse(cls, fields: list[str]) -> Fetched:
        script, kernel, size, error = fields

        def moment(text: str) -> float | None:
            return None if text == "-" else float(text)

        return cls(moment(script), moment(kernel), int(size), error.strip())


async def watch_lag(longest: list[float]) -> None:
    """``longest[0]``: the most this event loop has run late, in seconds, since it started."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(LAG_TICK)
        longest[0] = max(longest[0], time.monotonic() - before - LAG_TICK)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def http_get(session, url: str) -> bytes | int:
    """A script's text, or a file's length (read to the end, not kept)."""
    async with session.get(url) as response:
        if response.status != 200:
            raise Failed(f"HTTP {response.status} for {url}")
        if url.endswith(".ipxe"):
            return await response.read()
        total = 0
        while chunk := await response.content.readany():
            total += len(chunk)
        return total


async def fetch(address: str, mac: str, url: str, last: str) -> Fetched:
    """iPXE's fetches for one node, from its own address: the scripts, then (``last`` =
    ``kernel``) the files the node's script names."""
    import aiohttp

    fetched = Fetched(None, None, 0, "")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=1)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            entry = await http_get(session, url)
            base = url.rsplit("/", 1)[0]
            own = await http_get(session, f"{base}/dim/nodes/{mac.replace(':', '-')}.ipxe")
            urls = re.findall(r"^(?:kernel|initrd)(?: --name \S+)? (\S+)", own.decode(), re.M)
            if len(urls) != 2 or b"chain" not in entry:
                raise Failed(f"unexpected iPXE scripts: {own[:200]!r}")
            fetched.script_end = time.monotonic()
            if last == "kernel":
                fetched.size = sum([await http_get(session, file_url) for file_url in urls])
                fetched.kernel_end = time.monotonic()
    except Failed as exc:
        fetched.error = str(exc)
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        fetched.error = f"{type(exc).__name__}: {exc}"
    return fetched


async def answer(line: str) -> None:
    name, address, mac, url, last = line.split()
    fetched = await fetch(address, mac, url, last)
    ends = ["-" if end is None else repr(end) for end in (fetched.script_end, fetched.kernel_end)]
    error = " ".join(fetched.error.split())
    sys.stdout.write(f"{name} {ends[0]} {ends[1]} {fetched.size} {error}\n")
    sys.stdout.flush()


async def serve_lines(answer: Callable[[str], Awaitable[None]]) -> None:
    """A worker's life: each line of stdin answered by ``answer`` in a task of its own, until
    the end of stdin (the storm is over: a node still at work is one the storm gave up on),
    then the worker's CPU seconds and its loop's worst lateness, on a line of its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    longest = [0.0]
    watcher = asyncio.create_task(watch_lag(longest))
    tasks = set()
    while line := await reader.readline():
        task = asyncio.create_task(answer(line.decode()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    watcher.cancel()
    sys.stdout.write(f"- {cpu_seconds():.2f} {longest[0]:.3f}\n")
    sys.stdout.flush()


async def serve_nodes() -> None:
    await serve_lines(answer)


if __name__ == "__main__":
    asyncio.run(serve_nodes())
