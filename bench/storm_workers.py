"""The boot storm's client processes (bench/storm_nodes.py starts two pools of them): K
processes of one program, node N given to process N mod K. Each reads a task per line on
stdin and writes a line per result on stdout; once its stdin ends it writes
``- CPU_SECONDS LAG_SECONDS`` (its CPU time, the longest its loop ran late) and exits. The C
client (TFTP, NFS: `bench/storm_client.c`) and the HTTP workers (`bench/storm_http.py`) are
such programs::

    pool = await WorkerPool.start([binary, SERVER, reads], 4, parse_line, "TFTP and NFS client")
    answer = pool.expect(node.number, ("tftp", node.name))
    pool.send(node.number, f"tftp {node.name} {node.address} undionly.kpxe")
    status, moment, size, retries, error = await answer
    figures = await pool.stop()  # [{"cpu_s": 3.1, "loop_lag_max_s": 0.02}, ...]

A process that ends while it owes answers fails them at once (`Failed`, with its exit
status), so that its nodes fail with the reason rather than wait for the storm's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Hashable, Sequence

from storm_cluster import Failed

STOP_WAIT = 60.0  # seconds a process has to exit once its stdin ends, before it is killed

# a result line -> the key it answers and its value
Parse = Callable[[str], tuple[Hashable, object]]


class WorkerPool:
    """K processes of one program and the answers they owe, each keyed as its line says."""

    def __init__(
        self, processes: list[asyncio.subprocess.Process], parse: Parse, name: str
    ) -> None:
        self.processes = processes
        self.parse = parse
        self.name = name
        self.waiting: dict[Hashable, tuple[int, asyncio.Future]] = {}
        self.figures: list[dict] = [{} for _ in processes]
        self.ended: dict[int, str] = {}  # a process that ended before its stdin: why
        self.stopping = False
        self.readers = [asyncio.create_task(self.read(n)) for n in range(len(processes))]

    @classmethod
    async def start(
        cls, command: Sequence[str], count: int, parse: Parse, name: str, nice: int = 0
    ) -> WorkerPool:
        """``nice``: added to the processes' niceness (negative: ahead of the daemons)."""
        processes = [
            await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 20,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
            for _ in range(count)
        ]
        return cls(processes, parse, name)

    def worker(self, number: int) -> int:
        return number % len(self.processes)

    def expect(self, number: int, key: Hashable) -> asyncio.Future:
        """The answer for ``key`` from node ``number``'s process, once it comes."""
        future = asyncio.get_running_loop().create_future()
        worker = self.worker(number)
        if worker in self.ended:
            future.set_exception(Failed(self.ended[worker]))
        else:
            self.waiting[key] = (worker, future)
        return future

    def send(self, number: int, line: str) -> None:
        if self.worker(number) not in self.ended:
            self.processes[self.worker(number)].stdin.write(line.encode() + b"\n")

    async def read(self, worker: int) -> None:
        process = self.processes[worker]
        async for line in process.stdout:
            text = line.decode().rstrip("\n")
            if text.startswith("- "):
                cpu, lag = text.split()[1:3]
                self.figures[worker] = {"cpu_s": float(cpu), "loop_lag_max_s": float(lag)}
                continue
            key, value = self.parse(text)
            _, future = self.waiting.pop(key, (worker, None))
            if future is not None and not future.done():
                future.set_result(value)
        status = await process.wait()
        if not self.stopping:
            self.ended[worker] = f"the {self.name} process {worker} ended (status {status})"
            self.fail_owed(worker)

    def fail_owed(self, worker: int) -> None:
        for key, (owner, future) in list(self.waiting.items()):
            if owner == worker:
                del self.waiting[key]
                if not future.done():
                    future.set_exception(Failed(self.ended[worker]))

    async def stop(self) -> list[dict]:
        """Each process's CPU seconds and worst lateness, once its stdin is closed and it
        has exited (killed if it has not within STOP_WAIT seconds: no figures then)."""
        self.stopping = True
        for process in self.processes:
            process.stdin.close()
        for process, reader in zip(self.processes, self.readers, strict=True):
            try:
                await asyncio.wait_for(asyncio.shield(reader), STOP_WAIT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await reader
        return self.figures
