"""What `polaris import steve` writes: SteVe's records as ours, remembered in ocpp.steve_imports.

Every function runs inside the importer's one transaction. Transactions keep SteVe's
transaction_pk as their id (the id chargers hold for open sessions, and the one the original
web app billed under), and the id sequences are moved above SteVe's highest so ids never repeat.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from polaris.keys import generate_public_id


async def mapped(conn: asyncpg.Connection, steve_table: str) -> dict[int, int]:
    """SteVe pk -> our id, for what earlier runs brought over from `steve_table`."""
    rows = await conn.fetch("SELECT steve_pk, polaris_id FROM ocpp.steve_imports WHERE steve_table = $1", steve_table)
    return {r["steve_pk"]: r["polaris_id"] for r in rows}


async def remember(conn: asyncpg.Connection, steve_table: str, steve_pk: int, polaris_id: int) -> None:
    await conn.execute(
        "INSERT INTO ocpp.steve_imports (steve_table, steve_pk, polaris_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING", steve_table, steve_pk, polaris_id)


async def charge_box_pk(conn: asyncpg.Connection, charge_box_id: str) -> int | None:
    return await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE lower(charge_box_id) = lower($1)",
                               charge_box_id)


async def public_id_taken(conn: asyncpg.Connection, public_id: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ocpp.charge_boxes WHERE public_id = $1)", public_id)


async def insert_charge_box(conn: asyncpg.Connection, *, charge_box_id: str, public_id: str | None,
                            registration_status: str, security_profile: int, steve_key_bcrypt: str | None,
                            description: str | None, site_id: int | None, boot: dict) -> int:
    return await conn.fetchval(
        """
        INSERT INTO ocpp.charge_boxes
            (charge_box_id, public_id, registration_status, security_profile, steve_key_bcrypt, description,
             site_id, vendor, model, charge_point_serial_number, charge_box_serial_number, firmware_version,
             iccid, imsi, meter_type, meter_serial_number, last_heartbeat_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        RETURNING id
        """,
        charge_box_id, public_id or generate_public_id(), registration_status, security_profile, steve_key_bcrypt,
        description, site_id, boot.get("vendor"), boot.get("model"), boot.get("charge_point_serial_number"),
        boot.get("charge_box_serial_number"), boot.get("firmware_version"), boot.get("iccid"), boot.get("imsi"),
        boot.get("meter_type"), boot.get("meter_serial_number"), boot.get("last_heartbeat_at"),
    )


async def tag(conn: asyncpg.Connection, id_tag: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, unknown, customer_id FROM app.id_tags WHERE lower(id_tag) = lower($1)", id_tag)


async def save_tag(conn: asyncpg.Connection, *, id_tag: str, parent_id_tag: str | None, expiry_date: datetime | None,
                   blocked: bool, max_active: int, note: str | None) -> tuple[int, bool]:
    """Insert the card, or fill in one a charger showed us unregistered; (id, whether it was ours already)."""
    row = await conn.fetchrow(
        """
        INSERT INTO app.id_tags (id_tag, parent_id_tag, expiry_date, blocked, max_active_transactions, note)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (lower(id_tag)) DO UPDATE SET
            parent_id_tag = EXCLUDED.parent_id_tag, expiry_date = EXCLUDED.expiry_date, blocked = EXCLUDED.blocked,
            max_active_transactions = EXCLUDED.max_active_transactions, note = EXCLUDED.note, unknown = false,
            updated_at = now()
        WHERE app.id_tags.unknown
        RETURNING id
        """,
        id_tag, parent_id_tag, expiry_date, blocked, max_active, note,
    )
    if row is not None:
        return row["id"], False
    return (await tag(conn, id_tag))["id"], True


async def customer_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT u.id AS user_id, u.role, c.id AS customer_id, c.lago_subscription_id FROM app.users u "
        "LEFT JOIN app.customers c ON c.user_id = u.id WHERE u.email = lower($1)", email.strip())


async def link_tag(conn: asyncpg.Connection, tag_id: int, customer_id: int) -> None:
    await conn.execute("UPDATE app.id_tags SET customer_id = $2, updated_at = now() WHERE id = $1 "
                       "AND customer_id IS NULL", tag_id, customer_id)


async def transaction_exists(conn: asyncpg.Connection, transaction_id: int) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ocpp.transactions WHERE id = $1)", transaction_id)


async def insert_transaction(conn: asyncpg.Connection, *, transaction_id: int, charge_box_pk: int, connector_id: int,
                             id_tag: str, start_timestamp: datetime, meter_start: int, stop_timestamp: datetime | None,
                             meter_stop: int | None, stop_reason: str | None, stopped_by: str | None) -> bool:
    """SteVe's session under its own id; False when the same session (charger, connector, card,
    start, meterStart) is here already under another id.

    The session belongs to the card's owner as imported (SteVe kept no customer per session:
    the card's holder at the move is the best record there is), as `start_transaction` does.
    """
    row = await conn.fetchrow(
        """
        INSERT INTO ocpp.transactions
            (id, charge_box_pk, connector_id, id_tag, id_tag_status, start_timestamp, meter_start, stop_timestamp,
             meter_stop, stop_reason, stopped_by, customer_id)
        OVERRIDING SYSTEM VALUE
        VALUES ($1, $2, $3, $4, 'Accepted', $5, $6, $7, $8, $9, $10,
                (SELECT customer_id FROM app.id_tags WHERE lower(id_tag) = lower($4)))
        ON CONFLICT (charge_box_pk, connector_id, lower(id_tag), start_timestamp, meter_start) DO NOTHING
        RETURNING id
        """,
        transaction_id, charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, stop_timestamp,
        meter_stop, stop_reason, stopped_by,
    )
    return row is not None


async def billing_state(conn: asyncpg.Connection, transaction_id: int, *, billed_wh: int, final: bool) -> None:
    """What the original web app already sent Lago for this session, so the sync continues from there."""
    await conn.execute(
        """
        INSERT INTO billing.transaction_sync_state
            (transaction_id, billed_wh, recorded_wh, final_sent, final_recorded, done, last_synced_at, discovered_by)
        VALUES ($1, $2, $2, $3, $3, $3, now(), 'steve_import')
        ON CONFLICT (transaction_id) DO NOTHING
        """,
        transaction_id, billed_wh, final,
    )


async def insert_reservation(conn: asyncpg.Connection, *, reservation_id: int, charge_box_pk: int, connector_id: int,
                             id_tag: str, expiry_date: datetime, status: str, transaction_id: int | None) -> bool:
    row = await conn.fetchrow(
        """
        INSERT INTO ocpp.reservations (id, charge_box_pk, connector_id, id_tag, expiry_date, status, transaction_id)
        VALUES ($1, $2, $3, $4, $5, $6, (SELECT id FROM ocpp.transactions WHERE id = $7))
        ON CONFLICT (id) DO NOTHING RETURNING id
        """,
        reservation_id, charge_box_pk, connector_id, id_tag, expiry_date, status, transaction_id,
    )
    return row is not None


async def ids_above(conn: asyncpg.Connection, highest_transaction: int, highest_reservation: int) -> tuple[int, int]:
    """Move both id sequences past SteVe's highest (and ours); the next ids they will give."""
    tx = await conn.fetchval(
        "SELECT setval(pg_get_serial_sequence('ocpp.transactions', 'id'), "
        "GREATEST($1, (SELECT coalesce(max(id), 0) FROM ocpp.transactions), "
        "(SELECT last_value FROM ocpp.transactions_id_seq)))",
        highest_transaction)
    res = await conn.fetchval(
        "SELECT setval(pg_get_serial_sequence('ocpp.reservations', 'id'), "
        "GREATEST($1, (SELECT coalesce(max(id), 0) FROM ocpp.reservations), "
        "(SELECT last_value FROM ocpp.reservations_id_seq)))",
        highest_reservation)
    return tx + 1, res + 1
