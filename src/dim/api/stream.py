"""The live event feed: the state DB's new events pushed as Server-Sent Events.

``GET /api/v1/events/stream?after=ID`` answers ``text/event-stream``: each event after ``ID``
(the newest 100 before now without it) as ``id: N`` and ``data: {json}``, then every new one
within :data:`POLL` seconds of its writing, and a comment line every :data:`PING` seconds so
that proxies keep the connection. Events come from every writer of the state DB (``dim serve``'s
boots, the CLI, the API), so the feed polls the DB rather than waiting on this process: one
indexed query a second per open feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from dim.actions.context import Context
from dim.api.resources import MOST_EVENTS, Inputs, event_record, number
from dim.state import StateDB

POLL = 1.0
PING = 15.0
STOPPING: web.AppKey = web.AppKey("feeds stopping", asyncio.Event)


async def event_stream(request: web.Request, ctx: Context, inputs: Inputs) -> web.StreamResponse:
    after = number(inputs.query, "after", None, 0, 2**63)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    db, quiet = None, 0.0
    try:
        while True:
            if db is None:  # none before the first command that writes
                db = await asyncio.to_thread(ctx.existing_db)
            found = [] if db is None else await asyncio.to_thread(_events, db, after)
            for event in found:
                after = event["id"]
                await response.write(f"id: {after}\ndata: {json.dumps(event)}\n\n".encode())
            if found:
                quiet = 0.0
            elif quiet >= PING:
                await response.write(b": ping\n\n")
                quiet = 0.0
            with contextlib.suppress(TimeoutError):  # the service stops: end the feed at once
                await asyncio.wait_for(stopping(request).wait(), POLL)
            if stopping(request).is_set():
                break
            quiet += POLL
    except ConnectionError:  # the page went away
        pass
    return response


def stopping(request: web.Request) -> asyncio.Event:
    """Set when the service stops (its shutdown), so that open feeds end, not hold it up."""
    return request.app[STOPPING]


async def stop_feeds(app: web.Application) -> None:
    app[STOPPING].set()


def _events(db: StateDB, after: int | None) -> list[dict]:
    limit = 100 if after is None else MOST_EVENTS
    return [event_record(e) for e in reversed(db.events(limit=limit, after=after))]
