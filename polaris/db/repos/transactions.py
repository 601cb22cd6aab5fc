"""Charging sessions (OCPP transactions): start, stop, force-close, stuck detection.

The transaction id given to a charger is `ocpp.transactions.id`. Starting and stopping a
transaction sends a NOTIFY on `polaris.db.notify.TRANSACTION_EVENTS` in the same database
transaction, so listeners never hear of a session that was rolled back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from polaris.db.errors import InvalidInput, NotFound
from polaris.db.notify import TRANSACTION_EVENTS
from polaris.db.repos.meter_values import last_energy_reading

INT4_MAX = 2**31 - 1


async def _notify(
    conn: asyncpg.Connection, event: str, tx_id: int, charge_box_id: str, connector_id: int, id_tag: str
) -> None:
    payload = {
        "event": event,
        "transaction_id": tx_id,
        "charge_box_id": charge_box_id,
        "connector_id": connector_id,
        "id_tag": id_tag,
    }
    await conn.execute("SELECT pg_notify($1, $2)", TRANSACTION_EVENTS, json.dumps(payload))


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    created: bool  # False: a resent StartTransaction matched an existing one


async def start_transaction(
    conn: asyncpg.Connection,
    *,
    charge_box_pk: int,
    charge_box_id: str,
    connector_id: int,
    id_tag: str,
    id_tag_status: str | None,
    start_timestamp: datetime,
    meter_start: int,
    reservation_id: int | None = None,
) -> StartResult:
    """Record a session; a resend (same connector, tag, start time, meterStart) gets the same id.

    The session belongs to the customer who holds the card now (`customer_id`, kept
    whatever happens to the card later: every customer-facing read filters on it).
    A new session on a connector that still has an open accepted one flags the old one as
    stuck (its StopTransaction never came) rather than closing it: an operator decides. An
    open refused start there (Blocked, Invalid, ConcurrentTx...) is closed: it was never one.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO ocpp.transactions
                (charge_box_pk, connector_id, id_tag, id_tag_status, start_timestamp, meter_start,
                 reservation_id, is_test, customer_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7,
                    coalesce((SELECT is_test FROM ocpp.charge_boxes WHERE id = $1), false),
                    (SELECT customer_id FROM app.id_tags WHERE lower(id_tag) = lower($3)))
            ON CONFLICT (charge_box_pk, connector_id, lower(id_tag), start_timestamp, meter_start)
            DO UPDATE SET updated_at = now()
            RETURNING id, (xmax = 0) AS created
            """,
            charge_box_pk,
            connector_id,
            id_tag,
            id_tag_status,
            start_timestamp,
            meter_start,
            reservation_id,
        )
        tx_id, created = row["id"], row["created"]
        if created:
            await close_refused(conn, charge_box_pk, charge_box_id, connector_id, start_timestamp,
                                excluding=tx_id)
            await conn.execute(
                f"""
                UPDATE ocpp.transactions SET stuck_since = now(), updated_at = now()
                WHERE charge_box_pk = $1 AND connector_id = $2 AND stop_timestamp IS NULL
                  AND id <> $3 AND stuck_since IS NULL AND {ACCEPTED}
                """,
                charge_box_pk,
                connector_id,
                tx_id,
            )
            if reservation_id is not None:
                await conn.execute(
                    "UPDATE ocpp.reservations SET status = 'Used', transaction_id = $2, "
                    "updated_at = now() WHERE id = $1 AND charge_box_pk = $3",
                    reservation_id,
                    tx_id,
                    charge_box_pk,
                )
            await _notify(conn, "started", tx_id, charge_box_id, connector_id, id_tag)
    return StartResult(tx_id, created)


# Only an accepted start is a session: a refused one (Blocked, Expired, Invalid, ConcurrentTx)
# never counts as active. Rows from before id_tag_status was kept count as accepted.
ACCEPTED = "coalesce(id_tag_status, 'Accepted') = 'Accepted'"


async def at_active_limit(conn: asyncpg.Connection, id_tag: str, *, excluding: int | None = None) -> bool:
    """Whether the tag already has as many active sessions as it may (its max_active_transactions,
    1 for a tag we do not know; -1 is no limit). Stuck and refused sessions do not count."""
    return await conn.fetchval(
        f"""
        SELECT lim <> -1 AND active >= lim FROM (
            SELECT coalesce((SELECT max_active_transactions FROM app.id_tags
                             WHERE lower(id_tag) = lower($1)), 1) AS lim,
                   (SELECT count(*) FROM ocpp.transactions
                    WHERE lower(id_tag) = lower($1) AND stop_timestamp IS NULL AND stuck_since IS NULL
                      AND {ACCEPTED} AND id IS DISTINCT FROM $2) AS active
        ) x
        """,
        id_tag,
        excluding,
    )


async def close_refused(conn: asyncpg.Connection, charge_box_pk: int, charge_box_id: str, connector_id: int,
                        at: datetime, *, excluding: int | None = None) -> list[int]:
    """Close the open refused starts of a connector (it reported Available, or a new start came);
    no energy, `stopped_by` inferred. Their ids."""
    rows = await conn.fetch(
        f"""
        UPDATE ocpp.transactions SET stop_timestamp = GREATEST(start_timestamp, $4), meter_stop = meter_start,
            stop_reason = 'DeAuthorized', stopped_by = 'inferred', updated_at = now()
        WHERE charge_box_pk = $1 AND connector_id = $2 AND stop_timestamp IS NULL AND NOT {ACCEPTED}
          AND id IS DISTINCT FROM $3
        RETURNING id, id_tag
        """,
        charge_box_pk,
        connector_id,
        excluding,
        at,
    )
    for r in rows:
        await _notify(conn, "stopped", r["id"], charge_box_id, connector_id, r["id_tag"])
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class StopResult:
    # stopped | already_stopped | unknown_transaction | other_charger | already_closed
    outcome: str
    connector_id: int | None = None


async def stop_transaction(
    conn: asyncpg.Connection,
    *,
    charge_box_pk: int,
    charge_box_id: str,
    transaction_id: int,
    id_tag: str | None,
    stop_timestamp: datetime,
    meter_stop: int,
    reason: str | None,
    transaction_data: object | None,
    payload: dict,
) -> StopResult:
    """Apply a StopTransaction. Never fails for a bad id: what cannot be applied is kept."""
    async with conn.transaction():
        row = None
        if 0 < transaction_id <= INT4_MAX:
            row = await conn.fetchrow(
                "SELECT id, charge_box_pk, connector_id, id_tag, meter_start, stop_timestamp, "
                "stopped_by FROM ocpp.transactions WHERE id = $1 FOR UPDATE",
                transaction_id,
            )
        if row is None or row["charge_box_pk"] != charge_box_pk:
            reason_kept = "unknown_transaction" if row is None else "other_charger"
            await _record_failed_stop(
                conn, charge_box_pk, transaction_id, reason_kept, id_tag, stop_timestamp,
                meter_stop, reason, payload,
            )
            return StopResult(reason_kept)
        if row["stop_timestamp"] is not None:
            if row["stopped_by"] == "charger":
                return StopResult("already_stopped", row["connector_id"])
            # An operator closed it first; the charger's own figures are kept for review.
            await _record_failed_stop(
                conn, charge_box_pk, transaction_id, "already_closed", id_tag, stop_timestamp,
                meter_stop, reason, payload,
            )
            return StopResult("already_closed", row["connector_id"])
        await conn.execute(
            """
            UPDATE ocpp.transactions SET
                stop_timestamp = GREATEST($2, start_timestamp), meter_stop = $3, stop_reason = $4,
                stop_id_tag = $5, transaction_data = $6, stopped_by = 'charger', stuck_since = NULL,
                updated_at = now()
            WHERE id = $1
            """,
            transaction_id,
            stop_timestamp,
            meter_stop,
            reason,
            id_tag,
            transaction_data,
        )
        await _notify(conn, "stopped", transaction_id, charge_box_id, row["connector_id"], row["id_tag"])
    return StopResult("stopped", row["connector_id"])


async def _record_failed_stop(
    conn: asyncpg.Connection,
    charge_box_pk: int,
    transaction_id: int,
    reason: str,
    id_tag: str | None,
    stop_timestamp: datetime,
    meter_stop: int,
    stop_reason: str | None,
    payload: dict,
) -> None:
    await conn.execute(
        """
        INSERT INTO ocpp.failed_stops
            (charge_box_pk, transaction_id, reason, id_tag, stop_timestamp, meter_stop, stop_reason,
             payload)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        charge_box_pk,
        transaction_id,
        reason,
        id_tag,
        stop_timestamp,
        meter_stop,
        stop_reason,
        payload,
    )


async def get_transaction(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    if not 0 < transaction_id <= INT4_MAX:
        return None
    return await conn.fetchrow(
        """
        SELECT t.*, cb.charge_box_id FROM ocpp.transactions t
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk WHERE t.id = $1
        """,
        transaction_id,
    )


async def list_open_transactions(
    conn: asyncpg.Connection, *, stuck_only: bool = False
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT t.id, cb.charge_box_id, t.connector_id, t.id_tag, t.start_timestamp, t.meter_start,
               t.stuck_since
        FROM ocpp.transactions t JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        WHERE t.stop_timestamp IS NULL AND (NOT $1 OR t.stuck_since IS NOT NULL)
        ORDER BY t.start_timestamp
        """,
        stuck_only,
    )


async def list_failed_stops(conn: asyncpg.Connection, charge_box_pk: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ocpp.failed_stops WHERE charge_box_pk = $1 ORDER BY id", charge_box_pk
    )


async def flag_stuck_transactions(conn: asyncpg.Connection, hours: float) -> list[int]:
    """Flag open sessions with no message (start or meter value) for `hours`; return their ids."""
    rows = await conn.fetch(
        """
        UPDATE ocpp.transactions t SET stuck_since = now(), updated_at = now()
        WHERE t.stop_timestamp IS NULL AND t.stuck_since IS NULL
          AND GREATEST(
                t.created_at,
                (SELECT max(mv.received_at) FROM ocpp.meter_values mv WHERE mv.transaction_id = t.id)
              ) < now() - make_interval(secs => $1 * 3600)
        RETURNING t.id
        """,
        hours,
    )
    return [r["id"] for r in rows]


async def force_close_transaction(
    conn: asyncpg.Connection, transaction_id: int, *, reason: str = "Other"
) -> asyncpg.Record:
    """Close a session whose StopTransaction never came, at its last known meter reading.

    The session ends at the last energy register reading (or its start when none came),
    so the sync bills exactly the energy the charger reported.
    """
    async with conn.transaction():
        tx = None
        if 0 < transaction_id <= INT4_MAX:
            tx = await conn.fetchrow(
                """
                SELECT t.id, t.connector_id, t.id_tag, t.meter_start, t.start_timestamp,
                       t.stop_timestamp, cb.charge_box_id
                FROM ocpp.transactions t JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
                WHERE t.id = $1 FOR UPDATE OF t
                """,
                transaction_id,
            )
        if tx is None:
            raise NotFound(f"no transaction {transaction_id}")
        if tx["stop_timestamp"] is not None:
            raise InvalidInput(f"transaction {transaction_id} is already stopped")
        meter_stop, stop_at = tx["meter_start"], tx["start_timestamp"]
        reading = await last_energy_reading(conn, transaction_id)
        if reading is not None and reading[0] >= tx["meter_start"]:
            meter_stop, stop_at = reading[0], max(reading[1], tx["start_timestamp"])
        row = await conn.fetchrow(
            """
            UPDATE ocpp.transactions SET stop_timestamp = $2, meter_stop = $3, stop_reason = $4,
                stopped_by = 'operator', updated_at = now()
            WHERE id = $1
            RETURNING id, connector_id, id_tag, meter_start, meter_stop, start_timestamp,
                      stop_timestamp, stop_reason, stopped_by
            """,
            transaction_id,
            stop_at,
            meter_stop,
            reason,
        )
        await _notify(conn, "stopped", transaction_id, tx["charge_box_id"], tx["connector_id"], tx["id_tag"])
    return row


async def set_id_tag_status(conn: asyncpg.Connection, transaction_id: int, status: str) -> None:
    await conn.execute(
        "UPDATE ocpp.transactions SET id_tag_status = $2, updated_at = now() WHERE id = $1",
        transaction_id,
        status,
    )
