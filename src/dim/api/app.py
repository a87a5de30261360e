"""The REST API's aiohttp application: tokens checked, handlers run off the event loop, every
error a JSON object with the message the CLI would print.

::

    app = make_app(Service(ctx, TokenFile(path)))
    run(app, "127.0.0.1", 8780)                      # until SIGTERM or SIGINT
    runner = await start(app, "127.0.0.1", 0)        # in a running loop (tests)

A request without ``Authorization: Bearer <token>`` or with an unknown token gets 401; a
reader's token on an admin route gets 403; both before anything is read or done. Changes are
logged in the state DB's events with the actor ``api:<token name>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from dim.actions.context import Context
from dim.api import openapi, stream
from dim.api.jobs import Jobs
from dim.api.resources import Inputs
from dim.api.routes import PREFIX, ROUTES, Route
from dim.api.tokens import Token, TokenFile
from dim.errors import DimError, ImageBusy, StateUnavailable
from dim.printable import printable
from dim.structs import field, replace, struct

log = logging.getLogger("dim.api")

DEFAULT_PORT = 8780
LARGEST_BODY = 64 * 1024
SERVICE: web.AppKey = web.AppKey("service", object)
METRICS: web.AppKey = web.AppKey("metrics", object)  # an ApiMetrics, None when off
METRIC_MODES = ("public", "token", "off")
STATIC = Path(__file__).resolve().parent / "static"  # the dashboard: no build step
# the page runs only its own scripts and talks only to this service
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@struct(frozen=True, slots=True)
class Service:
    """What the handlers need: the Context (layout, state), the token file, and where the
    loader files and the NFS servers' pid files are."""

    ctx: Context
    tokens: TokenFile
    root: Path = Path("/")
    pid_files: tuple[str, ...] = ()
    metrics: str = "public"  # GET /metrics: "public" (Prometheus's habit), "token" or "off"
    credentials: Path | None = None  # the BMC credentials file (None: dim's default)
    jobs: Jobs = field(default_factory=Jobs, compare=False, repr=False)
    threads: Callable = field(default=asyncio.to_thread, compare=False, repr=False)


def make_app(service: Service) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=LARGEST_BODY)
    app[SERVICE] = service
    app[METRICS] = None
    app[stream.STOPPING] = asyncio.Event()
    app.on_shutdown.append(stream.stop_feeds)
    for route in ROUTES:
        app.router.add_route(route.method, PREFIX + route.path, _handler(route))
    app.router.add_get(PREFIX + "/openapi.json", _openapi)
    app.router.add_get("/", _dashboard)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    if service.metrics != "off":
        from dim.api.metrics import ApiMetrics

        app[METRICS] = ApiMetrics(service.ctx, service.pid_files)
        app.router.add_get("/metrics", _metrics)
    return app


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _handler(route: Route):
    async def handle(request: web.Request) -> web.Response:
        service: Service = request.app[SERVICE]
        token = await _token(request, service)
        if not token.may(route.role):
            raise Refused(
                403,
                f"the token {token.name!r} is a {token.role}'s: {route.method} "
                f"{PREFIX}{route.path} needs an {route.role}'s",
            )
        body = await _body(request) if route.body else {}
        inputs = Inputs(
            path=dict(request.match_info),
            query=dict(request.query),
            body=body,
            root=service.root,
            pid_files=service.pid_files,
            token=token.record(),
            jobs=service.jobs,
            credentials=service.credentials,
        )
        ctx = replace(service.ctx, actor=f"api:{token.name}")
        if asyncio.iscoroutinefunction(route.handler):  # a stream: it answers as it goes
            return await route.handler(request, ctx, inputs)
        data = await service.threads(route.handler, ctx, inputs)
        if route.method != "GET":
            log.info("%s %s %s by %s", request.remote, route.method, request.path, token.name)
        return web.json_response(data)

    handle.__name__ = route.handler.__name__
    return handle


async def _token(request: web.Request, service: Service) -> Token:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Refused(401, "a bearer token is needed: Authorization: Bearer <token>")
    try:
        token = await service.threads(service.tokens.check, secret.strip())
    except DimError as exc:  # the service's own token file, not the request, is wrong
        raise DimError(exc.message, hint=exc.hint) from None
    if token is None:
        raise Refused(401, "unknown token")
    return token


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:  # no body: as {}, for routes whose members are optional
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


async def _dashboard(request: web.Request) -> web.FileResponse:
    """The dashboard's page: no data in it, so no token; the page signs in by itself."""
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def _metrics(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    if service.metrics == "token":
        await _token(request, service)
    body, kind = await service.threads(request.app[METRICS].exposition)
    response = web.Response(body=body)
    response.headers["Content-Type"] = kind
    return response


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    metrics = request.app[METRICS]
    if metrics is not None:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "-"  # never the path: one per node
        metrics.request(f"{request.method} {name}", response.status)
    return response


async def _answer(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refused as exc:
        return _error(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except DimError as exc:
        log.warning("%s %s %s: %s", request.remote, request.method, request.path, exc.message)
        return _error(_status(exc), exc.message, exc.hint)
    except Exception:
        log.exception("%s %s %s", request.remote, request.method, request.path)
        return _error(500, "internal error: see the service's log")


def _status(exc: DimError) -> int:
    if isinstance(exc, StateUnavailable):
        return 503
    if isinstance(exc, ImageBusy):
        return 409
    return 400 if exc.exit_status == 2 else 500


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    data = {"error": printable(message)}
    if hint:
        data["hint"] = printable(hint)
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def tls(certificate: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files, or None for plain HTTP."""
    if certificate is None and key is None:
        return None
    if certificate is None:
        raise DimError("--key needs --cert")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise DimError(f"cannot load the TLS certificate {certificate}: {exc}") from None
    return context


async def start(
    app: web.Application, host: str, port: int, context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=log)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
    except OSError as exc:
        await runner.cleanup()
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's is long-winded
        raise DimError(f"cannot listen on {host}:{port}: {why}") from None
    return runner


def run(app: web.Application, host: str, port: int, context: ssl.SSLContext | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""

    async def serve() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        runner = await start(app, host, port, context)
        scheme = "https" if context else "http"
        log.info("dim api on %s://%s:%d%s", scheme, host, port, PREFIX)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
