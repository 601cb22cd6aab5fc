"""What live events, receipts and push notices need to know about a charging session.

The customer is the one recorded when the session started (`t.customer_id`), not the card's
holder now: live energy, receipts and pushes go to whoever charged.
"""

from __future__ import annotations

import asyncpg

SESSION_COLUMNS = """
    t.id AS transaction_id, t.connector_id, t.id_tag, t.start_timestamp, t.stop_timestamp,
    t.meter_start, t.meter_stop, t.stop_reason, t.is_test,
    cb.charge_box_id, cb.public_id, cb.description AS charger_description,
    s.name AS site_name, s.address AS site_address,
    c.id AS customer_id, c.name AS customer_name, c.active AS customer_active,
    c.receipts_enabled, u.id AS user_id, u.email
"""
SESSION_FROM = """
    FROM ocpp.transactions t
    JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
    LEFT JOIN ocpp.sites s ON s.id = cb.site_id
    LEFT JOIN app.customers c ON c.id = t.customer_id
    LEFT JOIN app.users u ON u.id = c.user_id
"""


async def get_session(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    """The session with its charger, site and the customer whose card started it (if any)."""
    return await conn.fetchrow(
        f"SELECT {SESSION_COLUMNS} {SESSION_FROM} WHERE t.id = $1", transaction_id
    )


async def open_session_at(
    conn: asyncpg.Connection, charge_box_id: str, connector_id: int
) -> asyncpg.Record | None:
    """The session running on a connector now, if any (the newest when a zombie lingers)."""
    return await conn.fetchrow(
        f"""
        SELECT {SESSION_COLUMNS} {SESSION_FROM}
        WHERE cb.charge_box_id = $1 AND t.connector_id = $2 AND t.stop_timestamp IS NULL
        ORDER BY t.start_timestamp DESC LIMIT 1
        """,
        charge_box_id,
        connector_id,
    )


async def sessions_stopped_since(conn: asyncpg.Connection, minutes: int) -> list[asyncpg.Record]:
    """Sessions that ended in the last `minutes`, for catching up on missed notifications."""
    return await conn.fetch(
        f"""
        SELECT {SESSION_COLUMNS} {SESSION_FROM}
        WHERE t.stop_timestamp IS NOT NULL AND t.updated_at > now() - make_interval(mins => $1)
        ORDER BY t.id
        """,
        minutes,
    )
