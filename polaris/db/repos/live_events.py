"""Live events kept for SSE replay (Last-Event-ID), with a retention period (the table `app.events`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

# web -> every web instance (SSE_TRANSPORT=postgres): {"id", "topics", "type", "data"} or,
# when that is too big for a NOTIFY payload, {"id"} and the listener reads the row.
EVENTS_CHANNEL = "polaris_events"
NOTIFY_PAYLOAD_MAX = 7900  # Postgres refuses NOTIFY payloads of 8000 bytes or more


async def insert_event(
    conn: asyncpg.Connection,
    topics: Sequence[str],
    type_: str,
    data: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    notify: bool = False,
) -> asyncpg.Record | None:
    """Store an event; None when `dedupe_key` was already stored (another instance won).

    With `notify`, the event is also NOTIFYed on EVENTS_CHANNEL in the same statement, so
    listeners see it when (and only if) the caller's transaction commits.
    """
    if not topics:
        raise ValueError("an event needs at least one topic")
    row = await conn.fetchrow(
        """
        INSERT INTO app.events (topics, type, data, dedupe_key) VALUES ($1, $2, $3, $4)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id, topics, type, data, created_at
        """,
        list(topics),
        type_,
        data,
        dedupe_key,
    )
    if row is not None and notify:
        payload = json.dumps(
            {"id": row["id"], "topics": row["topics"], "type": type_, "data": data},
            separators=(",", ":"),
        )
        if len(payload.encode()) > NOTIFY_PAYLOAD_MAX:
            payload = json.dumps({"id": row["id"]})
        await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)
    return row


async def get_event(conn: asyncpg.Connection, event_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, topics, type, data, created_at FROM app.events WHERE id = $1", event_id
    )


async def events_after(
    conn: asyncpg.Connection, after_id: int, topics: Sequence[str] | None, *, limit: int = 500
) -> list[asyncpg.Record]:
    """Events newer than `after_id` visible to any of `topics` (None: all), oldest first."""
    return await conn.fetch(
        """
        SELECT id, topics, type, data, created_at FROM app.events
        WHERE id > $1 AND ($2::text[] IS NULL OR topics && $2::text[])
        ORDER BY id LIMIT $3
        """,
        after_id,
        None if topics is None else list(topics),
        limit,
    )


async def last_event_id(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT coalesce(max(id), 0) FROM app.events")


async def delete_older_than(conn: asyncpg.Connection, age: timedelta) -> int:
    status = await conn.execute("DELETE FROM app.events WHERE created_at < now() - $1::interval", age)
    return int(status.split()[-1])
