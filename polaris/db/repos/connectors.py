"""Connector status as chargers report it (StatusNotification), with its history."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from polaris.db.notify import CHARGER_EVENTS


async def notify_charger_event(conn: asyncpg.Connection, payload: dict) -> None:
    """NOTIFY on CHARGER_EVENTS (payload format in polaris/db/notify.py)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHARGER_EVENTS, json.dumps(payload))


async def record_status(
    conn: asyncpg.Connection,
    *,
    charge_box_pk: int,
    charge_box_id: str,
    connector_id: int,
    status: str,
    error_code: str | None,
    info: str | None,
    vendor_id: str | None,
    vendor_error_code: str | None,
    status_at: datetime,
) -> bool:
    """Store a status; return False when an older report arrived after a newer one.

    The history keeps every report; the current state only moves forward in the charger's time.
    """
    event = json.dumps(
        {
            "event": "status",
            "charge_box_id": charge_box_id,
            "connector_id": connector_id,
            "status": status,
            "error_code": error_code,
        }
    )
    # One statement (atomic, one round trip): history, current state, NOTIFY when applied.
    applied = await conn.fetchval(
        """
        WITH history AS (
            INSERT INTO ocpp.connector_status_history
                (charge_box_pk, connector_id, status, error_code, info, vendor_id,
                 vendor_error_code, status_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ), cur AS (
            INSERT INTO ocpp.connectors AS c
                (charge_box_pk, connector_id, status, error_code, info, vendor_id,
                 vendor_error_code, status_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (charge_box_pk, connector_id) DO UPDATE SET
                status = EXCLUDED.status, error_code = EXCLUDED.error_code, info = EXCLUDED.info,
                vendor_id = EXCLUDED.vendor_id, vendor_error_code = EXCLUDED.vendor_error_code,
                status_at = EXCLUDED.status_at, updated_at = now()
            WHERE c.status_at IS NULL OR EXCLUDED.status_at >= c.status_at
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM cur)
               AND (SELECT count(pg_notify($9, $10)) FROM cur) >= 0
        """,
        charge_box_pk, connector_id, status, error_code, info, vendor_id, vendor_error_code,
        status_at, CHARGER_EVENTS, event,
    )
    return bool(applied)


async def list_connectors(conn: asyncpg.Connection, charge_box_pk: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ocpp.connectors WHERE charge_box_pk = $1 ORDER BY connector_id", charge_box_pk
    )
