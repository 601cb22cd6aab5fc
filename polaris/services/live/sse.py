"""Server-Sent Events over aiohttp: the event bus's streams as text/event-stream.

Written over `StreamResponse` rather than aiohttp-sse (the README's dependency notes say
why, with figures from bench/compare_aiohttp_sse.py): the replay comes from Postgres, the
bus keeps one heartbeat timer for every stream, and once a stream is live the bus writes
each event's bytes straight to its socket instead of waking the stream's handler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from aiohttp import HttpVersion11, web

from polaris.services.live.bus import ADMIN_TOPIC, EVENT_BUS, Predicate, customer_topic


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


async def sse_response(
    request: web.Request,
    *,
    topics: Sequence[str],
    predicate: Predicate | None = None,
) -> web.StreamResponse:
    """Stream the events of `topics` (optionally filtered) as text/event-stream.

    A client sending `Last-Event-ID` (or `?last_event_id=`) first gets the stored events it
    missed. Comment lines every HEARTBEAT_SECONDS keep proxies from closing an idle stream.
    """
    bus = request.config_dict[EVENT_BUS]
    after = _last_event_id(request)
    # Subscribe before replaying, so nothing published in between is missed.
    sub = bus.subscribe(topics, predicate)
    try:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",  # nginx / Caddy: do not buffer the stream
            }
        )
        chunked = request.version >= HttpVersion11
        if chunked:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"retry: 3000\n: connected\n\n")
        replayed_up_to = 0
        if after is not None:
            async for event in bus.replay(after, list(sub.topics)):
                if predicate is None or predicate(event):
                    await resp.write(event.wire)
                replayed_up_to = event.id
        sub.skip_up_to = replayed_up_to
        while True:
            if sub.queue.empty() and request.transport is not None and not resp.compression:
                # Everything so far is written: from here on the bus writes to the socket.
                sub.go_direct(request.transport, chunked=chunked)
            data = await sub.next_queued()
            if data is None:
                break
            if data:
                await resp.write(data)
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        bus.unsubscribe(sub)
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


def _problem(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def customer_events(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/events: the signed-in customer's own sessions, live."""
    user = request.get("user")
    if user is None:
        return _problem(401, "unauthorized", "sign in to follow your sessions")
    if getattr(user, "customer_id", None) is None:
        return _problem(403, "forbidden", "only customers have a session stream")
    return await sse_response(request, topics=[customer_topic(user.customer_id)])


async def admin_events(request: web.Request) -> web.StreamResponse:
    """GET /api/admin/v1/events: charger status, sessions and sync runs for admins and operators."""
    user = request.get("user")
    if user is None:
        return _problem(401, "unauthorized", "sign in as an admin or operator")
    if getattr(user, "role", None) not in ("admin", "operator"):
        return _problem(403, "forbidden", "admins and operators only")
    return await sse_response(request, topics=[ADMIN_TOPIC])
