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

With a ``send_timeout`` T, a client must take a share of 256 KiB (:attr:`SentFile.PIECE`) in
every T seconds, or the connection is cut: the whole floor when its file is the only one being
sent, 1/N of it while N files are sent at once (N from :class:`Senders`, every worker's
files, averaged over the T seconds). A client that stops reading takes nothing and is cut
whatever the load; one that reads slowly on an idle server is cut below 12.8 kB/s, as
before. What no longer happens is the cut of a storm's node that takes its fair share of a
link shared by thousands: 2,500 nodes on 1 GbE get 50 kB/s each, and a loaded server or slow
clients much less (hundreds of kernels cut in bench/storm.py runs at 2,500 nodes with the
per-connection floor). "Taken" is what the client's TCP acknowledged (``tcpi_bytes_acked``),
not what went into the socket's
buffers (megabytes: the old test of 256 KiB pieces entering them)::

    2,500 files sent at once, T = 20 s: each must take 104 bytes in every 20 s
    one file alone:                     256 KiB in every 20 s (12.8 kB/s)
    a client that stops reading:        nothing in the last 20 s: cut within 25 s

The price: while N files are sent, a slow reader is held as long as it takes 1/N of the floor;
as the storm ends, its share grows back to the whole floor and it is cut. The count covers
every worker of ``dim serve --workers`` (a shared board, :meth:`Senders.board`): counted per
worker, the share asked of each client was about W times a fair one (a 2,500-node storm on 2
workers cut 51 kernels of clients reading 300–600 bytes a second, each held to the share of
the 20–34 files its own worker was sending).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import mimetypes
import mmap
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter


class Senders:
    """The files being sent at once, and that count integrated over time, so that a client's
    floor over a window is shared by the files sent in it on average.

    A worker of ``dim serve --workers N`` keeps its own count in its slot of a shared
    ``board`` (:meth:`board`, made before the workers fork) and reads the others' there: the
    floor is shared by every file the server sends, not one worker's. Each slot is written by
    one worker only, with a sequence number around the write (odd while writing), so that a
    reader in another process retries a slot caught half written; times are the event loop's
    (``time.monotonic``, one clock for all processes of the machine)."""

    __slots__ = ("count", "_area", "_changed", "_board", "_slot")

    def __init__(self, board: mmap.mmap | None = None, slot: int = 0) -> None:
        self.count = 0
        self._area = 0.0  # count × seconds, up to _changed
        self._changed = 0.0
        self._board = board
        self._slot = slot

    @staticmethod
    def board(workers: int) -> mmap.mmap:
        """Shared memory for ``workers`` slots, inherited by the processes forked after it."""
        return mmap.mmap(-1, _SLOT.size * workers)  # anonymous, MAP_SHARED

    def area(self, now: float) -> float:
        """Files being sent by every worker, integrated over time up to ``now``."""
        own = self._own(now)
        if self._board is None:
            return own
        total = own
        for slot in range(len(self._board) // _SLOT.size):
            if slot != self._slot:
                _, count, area, changed = self._read(slot)
                total += area + count * (now - changed)
        return total

    def add(self, now: float, change: int) -> None:
        self._area = self._own(now)
        self._changed = now
        self.count += change
        if self._board is not None:
            offset = self._slot * _SLOT.size
            sequence = _SLOT.unpack_from(self._board, offset)[0]
            _SEQUENCE.pack_into(self._board, offset, sequence + 1)
            _SLOT.pack_into(self._board, offset, sequence + 1, self.count, self._area, now)
            _SEQUENCE.pack_into(self._board, offset, sequence + 2)

    def _own(self, now: float) -> float:
        return self._area + self.count * (now - self._changed)

    def _read(self, slot: int) -> tuple[int, int, float, float]:
        """A slot's values as one write left them (a few tries; then as they are: a floor
        counted once a little off is no harm)."""
        offset = slot * _SLOT.size
        for _ in range(8):
            values = _SLOT.unpack_from(self._board, offset)
            if values[0] % 2 == 0 and _SEQUENCE.unpack_from(self._board, offset)[0] == values[0]:
                break
        return values


# a worker's slot: sequence number, files being sent, their area up to the last change, when
_SLOT = struct.Struct("=qqdd")
_SEQUENCE = struct.Struct("=q")


class SentFile(web.StreamResponse):
    """The whole file, or the range the request asks for; HEAD gets the headers only."""

    # Bytes that a client must take in each send_timeout when its file is the only one being
    # sent (256 KiB in 20 s is 12.8 kB/s), shared by the files sent at once; also the size of
    # each sendfile call.
    PIECE = 256 << 10

    def __init__(
        self,
        path: Path,
        content_type: str | None = None,
        *,
        send_timeout: float | None = None,
        senders: Senders | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_timeout = send_timeout
        self.senders = senders if senders is not None else Senders()

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
        """Send by pieces of :attr:`PIECE` bytes, the client held to its share of the floor
        (the module's docstring): one that stops reading (a zero TCP window holds a socket open
        forever) is cut, not waited for."""
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        loop = asyncio.get_running_loop()
        if self.send_timeout is None:
            await loop.sendfile(transport, handle, offset, count)
            return
        end = offset + count
        floor = Floor(transport, self.senders, self.send_timeout, self.PIECE)
        self.senders.add(loop.time(), 1)
        try:
            async with asyncio.timeout(None) as deadline:
                floor.watch(deadline)
                while offset < end:
                    piece = min(self.PIECE, end - offset)
                    await loop.sendfile(transport, handle, offset, piece)
                    offset += piece
                    floor.sent += piece
        except TimeoutError:
            _reset(transport)
            request[SEND_CUT] = floor.why
            raise ConnectionResetError(floor.why) from None
        finally:
            floor.stop()
            self.senders.add(loop.time(), -1)

    @staticmethod
    def _span(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
        """(start, end) to send: the whole file, or the range asked for; None: unsatisfiable."""
        return byte_range(request.headers.get(hdrs.RANGE), size)


class Floor:
    """Has the client taken its share of ``floor`` bytes in the last ``period`` seconds of
    its file's sending? Asked every quarter period, over the last whole period (a client that
    stops reading is cut 1¼ periods later, not 2); if not, the send's deadline is moved to
    now, which cuts it."""

    STEPS = 4  # looks per period

    __slots__ = ("sent", "why", "_sock", "_senders", "_period", "_floor", "_timer", "_looks")

    def __init__(
        self, transport: asyncio.BaseTransport, senders: Senders, period: float, floor: int
    ) -> None:
        self.sent = 0  # bytes handed to the kernel: what is counted where TCP_INFO is not
        self.why = ""
        self._sock = transport.get_extra_info("socket")
        self._senders = senders
        self._period = period
        self._floor = floor
        self._timer: asyncio.TimerHandle | None = None
        # the last period's looks, oldest first: (time, senders' area, bytes taken)
        self._looks: collections.deque[tuple[float, float, int]] = collections.deque(
            maxlen=self.STEPS + 1
        )

    def watch(self, deadline: asyncio.Timeout) -> None:
        """Look now, and again every quarter period until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._looks.append((now, self._senders.area(now), self._taken()))
        if len(self._looks) > self.STEPS and self._short(now):
            deadline.reschedule(now)
            return
        self._timer = loop.call_at(now + self._period / self.STEPS, self._look, deadline)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self, deadline: asyncio.Timeout) -> None:
        self._timer = None
        self.watch(deadline)

    def _short(self, now: float) -> bool:
        """Whether the client took less than its share over the last period (then ``why``)."""
        (began, area, taken), (_, area_now, taken_now) = self._looks[0], self._looks[-1]
        # files sent at once, on average over the period (3 decimals: 1.0 for a file alone)
        sharing = max(1.0, round((area_now - area) / max(now - began, 1e-9), 3))
        needed = int(self._floor / sharing)
        progress = taken_now - taken
        if progress >= needed:
            return False
        share = (
            f"{self._floor >> 10} KiB"
            if sharing == 1.0
            else f"{needed} bytes, its share of {self._floor >> 10} KiB among {sharing:.0f} "
            f"files sent at once"
        )
        self.why = f"took more than {self._period:g} s to receive {share} ({progress} bytes taken)"
        return True

    def _taken(self) -> int:
        """Bytes the client acknowledged, or else the bytes handed to the kernel."""
        if self._sock is not None:
            with contextlib.suppress(OSError, ValueError):
                info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
                if len(info) >= _TCP_INFO_SIZE:
                    return struct.unpack_from("Q", info, _BYTES_ACKED)[0]
        return self.sent


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset: a plain close would leave the unsent bytes to the kernel, which
    keeps probing a client's zero window for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a u64 after 120 bytes (Linux 4.1 on)
_BYTES_ACKED = 120
_TCP_INFO_SIZE = _BYTES_ACKED + 8
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
