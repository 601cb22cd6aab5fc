"""The event bus: stores each live event in `app.events`, then delivers it to the open streams.

Topics: `admin` (charger status, sessions, sync runs), `customer:<id>` (one customer's own
sessions), `pairing:<id>` (one "tap your card" window). SSE_TRANSPORT=memory delivers
in-process (one web instance); postgres sends each stored event with NOTIFY, so every
instance's subscribers get it, and a listener that reconnects catches up from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from polaris.db.listen import PgListener
from polaris.db.repos import live_events
from polaris.logs import get_logger

log = get_logger(__name__)

ADMIN_TOPIC = "admin"
HEARTBEAT_SECONDS = 15.0
QUEUE_MAX = 1000  # a client this far behind is cut off; it reconnects and replays
WRITE_BUFFER_MAX = 1024 * 1024  # bytes unsent to one client before it is cut off
REPLAY_PAGE = 500


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

    def __init__(self, topics: Iterable[str], predicate: Predicate | None, max_pending: int | None = None) -> None:
        self.topics = frozenset(topics)
        self.predicate = predicate
        self.max_pending = max_pending or QUEUE_MAX
        self.queue: asyncio.Queue[Any] = asyncio.Queue(self.max_pending + 1)
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
        elif self.queue.qsize() >= self.max_pending:
            self.close()
        else:
            self.queue.put_nowait(event)

    async def next_queued(self) -> bytes | None:
        """What the handler writes next while the stream is not direct: an event or a heartbeat
        (b"" for an event the replay already sent); None when the stream must end."""
        item = await self.queue.get()
        if item is _CLOSE:
            return None
        if item is _PING:
            return PING
        return item.wire if item.id > self.skip_up_to else b""

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

    def __init__(
        self, pool: asyncpg.Pool, *, transport: str, dsn: str | None = None, max_pending: int | None = None
    ) -> None:
        if transport not in ("memory", "postgres"):
            raise ValueError(f"SSE_TRANSPORT is memory or postgres, not {transport!r}")
        if transport == "postgres" and not dsn:
            raise ValueError("SSE_TRANSPORT=postgres needs DATABASE_URL")
        self.pool = pool
        self.transport = transport
        self.max_pending = max_pending  # SSE_MAX_PENDING_PER_CLIENT; None: QUEUE_MAX
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
            self._last_id = await live_events.last_event_id(conn)
        # One timer for every stream rather than a timeout per stream per event.
        self._heartbeat = asyncio.create_task(self._beat(), name="sse-heartbeat")
        if self.transport == "postgres":
            assert self._dsn is not None
            self._listener = PgListener(
                self._dsn,
                [live_events.EVENTS_CHANNEL],
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
        sub = Subscription(topics, predicate, self.max_pending)
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
            row = await live_events.insert_event(
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
            row = await live_events.get_event(conn, event_id)
        if row is not None:
            self.dispatch(Event.from_row(row))

    async def _catch_up(self) -> None:
        """After a reconnect: deliver what was published while the listener was away."""
        async with self.pool.acquire() as conn:
            while True:
                rows = await live_events.events_after(conn, self._last_id, None, limit=REPLAY_PAGE)
                for row in rows:
                    self.dispatch(Event.from_row(row))
                if len(rows) < REPLAY_PAGE:
                    return

    async def replay(self, after_id: int, topics: Sequence[str]) -> AsyncIterator[Event]:
        """Stored events after `after_id` for these topics, oldest first, page by page."""
        while True:
            async with self.pool.acquire() as conn:
                rows = await live_events.events_after(conn, after_id, topics, limit=REPLAY_PAGE)
            for row in rows:
                after_id = row["id"]
                yield Event.from_row(row)
            if len(rows) < REPLAY_PAGE:
                return


EVENT_BUS = web.AppKey("event_bus", EventBus)
