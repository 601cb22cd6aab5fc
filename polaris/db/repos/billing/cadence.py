"""The sync cadence: tier, idle ticks, the admin's pin, sync-now requests and the discovery floor."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from polaris.db import notify
from polaris.db.errors import InvalidInput

TIERS = ("active", "idle", "dormant")


async def get_cadence_state(conn: asyncpg.Connection) -> asyncpg.Record:
    """The cadence row: tier, idle ticks, last activity and run, the admin pin, the cursor floor."""
    return await conn.fetchrow(
        """
        SELECT tier, idle_ticks, last_activity_at, last_run_at, pinned_tier, pinned_by,
               pinned_at, discovery_floor_id, updated_at,
               COALESCE(pinned_tier, tier) AS effective_tier
        FROM billing.cadence_state WHERE id = 1
        """
    )


async def save_cadence_state(
    conn: asyncpg.Connection,
    *,
    tier: str,
    idle_ticks: int,
    last_activity_at: datetime | None,
    last_run_at: datetime | None,
) -> None:
    await conn.execute(
        """
        UPDATE billing.cadence_state
        SET tier = $1, idle_ticks = $2, last_activity_at = $3, last_run_at = $4, updated_at = now()
        WHERE id = 1
        """,
        tier,
        idle_ticks,
        last_activity_at,
        last_run_at,
    )


async def set_cadence_pin(conn: asyncpg.Connection, tier: str | None, by: str) -> asyncpg.Record:
    """Pin the sync cadence to a tier (active, idle, dormant), or unpin with None.

    The worker is told through SYNC_TRIGGER so it reschedules at once.
    """
    if tier is not None:
        tier = tier.strip().lower()
        if tier not in TIERS:
            raise InvalidInput(f"cadence tier must be one of {', '.join(TIERS)} (or none to unpin), not {tier!r}")
    async with conn.transaction():
        await conn.execute(
            """
            UPDATE billing.cadence_state
            SET pinned_tier = $1, pinned_by = CASE WHEN $1::text IS NULL THEN NULL ELSE $2 END,
                pinned_at = CASE WHEN $1::text IS NULL THEN NULL ELSE now() END, updated_at = now()
            WHERE id = 1
            """,
            tier,
            by,
        )
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            notify.SYNC_TRIGGER,
            json.dumps({"requested_by": by, "reason": "pin", "run": False}),
        )
        return await get_cadence_state(conn)


async def request_sync_now(conn: asyncpg.Connection, requested_by: str | None) -> None:
    """Ask the active sync worker to run now (NOTIFY sync_trigger)."""
    await conn.execute(
        "SELECT pg_notify($1, $2)",
        notify.SYNC_TRIGGER,
        json.dumps({"requested_by": requested_by or ""}),
    )


async def ensure_discovery_floor(conn: asyncpg.Connection, lookback_start: datetime) -> int:
    """Set the cursor floor on a fresh deployment's first run; return it.

    Transactions that started before `lookback_start` (SYNC_LOOKBACK_MINUTES ago) and exist
    already are left to `polaris sync backfill`; everything after is found by the cursor.
    """
    return await conn.fetchval(
        """
        UPDATE billing.cadence_state
        SET discovery_floor_id = COALESCE(discovery_floor_id, (
                SELECT COALESCE(max(id), 0) FROM ocpp.transactions WHERE start_timestamp < $1
            )), updated_at = now()
        WHERE id = 1
        RETURNING discovery_floor_id
        """,
        lookback_start,
    )


async def activity_since(conn: asyncpg.Connection, since: datetime | None) -> bool:
    """True when a session runs now or started or ended since `since` (Active cadence).

    A session flagged stuck (no StopTransaction in time) does not keep the cadence Active.
    """
    return await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM ocpp.transactions
                       WHERE stop_timestamp IS NULL AND NOT is_test AND stuck_since IS NULL)
            OR EXISTS (SELECT 1 FROM ocpp.transactions
                       WHERE $1::timestamptz IS NOT NULL
                         AND (start_timestamp >= $1 OR stop_timestamp >= $1))
        """,
        since,
    )


async def deployment_id(conn: asyncpg.Connection) -> str:
    """This deployment's id (made by migration 0111; part of every event's transaction_id)."""
    return await conn.fetchval("SELECT deployment_id FROM billing.deployment WHERE id = 1") or ""
