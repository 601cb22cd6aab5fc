"""Reads of charging sessions for the admin API: filtered lists, detail, dashboard figures.

Writes to transactions stay in transactions.py (the OCPP server's); this module only reads.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

# Energy register reading in Wh (chargers send Wh or kWh; no measurand means the register).
_REGISTER_WH = """
    CASE WHEN lower(coalesce(mv.unit, 'Wh')) = 'kwh' THEN mv.value_num * 1000 ELSE mv.value_num END
"""

# Columns of a listed session; `t` is a page of ocpp.transactions rows chosen first, so
# the joins and the energy lookup run for the rows shown only.
_COLUMNS = f"""
    SELECT t.id, cb.charge_box_id, t.connector_id, t.id_tag, t.id_tag_status, t.start_timestamp,
           t.meter_start, t.stop_timestamp, t.meter_stop, t.stop_reason, t.stopped_by,
           t.stuck_since, t.is_test, t.reservation_id,
           it.customer_id, u.email AS customer_email,
           s.billed_wh, s.final_sent, s.unbillable_reason,
           CASE WHEN t.stop_timestamp IS NOT NULL THEN t.meter_stop - t.meter_start
                ELSE (SELECT round({_REGISTER_WH})::bigint - t.meter_start FROM ocpp.meter_values mv
                      WHERE mv.transaction_id = t.id AND mv.value_num IS NOT NULL
                        AND coalesce(mv.measurand, 'Energy.Active.Import.Register')
                            = 'Energy.Active.Import.Register'
                        AND coalesce(mv.phase, '') = ''
                      ORDER BY mv.sampled_at DESC LIMIT 1)
           END AS energy_wh
"""
_JOINS = """
    JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
    LEFT JOIN app.id_tags it ON lower(it.id_tag) = lower(t.id_tag)
    LEFT JOIN app.customers c ON c.id = it.customer_id
    LEFT JOIN app.users u ON u.id = c.user_id
    LEFT JOIN billing.transaction_sync_state s ON s.transaction_id = t.id
"""
_SELECT = _COLUMNS + " FROM ocpp.transactions t " + _JOINS


STATES = ("active", "stopped", "stuck")


async def list_transactions_page(
    conn: asyncpg.Connection,
    *,
    limit: int,
    before_id: int | None = None,
    charge_box_id: str | None = None,
    customer_id: int | None = None,
    customer: str | None = None,
    id_tag: str | None = None,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[asyncpg.Record]:
    """Newest first; `before_id` continues a previous page.

    Only the filters given become SQL (so every query gets a plan fit for it), and the
    page of ids is chosen before the joins.
    """
    where: list[str] = []
    args: list = [limit]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if before_id is not None:
        where.append(f"t.id < {arg(before_id)}")
    if charge_box_id is not None:
        where.append(f"t.charge_box_pk = (SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = {arg(charge_box_id)})")
    if customer_id is not None:
        where.append(
            f"lower(t.id_tag) IN (SELECT lower(id_tag) FROM app.id_tags WHERE customer_id = {arg(customer_id)})"
        )
    if customer is not None:
        where.append(
            "lower(t.id_tag) IN (SELECT lower(it.id_tag) FROM app.id_tags it "
            "JOIN app.customers c ON c.id = it.customer_id JOIN app.users u ON u.id = c.user_id "
            f"WHERE u.email ILIKE '%' || {arg(customer)} || '%')"
        )
    if id_tag is not None:
        where.append(f"lower(t.id_tag) = lower({arg(id_tag)})")
    if state == "active":
        where.append("t.stop_timestamp IS NULL")
    elif state == "stopped":
        where.append("t.stop_timestamp IS NOT NULL")
    elif state == "stuck":
        where.append("t.stop_timestamp IS NULL AND t.stuck_since IS NOT NULL")
    if since is not None:
        where.append(f"t.start_timestamp >= {arg(since)}")
    if until is not None:
        where.append(f"t.start_timestamp < {arg(until)}")
    condition = " AND ".join(where) or "true"
    return await conn.fetch(
        f"""
        {_COLUMNS}
        FROM (SELECT * FROM ocpp.transactions t WHERE {condition} ORDER BY t.id DESC LIMIT $1) t
        {_JOINS}
        ORDER BY t.id DESC
        """,
        *args,
    )


async def get_transaction_detail(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_SELECT} WHERE t.id = $1", transaction_id)


async def meter_values_for(conn: asyncpg.Connection, transaction_id: int, *, limit: int) -> list[asyncpg.Record]:
    """The newest `limit` samples of a session, oldest first."""
    return await conn.fetch(
        """
        SELECT * FROM (
            SELECT id, sampled_at, value, value_num, measurand, unit, phase, context, location, format
            FROM ocpp.meter_values WHERE transaction_id = $1
            ORDER BY sampled_at DESC, id DESC LIMIT $2
        ) s ORDER BY sampled_at, id
        """,
        transaction_id,
        limit,
    )


async def session_figures(conn: asyncpg.Connection) -> asyncpg.Record:
    """Active sessions, power drawn now (kW, latest sample per open session), energy today (kWh).

    Energy today is what sessions that ended today delivered plus what the sessions still
    charging have delivered so far (their latest register reading), so two cars charging
    since the morning count before they leave.
    """
    return await conn.fetchrow(
        f"""
        WITH open AS (
            SELECT id, meter_start, is_test FROM ocpp.transactions WHERE stop_timestamp IS NULL
        ), open_energy AS (
            SELECT greatest((SELECT round({_REGISTER_WH})::bigint FROM ocpp.meter_values mv
                             WHERE mv.transaction_id = o.id AND mv.value_num IS NOT NULL
                               AND coalesce(mv.measurand, 'Energy.Active.Import.Register')
                                   = 'Energy.Active.Import.Register'
                               AND coalesce(mv.phase, '') = ''
                             ORDER BY mv.sampled_at DESC LIMIT 1) - o.meter_start, 0) AS wh
            FROM open o WHERE NOT o.is_test
        ), power AS (
            SELECT (SELECT CASE WHEN lower(coalesce(mv.unit, 'W')) = 'kw' THEN mv.value_num
                                ELSE mv.value_num / 1000 END
                    FROM ocpp.meter_values mv
                    WHERE mv.transaction_id = o.id AND mv.measurand = 'Power.Active.Import'
                      AND coalesce(mv.phase, '') = '' AND mv.value_num IS NOT NULL
                      AND mv.sampled_at > now() - interval '15 minutes'
                    ORDER BY mv.sampled_at DESC LIMIT 1) AS kw
            FROM open o
        )
        SELECT (SELECT count(*) FROM open) AS active_sessions,
               coalesce((SELECT sum(kw) FROM power), 0)::float8 AS power_kw,
               (coalesce((SELECT sum(meter_stop - meter_start) FROM ocpp.transactions
                          WHERE stop_timestamp >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                            AND NOT is_test), 0)
                + coalesce((SELECT sum(wh) FROM open_energy), 0))::float8 / 1000 AS energy_today_kwh,
               (SELECT count(*) FROM ocpp.transactions
                WHERE stop_timestamp IS NULL AND stuck_since IS NOT NULL) AS stuck_sessions
        """
    )


__all__ = ["STATES", "_REGISTER_WH"]
