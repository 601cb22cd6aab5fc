"""Live events: an event bus, Server-Sent Events streams with Last-Event-ID replay.

Every event is stored in `app.events` (so a reconnecting client replays what it missed)
and then delivered to the streams subscribed to one of its topics:
  - `admin`: charger status, sessions, sync runs (admins and operators);
  - `customer:<id>`: one customer's own sessions;
  - `pairing:<id>`: one "tap your card" window (the portal page waiting for the tap).

SSE_TRANSPORT=memory delivers in-process (one web instance); postgres sends each stored
event with NOTIFY so every instance's subscribers get it. Events come from the OCPP
server's NOTIFY channels (ingested by one instance at a time, which also triggers
receipts and push through `OCPP_REACTIONS`), from the meter-values hook, and from sync
runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import HttpVersion11, web

from polaris.config import Settings
from polaris.db.listen import PgListener
from polaris.db.notify import CHARGER_EVENTS, TRANSACTION_EVENTS
from polaris.db.repos import events as events_repo
from polaris.db.repos import live_sessions
from polaris.logs import get_logger
from polaris.services.appkeys import PG_POOL, SETTINGS

log = get_logger(__name__)

ADMIN_TOPIC = "admin"
RETENTION = timedelta(hours=6)
HEARTBEAT_SECONDS = 15.0
SYNC_POLL_SECONDS = 5.0
INGEST_LOCK_RETRY_SECONDS = 5.0
QUEUE_MAX = 1000  # a client this far behind is cut off; it reconnects and replays
WRITE_BUFFER_MAX = 1024 * 1024  # bytes unsent to one client before it is cut off
REPLAY_PAGE = 500
# Session advisory lock held by the one web instance that ingests the OCPP server's NOTIFYs.
INGEST_LOCK_KEY = 0x504F4C4152495301  # "POLARIS" + 1


def customer_topic(customer_id: int) -> str:
    return f"customer:{customer_id}"


def pairing_topic(pairing_id: int) -> str:
    return f"pairing:{pairing_id}"


def jsonable(value: Any) -> Any:
    """Database values as JSON: timestamps ISO 8601, decimals as numbers."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    topics: tuple[str, ...]
    type: str
    data: dict[str, Any]
    wire: bytes = field(default=b"", compare=False)
    # The same bytes as one HTTP/1.1 chunk, for streams written to directly.
    chunk: bytes = field(default=b"", compare=False)

    @classmethod
    def make(cls, id_: int, topics: Iterable[str], type_: str, data: dict[str, Any]) -> Event:
        # Serialized once, written to every subscriber as is.
        body = json.dumps(data, separators=(",", ":"))
        wire = f"id: {id_}\nevent: {type_}\ndata: {body}\n\n".encode()
        return cls(id_, tuple(topics), type_, data, wire, _chunk(wire))

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Event:
        return cls.make(row["id"], row["topics"], row["type"], row["data"])


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


Predicate = Callable[[Event], bool]
_CLOSE = object()  # sentinel: the stream must end (shutdown, or the client fell too far behind)
_PING = object()  # sentinel: time for a heartbeat comment
PING = b": ping\n\n"
PING_CHUNK = _chunk(PING)


class Subscription:
    """One open stream. Events are queued for its handler until the stream is live; from
    then on `deliver` writes them straight to the socket: one event to 1,000 streams is
    1,000 `transport.write` calls, not 1,000 task wake-ups (the 100 ms fan-out target)."""

    def __init__(self, topics: Iterable[str], predicate: Predicate | None) -> None:
        self.topics = frozenset(topics)
        self.predicate = predicate
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_MAX + 1)
        self.closed = False
        self.skip_up_to = 0  # already sent by the replay
        self._transport: asyncio.Transport | None = None
        self._chunked = True

    def deliver(self, event: Event) -> None:
        if self.closed or event.id <= self.skip_up_to:
            return
        if self.predicate is not None and not self.predicate(event):
            return
        if self._transport is not None:
            self._write(event.chunk if self._chunked else event.wire)
        elif self.queue.qsize() >= QUEUE_MAX:
            self.close()
        else:
            self.queue.put_nowait(event)

    def go_direct(self, transport: asyncio.Transport, *, chunked: bool) -> None:
        """Write future events straight to `transport` (the queue must be empty)."""
        self._transport = transport
        self._chunked = chunked

    def _write(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        # A client that stopped reading is cut off; it reconnects and replays.
        if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BUFFER_MAX:
            self.close()
            return
        transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._transport = None
            self.queue.put_nowait(_CLOSE)

    def ping(self) -> None:
        if self.closed:
            return
        if self._transport is not None:
            self._write(PING_CHUNK if self._chunked else PING)
        elif self.queue.empty():
            self.queue.put_nowait(_PING)


class EventBus:
    """Stores events, fans them out to subscribers, and (postgres) shares them between instances."""

    def __init__(self, pool: asyncpg.Pool, *, transport: str, dsn: str | None = None) -> None:
        if transport not in ("memory", "postgres"):
            raise ValueError(f"SSE_TRANSPORT is memory or postgres, not {transport!r}")
        if transport == "postgres" and not dsn:
            raise ValueError("SSE_TRANSPORT=postgres needs DATABASE_URL")
        self.pool = pool
        self.transport = transport
        self._dsn = dsn
        self._by_topic: dict[str, set[Subscription]] = {}
        # Ids recently delivered, so a catch-up after a reconnect never delivers twice.
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._last_id = 0
        self._listener: PgListener | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            self._last_id = await events_repo.last_event_id(conn)
        # One timer for every stream rather than a timeout per stream per event.
        self._heartbeat = asyncio.create_task(self._beat(), name="sse-heartbeat")
        if self.transport == "postgres":
            assert self._dsn is not None
            self._listener = PgListener(
                self._dsn,
                [events_repo.EVENTS_CHANNEL],
                self._on_notify,
                name="events",
                on_connect=self._catch_up,
            )
            self._listener.start()
            await asyncio.wait_for(self._listener.listening.wait(), 10)

    async def close(self) -> None:
        self.close_subscriptions()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._listener is not None:
            await self._listener.close()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            for subs in list(self._by_topic.values()):
                for sub in list(subs):
                    sub.ping()

    def close_subscriptions(self) -> None:
        """End every open stream (at shutdown); clients reconnect elsewhere and replay."""
        for subs in list(self._by_topic.values()):
            for sub in list(subs):
                sub.close()

    # --- subscribers ---------------------------------------------------------------

    def subscribe(self, topics: Iterable[str], predicate: Predicate | None = None) -> Subscription:
        sub = Subscription(topics, predicate)
        if not sub.topics:
            raise ValueError("subscribe to at least one topic")
        for topic in sub.topics:
            self._by_topic.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        for topic in sub.topics:
            subs = self._by_topic.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_topic[topic]

    @property
    def subscriber_count(self) -> int:
        return len({s for subs in self._by_topic.values() for s in subs})

    def dispatch(self, event: Event) -> None:
        if event.id in self._seen:
            return
        self._seen.add(event.id)
        self._seen_order.append(event.id)
        if len(self._seen_order) > 10_000:
            self._seen.discard(self._seen_order.popleft())
        self._last_id = max(self._last_id, event.id)
        targets: set[Subscription] = set()
        for topic in event.topics:
            targets |= self._by_topic.get(topic, set())
        for sub in targets:
            sub.deliver(event)

    # --- publishing ---------------------------------------------------------------

    async def publish(
        self,
        topics: Sequence[str],
        type_: str,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> Event | None:
        """Store and deliver one event; None when `dedupe_key` was already published."""
        data = jsonable(data)
        async with self.pool.acquire() as conn:
            row = await events_repo.insert_event(
                conn, topics, type_, data, dedupe_key=dedupe_key, notify=self.transport == "postgres"
            )
        if row is None:
            return None
        event = Event.make(row["id"], row["topics"], type_, data)
        if self.transport == "memory":
            self.dispatch(event)
        # postgres: delivered when our own NOTIFY comes back, like every other instance's.
        return event

    def _on_notify(self, _channel: str, payload: str) -> None:
        try:
            doc = json.loads(payload)
            if "type" in doc:
                self.dispatch(Event.make(doc["id"], doc["topics"], doc["type"], doc["data"]))
            else:
                asyncio.get_running_loop().create_task(self._fetch_and_dispatch(int(doc["id"])))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad event notification", error=str(exc))

    async def _fetch_and_dispatch(self, event_id: int) -> None:
        async with self.pool.acquire() as conn:
            row = await events_repo.get_event(conn, event_id)
        if row is not None:
            self.dispatch(Event.from_row(row))

    async def _catch_up(self) -> None:
        """After a reconnect: deliver what was published while the listener was away."""
        async with self.pool.acquire() as conn:
            while True:
                rows = await events_repo.events_after(conn, self._last_id, None, limit=REPLAY_PAGE)
                for row in rows:
                    self.dispatch(Event.from_row(row))
                if len(rows) < REPLAY_PAGE:
                    return

    async def replay(self, after_id: int, topics: Sequence[str]) -> AsyncIterator[Event]:
        """Stored events after `after_id` for these topics, oldest first, page by page."""
        while True:
            async with self.pool.acquire() as conn:
                rows = await events_repo.events_after(conn, after_id, topics, limit=REPLAY_PAGE)
            for row in rows:
                after_id = row["id"]
                yield Event.from_row(row)
            if len(rows) < REPLAY_PAGE:
                return


# ------------------------------------------------------------------ SSE


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
            item = await sub.queue.get()
            if item is _PING:
                await resp.write(PING)
            elif item is _CLOSE:
                break
            elif item.id > replayed_up_to:
                await resp.write(item.wire)
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


# ------------------------------------------------------------------ OCPP ingest


@dataclass(frozen=True, slots=True)
class OcppNotice:
    """One NOTIFY of the OCPP server, with the session it concerns (if any) already loaded."""

    channel: str
    payload: dict[str, Any]
    session: asyncpg.Record | None


OcppReaction = Callable[[web.Application, OcppNotice], Awaitable[None]]


class OcppIngest:
    """Turns the OCPP server's NOTIFYs into events and reactions; one instance at a time.

    Each web instance runs one, but only the holder of an advisory lock listens, so an
    event is stored once however many instances run (receipts and pushes also carry
    dedupe keys, in case two overlap during a takeover). Also watches sync runs.
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock_retry = INGEST_LOCK_RETRY_SECONDS
        self._sync_poll = SYNC_POLL_SECONDS
        self._sync_seen: dict[int, str] = {}
        self.listener: PgListener | None = None

    @property
    def bus(self) -> EventBus:
        return self.app[EVENT_BUS]

    def start(self, dsn: str) -> None:
        self.listener = PgListener(
            dsn,
            [CHARGER_EVENTS, TRANSACTION_EVENTS],
            lambda channel, payload: self._queue.put_nowait((channel, payload)),
            name="ocpp-ingest",
            lock_key=INGEST_LOCK_KEY,
            lock_retry=self._lock_retry,
        )
        self.listener.start()
        self._tasks = [
            asyncio.create_task(self._consume(), name="ocpp-ingest"),
            asyncio.create_task(self._housekeeping(), name="events-housekeeping"),
        ]

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _consume(self) -> None:
        while True:
            channel, payload = await self._queue.get()
            try:
                await self.handle(channel, json.loads(payload))
            except Exception:
                log.exception("could not handle an OCPP notification", channel=channel)

    async def handle(self, channel: str, payload: dict[str, Any]) -> None:
        """Store the event for SSE, then run the reactions (receipts, push)."""
        pool = self.app[PG_POOL]
        session = None
        if channel == TRANSACTION_EVENTS:
            tx_id = int(payload["transaction_id"])
            kind = str(payload.get("event"))
            async with pool.acquire() as conn:
                session = await live_sessions.get_session(conn, tx_id)
            topics = _session_topics(session)
            data = {**payload, **(_session_summary(session) if session else {})}
            await self.bus.publish(topics, f"session.{kind}", data, dedupe_key=f"tx:{tx_id}:{kind}")
        elif channel == CHARGER_EVENTS:
            kind = str(payload.get("event"))
            topics = [ADMIN_TOPIC]
            data = dict(payload)
            connector_id = payload.get("connector_id")
            if kind == "status" and isinstance(connector_id, int) and connector_id > 0:
                async with pool.acquire() as conn:
                    session = await live_sessions.open_session_at(
                        conn, str(payload.get("charge_box_id")), connector_id
                    )
                if session is not None:
                    topics = _session_topics(session)
                    data["transaction_id"] = session["transaction_id"]
            await self.bus.publish(topics, f"charger.{kind}", data)
        else:
            return
        notice = OcppNotice(channel, payload, session)
        for reaction in self.app.get(OCPP_REACTIONS, []):
            try:
                await reaction(self.app, notice)
            except Exception:
                log.exception("a reaction to an OCPP event failed", channel=channel)

    async def _housekeeping(self) -> None:
        """While leading: publish sync-run changes and delete events past retention."""
        assert self.listener is not None
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._sync_poll)
            if not self.listener.listening.is_set():
                continue
            try:
                await self._publish_sync_runs()
                if loop.time() - last_purge > 600:
                    async with self.app[PG_POOL].acquire() as conn:
                        deleted = await events_repo.delete_older_than(conn, RETENTION)
                    last_purge = loop.time()
                    if deleted:
                        log.info("old events deleted", count=deleted)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("events housekeeping failed", error=str(exc))

    async def _publish_sync_runs(self) -> None:
        async with self.app[PG_POOL].acquire() as conn:
            rows = await events_repo.recent_sync_runs(conn, minutes=60)
        for row in rows:
            if self._sync_seen.get(row["id"]) == row["status"]:
                continue
            self._sync_seen[row["id"]] = row["status"]
            await self.bus.publish(
                [ADMIN_TOPIC], "sync.run", dict(row), dedupe_key=f"sync:{row['id']}:{row['status']}"
            )
        if len(self._sync_seen) > 1000:
            self._sync_seen = dict(list(self._sync_seen.items())[-500:])


def _session_topics(session: asyncpg.Record | None) -> list[str]:
    topics = [ADMIN_TOPIC]
    if session is not None and session["customer_id"] is not None:
        topics.append(customer_topic(session["customer_id"]))
    return topics


def _session_summary(session: asyncpg.Record) -> dict[str, Any]:
    energy = None
    if session["meter_stop"] is not None:
        energy = round((session["meter_stop"] - session["meter_start"]) / 1000, 3)
    return {
        "transaction_id": session["transaction_id"],
        "charge_box_id": session["charge_box_id"],
        "connector_id": session["connector_id"],
        "start_timestamp": session["start_timestamp"],
        "stop_timestamp": session["stop_timestamp"],
        "stop_reason": session["stop_reason"],
        "energy_kwh": energy,
    }


# ------------------------------------------------------------------ wiring

EVENT_BUS = web.AppKey("event_bus", EventBus)
OCPP_INGEST = web.AppKey("ocpp_ingest", OcppIngest)
# Functions called for every OCPP notification the leading instance ingests (email, push).
OCPP_REACTIONS = web.AppKey("ocpp_reactions", list)


def add_reaction(app: web.Application, reaction: OcppReaction) -> None:
    """Register a function run for each OCPP notification (any setup order works)."""
    if OCPP_REACTIONS not in app:
        app[OCPP_REACTIONS] = []
    app[OCPP_REACTIONS].append(reaction)


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[SETTINGS]
    bus = EventBus(app[PG_POOL], transport=settings.SSE_TRANSPORT, dsn=settings.database_url)
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
