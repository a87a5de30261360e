"""A file answered with sendfile(2) straight from the event loop, with ranges.

aiohttp's ``FileResponse`` opens, stats and closes each file in a thread pool: two hand-offs
per request whose cost (waking a thread, passing the GIL back) was a tenth of ``dim serve``'s
time when 200 nodes fetched kernels at once (bench/serve.py). Opening and statting a local file
takes microseconds, so :class:`SentFile` does both on the loop; the bytes go by
``loop.sendfile`` (the kernel copies page cache to socket), and ``Range: bytes=…`` requests get
a 206, a 416 when the range is outside the file, and the whole file when the header is
invalid or asks for several ranges (RFC 9110 lets a server ignore it)::

    async def handler(request):
        return SentFile(Path("/var/lib/dim/boot/alpha/3/vmlinuz"))
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter


class SentFile(web.StreamResponse):
    """The whole file, or the range the request asks for; HEAD gets the headers only."""

    # Bytes that a client must take within send_timeout: 256 KiB in 20 s is 13 kB/s. A boot
    # storm shares the server's link among all its nodes (2,500 on 1 GbE: 50 kB/s each), so
    # the floor must sit below a storm's share; a client that stops reading is cut all the same.
    PIECE = 256 << 10

    def __init__(
        self, path: Path, content_type: str | None = None, *, send_timeout: float | None = None
    ) -> None:
        super().__init__()
        self.path = path
        self.kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_timeout = send_timeout

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below, after sending
        except OSError:
            self.set_status(404)
            self.content_length = 0
            return await super().prepare(request)
        with handle:
            status = os.fstat(handle.fileno())
            size = status.st_size
            span = self._span(request, size)
            if span is None:
                self.set_status(416)
                self.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
                self.content_length = 0
                return await super().prepare(request)
            start, end = span
            self.content_type = self.kind
            self.content_length = end - start
            self.last_modified = status.st_mtime
            self.headers[hdrs.ACCEPT_RANGES] = "bytes"
            if (start, end) != (0, size):
                self.set_status(206)
                self.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{size}"
            writer = await super().prepare(request)
            if request.method != hdrs.METH_HEAD and end > start:
                await self._send(request, handle, start, end - start)
            await super().write_eof()
            return writer

    async def _send(self, request: web.BaseRequest, handle, offset: int, count: int) -> None:
        """Send by pieces of :attr:`PIECE` bytes, each within ``send_timeout``: a client that
        stops reading (a zero TCP window holds a socket open forever) is cut, not waited for."""
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        loop = asyncio.get_running_loop()
        if self.send_timeout is None:
            await loop.sendfile(transport, handle, offset, count)
            return
        end = offset + count
        while offset < end:
            piece = min(self.PIECE, end - offset)
            try:
                async with asyncio.timeout(self.send_timeout):
                    await loop.sendfile(transport, handle, offset, piece)
            except TimeoutError:
                _reset(transport)
                why = f"took more than {self.send_timeout:g} s to receive {piece >> 10} KiB"
                request[SEND_CUT] = why
                raise ConnectionResetError(why) from None
            offset += piece

    @staticmethod
    def _span(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
        """(start, end) to send: the whole file, or the range asked for; None: unsatisfiable."""
        return byte_range(request.headers.get(hdrs.RANGE), size)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset: a plain close would leave the unsent bytes to the kernel, which
    keeps probing a client's zero window for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


SEND_CUT: Any = web.RequestKey("cut", str) if hasattr(web, "RequestKey") else "dim.cut"
_RANGE = re.compile(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.ASCII)
_HUGE = 1 << 63  # a position of more digits than any file has bytes


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes ``[start, end)`` of a file of ``size`` bytes that a ``Range`` header asks for,
    by RFC 9110 (section 14): None when the range is unsatisfiable (answer 416), the whole file
    when there is no header or one to ignore (answer 200)::

        bytes=256-511   (256, 512)       bytes=-40   the last 40 bytes
        bytes=10000-    (10000, size)    bytes=-0    None: no byte is the last zero bytes
        bytes=0-1,5-6   the whole file   several ranges are not worth a multipart answer
        bytes=5-3, items=0-1, bytes=x    the whole file: invalid, so ignored
    """
    whole = (0, size)
    if header is None:
        return whole
    unit, equals, ranges = header.partition("=")
    found = _RANGE.fullmatch(ranges)
    if not equals or unit.strip().lower() != "bytes" or found is None:
        return whole
    first, last = (_position(digits) for digits in found.groups())
    if first is None:
        if last is None:  # "bytes=-"
            return whole
        return (max(size - last, 0), size) if last > 0 else None
    if last is not None and last < first:
        return whole
    if first >= size:
        return None
    return first, size if last is None else min(last + 1, size)


def _position(digits: str) -> int | None:
    if not digits:
        return None
    return int(digits) if len(digits) < 19 else _HUGE
