"""The REST API's asynchronous jobs: a power or boot-device action on a node set, answered at
once with the job's number, run in a worker thread, its per-node results read later.

::

    jobs = Jobs()
    job = jobs.start("power off", "node[01-04]", "ops", work)   # work() -> list of results
    jobs.get(job.id).record()      # {"id", "kind", "nodes", "by", "state", "results", …}

The nodes and their credentials are checked before a job starts (a typo is a 400, nothing
run); a node's failure is its result, never the job's. The newest :data:`KEPT` jobs are kept,
in memory: a restarted service forgets them, the event log keeps what they did.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

KEPT = 200


class Job:
    def __init__(self, number: int, kind: str, nodes: str, by: str) -> None:
        self.id = number
        self.kind = kind
        self.nodes = nodes
        self.by = by
        self.started = time.time()
        self.ended: float | None = None
        self.results: list[dict] = []
        self.error: str | None = None

    @property
    def state(self) -> str:
        if self.ended is None:
            return "running"
        return "failed" if self.error else "done"

    def record(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "nodes": self.nodes,
            "by": self.by,
            "state": self.state,
            "started": self.started,
            "ended": self.ended,
            "error": self.error,
            "failed": sum(1 for r in self.results if not r.get("ok")),
            "results": self.results,
        }


class Jobs:
    def __init__(self) -> None:
        self._jobs: OrderedDict[int, Job] = OrderedDict()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, kind: str, nodes: str, by: str, work: Callable[[], list[dict]]) -> Job:
        """``work`` in a thread of its own; its results (or error) end the job."""
        with self._lock:
            job = Job(next(self._numbers), kind, nodes, by)
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT:
                self._jobs.popitem(last=False)

        def run() -> None:
            try:
                job.results = work()
            except Exception as exc:  # the job's outcome, shown to whoever asks for it
                job.error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            finally:
                job.ended = time.time()

        threading.Thread(target=run, name=f"dim-api-job-{job.id}", daemon=True).start()
        return job

    def get(self, number: int) -> Job | None:
        with self._lock:
            return self._jobs.get(number)

    def recent(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))
