"""Read-only figures for `polaris health`: what on-call needs from each schema, in one place.

Nothing here writes. Test chargers (`is_test`, `polaris smoke`) are left out of every count.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg


async def server_version(conn: asyncpg.Connection) -> str:
    return await conn.fetchval("SHOW server_version")


async def charger_counts(conn: asyncpg.Connection) -> asyncpg.Record:
    """Registered (active, not test) chargers and how many of them are connected."""
    return await conn.fetchrow(
        """
        SELECT count(*) AS registered, count(*) FILTER (WHERE connected) AS connected
        FROM ocpp.charge_boxes WHERE active AND NOT is_test
        """
    )


async def sync_freshness(conn: asyncpg.Connection) -> asyncpg.Record:
    """The cadence tier, the last succeeded run, the first run, and the newest run's error."""
    return await conn.fetchrow(
        """
        SELECT (SELECT COALESCE(pinned_tier, tier) FROM billing.cadence_state WHERE id = 1)
                   AS effective_tier,
               (SELECT max(finished_at) FROM billing.sync_runs WHERE status = 'succeeded')
                   AS last_success_at,
               (SELECT min(started_at) FROM billing.sync_runs) AS first_run_at,
               (SELECT error FROM billing.sync_runs WHERE status = 'failed'
                ORDER BY id DESC LIMIT 1) AS last_error
        """
    )


async def consecutive_failed_runs(conn: asyncpg.Connection) -> int:
    """Finished runs that failed since the newest one that did not (a run in progress is skipped)."""
    return await conn.fetchval(
        """
        SELECT count(*) FROM billing.sync_runs
        WHERE status = 'failed'
          AND id > COALESCE((SELECT max(id) FROM billing.sync_runs
                             WHERE status IN ('succeeded', 'partial')), 0)
        """
    )


async def outbox_backlog(conn: asyncpg.Connection) -> asyncpg.Record:
    """Mail not delivered yet (waiting, being sent, or held), the oldest one, and how many are held."""
    return await conn.fetchrow(
        """
        SELECT count(*) AS undelivered,
               count(*) FILTER (WHERE status = 'held') AS held,
               min(created_at) AS oldest_at,
               (SELECT count(*) FROM app.email_outbox WHERE status = 'sent') AS sent
        FROM app.email_outbox WHERE status IN ('pending', 'sending', 'held')
        """
    )


async def undelivered_usage_events(conn: asyncpg.Connection, *, older_than: timedelta) -> asyncpg.Record:
    """Usage events Lago does not have: still pending (and how many for longer than `older_than`),
    or refused by Lago (invalid)."""
    return await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
               count(*) FILTER (WHERE status = 'pending' AND created_at < now() - $1::interval)
                   AS pending_old,
               count(*) FILTER (WHERE status = 'invalid') AS invalid
        FROM billing.usage_events WHERE status IN ('pending', 'invalid')
        """,
        older_than,
    )


async def open_operator_alerts(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Incidents not cleared yet, oldest first."""
    return await conn.fetch(
        """
        SELECT kind, subject, detail, opened_at FROM app.operator_alerts
        WHERE cleared_at IS NULL ORDER BY opened_at, id
        """
    )

