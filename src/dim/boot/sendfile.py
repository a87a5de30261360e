"""A file answered with sendfile(2) straight from the event loop, with ranges.

aiohttp's ``FileResponse`` opens, stats and closes each file in a thread pool: two hand-offs
per request whose cost (waking a thread, passing the GIL back) was a tenth of ``dim serve``'s
time when 200 nodes fetched kernels at once (bench/serve.py). Opening and statting a local file
takes microseconds, so :class:`SentFile` does both on the loop; the bytes go by
``loop.sendfile`` (the kernel copies page cache to socket), and ``Range: bytes=…`` requests get
a 206, or a 416 when the range is outside the file::

    async def handler(request):
        return SentFile(Path("/var/lib/dim/boot/alpha/3/vmlinuz"))
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter


class SentFile(web.StreamResponse):
    """The whole file, or the range the request asks for; HEAD gets the headers only."""

    def __init__(self, path: Path, content_type: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"

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
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        await asyncio.get_running_loop().sendfile(transport, handle, offset, count)

    @staticmethod
    def _span(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
        """(start, end) to send: the whole file, or the range asked for; None: unsatisfiable."""
        if hdrs.RANGE not in request.headers:
            return 0, size
        try:
            wanted = request.http_range
        except ValueError:
            return None
        start, stop = wanted.start, wanted.stop
        if start is None and stop is None:
            return 0, size
        if start is not None and start < 0:  # "bytes=-N": the last N bytes
            start = max(size + start, 0)
        start = start or 0
        stop = size if stop is None else min(stop, size)
        return (start, stop) if start < stop or (start == 0 and size == 0) else None
