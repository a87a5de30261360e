"""``dim serve``: the HTTP service that iPXE clients fetch boot scripts, kernels and initrds from.

::

    GET /boot.ipxe                         the entry script: chains to the node's own by MAC
    GET /dim/nodes/52-54-00-00-00-01.ipxe  the node's current image, with dim.node= dim.mac=
    GET /dim/images/<image>/<version>/vmlinuz|initrd.img   a boot build (what node scripts name)
    GET /dim/images/<image>/vmlinuz|initrd.img             the image's current boot build
    GET /anything/else                     a file below the server's http_root, never outside

Nothing is rendered ahead of time: a node's script is answered from the state DB at the moment
it asks (one indexed query, :meth:`dim.state.StateDB.boot_target`), so ``dim node switch`` and
``dim node set --image`` take effect at the next boot without any file being rewritten, and
cluster.xml is parsed again when its modification time changes. Each node script served is a
boot: it is queued and written to the DB by one thread, in batches, so that hundreds of nodes
booting at once never wait for the database.

While the state DB cannot be reached (a PostgreSQL server down), nodes still boot: their scripts
are answered from the boot targets that ``dim apply`` and ``dim node switch`` last wrote
(:mod:`dim.boot.targets`), the DB is tried again every :attr:`Outage.retry` seconds, and the
boots wait in memory (at most :attr:`BootRecorder.PENDING`) until it answers. The outage is
logged when it starts and when it ends, not at each request::

    >>> service = BootService(Path("/etc/dim/cluster.xml"), Path("/var/lib/dim"), "img1")
    >>> run(service, "10.0.0.2", 8080)          # until SIGTERM or SIGINT

or, inside a running event loop (a lab, a test): ``runner = await start(service, host, port)``
and later ``await runner.cleanup()``, which writes the boots still queued.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import queue
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from dim.boot.builds import FILES as BOOT_FILES
from dim.boot.builds import BootBuild, find_build
from dim.boot.connections import REFUSED, GuardedSite, Limits, raise_file_limit
from dim.boot.metrics import ServeMetrics, forget_shared, share_between_workers
from dim.boot.sendfile import SEND_CUT, Senders, SentFile
from dim.boot.targets import Snapshot
from dim.errors import DimError, StateUnavailable
from dim.inventory import server_name as choose_server
from dim.layout import parser as layout
from dim.layout.model import Cluster, Image, Inventory, Node, Server
from dim.names import check_name, normalize_mac
from dim.paths import StatePaths
from dim.services.loaders import BootImage, kernel_args
from dim.services.rendering import RenderContext
from dim.services.sessions import Sampler
from dim.state import Boot, BootTarget, StateDB

log = logging.getLogger("dim.serve")

BINARY = "application/octet-stream"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
RETRY = "echo dim: retrying in 30 seconds\nsleep 30\nreboot\n"
DEFAULT_LIMITS = Limits()
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


# -- the service -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back: an HTTP status and an iPXE script (or a short text)."""

    status: int
    body: str
    boot: Boot | None = None  # a node script served: the boot to record


class BootService:
    """Answers boot requests for the nodes of one server from cluster.xml and the state DB.

    cluster.xml is parsed again when its modification time (or size, or inode) changes; a
    layout that no longer parses is logged, and the last good one is kept meanwhile.
    """

    BUILD_TTL = 1.0  # a new boot build is served within a second

    def __init__(
        self,
        config: Path,
        state_dir: Path,
        server_name: str | None = None,
        *,
        template_dir: Path | None = None,
        root: Path = Path("/"),
        database: str | None = None,
    ) -> None:
        self.config = Path(config)
        self.state_dir = Path(state_dir)
        self.paths = StatePaths(self.state_dir)
        self.template_dir = template_dir
        self.root = Path(root)
        self.database_url = database
        self._stamp: tuple[int, int, int] | None = None
        self._cluster = layout.load(self.config)
        self._stamp = self._stat()
        self.server_name = choose_server(self._cluster, server_name)
        self._builds: dict[str, tuple[float, BootBuild | None]] = {}
        self.outage = Outage(self.paths.boot_targets)
        self.snapshot = Snapshot(self.paths.boot_targets)
        self._db: StateDB | None = None
        self._db_lock = threading.Lock()
        try:  # a bad URL or a missing driver stops here; an unreachable DB does not
            self.database()
        except StateUnavailable as exc:
            self.outage.failed(exc)

    # -- state DB ----------------------------------------------------------------------------

    def database(self) -> StateDB:
        """The state DB, opened at the first call that reaches it (:class:`StateUnavailable`
        until then): a server may start while the DB is down."""
        with self._db_lock:
            if self._db is None:
                self._db = StateDB.open(self.state_dir, url=self.database_url)
            return self._db

    def boot_target(self, mac: str) -> BootTarget | None:
        """:meth:`StateDB.boot_target`, or while the DB is unreachable the boot targets file's
        answer (:class:`StateUnavailable` if there is no such file)."""
        if self.outage.due():
            try:
                target = self.database().boot_target(mac)
            except StateUnavailable as exc:
                self.outage.failed(exc)
            else:
                self.outage.ended()
                return target
        try:
            return self.snapshot.target(mac)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StateUnavailable(
                f"the state DB is unreachable, and so is {self.paths.boot_targets}: {reason}",
                hint="dim apply writes that file, for the state DB's outages",
            ) from exc

    def after_fork(self) -> None:
        """In a forked worker: the DB connections in the pool are the parent's, not to use."""
        if self._db is not None:
            self._db.engine.dispose(close=False)

    # -- layout ------------------------------------------------------------------------------

    def cluster(self) -> Cluster:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            try:
                self._cluster = layout.load(self.config)
                log.info("layout: %s reloaded", self.config)
            except DimError as exc:
                log.error("layout: %s; still serving the previous layout", exc.message)
            self._stamp = stamp
        return self._cluster

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.config)
        except OSError:
            return self._stamp  # gone for a moment (an editor's rename): keep what we have
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def server(self) -> Server:
        cluster = self.cluster()
        server = cluster.servers.get(self.server_name)
        if server is None:  # the layout dropped this server since we started
            raise DimError(f"server {self.server_name} is no longer in {cluster.source}")
        return server

    @property
    def http_root(self) -> Path:
        return self.root / self.server().http_root.lstrip("/")

    # -- answers -----------------------------------------------------------------------------

    def entry_script(self, boot_url: str) -> Answer:
        return Answer(200, self._context().render("boot.ipxe.j2", boot_url=boot_url).decode())

    def node_script(self, name: str, client: str, boot_url: str | None) -> Answer:
        """The script of the node whose boot interface has the MAC of ``<mac>.ipxe``: its
        current image's current boot build, with ``dim.node=`` and ``dim.mac=`` added.

        ``boot_url`` is the URL the node reached us by; without one, its own server's (in a
        failover set, this server may hold a dead peer's address and answer its nodes).
        """
        cluster = self.cluster()
        found = self._booting(cluster, name)
        if isinstance(found, Answer):
            return found
        node, image, mac = found
        build = self.current_build(image.name)
        if build is None:
            message = (
                f"image {image.name} has no boot build (on the server: dim boot build {image.name})"
            )
            log.warning("%s: %s", node.name, message)
            return Answer(200, f"#!ipxe\necho dim: {node.name}: {message}\n{RETRY}")
        context = self._context(cluster)
        own = cluster.servers[node.server]
        boot_url = boot_url or own.boot_url
        folder = f"dim/images/{image.name}/{build.version}"  # pinned: kernel and initrd match
        boot_image = BootImage(
            name=image.name,
            kernel=f"{folder}/vmlinuz",
            initrd=f"{folder}/initrd.img",
            args=f"{kernel_args(context, image, own)} dim.node={node.name} dim.mac={mac}",
        )
        script = context.render("image.ipxe.j2", image=boot_image, boot_url=boot_url).decode()
        boot = Boot(node.name, image.name, str(build.version), client, time.time())
        return Answer(200, script, boot)

    def _booting(self, cluster: Cluster, name: str) -> tuple[Node, Image, str] | Answer:
        """The node of this server whose boot MAC ``<mac>.ipxe`` names, its image, the MAC."""
        try:
            mac = normalize_mac(name.removesuffix(".ipxe"))
        except ValueError:
            mac = None
        if mac is None or not name.endswith(".ipxe"):
            return _refusal(404, f"no node script {name[:40]!r}: expected <mac>.ipxe")
        target = self.boot_target(mac)
        node = cluster.node(target.node) if target else None
        if target is None or node is None:
            return _refusal(404, f"unknown MAC {mac} (record it: dim node set NODE --mac {mac})")
        if target.network != node.boot.network:
            return _refusal(
                404, f"MAC {mac} is {node.name}'s on {target.network}, not its boot NIC"
            )
        if node.server not in cluster.peers(self.server_name):
            return _refusal(404, f"{node.name} ({mac}) boots from server {node.server}")
        image = cluster.images.get(target.image or node.image or "")
        if image is None:
            return _refusal(404, f"{node.name} ({mac}) has no image to boot")
        return node, image, mac

    def current_build(self, image: str) -> BootBuild | None:
        """:func:`~dim.boot.builds.find_build`, remembered for :attr:`BUILD_TTL` seconds: a node
        script costs one DB query, not also a folder listing and a file read."""
        now = time.monotonic()
        cached = self._builds.get(image)
        if cached is None or now - cached[0] > self.BUILD_TTL:
            cached = (now, find_build(self.paths, image))
            self._builds[image] = cached
        return cached[1]

    def boot_file(self, image: str, name: str, version: str | None = None) -> Path | Answer:
        if name not in BOOT_FILES or not _safe_name(image):
            return Answer(404, "not found\n")
        if version is not None and not _version_number(version):
            return Answer(404, "not found\n")
        if image not in self.cluster().images:
            return Answer(404, f"dim: no image {image} in {self.config}\n")
        if version is not None:
            build = find_build(self.paths, image, int(version))
        else:
            build = self.current_build(image)
        if build is None:
            which = f"version {version} of image {image}" if version else f"image {image}"
            return Answer(404, f"dim: {which} has no boot build: run `dim boot build {image}`\n")
        return build.file(name)

    def static_file(self, tail: str) -> Path | Answer:
        """The file of http_root that ``tail`` (the decoded URL path) names, never one outside.

        Refused: ``..`` or ``.`` segments, absolute paths, NUL and backslashes (however they
        were encoded: ``tail`` is decoded), and symbolic links that resolve outside the root
        (403). Dot-files are not served (404): a name starting with ``.`` anywhere below the
        root, asked for or reached through a symbolic link (``.git/``, ``.htpasswd``, an
        editor's ``.swp``, the temporary name of a file being written).
        """
        parts = tail.split("/")
        if tail.startswith("/") or "\0" in tail or "\\" in tail or {".", ".."} & set(parts):
            return Answer(403, "forbidden\n")
        if any(part.startswith(".") for part in parts):
            return Answer(404, "not found\n")
        root = self.http_root.resolve()
        try:
            path = root.joinpath(*[p for p in parts if p]).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symbolic link loop
            return Answer(404, "not found\n")
        if not path.is_relative_to(root):
            return Answer(403, "forbidden\n")
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            return Answer(404, "not found\n")
        return path if path.is_file() else Answer(404, "not found\n")

    def _context(self, cluster: Cluster | None = None) -> RenderContext:
        inventory = Inventory(cluster or self.cluster(), {}, {})
        return RenderContext(inventory, self.server_name, self.state_dir, self.template_dir)


def _refusal(status: int, message: str) -> Answer:
    log.warning("refused: %s", message)
    return Answer(status, f"#!ipxe\necho dim: {message}\n{RETRY}")


def _safe_name(name: str) -> bool:
    try:
        check_name("image", name)
    except ValueError:
        return False
    return True


def _version_number(text: str) -> bool:
    """Whether ``text`` names a version as its folder does: ``12``, not ``012`` or ``1e3``."""
    return text.isdigit() and text.isascii() and str(int(text)) == text


# -- boot records ----------------------------------------------------------------------------


class Outage:
    """Whether the state DB is unreachable: logged once when that starts and once when it ends,
    and tried again every :attr:`retry` seconds meanwhile, not at each request (a host that
    does not answer costs a connection timeout). Shared by the service and its recorder."""

    retry = 5.0

    def __init__(self, snapshot: Path) -> None:
        self.snapshot = snapshot  # what the service answers from meanwhile, for the log
        self._lock = threading.Lock()
        self.since: float | None = None  # time.monotonic() when it started, None while up
        self._tried = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def due(self) -> bool:
        """Whether to try the DB now: while it is up, always; while it is down, every
        :attr:`retry` seconds (the caller that gets True tries; the others wait)."""
        with self._lock:
            if self.since is None:
                return True
            now = time.monotonic()
            if now - self._tried < self.retry:
                return False
            self._tried = now
            return True

    def failed(self, exc: StateUnavailable) -> None:
        with self._lock:
            self._tried = time.monotonic()
            if self.since is not None:
                return
            self.since = self._tried
        log.error(
            "%s; answering boot scripts from %s and keeping boots in memory until it answers "
            "(tried again every %g s)",
            exc.message,
            self.snapshot,
            self.retry,
        )

    def ended(self) -> None:
        with self._lock:
            if self.since is None:
                return
            lasted, self.since = time.monotonic() - self.since, None
        log.info("state DB: reachable again after %.0f s", lasted)


class BootRecorder:
    """Writes boots to the state DB from one thread, every waiting boot in one transaction.

    :meth:`record` only puts the boot on a queue: the event loop never waits for the DB. While
    one batch is written, the next boots queue up and go in the next transaction, so 200 nodes
    booting at once cost a few transactions, not 200. While the DB is unreachable the boots
    wait in memory, the newest ``pending`` of them, and go with the first write that
    succeeds (tried every :attr:`Outage.retry` seconds).
    """

    BATCH = 1000
    PENDING = 100_000  # boots kept through an outage: a few MB; older ones are dropped

    def __init__(
        self, database: Callable[[], StateDB], outage: Outage, pending: int = PENDING
    ) -> None:
        self.database = database  # the state DB, or StateUnavailable
        self.outage = outage
        self._queue: queue.Queue[Boot | None] = queue.Queue()
        self._pending: collections.deque[Boot] = collections.deque(maxlen=pending)
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="dim-boot-recorder", daemon=True)

    @property
    def pending(self) -> int:
        """How many boots wait for the DB to answer again."""
        return len(self._pending)

    def start(self) -> None:
        self._thread.start()

    def record(self, boot: Boot) -> None:
        self._queue.put_nowait(boot)

    def flush(self) -> None:
        """Wait until every boot recorded so far is written, or pending (tests, shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._pending:
            log.error("state DB: %d boots not recorded (it is unreachable)", len(self._pending))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, taken, stopping = self._take()
            if batch or self._pending:
                if self.outage.due():
                    self._write(batch)
                else:  # the DB was tried less than Outage.retry seconds ago
                    self._keep(batch)
            for _ in range(taken):
                self._queue.task_done()

    def _take(self) -> tuple[list[Boot], int, bool]:
        """The boots waiting on the queue (at least one, or none after a wait of
        :attr:`Outage.retry` while boots are pending), how many items, and whether to stop."""
        batch: list[Boot] = []
        wait = self.outage.retry if self._pending else None
        try:
            item, taken = self._queue.get(timeout=wait), 1
        except queue.Empty:
            return batch, 0, False
        while True:
            if item is None:
                return batch, taken, True
            batch.append(item)
            if len(batch) >= self.BATCH:
                return batch, taken, False
            try:
                item, taken = self._queue.get_nowait(), taken + 1
            except queue.Empty:
                return batch, taken, False

    def _write(self, batch: list[Boot]) -> None:
        boots = [*self._pending, *batch]
        try:
            self.database().record_boots(boots)
        except StateUnavailable as exc:
            self.outage.failed(exc)
            self._keep(batch)
            return
        except Exception as exc:  # a full disk must not stop the service: the boots are lost
            log.error("state DB: %d boots not recorded: %s", len(boots), exc)
        else:
            self.outage.ended()
            if self._pending:
                dropped = f" ({self._dropped} older ones were dropped)" if self._dropped else ""
                log.info("state DB: %d boots recorded after the outage%s", len(boots), dropped)
        self._pending.clear()
        self._dropped = 0

    def _keep(self, batch: list[Boot]) -> None:
        limit = self._pending.maxlen or 0
        overflow = len(self._pending) + len(batch) - limit
        self._pending.extend(batch)  # the deque drops the oldest beyond its length
        if overflow > 0:
            if not self._dropped:
                log.error("state DB: %d boots pending; the oldest are dropped", limit)
            self._dropped += overflow


# -- HTTP ------------------------------------------------------------------------------------

SERVICE = web.AppKey("service", BootService)
RECORDER = web.AppKey("recorder", BootRecorder)
LIMITS = web.AppKey("limits", Limits)
SENDERS = web.AppKey("senders", Senders)  # the files being sent at once, by every worker
METRICS = web.AppKey("metrics", object)  # a ServeMetrics, None without GET /metrics
SAMPLER = web.AppKey("sampler", object)  # a Sampler, None when another worker samples


def make_app(
    service: BootService,
    limits: Limits = DEFAULT_LIMITS,
    senders: Senders | None = None,
    *,
    metrics: bool = True,
    sessions: tuple[str, ...] = (),
) -> web.Application:
    """The aiohttp application; its startup starts the boot recorder, its cleanup flushes it.
    ``senders``: the files being sent, shared with the other workers (a worker's own else);
    ``metrics``: ``GET /metrics`` for Prometheus (:mod:`dim.boot.metrics`); ``sessions``: the
    pid files of the NFS servers whose sessions to record in the state DB every few seconds
    (:class:`dim.services.sessions.Sampler`; ``self``: this machine's), none: not recorded."""
    app = web.Application(middlewares=[_dim_errors])
    app[SERVICE] = service
    app[LIMITS] = limits
    app[SENDERS] = senders if senders is not None else Senders()
    app[RECORDER] = BootRecorder(service.database, service.outage)
    app[METRICS] = ServeMetrics() if metrics else None
    app[SAMPLER] = _sampler(service, sessions) if sessions else None
    app.on_startup.append(_start_recorder)
    app.on_cleanup.append(_stop_recorder)
    app.router.add_get("/boot.ipxe", _entry)
    app.router.add_get("/dim/health", _health)
    if metrics:
        app.router.add_get("/metrics", _metrics)
    app.router.add_get("/dim/nodes/{name}", _node)
    app.router.add_get("/dim/images/{image}/{file}", _boot_file)
    app.router.add_get("/dim/images/{image}/{version}/{file}", _boot_file)
    app.router.add_get("/{tail:.*}", _static)
    return app


@web.middleware
async def _dim_errors(request: web.Request, handler) -> web.StreamResponse:
    """A DimError (the state DB unreadable, the server gone from the layout) is one log line
    and a 503 with the message, never a traceback: the client retries later."""
    try:
        return await handler(request)
    except DimError as exc:
        log.error("%s %s: %s", request.remote, request.raw_path[:200], exc.message)
        return _reply(Answer(503, f"#!ipxe\necho dim: {exc.message}\n{RETRY}"))


async def _start_recorder(app: web.Application) -> None:
    app[RECORDER].start()
    if app[SAMPLER] is not None:
        app[SAMPLER].start()


async def _stop_recorder(app: web.Application) -> None:
    await asyncio.to_thread(app[RECORDER].stop)
    if app[SAMPLER] is not None:
        await asyncio.to_thread(app[SAMPLER].stop)


def _sampler(service: BootService, pid_files: tuple[str, ...]) -> Sampler:
    """Records the NFS sessions on this machine as the service's server's, in the state DB."""

    def write(clients, at: float) -> None:
        service.database().record_nfs_sessions(service.server_name, clients, at)

    return Sampler(pid_files, write)


def _boot_url(request: web.BaseRequest) -> str | None:
    """The URL the client reached us by (its Host header), so that scripts chained from here
    come back to the same address and port; None when the header is odd or missing."""
    host = request.headers.get("Host", "")
    return f"http://{host}" if _HOST.fullmatch(host) else None


def _reply(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, text=answer.body, content_type="text/plain")


async def _health(request: web.Request) -> web.StreamResponse:
    """For keepalived's check of a failover set: the event loop answers."""
    return web.Response(text="ok\n", content_type="text/plain")


async def _entry(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    return _reply(service.entry_script(_boot_url(request) or service.server().boot_url))


async def _node(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    boot_url = _boot_url(request)
    client = request.remote or "-"
    name = request.match_info["name"]
    # The lookup may wait on a disk or, with PostgreSQL, on the network: not on the loop.
    answer = await asyncio.to_thread(service.node_script, name, client, boot_url)
    if answer.boot is not None and request.method == "GET":
        request.app[RECORDER].record(answer.boot)
        if request.app[METRICS] is not None:
            request.app[METRICS].boot(answer.boot.image, service.server_name or "-")
    return _reply(answer)


async def _metrics(request: web.Request) -> web.StreamResponse:
    body, kind = request.app[METRICS].exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = kind  # with its version parameter, as Prometheus wants
    return response


async def _boot_file(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    found = request.app[SERVICE].boot_file(info["image"], info["file"], info.get("version"))
    if isinstance(found, Answer):
        return _reply(found)
    return _sent(request, found, BINARY)


async def _static(request: web.Request) -> web.StreamResponse:
    found = request.app[SERVICE].static_file(request.match_info["tail"])
    if isinstance(found, Answer):
        if found.status == 403:
            log.warning("refused: %s asked for %s", request.remote, request.raw_path[:200])
        return _reply(found)
    return _sent(request, found)


def _sent(request: web.Request, path: Path, kind: str | None = None) -> SentFile:
    """``path`` sent within the send timeout, its floor shared with the worker's other files."""
    timeout = request.app[LIMITS].send_timeout
    return SentFile(path, kind, send_timeout=timeout, senders=request.app[SENDERS])


class RequestLog(AbstractAccessLogger):
    """One line per request: client, method and path, status, body bytes, milliseconds; for a
    refused request, why: ``10.0.0.9 - - 400 16 0.2ms refused: Invalid HTTP version``."""

    metrics: ServeMetrics | None = None  # set on a subclass per application (runner_options)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # body_length misses what sendfile(2) sent: the body's declared length is the count
        size = 0 if request.method == "HEAD" else (response.content_length or 0)
        refused = request.get(REFUSED)
        parsed = refused is None or refused[1]
        cut = request.get(SEND_CUT)
        if self.metrics is not None:
            self.metrics.request(
                request.path if parsed else "-",
                response.status,
                size,
                time,
                refused=refused[0] if refused else None,
                cut=cut,
            )
        self.logger.info(
            "%s %s %s %d %d %.1fms%s",
            request.remote,
            request.method if parsed else "-",
            request.raw_path[:200] if parsed else "-",
            response.status,
            size,
            time * 1000,
            f" refused: {refused[0]}" if refused else f" cut: {cut}" if cut else "",
        )


def runner_options(limits: Limits = DEFAULT_LIMITS, metrics: ServeMetrics | None = None) -> dict:
    """How an aiohttp runner of this app logs requests (:class:`RequestLog` to ``dim.serve``,
    counted in ``metrics``) and how long it waits for idle connections and for bodies."""
    logger = (
        RequestLog if metrics is None else type("RequestLog", (RequestLog,), {"metrics": metrics})
    )
    return {"access_log_class": logger, "access_log": log, **limits.handler_options()}


async def start(
    service: BootService,
    host: str = "",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    limits: Limits = DEFAULT_LIMITS,
    senders: Senders | None = None,
    metrics: bool = True,
    sessions: tuple[str, ...] = (),
) -> web.AppRunner:
    """Serve in the running event loop (a lab, a test) on ``host:port``, or on ``sock`` (see
    :func:`listen`), within ``limits``; ``await runner.cleanup()`` stops it and writes the
    boots still queued."""
    if sock is None:
        sock = listen(host, port)
    app = make_app(service, limits, senders, metrics=metrics, sessions=sessions)
    options = runner_options(limits, app[METRICS])
    runner = web.AppRunner(app, **options)
    await runner.setup()
    await GuardedSite(runner, sock, limits, options).start()
    return runner


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, made before any worker starts: a taken port is one error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        raise DimError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}",
            hint="is another server on that port, or the address not on this machine?",
        ) from exc
    sock.setblocking(False)
    return sock


def run(
    service: BootService,
    host: str,
    port: int,
    workers: int = 1,
    limits: Limits = DEFAULT_LIMITS,
    *,
    metrics: bool = True,
    sessions: tuple[str, ...] = (),
) -> None:
    """Serve until SIGTERM or SIGINT with ``workers`` processes sharing one listening socket
    (as nginx's workers do: the kernel's work of sending files spreads over the cores), each
    within ``limits``, with ``GET /metrics`` unless not ``metrics``, recording the NFS
    sessions of ``sessions``'s servers (the first worker does); boots still queued are
    written before returning."""
    sock = listen(host, port)
    limits = raise_file_limit(limits)
    log.info(
        "serving boot scripts, kernels and %s for server %s on http://%s:%d (%d worker%s, "
        "at most %d connections each)",
        service.http_root,
        service.server_name,
        host,
        port,
        workers,
        "s" if workers > 1 else "",
        limits.max_connections,
    )
    if workers <= 1:
        asyncio.run(_serve(service, sock, limits, metrics=metrics, sessions=sessions))
    else:
        # every worker's counts in one folder, so that a scrape answered by any shows them all
        shared = share_between_workers() if metrics else None
        # a SIGTERM between two forks waits until every worker is known to the supervisor
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        board = Senders.board(workers)
        try:
            _supervise(
                [
                    _fork_worker(
                        service, sock, limits, Senders(board, n), metrics, () if n else sessions
                    )
                    for n in range(workers)
                ]
            )
        finally:
            if shared is not None:
                forget_shared(shared)
    log.info("stopped")


async def _serve(
    service: BootService,
    sock: socket.socket,
    limits: Limits,
    senders: Senders | None = None,
    *,
    metrics: bool = True,
    sessions: tuple[str, ...] = (),
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    runner = await start(
        service, sock=sock, limits=limits, senders=senders, metrics=metrics, sessions=sessions
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _fork_worker(
    service: BootService,
    sock: socket.socket,
    limits: Limits,
    senders: Senders,
    metrics: bool,
    sessions: tuple[str, ...],
) -> int:
    pid = os.fork()
    if pid:
        return pid
    status = 0
    try:
        service.after_fork()
        asyncio.run(_serve(service, sock, limits, senders, metrics=metrics, sessions=sessions))
    except BaseException as exc:  # a worker never returns into the caller's code
        log.error("worker %d: %s", os.getpid(), exc)
        status = 1
    finally:
        logging.shutdown()
        os._exit(status)


def _supervise(pids: list[int]) -> None:
    """Wait for the workers; SIGTERM or SIGINT stops them all, and so does one that dies."""
    alive = set(pids)
    stopping = False

    def stop(_number=None, _frame=None) -> None:
        nonlocal stopping
        stopping = True
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    failed = False
    while alive:
        pid, status = os.wait()
        alive.discard(pid)
        if not stopping:
            log.error("worker %d ended (wait status %d); stopping the others", pid, status)
            failed = True
            stop()
    if failed:
        raise DimError("a worker of dim serve ended unexpectedly; all were stopped")
