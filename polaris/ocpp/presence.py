"""Where chargers are and when they were last heard: buffered in memory, written in batches.

At 10,000 chargers a database write per frame or per heartbeat would be most of the load,
and a reconnect storm would be one UPDATE per charger. So:
  - last-seen and heartbeat times are kept per charger (newest wins) and written every
    `FLUSH_INTERVAL_S` in one statement each;
  - StatusNotifications that could not be stored (database down) wait here, in order,
    and are written by the same flush once the database is back;
  - connected / disconnected changes are queued and written `CONNECTION_STATE_BATCH_S`
    after the first of a burst, many in one statement (each still NOTIFYs the web).
The two writers run as maintenance jobs (`jobs()`); `close()` of the server runs both once
more so nothing buffered is lost at shutdown.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from polaris.db.repos import charge_boxes, connectors
from polaris.logs import get_logger
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.jobs import Job
from polaris.ocpp.parsing import now_utc

log = get_logger(__name__)

FLUSH_INTERVAL_S = 5.0
CONNECTION_STATE_BATCH_S = 0.1
MAX_DEFERRED_STATUS = 100_000


class Presence:
    def __init__(self, pool: asyncpg.Pool, instance: str):
        self.pool = pool
        self.instance = instance
        self._seen: dict[int, Any] = {}
        self._heartbeats: dict[int, Any] = {}
        self.deferred_status: list[dict] = []
        self._connection_changes: list[tuple[int, bool, str]] = []
        self._connection_changed = asyncio.Event()

    def jobs(self) -> list[Job]:
        """The writers, for the server's job runner."""
        return [
            Job("presence-flush", self.flush, every=FLUSH_INTERVAL_S),
            Job("connection-state", self.write_connection_changes, wake=self._connection_changed,
                settle=CONNECTION_STATE_BATCH_S),
        ]

    # --- what connections report ---------------------------------------------------------

    def saw(self, charge_box_pk: int) -> None:
        self._seen[charge_box_pk] = now_utc()

    def heartbeat(self, charge_box_pk: int) -> None:
        self._heartbeats[charge_box_pk] = now_utc()

    def defer_status(self, record: dict) -> None:
        """A StatusNotification (connectors.record_status fields) to write when the database is back."""
        if len(self.deferred_status) < MAX_DEFERRED_STATUS:
            self.deferred_status.append(record)

    def connected(self, charge_box_pk: int, charge_box_id: str, connected: bool) -> None:
        """Queue the connection state; a writer stores many in one statement (reconnect storms)."""
        event = json.dumps({"event": "connected" if connected else "disconnected", "charge_box_id": charge_box_id})
        self._connection_changes.append((charge_box_pk, connected, event))
        self._connection_changed.set()

    # --- writers -------------------------------------------------------------------------

    async def write_connection_changes(self) -> None:
        changes, self._connection_changes = self._connection_changes, []
        try:
            async with self.pool.acquire() as conn:
                await charge_boxes.set_connected_many(conn, changes, self.instance)
        except DB_UNAVAILABLE:
            log.warning("connection state not stored: database unavailable", count=len(changes))

    async def flush(self) -> None:
        """Write buffered times and deferred statuses; keep what could not be written."""
        seen, self._seen = self._seen, {}
        beats, self._heartbeats = self._heartbeats, {}
        statuses, self.deferred_status = self.deferred_status, []
        try:
            async with self.pool.acquire() as conn:
                await charge_boxes.touch_seen(conn, seen, beats)
                for i, record in enumerate(statuses):
                    try:
                        await connectors.record_status(conn, **record)
                    except DB_UNAVAILABLE:
                        self.deferred_status[:0] = statuses[i:]
                        raise
        except DB_UNAVAILABLE:
            # Keep what was not written; newer times already in the buffers win.
            for pk, at in seen.items():
                self._seen.setdefault(pk, at)
            for pk, at in beats.items():
                self._heartbeats.setdefault(pk, at)
