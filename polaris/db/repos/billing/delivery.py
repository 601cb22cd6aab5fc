"""Delivery: pending usage events read in order and marked sent or invalid after Lago answered."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg


async def fetch_pending_events(
    conn: asyncpg.Connection, *, limit: int, after_seq: int = 0
) -> list[asyncpg.Record]:
    """Events written but not yet accepted by Lago, in the order they were written."""
    return await conn.fetch(
        """
        SELECT seq, transaction_id, ocpp_transaction_id, kind, external_subscription_id, code,
               event_timestamp, wh, properties
        FROM billing.usage_events
        WHERE status = 'pending' AND seq > $2
        ORDER BY seq
        LIMIT $1
        """,
        limit,
        after_seq,
    )


async def count_pending_events(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM billing.usage_events WHERE status = 'pending'")


async def mark_events_sent(
    conn: asyncpg.Connection,
    transaction_ids: Sequence[str],
    *,
    duplicates: Iterable[str] = (),
    run_id: int | None,
) -> tuple[int, int]:
    """Lago has these events: mark them sent and add their energy to billed_wh. (count, Wh).

    Run inside a transaction. Its commit skips the WAL flush (synchronous_commit off):
    losing this mark in a Postgres crash only makes the next run resend events that Lago
    answers value_already_exist. Recording events never does this: a lost record could be
    planned again under another increment id and bill twice.
    """
    if not transaction_ids:
        return 0, 0
    await conn.execute("SET LOCAL synchronous_commit TO off")
    row = await conn.fetchrow(
        """
        WITH upd AS (
            UPDATE billing.usage_events e
            SET status = 'sent', sent_at = now(), sent_run_id = $3, attempts = e.attempts + 1,
                duplicate = (e.transaction_id = ANY($2::text[])), last_error = NULL
            WHERE e.transaction_id = ANY($1::text[]) AND e.status <> 'sent'
            RETURNING e.ocpp_transaction_id, e.wh, e.kind, e.status
        ), agg AS (
            SELECT ocpp_transaction_id, sum(wh)::bigint AS wh, bool_or(kind = 'final') AS fin
            FROM upd GROUP BY ocpp_transaction_id
        ), st AS (
            UPDATE billing.transaction_sync_state s
            SET billed_wh = s.billed_wh + agg.wh, final_sent = s.final_sent OR agg.fin,
                last_synced_at = now(), updated_at = now(),
                unbillable_code = CASE WHEN s.unbillable_code = 'invalid_event' AND NOT EXISTS (
                        SELECT 1 FROM billing.usage_events i
                        WHERE i.ocpp_transaction_id = s.transaction_id AND i.status = 'invalid')
                    THEN NULL ELSE s.unbillable_code END
            FROM agg WHERE s.transaction_id = agg.ocpp_transaction_id
            RETURNING 1
        )
        SELECT count(*)::int AS n, COALESCE(sum(wh), 0)::bigint AS wh FROM upd
        """,
        list(transaction_ids),
        list(duplicates),
        run_id,
    )
    return row["n"], row["wh"]


async def mark_events_invalid(
    conn: asyncpg.Connection, invalid: dict[str, str], *, run_id: int | None
) -> int:
    """Lago refused these events as invalid: keep them with the reason and hold the transaction."""
    if not invalid:
        return 0
    return await conn.fetchval(
        """
        WITH x AS (SELECT * FROM unnest($1::text[], $2::text[]) AS x(tid, reason)),
        upd AS (
            UPDATE billing.usage_events e
            SET status = 'invalid', last_error = x.reason, attempts = e.attempts + 1, sent_run_id = $3
            FROM x WHERE e.transaction_id = x.tid AND e.status = 'pending'
            RETURNING e.ocpp_transaction_id, e.transaction_id, x.reason
        ), st AS (
            UPDATE billing.transaction_sync_state s
            SET unbillable_code = 'invalid_event',
                unbillable_reason = 'Lago refused event ' || upd.transaction_id || ': ' || upd.reason,
                held_since = now(), updated_at = now()
            FROM upd WHERE s.transaction_id = upd.ocpp_transaction_id
            RETURNING 1
        )
        SELECT count(*)::int FROM upd
        """,
        list(invalid),
        list(invalid.values()),
        run_id,
    )


async def note_send_failure(conn: asyncpg.Connection, transaction_ids: Sequence[str], error: str) -> None:
    """Delivery failed for now (Lago down): count the attempt; the events stay pending."""
    await conn.execute(
        """
        UPDATE billing.usage_events SET attempts = attempts + 1, last_error = $2
        WHERE transaction_id = ANY($1::text[]) AND status = 'pending'
        """,
        list(transaction_ids),
        error[:500],
    )
