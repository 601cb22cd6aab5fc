"""Ledger totals and events per subscription, compared with what Lago holds."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def ledger_totals(
    conn: asyncpg.Connection, *, start: datetime, end: datetime, code: str
) -> dict[str, int]:
    """Wh the ledger says Lago accepted, per subscription, for events in [start, end)."""
    rows = await conn.fetch(
        """
        SELECT external_subscription_id, sum(wh)::bigint AS wh
        FROM billing.usage_events
        WHERE status = 'sent' AND code = $3 AND event_timestamp >= $1 AND event_timestamp < $2
        GROUP BY external_subscription_id
        """,
        start,
        end,
        code,
    )
    return {r["external_subscription_id"]: r["wh"] for r in rows}


async def ledger_events(
    conn: asyncpg.Connection, *, subscription: str, start: datetime, end: datetime, code: str
) -> dict[str, tuple[int, str]]:
    """transaction_id -> (Wh, status) of a subscription's events in [start, end)."""
    rows = await conn.fetch(
        """
        SELECT transaction_id, wh, status FROM billing.usage_events
        WHERE external_subscription_id = $1 AND code = $4
          AND event_timestamp >= $2 AND event_timestamp < $3
        """,
        subscription,
        start,
        end,
        code,
    )
    return {r["transaction_id"]: (r["wh"], r["status"]) for r in rows}


async def ledger_sent_wh(
    conn: asyncpg.Connection, *, subscription: str, code: str, start: datetime, end: datetime | None
) -> int:
    """Wh the ledger says Lago accepted for a subscription, timed in [start, end) (end None: open)."""
    return await conn.fetchval(
        """
        SELECT COALESCE(sum(wh), 0)::bigint FROM billing.usage_events
        WHERE status = 'sent' AND external_subscription_id = $1 AND code = $2
          AND event_timestamp >= $3 AND ($4::timestamptz IS NULL OR event_timestamp < $4)
        """,
        subscription,
        code,
        start,
        end,
    )
