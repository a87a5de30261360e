"""``dim serve``'s metrics, for Prometheus: boots, latencies, bytes, refusals (``GET /metrics``).

::

    metrics = ServeMetrics()                     # in each worker, after the fork
    metrics.request("/dim/nodes/52-54-….ipxe", 200, 153, 0.004, refused=None, cut=None)
    metrics.boot("alpha", "img1")
    metrics.exposition()                         # (bytes, content type): the text format

prometheus_client is imported when the first :class:`ServeMetrics` is made, not with this
module: with several workers (``dim serve --workers N``), :func:`share_between_workers` must
first name the folder where each worker's values go (its ``PROMETHEUS_MULTIPROC_DIR``, read
when prometheus_client is imported), so that a scrape answered by any worker counts them all.
Each :class:`ServeMetrics` has a registry of its own: tests make several in one process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# a boot script answers in milliseconds; a kernel or initrd takes seconds, minutes in a storm
BUCKETS = (0.001, 0.005, 0.02, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def kind_of(path: str) -> str:
    """What a request path asks for, as a label of few values (never the path itself)."""
    if path == "/boot.ipxe":
        return "entry"
    if path.startswith("/dim/nodes/"):
        return "script"
    if path.startswith("/dim/images/"):
        name = path.rsplit("/", 1)[-1]
        return {"vmlinuz": "kernel", "initrd.img": "initrd"}.get(name, "boot-file")
    if path == "/metrics":
        return "metrics"
    if path == "/dim/health":
        return "health"
    return "file"


def share_between_workers() -> Path:
    """A fresh folder for the workers' values, named in the environment before prometheus_client
    is imported; :func:`forget_shared` removes it when the service ends."""
    folder = Path(tempfile.mkdtemp(prefix="dim-serve-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


def forget_shared(folder: Path) -> None:
    os.environ.pop(MULTIPROCESS_ENV, None)
    shutil.rmtree(folder, ignore_errors=True)


class ServeMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.shared = os.environ.get(MULTIPROCESS_ENV)
        self.boots = Counter(
            "dim_boots",
            "Boot scripts served: nodes that booted, by image and server.",
            ["image", "server"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "dim_serve_request_seconds",
            "Time to answer a request, whole body sent, by what was asked.",
            ["kind"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.sent = Counter(
            "dim_serve_sent_bytes",
            "Bytes of response bodies sent, by what was asked.",
            ["kind"],
            registry=self.registry,
        )
        self.refused = Counter(
            "dim_serve_refused_requests",
            "Requests refused (a malformed request, the connection limit) or files cut "
            "(a client that stopped reading), by reason and status.",
            ["reason", "status"],
            registry=self.registry,
        )

    def boot(self, image: str, server: str) -> None:
        self.boots.labels(image, server).inc()

    def request(
        self,
        path: str,
        status: int,
        size: int,
        seconds: float,
        *,
        refused: str | None = None,
        cut: str | None = None,
    ) -> None:
        if refused is not None:
            self.refused.labels("refused", str(status)).inc()
            return
        kind = kind_of(path)
        self.seconds.labels(kind).observe(seconds)
        self.sent.labels(kind).inc(size)
        if cut is not None:
            self.refused.labels("cut", str(status)).inc()
        elif status == 403:
            self.refused.labels("forbidden", "403").inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, every worker's when they are shared."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = self.registry
        if self.shared:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.shared)
        return generate_latest(registry), CONTENT_TYPE_LATEST
