"""What operators see and settle: unbillable sessions, holds, energy overrides, the overview."""

from __future__ import annotations

import asyncpg

from polaris.db.errors import InvalidInput, NotFound


async def list_unbillable(
    conn: asyncpg.Connection,
    *,
    code: str | None = None,
    include_tests: bool = False,
    limit: int = 100,
    after_id: int | None = None,
) -> list[asyncpg.Record]:
    """Transactions held back from billing, with the reason, oldest transaction first."""
    return await conn.fetch(
        """
        SELECT s.transaction_id, s.unbillable_code, s.unbillable_reason, s.held_since,
               s.recorded_wh, s.billed_wh, t.id_tag, cb.charge_box_id, t.connector_id,
               t.start_timestamp, t.stop_timestamp, t.meter_start, t.meter_stop,
               (t.meter_stop - t.meter_start) AS energy_wh
        FROM billing.transaction_sync_state s
        JOIN ocpp.transactions t ON t.id = s.transaction_id
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        WHERE s.unbillable_code IS NOT NULL
          AND ($1::text IS NULL OR s.unbillable_code = $1)
          AND ($2 OR s.unbillable_code <> 'test')
          AND ($4::int IS NULL OR s.transaction_id > $4)
        ORDER BY s.transaction_id
        LIMIT $3
        """,
        code,
        include_tests,
        max(1, min(limit, 1000)),
        after_id,
    )


async def unbillable_summary(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Held transactions per reason code with their energy (dashboards, health)."""
    return await conn.fetch(
        """
        SELECT s.unbillable_code AS code, count(*) AS transactions,
               COALESCE(sum(t.meter_stop - t.meter_start) FILTER (WHERE t.meter_stop IS NOT NULL), 0)
                   AS energy_wh
        FROM billing.transaction_sync_state s JOIN ocpp.transactions t ON t.id = s.transaction_id
        WHERE s.unbillable_code IS NOT NULL AND s.unbillable_code <> 'test'
        GROUP BY s.unbillable_code ORDER BY s.unbillable_code
        """
    )


async def get_hold(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    """One session's billing state: why it is held (if it is) and what was recorded so far."""
    return await conn.fetchrow(
        """
        SELECT s.transaction_id, s.unbillable_code, s.unbillable_reason, s.recorded_wh, s.billed_wh,
               s.final_recorded, s.energy_override_wh, t.meter_start, t.meter_stop, t.stop_timestamp
        FROM billing.transaction_sync_state s JOIN ocpp.transactions t ON t.id = s.transaction_id
        WHERE s.transaction_id = $1
        """,
        transaction_id,
    )


async def retry_refused_events(conn: asyncpg.Connection, transaction_id: int) -> int:
    """After fixing the cause in Lago: send this session's refused events again on the next run.

    The hold stays until they are delivered (then `mark_events_sent` clears it); if Lago
    refuses them again, they are held again with its new reason.
    """
    status = await conn.execute(
        "UPDATE billing.usage_events SET status = 'pending', last_error = NULL "
        "WHERE ocpp_transaction_id = $1 AND status = 'invalid'",
        transaction_id,
    )
    return int(status.split()[-1])


async def set_energy_override(
    conn: asyncpg.Connection, transaction_id: int, energy_wh: int, by: str
) -> None:
    """An operator settles an anomaly: bill this energy (Wh) for the session."""
    if energy_wh < 0:
        raise InvalidInput("the energy to bill cannot be negative")
    status = await conn.execute(
        """
        UPDATE billing.transaction_sync_state
        SET energy_override_wh = $2, energy_override_by = $3, updated_at = now()
        WHERE transaction_id = $1 AND NOT final_recorded
        """,
        transaction_id,
        energy_wh,
        by,
    )
    if status == "UPDATE 0":
        raise NotFound(f"transaction {transaction_id} is not waiting for billing")


async def billing_overview(conn: asyncpg.Connection) -> asyncpg.Record:
    """Counts for an at-a-glance view: pending and refused events, held transactions, last run."""
    return await conn.fetchrow(
        """
        SELECT
            (SELECT count(*) FROM billing.usage_events WHERE status = 'pending') AS pending_events,
            (SELECT count(*) FROM billing.usage_events WHERE status = 'invalid') AS invalid_events,
            (SELECT COALESCE(sum(wh), 0) FROM billing.usage_events WHERE status = 'sent') AS billed_wh,
            (SELECT count(*) FROM billing.transaction_sync_state
             WHERE unbillable_code IS NOT NULL AND unbillable_code <> 'test') AS held_transactions,
            (SELECT max(finished_at) FROM billing.sync_runs WHERE status = 'succeeded') AS last_success_at,
            -- late usage sent into a later open billing period than the session's own
            (SELECT count(*) FROM billing.usage_events WHERE properties ? 'occurred_at') AS late_events,
            (SELECT COALESCE(sum(wh), 0)::bigint FROM billing.usage_events
             WHERE properties ? 'occurred_at') AS late_wh
        """
    )
