"""Operator alerts: the conditions worth waking someone for, and their incidents.

The detection queries return every condition that holds right now, however young; the
engine (polaris.services.alerts) decides which are old enough to open an incident, and
clears an open incident once its condition no longer holds at all.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

# Arbitrary constant: the transaction advisory lock one alert evaluation holds, so two
# web instances never evaluate (and mail) at the same time.
ALERTS_LOCK_KEY = 7_316_205_118

COLUMNS = "id, kind, subject, detail, opened_at, cleared_at, open_notified_at, clear_notified_at"


async def try_lock(conn: asyncpg.Connection) -> bool:
    """Take the evaluation lock for the current transaction; False when another holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ALERTS_LOCK_KEY))


# --- conditions --------------------------------------------------------------------------


async def offline_chargers(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Active, non-test chargers that connected once and are not connected now."""
    return await conn.fetch(
        """
        SELECT charge_box_id, description, last_seen_at
        FROM ocpp.charge_boxes
        WHERE active AND NOT is_test AND NOT connected AND last_seen_at IS NOT NULL
        ORDER BY charge_box_id
        """
    )


async def faulted_connectors(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Connectors of active, non-test chargers whose status is Faulted, with since when.

    `since` is when the connector went Faulted: the first Faulted report after its last
    other status in the history (a charger re-sending "Faulted" does not postpone its
    alert), by the charger's clock but never later than when we received it (a clock
    running ahead must not postpone it either).
    """
    return await conn.fetch(
        """
        SELECT cb.charge_box_id, c.connector_id, c.error_code, c.vendor_error_code, c.info,
               LEAST(c.status_at, c.updated_at, first_fault.at) AS since
        FROM ocpp.connectors c
        JOIN ocpp.charge_boxes cb ON cb.id = c.charge_box_pk
        LEFT JOIN LATERAL (
            SELECT min(LEAST(h.status_at, h.received_at)) AS at
            FROM ocpp.connector_status_history h
            WHERE h.charge_box_pk = c.charge_box_pk AND h.connector_id = c.connector_id
              AND h.received_at > COALESCE(
                  (SELECT max(o.received_at) FROM ocpp.connector_status_history o
                   WHERE o.charge_box_pk = c.charge_box_pk AND o.connector_id = c.connector_id
                     AND o.status <> 'Faulted'),
                  '-infinity')
        ) first_fault ON true
        WHERE cb.active AND NOT cb.is_test AND c.status = 'Faulted'
        ORDER BY cb.charge_box_id, c.connector_id
        """
    )


async def recent_sync_runs(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The last `limit` finished sync runs, newest first."""
    return await conn.fetch(
        """
        SELECT id, status, error, COALESCE(finished_at, started_at) AS finished_at
        FROM billing.sync_runs
        WHERE status <> 'running'
        ORDER BY COALESCE(finished_at, started_at) DESC, id DESC
        LIMIT $1
        """,
        limit,
    )


async def lago_reported_events(conn: asyncpg.Connection) -> asyncpg.Record:
    """Sessions held because Lago's events.errors webhook said it will not bill their events."""
    return await conn.fetchrow(
        """
        SELECT count(*) AS sessions, min(held_since) AS since, min(unbillable_reason) AS example
        FROM billing.transaction_sync_state
        WHERE unbillable_code = 'invalid_event' AND unbillable_reason LIKE 'Lago reported %'
        """
    )


async def undelivered_mail(conn: asyncpg.Connection) -> asyncpg.Record:
    """The outbox backlog: oldest undelivered mail (waiting or held) and the counts."""
    return await conn.fetchrow(
        """
        SELECT min(created_at) AS oldest,
               count(*) FILTER (WHERE status IN ('pending', 'sending')) AS waiting,
               count(*) FILTER (WHERE status = 'held') AS held
        FROM app.email_outbox
        WHERE status <> 'sent'
        """
    )


# --- incidents ---------------------------------------------------------------------------


async def open_incident(
    conn: asyncpg.Connection, *, kind: str, subject: str, detail: str, opened_at: datetime
) -> asyncpg.Record | None:
    """Open an incident; None when one is already open for (kind, subject)."""
    return await conn.fetchrow(
        f"""
        INSERT INTO app.operator_alerts (kind, subject, detail, opened_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (kind, subject) WHERE cleared_at IS NULL DO NOTHING
        RETURNING {COLUMNS}
        """,
        kind,
        subject,
        detail,
        opened_at,
    )


async def set_detail(conn: asyncpg.Connection, alert_id: int, detail: str) -> None:
    await conn.execute(
        "UPDATE app.operator_alerts SET detail = $2 WHERE id = $1 AND detail IS DISTINCT FROM $2",
        alert_id,
        detail,
    )


async def clear_incident(conn: asyncpg.Connection, alert_id: int, *, cleared_at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE app.operator_alerts SET cleared_at = $2
        WHERE id = $1 AND cleared_at IS NULL
        RETURNING {COLUMNS}
        """,
        alert_id,
        cleared_at,
    )


async def list_open(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {COLUMNS} FROM app.operator_alerts WHERE cleared_at IS NULL ORDER BY id")


async def unnotified(conn: asyncpg.Connection, *, cleared_since: datetime) -> list[asyncpg.Record]:
    """Edges not mailed yet: open incidents without their open mail, and incidents cleared
    since `cleared_since` whose opening was mailed but not their clearing."""
    return await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM app.operator_alerts
        WHERE (cleared_at IS NULL AND open_notified_at IS NULL)
           OR (cleared_at >= $1 AND open_notified_at IS NOT NULL AND clear_notified_at IS NULL)
        ORDER BY id
        FOR UPDATE
        """,
        cleared_since,
    )


async def mark_notified(conn: asyncpg.Connection, alert_id: int, *, edge: str, at: datetime) -> None:
    """Record that the mail for `edge` ('open' or 'clear') was queued."""
    column = {"open": "open_notified_at", "clear": "clear_notified_at"}[edge]
    await conn.execute(f"UPDATE app.operator_alerts SET {column} = $2 WHERE id = $1", alert_id, at)


async def list_incidents(
    conn: asyncpg.Connection, *, include_cleared: bool, limit: int
) -> list[asyncpg.Record]:
    """Open incidents first (oldest first), then, when asked, the most recently cleared."""
    return await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM app.operator_alerts
        WHERE cleared_at IS NULL OR $1
        ORDER BY cleared_at IS NOT NULL, cleared_at DESC, opened_at, id
        LIMIT $2
        """,
        include_cleared,
        limit,
    )
