"""The connections of ``dim serve``: how long a client may take, how many may be open, and how
a request that cannot be parsed is refused (one log line, never a traceback).

aiohttp alone keeps an idle connection for an hour (its keep-alive default) and has no limit
on connections, so a few thousand silent sockets exhaust a worker's file descriptors; and it
logs each malformed request with a multi-line traceback. Here, per worker process::

    new connection ──header_timeout──> complete request head   else closed (one log line if it
                                                                sent part of a head)
    answer taken ──keepalive_timeout──> next complete head      else closed (aiohttp's timer,
                                                                held while the client still
                                                                takes the answer's last bytes;
                                                                a debug log line)
    head read ──body_timeout──> rest of a body nobody asked for else closed (aiohttp's
                                                                lingering time)
    file sent ──send_timeout──> its share of 256 KiB taken      else cut (dim.boot.sendfile:
                                                                the share of the files sent
                                                                at once)
    open connections ≥ max_connections ──> a new one gets 503 and is closed at once

A malformed request (bad HTTP version, NUL in the target, negative Content-Length, both
Content-Length and Transfer-Encoding, a header over 8190 bytes…) gets a 400 (or aiohttp's
status) and closes the connection; the request log line carries why (``refused: …``).

    >>> limits = Limits(header_timeout=2, keepalive_timeout=2, max_connections=4000)
    >>> site = GuardedSite(runner, sock, limits, handler_options)   # runner.setup() done
    >>> await site.start()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import resource
import socket
import struct
import termios
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from dim.printable import printable

log = logging.getLogger("dim.serve")

# On a request: why it was refused, and whether its head was parsed (a str key in old aiohttp)
REFUSED: Any = web.RequestKey("refused", tuple) if hasattr(web, "RequestKey") else "dim.refused"
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\ndim serve: too busy\n"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Timeouts in seconds and the number of connections, per worker process.

    The defaults suit a boot LAN: iPXE sends its request head in one packet and reads as fast
    as the wire allows, so 10 s for a head or a body is generous, and a boot makes its few
    requests within seconds, so a connection idle for 15 s will not be used again.
    """

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    max_connections: int = 2048
    # in which a client takes its share of 256 KiB (dim.boot.sendfile: 256 KiB alone, 1/N of it
    # among N files sent at once)
    send_timeout: float = 20.0

    def handler_options(self) -> dict[str, Any]:
        """What aiohttp's request handler takes of these (the rest is :class:`Connections`')."""
        return {"keepalive_timeout": self.keepalive_timeout, "lingering_time": self.body_timeout}

    def file_descriptors(self) -> int:
        """Descriptors a worker may need: a socket and an open file per connection, and some."""
        return 2 * self.max_connections + 64


def raise_file_limit(limits: Limits) -> Limits:
    """Raise this process's soft limit on open files to what ``limits`` needs (as nginx's
    ``worker_rlimit_nofile``); where the hard limit is lower, lower ``max_connections`` to fit
    and say so, rather than fail on ``accept`` with EMFILE under load."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.file_descriptors()
    if hard != resource.RLIM_INFINITY and hard < wanted:
        fitting = max((hard - 64) // 2, 1)
        log.warning(
            "open files are limited to %d here: at most %d connections per worker, not %d",
            hard,
            fitting,
            limits.max_connections,
        )
        limits = dataclasses.replace(limits, max_connections=fitting)
        wanted = limits.file_descriptors()
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return limits


def one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line of printable characters: aiohttp's parser errors span three lines
    (the bytes and a caret under them), and a request may carry NULs or escapes."""
    flat = printable(str(text)[: 4 * limit])
    flat = " ".join(w for w in flat.replace("\\x0a", " ").split() if w != "^")  # the caret
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class GuardedHandler(RequestHandler):
    """aiohttp's request handler with a deadline for the first request head, refusals as one
    log line, and its place counted in :class:`Connections`."""

    __slots__ = ("_connections", "_head_timer", "_head_bytes", "_client", "_unacknowledged")

    def __init__(self, connections: Connections, manager: web.Server, **options: Any) -> None:
        super().__init__(manager, loop=asyncio.get_running_loop(), **options)
        self._connections = connections
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._client = "-"
        self._unacknowledged = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.opened()
        peer = transport.get_extra_info("peername")
        self._client = peer[0] if isinstance(peer, tuple) else "-"
        super().connection_made(transport)
        timeout = self._connections.limits.header_timeout
        self._head_timer = self._loop.call_later(timeout, self._head_late)
        # aiohttp (3.10 on) starts its keep-alive timer here too: the first head has its own
        # rule; aiohttp's timer starts again after the first answer, for the idle time
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_timer is not None and self._request_count:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._manager is not None:  # aiohttp's own guard against a second call
            self._connections.closed()
        super().connection_lost(exc)

    def _process_keepalive(self) -> None:
        """aiohttp's idle timer, held while the client is still taking the last answer.

        aiohttp starts it when the answer's last byte went into the socket, not when the
        client had it. In a boot storm 2,500 nodes share the link, and a node reads the end of
        its kernel from the socket buffers (megabytes) for longer than the keep-alive timeout,
        then asks for its initrd on a connection closed as idle: aiohttp's client reports
        "Server disconnected" (bench/storm.py). While the bytes the client has not acknowledged
        shrink, the idle time starts again; a client that stops taking them is closed as idle.
        """
        waiting = unacknowledged(self.transport)
        if waiting and waiting != self._unacknowledged and not self._force_close:
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        self._unacknowledged = waiting
        closing = self._force_close
        super()._process_keepalive()
        if self._force_close and not closing:  # a storm's "Server disconnected" shows here
            idle = self._loop.time() - (self._next_keepalive_close_time - self._keepalive_timeout)
            log.debug(
                "%s closed: idle for %.1f s after %d request%s (--keepalive-timeout %g s)",
                self._client,
                idle,
                self._request_count,
                "" if self._request_count == 1 else "s",
                self._keepalive_timeout,
            )

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_count or self._force_close:
            return
        if self._head_bytes:  # a silent connection (a port probe, a pre-connect) is no news
            log.info(
                "%s closed: no complete request head within %g s (%d bytes received)",
                self._client,
                self._connections.limits.header_timeout,
                self._head_bytes,
            )
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A short answer, and the reason kept on the request for its one log line."""
        parsed = message is None  # aiohttp passes the parser's message for a malformed head
        phrase = _phrase(status)
        if isinstance(exc, HttpProcessingError):
            reason = exc.message or phrase
        elif exc is not None:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            log.debug("%s %s", request.remote, reason, exc_info=exc)
        else:
            reason = message or phrase
        request[REFUSED] = (one_line(reason), parsed)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer was sent already: cannot send the error")
        response = web.Response(status=status, text=f"{status} {phrase}\n")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's other complaints (a handler that returned nothing…): one line, no stack."""
        exc = kw.get("exc_info")
        text = args[0] % args[1:] if args else "error"
        if isinstance(exc, BaseException):
            text += f": {type(exc).__name__}: {exc}"
        log.error("%s %s", self._client, one_line(text))


def unacknowledged(transport: asyncio.BaseTransport | None) -> int:
    """Bytes of the answers sent on ``transport`` that its client has not acknowledged yet:
    in asyncio's buffer and in the socket's (``SIOCOUTQ``, which counts the bytes sent and not
    acknowledged as well as those not sent)."""
    if transport is None or transport.is_closing():
        return 0
    waiting = 0
    if isinstance(transport, asyncio.WriteTransport):
        waiting = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
            waiting += struct.unpack("i", queued)[0]
    return waiting


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Connections:
    """The protocol factory of a worker's listening socket: a :class:`GuardedHandler` per
    connection while fewer than ``max_connections`` are open, else a 503 and a close."""

    def __init__(self, server: web.Server, limits: Limits, options: dict[str, Any]) -> None:
        self.server = server
        self.limits = limits
        self.options = {**options, **limits.handler_options()}
        self.open = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limits.max_connections:
            if not self.refused:
                log.warning(
                    "%d connections open, the limit (--max-connections): refusing new ones",
                    self.open,
                )
            self.refused += 1
            return Refusal()
        return GuardedHandler(self, self.server, **self.options)

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1
        if self.refused and self.open < self.limits.max_connections:
            log.warning("accepting connections again: %d were refused meanwhile", self.refused)
            self.refused = 0


class Refusal(asyncio.Protocol):
    """A connection over the limit: 503 and closed, without reading its request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY)
        transport.close()


class GuardedSite(web.SockSite):
    """aiohttp's site on a listening socket, with :class:`Connections` as its factory."""

    __slots__ = ("_connections",)

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, limits: Limits, options: dict
    ) -> None:
        super().__init__(runner, sock, backlog=1024)
        assert runner.server is not None
        self._connections = Connections(runner.server, limits, options)

    @property
    def connections(self) -> Connections:
        return self._connections

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connections, sock=self._sock, backlog=self._backlog
        )
