"""Our data in the shapes of SteVe's REST API (`/api/v1/chargeBoxes`, `/ocppTags`, `/transactions`).

The original web app reads these; field names and meanings are SteVe's: a tag's
`maxActiveTransactionCount` is 0 when it is blocked, `inTransaction` counts accepted open
sessions, a transaction's `startValue` / `stopValue` are Wh as strings, `stopEventActor` is
`station` (the charger's StopTransaction) or `manual` (an operator, or inferred).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from polaris.db.errors import AlreadyExists, InvalidInput, NotFound
from polaris.db.repos.id_tags import check_id_tag

_ACTIVE = ("t.stop_timestamp IS NULL AND t.stuck_since IS NULL "
           "AND coalesce(t.id_tag_status, 'Accepted') = 'Accepted'")


async def charge_boxes(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id AS "chargeBoxPk", charge_box_id AS "chargeBoxId", description, registration_status,
               ocpp_protocol, last_heartbeat_at, connected
        FROM ocpp.charge_boxes ORDER BY id
        """
    )


_TAG_OVERVIEW = f"""
    SELECT tag.id, tag.id_tag, tag.parent_id_tag, parent.id AS parent_pk, tag.expiry_date, tag.blocked,
           tag.max_active_transactions, tag.note,
           (SELECT count(*) FROM ocpp.transactions t WHERE lower(t.id_tag) = lower(tag.id_tag) AND {_ACTIVE}) AS active
    FROM app.id_tags tag
    LEFT JOIN app.id_tags parent ON lower(parent.id_tag) = lower(tag.parent_id_tag)
"""


async def ocpp_tags(
    conn: asyncpg.Connection, *, pk: int | None = None, id_tag: str | None = None, parent_id_tag: str | None = None,
    blocked: bool | None = None, expired: bool | None = None, in_transaction: bool | None = None,
) -> list[asyncpg.Record]:
    """Tags as SteVe's OcppTag overview, with its filters (None: no filter)."""
    return await conn.fetch(
        f"""
        SELECT * FROM ({_TAG_OVERVIEW}) o
        WHERE ($1::bigint IS NULL OR o.id = $1)
          AND ($2::text IS NULL OR lower(o.id_tag) = lower($2))
          AND ($3::text IS NULL OR lower(o.parent_id_tag) = lower($3))
          AND ($4::boolean IS NULL OR o.blocked = $4)
          AND ($5::boolean IS NULL OR (o.expiry_date IS NOT NULL AND o.expiry_date <= now()) = $5)
          AND ($6::boolean IS NULL OR (o.active > 0) = $6)
        ORDER BY o.id
        """,
        pk, id_tag, parent_id_tag, blocked, expired, in_transaction,
    )


async def save_ocpp_tag(conn: asyncpg.Connection, pk: int | None, *, id_tag: str, parent_id_tag: str | None,
                        expiry_date: datetime | None, max_active: int, note: str | None) -> tuple[int, dict, dict]:
    """Create (pk None) or replace a tag from SteVe's OcppTagForm; (pk, before, after) for the audit.

    SteVe's PUT sends the whole form and never changes the idTag itself.
    """
    if parent_id_tag:
        check_id_tag(parent_id_tag)
    if max_active < -1:
        raise InvalidInput("maxActiveTransactionCount is -1 (no limit), 0 (blocked) or more")
    blocked, limit = (True, None) if max_active == 0 else (False, max_active)
    async with conn.transaction():
        if pk is None:
            row = await conn.fetchrow(
                """
                INSERT INTO app.id_tags (id_tag, parent_id_tag, expiry_date, blocked, max_active_transactions, note)
                VALUES ($1, $2, $3, $4, coalesce($5, 1), $6)
                ON CONFLICT (lower(id_tag)) DO UPDATE SET
                    unknown = false, parent_id_tag = EXCLUDED.parent_id_tag, expiry_date = EXCLUDED.expiry_date,
                    blocked = EXCLUDED.blocked, max_active_transactions = EXCLUDED.max_active_transactions,
                    note = EXCLUDED.note, updated_at = now()
                WHERE app.id_tags.unknown
                RETURNING id
                """,
                check_id_tag(id_tag), parent_id_tag, expiry_date, blocked, limit, note,
            )
            if row is None:
                raise AlreadyExists(f"id tag {id_tag} already exists (tags match case-insensitively)")
            return row["id"], {}, {"id_tag": id_tag, "blocked": blocked, "max_active_transactions": limit or 1}
        before = await conn.fetchrow(
            "SELECT id_tag, parent_id_tag, expiry_date, blocked, max_active_transactions, note FROM app.id_tags "
            "WHERE id = $1 FOR UPDATE", pk)
        if before is None:
            raise NotFound(f"no ocpp tag {pk}")
        after = await conn.fetchrow(
            """
            UPDATE app.id_tags SET parent_id_tag = $2, expiry_date = $3, blocked = $4,
                max_active_transactions = coalesce($5, max_active_transactions), note = $6, unknown = false,
                updated_at = now()
            WHERE id = $1
            RETURNING id_tag, parent_id_tag, expiry_date, blocked, max_active_transactions, note
            """,
            pk, parent_id_tag, expiry_date, blocked, limit, note,
        )
    changed = [k for k in after.keys() if after[k] != before[k]]
    return pk, {k: before[k] for k in changed}, {k: after[k] for k in changed}


async def delete_ocpp_tag(conn: asyncpg.Connection, pk: int) -> None:
    status = await conn.execute("DELETE FROM app.id_tags WHERE id = $1", pk)
    if status == "DELETE 0":
        raise NotFound(f"no ocpp tag {pk}")


async def transactions(
    conn: asyncpg.Connection, *, active_only: bool, since: datetime | None, until: datetime | None,
    charge_box_id: str | None, id_tag: str | None, transaction_pk: int | None,
) -> list[asyncpg.Record]:
    """Sessions in SteVe's Transaction shape, filtered as its TransactionQueryForm does."""
    return await conn.fetch(
        """
        SELECT t.id, cb.charge_box_id, cb.id AS charge_box_pk, t.connector_id, t.id_tag,
               coalesce(tag.id, 0) AS ocpp_tag_pk, t.start_timestamp, t.meter_start, t.stop_timestamp,
               t.meter_stop, t.stopped_by, t.stop_reason
        FROM ocpp.transactions t
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        LEFT JOIN app.id_tags tag ON lower(tag.id_tag) = lower(t.id_tag)
        WHERE (NOT $1 OR t.stop_timestamp IS NULL)
          AND ($2::timestamptz IS NULL OR t.start_timestamp >= $2)
          AND ($3::timestamptz IS NULL OR t.start_timestamp <= $3)
          AND ($4::text IS NULL OR lower(cb.charge_box_id) = lower($4))
          AND ($5::text IS NULL OR lower(t.id_tag) = lower($5))
          AND ($6::integer IS NULL OR t.id = $6)
        ORDER BY t.id DESC
        """,
        active_only, since, until, charge_box_id, id_tag, transaction_pk,
    )
