"""``dim api``'s metrics, for Prometheus (``GET /metrics``): what the cluster is, read at each
scrape (nodes per state, images' versions, replicas and their conflicts, the last apply's time
and result) and what the API did (requests by route and status, nodes' power results).

::

    metrics = ApiMetrics(service)
    metrics.request("GET /api/v1/nodes", 200)
    body, kind = metrics.exposition()          # reads the state DB, the store, the sessions
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dim.actions import images
from dim.actions import status as node_status
from dim.actions.context import Context
from dim.images.replicas import read_conflicts


class ClusterCollector:
    """A prometheus_client collector that reads the cluster when scraped."""

    def __init__(self, ctx: Context, pid_files: Callable[[], tuple[str, ...]]) -> None:
        self.ctx = ctx
        self.pid_files = pid_files

    def collect(self) -> Iterator:
        from prometheus_client.core import GaugeMetricFamily

        found = node_status.live_sessions(self.ctx, self.pid_files())
        report = node_status.statuses(self.ctx, sessions=found)
        nodes = GaugeMetricFamily(
            "dim_nodes", "Nodes by state (dim node status).", labels=["state"]
        )
        for state, count in report.counts.items():
            nodes.add_metric([state], count)
        yield nodes
        known = GaugeMetricFamily(
            "dim_nfs_sessions_known", "1 when an NFS server's sessions could be read."
        )
        known.add_metric([], 1 if report.sessions_known else 0)
        yield known
        live = GaugeMetricFamily(
            "dim_image_live_version", "The version of each image that nodes see.", labels=["image"]
        )
        versions = GaugeMetricFamily(
            "dim_image_versions", "Versions kept of each image.", labels=["image"]
        )
        replicas = GaugeMetricFamily(
            "dim_image_replicas", "Nodes' replicas of each image.", labels=["image"]
        )
        users = GaugeMetricFamily("dim_image_nodes", "Nodes assigned each image.", labels=["image"])
        conflicted = GaugeMetricFamily(
            "dim_image_conflicted_replicas",
            "Replicas that kept paths of their own against the image's changes.",
            labels=["image"],
        )
        conflicts = GaugeMetricFamily(
            "dim_image_replica_conflicts",
            "Paths that replicas kept against the image's changes, all replicas together.",
            labels=["image"],
        )
        store = self.ctx.store()
        for r in images.reports(self.ctx):
            if r.live is not None:
                live.add_metric([r.name], r.live)
            versions.add_metric([r.name], len(r.versions))
            replicas.add_metric([r.name], len(r.replicas))
            users.add_metric([r.name], len(r.users))
            kept = read_conflicts(store, r.name)
            conflicted.add_metric([r.name], len(kept))
            conflicts.add_metric([r.name], sum(len(paths) for paths in kept.values()))
        yield from (live, versions, replicas, users, conflicted, conflicts)
        yield from self._last_apply()

    def _last_apply(self) -> Iterator:
        from prometheus_client.core import GaugeMetricFamily

        db = self.ctx.existing_db()
        found = db.events(limit=1, kinds=("apply", "apply-failed")) if db else []
        if not found:
            return
        at = GaugeMetricFamily(
            "dim_last_apply_timestamp_seconds", "When the last dim apply (not a dry run) ended."
        )
        at.add_metric([], found[0].at)
        ok = GaugeMetricFamily("dim_last_apply_success", "1 if the last dim apply succeeded.")
        ok.add_metric([], 1 if found[0].kind == "apply" else 0)
        yield from (at, ok)


POWER_KINDS = ("power", "power-failed", "bootdev", "bootdev-failed")


class PowerOutcomes:
    """Nodes' power and boot-device results since the service started, counted from the
    events that :func:`dim.actions.power.log_outcomes` logs, whoever asked (the API's jobs,
    ``dim power`` on the command line, Slurm's scripts): read at each scrape, from the
    last event counted on."""

    PAGE = 10_000

    def __init__(self, ctx: Context, registry) -> None:
        from prometheus_client import Counter

        self.ctx = ctx
        self.counter = Counter(
            "dim_power_results",
            "Nodes' power and boot-device results since dim api started (API jobs and "
            "command line alike), by action and outcome.",
            ["action", "ok"],
            registry=registry,
        )
        self.last = self._newest()

    def _newest(self) -> int:
        db = self.ctx.existing_db()
        found = db.events(limit=1) if db else []
        return found[0].id if found else 0

    def catch_up(self) -> None:
        db = self.ctx.existing_db()
        while db is not None:
            found = db.events(
                limit=self.PAGE, after=self.last, kinds=POWER_KINDS, oldest_first=True
            )
            for e in found:
                kind, ok = e.kind.removesuffix("-failed"), not e.kind.endswith("-failed")
                self.counter.labels(f"{kind} {e.detail.split(':')[0]}", str(ok).lower()).inc()
            if found:
                self.last = found[-1].id
            if len(found) < self.PAGE:
                return


class ApiMetrics:
    def __init__(self, ctx: Context, pid_files: tuple[str, ...]) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.registry = CollectorRegistry()
        self.registry.register(ClusterCollector(ctx, lambda: pid_files))
        self.requests = Counter(
            "dim_api_requests",
            "API requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.power = PowerOutcomes(ctx, self.registry)

    def request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.power.catch_up()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
