"""``dim serve``: run the HTTP boot service (see :mod:`dim.boot.serve`) in the foreground.

::

    dim serve --root /tmp/staging --port 8080 --workers 1
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from dim.cli.context import Context, pass_context
from dim.services import limits


@click.command("serve")
@click.option(
    "--listen",
    metavar="ADDR",
    help="Address to listen on (default: the server's; in a failover set, all).",
)
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: its http-port).")
@click.option("--server", help="Image server to serve for (default: the only one).")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Serve http-root below this folder, as `dim apply --root` installed it.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=0,
    help="Processes sharing the port (default 0: one per core, at most 8).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a new connection has to send a complete request head.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a request body (which dim serve never needs) may take to arrive.",
)
@click.option(
    "--keepalive-timeout",
    type=click.FloatRange(0.1, 3600),
    default=15.0,
    show_default=True,
    help="Seconds a kept-alive connection may wait for its next complete request head.",
)
@click.option(
    "--send-timeout",
    type=click.FloatRange(0.1, 3600),
    default=20.0,
    show_default=True,
    help="Seconds in which a client must take 256 KiB of a file, shared by the files sent "
    "at once (1/N of it among N), or be cut.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Open connections per worker; beyond it a new one gets 503 and is closed. "
    "[default: 2048, or the nodes this server serves and 64 more]",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Answer GET /metrics (Prometheus's text format, no authentication, as Prometheus "
    "scrapes).",
)
@click.option(
    "--nfs-pid-file",
    "pid_files",
    multiple=True,
    metavar="FILE",
    help="Record the NFS sessions of the server with this pid file (repeatable; `self`: "
    "this machine's own network namespace, where ganesha or the kernel's nfsd usually run; "
    "`none`: record none). Default: self.",
)
@pass_context
def command(
    ctx: Context,
    listen: str | None,
    port: int | None,
    server: str | None,
    root: Path,
    workers: int,
    header_timeout: float,
    body_timeout: float,
    keepalive_timeout: float,
    send_timeout: float,
    max_connections: int | None,
    metrics: bool,
    pid_files: tuple[str, ...],
) -> None:
    """Serve iPXE boot scripts, kernels, initrds and http-root over HTTP until stopped.

    \b
    /boot.ipxe                        chains to the node's own script by MAC
    /dim/nodes/<mac>.ipxe             the node's current image, from the state DB at each boot
    /dim/images/<image>/vmlinuz       the current boot build (also initrd.img)
    /dim/health                       "ok" while serving (keepalived's check in a failover set)
    /metrics                          boots, latencies, bytes and refusals, for Prometheus
    anything else                     a file below http-root, never outside it

    One line per request on stderr: client, method and path, status, bytes, milliseconds;
    a refused request adds why (`refused: …`), never a traceback.
    Each node script served is recorded as the node's last boot (`dim node list`).
    Every 5 s the nodes' live NFS sessions on this machine are recorded in the state DB as
    this server's, so that `dim node status` run on any machine sees them.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dim serve: %(message)s"))
    logger = logging.getLogger("dim.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if ctx.debug else logging.INFO)  # debug: tracebacks of 500s
    from dim.boot import serve as boot_serve  # aiohttp: imported by this command only
    from dim.boot.connections import Limits

    service = boot_serve.BootService(
        ctx.config,
        ctx.state,
        server,
        template_dir=ctx.template_dir,
        root=root,
        database=ctx.database,
    )
    srv = service.server()
    if max_connections is None:  # a whole storm may land on one worker (services/limits.py)
        served = limits.served(service.cluster(), srv.name)
        max_connections = limits.serve_connections(len(served))
    settings = Limits(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keepalive_timeout=keepalive_timeout,
        max_connections=max_connections,
        send_timeout=send_timeout,
    )
    workers = workers or min(os.cpu_count() or 1, 8)
    # a failover set's server also answers on its peers' addresses, when they move here
    default = "0.0.0.0" if srv.failover else str(srv.address)
    boot_serve.run(
        service,
        listen or default,
        port or srv.http_port,
        workers,
        settings,
        metrics=metrics,
        sessions=() if "none" in pid_files else pid_files or ("self",),
    )
