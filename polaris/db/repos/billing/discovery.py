"""Discovery and planning: which transactions the sync follows, the events written for them
(pending) and the holds on those that cannot be billed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

ENERGY_REGISTER = "Energy.Active.Import.Register"


async def discover_transactions(conn: asyncpg.Connection, floor_id: int) -> int:
    """Give every transaction above the floor without sync state one (the cursor).

    An anti-join rather than "id > last seen": ids commit out of order, and a transaction
    whose StartTransaction committed late is still found.
    """
    status = await conn.execute(
        """
        INSERT INTO billing.transaction_sync_state (transaction_id)
        SELECT t.id FROM ocpp.transactions t
        WHERE t.id > $1
          AND NOT EXISTS (SELECT 1 FROM billing.transaction_sync_state s WHERE s.transaction_id = t.id)
        ORDER BY t.id
        ON CONFLICT (transaction_id) DO NOTHING
        """,
        floor_id,
    )
    return int(status.split()[-1])


async def discover_recent(conn: asyncpg.Connection, since: datetime) -> int:
    """Bring in transactions that started or ended at or after `since` and are not in the sync
    (SYNC_LOOKBACK_MINUTES on every pass, as the original did): a session below the cursor
    floor (an import, a clock that was wrong) is still billed when it ends recently."""
    status = await conn.execute(
        """
        INSERT INTO billing.transaction_sync_state (transaction_id, discovered_by)
        SELECT t.id, 'lookback' FROM ocpp.transactions t
        WHERE (t.start_timestamp >= $1 OR t.stop_timestamp >= $1)
          AND NOT EXISTS (SELECT 1 FROM billing.transaction_sync_state s WHERE s.transaction_id = t.id)
        ORDER BY t.id
        ON CONFLICT (transaction_id) DO NOTHING
        """,
        since,
    )
    return int(status.split()[-1])


async def discover_backfill(conn: asyncpg.Connection, since: datetime) -> int:
    """Bring transactions that started at or after `since` into the sync (polaris sync backfill)."""
    status = await conn.execute(
        """
        INSERT INTO billing.transaction_sync_state (transaction_id, discovered_by)
        SELECT t.id, 'backfill' FROM ocpp.transactions t
        WHERE t.start_timestamp >= $1
          AND NOT EXISTS (SELECT 1 FROM billing.transaction_sync_state s WHERE s.transaction_id = t.id)
        ORDER BY t.id
        ON CONFLICT (transaction_id) DO NOTHING
        """,
        since,
    )
    return int(status.split()[-1])


async def count_open_transactions(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM billing.transaction_sync_state WHERE NOT done")


async def fetch_open_transactions(
    conn: asyncpg.Connection, *, after_id: int, limit: int
) -> list[asyncpg.Record]:
    """Transactions with work left, with their card mapping and energy-register summary."""
    return await conn.fetch(
        """
        SELECT t.id, cb.charge_box_id, t.connector_id, t.id_tag, t.start_timestamp, t.meter_start,
               t.stop_timestamp, t.meter_stop, t.is_test,
               s.external_subscription_id AS pinned_subscription, s.recorded_wh, s.final_recorded,
               s.energy_override_wh, s.unbillable_code,
               tag.id AS tag_pk, tag.customer_id, c.lago_subscription_id, u.email AS customer_email,
               r.n AS register_count, r.latest_wh, r.latest_at, r.min_wh, r.max_wh, r.decreases
        FROM (
            -- The page first, then the joins: each page costs its own size, not the table's.
            SELECT transaction_id, external_subscription_id, recorded_wh, final_recorded,
                   energy_override_wh, unbillable_code
            FROM billing.transaction_sync_state
            WHERE NOT done AND transaction_id > $1
            ORDER BY transaction_id
            LIMIT $2
        ) s
        JOIN ocpp.transactions t ON t.id = s.transaction_id
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        LEFT JOIN app.id_tags tag ON lower(tag.id_tag) = lower(t.id_tag)
        LEFT JOIN app.customers c ON c.id = tag.customer_id
        LEFT JOIN app.users u ON u.id = c.user_id
        LEFT JOIN LATERAL (
            SELECT count(*) AS n,
                   round(max(x.wh))::bigint AS max_wh,
                   round(min(x.wh))::bigint AS min_wh,
                   round((array_agg(x.wh ORDER BY x.sampled_at DESC, x.id DESC))[1])::bigint AS latest_wh,
                   max(x.sampled_at) AS latest_at,
                   count(*) FILTER (WHERE x.wh < x.prev - 0.5) AS decreases
            FROM (
                SELECT a.id, a.sampled_at, a.wh, lag(a.wh) OVER (ORDER BY a.sampled_at, a.id) AS prev
                FROM (
                    SELECT mv.id, mv.sampled_at,
                           CASE WHEN lower(mv.unit) = 'kwh' THEN mv.value_num * 1000 ELSE mv.value_num END AS wh
                    FROM ocpp.meter_values mv
                    WHERE mv.transaction_id = t.id
                      AND COALESCE(mv.measurand, $3) = $3
                      AND mv.phase IS NULL
                      AND mv.value_num IS NOT NULL
                ) a
            ) x
        ) r ON true
        ORDER BY s.transaction_id
        """,
        after_id,
        limit,
        ENERGY_REGISTER,
    )


async def record_events(
    conn: asyncpg.Connection, events: Sequence[Any], *, run_id: int | None
) -> int:
    """Write planned events (pending) and advance each transaction's recorded energy.

    One statement: an event and the state saying it exists commit together. Each event
    carries the recorded energy it was planned against (`planned_against_wh`); it is
    written only if the state still says so, under a row lock, so two planners (a worker
    that lost its lock and its successor) can never both bill the same energy. An id that
    exists already is skipped and its energy not counted twice.
    """
    if not events:
        return 0
    return await conn.fetchval(
        """
        WITH ev AS (
            SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],
                                 $6::timestamptz[], $7::bigint[], $8::text[], $10::bigint[])
                AS e(tid, otid, kind, sub, code, ts, wh, props, planned_against)
        ), current AS (
            SELECT s.transaction_id FROM billing.transaction_sync_state s
            JOIN ev ON ev.otid = s.transaction_id
            WHERE s.recorded_wh = ev.planned_against AND NOT s.final_recorded
            FOR UPDATE OF s
        ), ins AS (
            INSERT INTO billing.usage_events
                (transaction_id, ocpp_transaction_id, kind, external_subscription_id, code,
                 event_timestamp, wh, properties, recorded_run_id)
            SELECT ev.tid, ev.otid, ev.kind, ev.sub, ev.code, ev.ts, ev.wh, ev.props::jsonb, $9
            FROM ev JOIN current c ON c.transaction_id = ev.otid
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING ocpp_transaction_id, wh, kind, external_subscription_id
        ), agg AS (
            SELECT ocpp_transaction_id, sum(wh)::bigint AS wh, bool_or(kind = 'final') AS fin,
                   min(external_subscription_id) AS sub, count(*) AS n
            FROM ins GROUP BY ocpp_transaction_id
        ), upd AS (
            UPDATE billing.transaction_sync_state s
            SET recorded_wh = s.recorded_wh + agg.wh,
                final_recorded = s.final_recorded OR agg.fin,
                done = s.done OR agg.fin,
                external_subscription_id = COALESCE(s.external_subscription_id, agg.sub),
                unbillable_code = NULL, unbillable_reason = NULL, held_since = NULL,
                updated_at = now()
            FROM agg WHERE s.transaction_id = agg.ocpp_transaction_id
            RETURNING 1
        )
        SELECT COALESCE(sum(n), 0)::int FROM agg
        """,
        [e.transaction_id for e in events],
        [e.ocpp_transaction_id for e in events],
        [e.kind for e in events],
        [e.external_subscription_id for e in events],
        [e.code for e in events],
        [e.timestamp for e in events],
        [e.wh for e in events],
        [json.dumps(e.properties, separators=(",", ":")) for e in events],
        run_id,
        [e.planned_against_wh for e in events],
    )


async def hold_transactions(
    conn: asyncpg.Connection, holds: Sequence[tuple[int, str, str, bool]]
) -> int:
    """Mark transactions unbillable: (transaction_id, code, reason, done). Returns newly held."""
    if not holds:
        return 0
    return await conn.fetchval(
        """
        WITH h AS (
            SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::bool[]) AS h(id, code, reason, done)
        ), upd AS (
            UPDATE billing.transaction_sync_state s
            SET unbillable_code = h.code, unbillable_reason = h.reason,
                held_since = CASE WHEN s.unbillable_code IS NOT DISTINCT FROM h.code
                                  THEN COALESCE(s.held_since, now()) ELSE now() END,
                done = s.done OR h.done, updated_at = now()
            FROM h
            WHERE s.transaction_id = h.id
              AND (s.unbillable_code IS DISTINCT FROM h.code
                   OR s.unbillable_reason IS DISTINCT FROM h.reason OR (h.done AND NOT s.done))
            RETURNING (s.unbillable_code IS NULL) AS was_clear
        )
        SELECT count(*)::int FROM upd
        """,
        [h[0] for h in holds],
        [h[1] for h in holds],
        [h[2] for h in holds],
        [h[3] for h in holds],
    )


async def clear_holds(conn: asyncpg.Connection, transaction_ids: Sequence[int]) -> None:
    """A transaction is billable again (mapped since); an invalid-event hold stays until retried."""
    if not transaction_ids:
        return
    await conn.execute(
        """
        UPDATE billing.transaction_sync_state
        SET unbillable_code = NULL, unbillable_reason = NULL, held_since = NULL, updated_at = now()
        WHERE transaction_id = ANY($1::int[]) AND unbillable_code IS NOT NULL
          AND unbillable_code <> 'invalid_event'
        """,
        list(transaction_ids),
    )
