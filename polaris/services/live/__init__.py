"""Live events: an event bus, Server-Sent Events streams with Last-Event-ID replay.

Every event is stored in `app.events` (so a reconnecting client replays what it missed)
and then delivered to the streams subscribed to one of its topics:
  - `admin`: charger status, sessions, sync runs (admins and operators);
  - `customer:<id>`: one customer's own sessions;
  - `pairing:<id>`: one "tap your card" window (the portal page waiting for the tap).

`bus` stores and fans out (SSE_TRANSPORT=memory in-process, postgres through NOTIFY to
every instance); `sse` serves the streams; `ingest` turns the OCPP server's NOTIFYs into
events (one instance at a time) and runs the reactions registered with `add_reaction`
(receipts, push). Events also come from the meter-values hook and from sync runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from polaris.config import Settings
from polaris.logs import get_logger
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.live.bus import (
    ADMIN_TOPIC,
    EVENT_BUS,
    Event,
    EventBus,
    Predicate,
    Subscription,
    customer_topic,
    jsonable,
    pairing_topic,
)
from polaris.services.live.ingest import (
    OCPP_INGEST,
    OCPP_REACTIONS,
    OcppIngest,
    OcppNotice,
    OcppReaction,
    add_reaction,
)
from polaris.services.live.sse import admin_events, customer_events, sse_response

__all__ = [
    "ADMIN_TOPIC",
    "EVENT_BUS",
    "OCPP_INGEST",
    "OCPP_REACTIONS",
    "Event",
    "EventBus",
    "OcppIngest",
    "OcppNotice",
    "OcppReaction",
    "Predicate",
    "Subscription",
    "add_customer_routes",
    "add_reaction",
    "admin_events",
    "customer_events",
    "customer_topic",
    "jsonable",
    "pairing_topic",
    "setup",
    "sse_response",
]

log = get_logger(__name__)


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[SETTINGS]
    bus = EventBus(app[PG_POOL], transport=settings.SSE_TRANSPORT, dsn=settings.database_url,
                   max_pending=settings.SSE_MAX_PENDING_PER_CLIENT)
    await bus.start()
    app[EVENT_BUS] = bus
    ingest = OcppIngest(app)
    app[OCPP_INGEST] = ingest
    if settings.database_url:
        ingest.start(settings.database_url)
    else:
        log.warning("DATABASE_URL unset: OCPP events are not ingested")
    yield
    await ingest.close()
    await bus.close()


async def _end_streams(app: web.Application) -> None:
    # Open SSE handlers would otherwise hold the shutdown for its whole timeout.
    if EVENT_BUS in app:
        app[EVENT_BUS].close_subscriptions()


def setup(app: web.Application, *, customer_routes: bool = True) -> None:
    """Event bus, OCPP ingest, GET /api/v1/events and GET /api/admin/v1/events (set
    customer_routes=False to mount `customer_events` / `admin_events` yourself)."""
    if OCPP_REACTIONS not in app:
        app[OCPP_REACTIONS] = []
    app.cleanup_ctx.append(_events_ctx)
    app.on_shutdown.append(_end_streams)
    if customer_routes:
        add_customer_routes(app)


def add_customer_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", customer_events, name="customer_events")
    # The admin stream, unless the admin API already mounted its own (with `sse_response`).
    if not any(
        r.method == "GET" and r.resource is not None and r.resource.canonical == "/api/admin/v1/events"
        for r in app.router.routes()
    ):
        app.router.add_get("/api/admin/v1/events", admin_events, name="admin_events")
