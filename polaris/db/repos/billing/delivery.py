"""Delivery: pending usage events read in order and marked sent or invalid after Lago answered."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg


async def fetch_pending_events(
    conn: asyncpg.Connection, *, limit: int, after_seq: int = 0
) -> list[asyncpg.Record]:
    """Events written but not yet accepted by Lago, in the order they were written.

    `open_from`: where the subscription's open billing period starts as far as we know
    (NULL: not known); an event timed before it would land in an invoiced period.
    """
    return await conn.fetch(
        """
        SELECT e.seq, e.transaction_id, e.ocpp_transaction_id, e.kind, e.external_subscription_id,
               e.code, e.event_timestamp, e.wh, e.properties,
               CASE WHEN s.current_period_ending_at IS NOT NULL AND s.current_period_ending_at <= now()
                    THEN s.current_period_ending_at  -- that period ended since we asked: the next is open
                    ELSE s.current_period_started_at END AS open_from
        FROM billing.usage_events e
        LEFT JOIN billing.lago_subscriptions s
               ON s.external_id = e.external_subscription_id AND s.status = 'active'
        WHERE e.status = 'pending' AND e.seq > $2
        ORDER BY e.seq
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


async def move_into_open_period(
    conn: asyncpg.Connection, moves: Sequence[tuple[str, object, dict]]
) -> None:
    """Events re-timed into the open billing period before they are sent: (id, timestamp,
    properties with the session's real time)."""
    await conn.executemany(
        "UPDATE billing.usage_events SET event_timestamp = $2, properties = $3 "
        "WHERE transaction_id = $1 AND status = 'pending'",
        moves,
    )


async def count_moved_events(conn: asyncpg.Connection) -> tuple[int, int]:
    """(events, Wh) sent into a later open period than the session's own (late usage)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, COALESCE(sum(wh), 0)::bigint AS wh FROM billing.usage_events "
        "WHERE properties ? 'occurred_at'"
    )
    return row["n"], row["wh"]


async def hold_reported_events(
    conn: asyncpg.Connection, reported: dict[str, list[str]]
) -> list[asyncpg.Record]:
    """Lago's `events.errors` webhook: events it stored but will not bill, by error.

    Each named event is marked invalid with Lago's error and its session held, so an
    operator sees it (and retries it once the metric is fixed in Lago). Returns the held
    sessions (ocpp_transaction_id, transaction_id, error); ids we never sent are ignored.
    """
    pairs = [(tid, error) for error, tids in reported.items() for tid in tids if isinstance(tid, str)]
    if not pairs:
        return []
    return await conn.fetch(
        """
        WITH x AS (SELECT * FROM unnest($1::text[], $2::text[]) AS x(tid, error)),
        upd AS (
            UPDATE billing.usage_events e
            SET status = 'invalid',
                last_error = 'Lago reported ' || x.error || ' (events.errors webhook): stored, not billed'
            FROM x WHERE e.transaction_id = x.tid AND e.status IN ('sent', 'pending')
            RETURNING e.ocpp_transaction_id, e.transaction_id, x.error
        ), st AS (
            UPDATE billing.transaction_sync_state s
            SET unbillable_code = 'invalid_event',
                unbillable_reason = 'Lago reported ' || upd.error || ' for event ' || upd.transaction_id
                    || ' (events.errors): it stored the event but will not bill it; fix the billable '
                    || 'metric in Lago, then retry the session',
                held_since = now(), updated_at = now()
            FROM upd WHERE s.transaction_id = upd.ocpp_transaction_id
            RETURNING 1
        )
        SELECT ocpp_transaction_id, transaction_id, error FROM upd ORDER BY ocpp_transaction_id
        """,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
