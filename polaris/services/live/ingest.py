"""OCPP ingest: the OCPP server's NOTIFYs turned into live events and reactions (receipts, push).

Each web instance runs one `OcppIngest`, but only the holder of an advisory lock listens, so
an event is stored once however many instances run. The leader also publishes sync-run
changes and deletes events past their retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web

from polaris.db.listen import PgListener
from polaris.db.notify import CHARGER_EVENTS, TRANSACTION_EVENTS
from polaris.db.repos import billing, live_events, live_sessions
from polaris.logs import get_logger
from polaris.services.appkeys import PG_POOL
from polaris.services.live.bus import ADMIN_TOPIC, EVENT_BUS, EventBus, customer_topic

log = get_logger(__name__)

RETENTION = timedelta(hours=6)
SYNC_POLL_SECONDS = 5.0
INGEST_LOCK_RETRY_SECONDS = 5.0
# Session advisory lock held by the one web instance that ingests the OCPP server's NOTIFYs.
INGEST_LOCK_KEY = 0x504F4C4152495301  # "POLARIS" + 1


@dataclass(frozen=True, slots=True)
class OcppNotice:
    """One NOTIFY of the OCPP server, with the session it concerns (if any) already loaded."""

    channel: str
    payload: dict[str, Any]
    session: asyncpg.Record | None


OcppReaction = Callable[[web.Application, OcppNotice], Awaitable[None]]
# Functions called for every OCPP notification the leading instance ingests (email, push).
OCPP_REACTIONS = web.AppKey("ocpp_reactions", list)


def add_reaction(app: web.Application, reaction: OcppReaction) -> None:
    """Register a function run for each OCPP notification (any setup order works)."""
    if OCPP_REACTIONS not in app:
        app[OCPP_REACTIONS] = []
    app[OCPP_REACTIONS].append(reaction)


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
                        deleted = await live_events.delete_older_than(conn, RETENTION)
                    last_purge = loop.time()
                    if deleted:
                        log.info("old events deleted", count=deleted)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("events housekeeping failed", error=str(exc))

    async def _publish_sync_runs(self) -> None:
        async with self.app[PG_POOL].acquire() as conn:
            rows = await billing.changed_sync_runs(conn, minutes=60)
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


OCPP_INGEST = web.AppKey("ocpp_ingest", OcppIngest)
