"""OCPP 2.0.1 transactions: the charger's string transaction ids mapped to our sessions, and
every TransactionEvent kept once per seqNo (a duplicate is answered, not applied again)."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg


async def record_event_and_map(conn: asyncpg.Connection, charge_box_pk: int, charger_tx_id: str, *, seq_no: int,
                               event_type: str, trigger_reason: str | None, event_at: datetime, offline: bool,
                               payload: dict) -> tuple[bool, asyncpg.Record | None]:
    """Keep the event (`fresh`: not received before), the mapping as it was before this event (None: no session yet) and the
    highest seqNo moved on, in one round trip (the hot path: every Updated event)."""
    row = await conn.fetchrow(
        """
        WITH ins AS (
            INSERT INTO ocpp.transaction_events
                (charge_box_pk, charger_tx_id, seq_no, event_type, trigger_reason, event_at, offline, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
            ON CONFLICT (charge_box_pk, charger_tx_id, seq_no) DO NOTHING
            RETURNING id
        ), old AS (
            SELECT m.transaction_id, m.meter_start_known, m.last_seq_no, m.gaps, m.ended_at, t.connector_id,
                   t.id_tag, t.meter_start
            FROM ocpp.transaction_ids m JOIN ocpp.transactions t ON t.id = m.transaction_id
            WHERE m.charge_box_pk = $1 AND m.charger_tx_id = $2
        ), moved AS (
            UPDATE ocpp.transaction_ids m SET last_seq_no = GREATEST(coalesce(m.last_seq_no, $3), $3)
            WHERE m.charge_box_pk = $1 AND m.charger_tx_id = $2 AND EXISTS (SELECT 1 FROM ins)
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM ins) AS fresh, (SELECT count(*) FROM moved) AS moved, old.*
        FROM (SELECT 1) AS one LEFT JOIN old ON true
        """,
        charge_box_pk, charger_tx_id, seq_no, event_type, trigger_reason, event_at, offline, json.dumps(payload),
    )
    return row["fresh"], (row if row["transaction_id"] is not None else None)


async def get_mapping(conn: asyncpg.Connection, charge_box_pk: int, charger_tx_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT m.transaction_id, m.meter_start_known, m.last_seq_no, m.gaps, m.ended_at, t.connector_id, "
        "t.id_tag, t.meter_start FROM ocpp.transaction_ids m JOIN ocpp.transactions t ON t.id = m.transaction_id "
        "WHERE m.charge_box_pk = $1 AND m.charger_tx_id = $2",
        charge_box_pk, charger_tx_id,
    )


async def add_mapping(conn: asyncpg.Connection, charge_box_pk: int, charger_tx_id: str, transaction_id: int,
                      *, meter_start_known: bool) -> None:
    await conn.execute(
        "INSERT INTO ocpp.transaction_ids (charge_box_pk, charger_tx_id, transaction_id, meter_start_known) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        charge_box_pk, charger_tx_id, transaction_id, meter_start_known,
    )


async def note_seq_no(conn: asyncpg.Connection, charge_box_pk: int, charger_tx_id: str) -> int:
    """Update the highest seqNo and the count of seqNos missing below it; return that count."""
    return await conn.fetchval(
        """
        WITH s AS (
            SELECT max(seq_no) AS hi, min(seq_no) AS lo, count(*) AS n FROM ocpp.transaction_events
            WHERE charge_box_pk = $1 AND charger_tx_id = $2
        )
        UPDATE ocpp.transaction_ids m SET last_seq_no = s.hi, gaps = (s.hi - s.lo + 1 - s.n)::int
        FROM s WHERE m.charge_box_pk = $1 AND m.charger_tx_id = $2
        RETURNING m.gaps
        """,
        charge_box_pk, charger_tx_id,
    ) or 0


async def set_meter_start(conn: asyncpg.Connection, charge_box_pk: int, charger_tx_id: str,
                          transaction_id: int, meter_start: int) -> None:
    """The first register reading of a session whose Started carried none."""
    await conn.execute(
        "UPDATE ocpp.transactions SET meter_start = $2, updated_at = now() WHERE id = $1 AND stop_timestamp IS NULL",
        transaction_id, meter_start,
    )
    await conn.execute(
        "UPDATE ocpp.transaction_ids SET meter_start_known = true WHERE charge_box_pk = $1 AND charger_tx_id = $2",
        charge_box_pk, charger_tx_id,
    )


async def set_id_tag(conn: asyncpg.Connection, transaction_id: int, id_tag: str, status: str) -> None:
    """A cardless start that got its idToken later (an Updated event with trigger Authorized)."""
    await conn.execute(
        "UPDATE ocpp.transactions SET id_tag = $2, id_tag_status = $3, "
        "customer_id = coalesce(customer_id, (SELECT customer_id FROM app.id_tags WHERE lower(id_tag) = lower($2))), "
        "updated_at = now() WHERE id = $1 AND id_tag = ''",
        transaction_id, id_tag, status,
    )


async def mark_ended(conn: asyncpg.Connection, charge_box_pk: int, charger_tx_id: str) -> None:
    await conn.execute(
        "UPDATE ocpp.transaction_ids SET ended_at = now() WHERE charge_box_pk = $1 AND charger_tx_id = $2 "
        "AND ended_at IS NULL",
        charge_box_pk, charger_tx_id,
    )


async def max_register_wh(conn: asyncpg.Connection, transaction_id: int) -> float | None:
    """The highest Energy.Active.Import.Register reading of a session, in Wh."""
    return await conn.fetchval(
        "SELECT max(CASE WHEN lower(unit) = 'kwh' THEN value_num * 1000 ELSE value_num END) "
        "FROM ocpp.meter_values WHERE transaction_id = $1 AND phase IS NULL "
        "AND coalesce(measurand, 'Energy.Active.Import.Register') = 'Energy.Active.Import.Register'",
        transaction_id,
    )


async def record_report(conn: asyncpg.Connection, charge_box_pk: int, action: str, payload: dict) -> None:
    """A station's report that has no table of its own (NotifyEvent, SecurityEventNotification, ...)."""
    await conn.execute(
        "INSERT INTO ocpp.station_reports (charge_box_pk, action, payload) VALUES ($1, $2, $3::jsonb)",
        charge_box_pk, action, json.dumps(payload),
    )
