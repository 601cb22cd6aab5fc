"""The OCPP message journal (every command and its answer), reservations, charging profiles."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from polaris.redaction import redact


async def journal_message(
    conn: asyncpg.Connection,
    *,
    charge_box_id: str,
    action: str,
    unique_id: str,
    request: dict,
    direction: str = "cs_to_cp",
    requested_by: str | None = None,
    status: str,
    response: object | None = None,
    error_code: str | None = None,
    error_description: str | None = None,
    sent_at: datetime,
    answered_at: datetime | None,
) -> int:
    """One journaled message with its outcome, written once the outcome is known (secrets redacted)."""
    return await conn.fetchval(
        """
        INSERT INTO ocpp.message_journal (charge_box_id, direction, action, unique_id, request,
                                          requested_by, status, response, error_code,
                                          error_description, created_at, answered_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id
        """,
        charge_box_id,
        direction,
        action,
        unique_id,
        redact(request),
        requested_by,
        status,
        redact(response),
        error_code,
        error_description,
        sent_at,
        answered_at,
    )


async def list_journal(
    conn: asyncpg.Connection, charge_box_id: str, *, limit: int = 100
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ocpp.message_journal WHERE charge_box_id = $1 ORDER BY id DESC LIMIT $2",
        charge_box_id,
        limit,
    )


async def save_reservation(
    conn: asyncpg.Connection,
    *,
    charge_box_pk: int,
    connector_id: int,
    id_tag: str,
    parent_id_tag: str | None,
    expiry_date: datetime,
    reservation_id: int | None,
) -> int:
    """A reservation about to be sent; the caller's id is kept, else one is allocated."""
    if reservation_id is None:
        return await conn.fetchval(
            """
            INSERT INTO ocpp.reservations (charge_box_pk, connector_id, id_tag, parent_id_tag,
                                           expiry_date)
            VALUES ($1, $2, $3, $4, $5) RETURNING id
            """,
            charge_box_pk, connector_id, id_tag, parent_id_tag, expiry_date,
        )
    return await conn.fetchval(
        """
        INSERT INTO ocpp.reservations (id, charge_box_pk, connector_id, id_tag, parent_id_tag,
                                       expiry_date)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (id) DO UPDATE SET connector_id = EXCLUDED.connector_id,
            id_tag = EXCLUDED.id_tag, parent_id_tag = EXCLUDED.parent_id_tag,
            expiry_date = EXCLUDED.expiry_date, status = 'requested', updated_at = now()
        WHERE ocpp.reservations.charge_box_pk = EXCLUDED.charge_box_pk
        RETURNING id
        """,
        reservation_id, charge_box_pk, connector_id, id_tag, parent_id_tag, expiry_date,
    )


async def set_reservation_status(
    conn: asyncpg.Connection, charge_box_pk: int, reservation_id: int, status: str
) -> None:
    await conn.execute(
        "UPDATE ocpp.reservations SET status = $3, updated_at = now() "
        "WHERE id = $2 AND charge_box_pk = $1",
        charge_box_pk,
        reservation_id,
        status,
    )


async def get_reservation(conn: asyncpg.Connection, reservation_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM ocpp.reservations WHERE id = $1", reservation_id)


async def reservation_holder(
    conn: asyncpg.Connection, charge_box_id: str, reservation_id: int
) -> asyncpg.Record | None:
    """Who holds a charger's reservation (through its card), to tell them it was cancelled."""
    return await conn.fetchrow(
        """
        SELECT r.id, r.expiry_date, cb.charge_box_id, coalesce(cb.description, cb.charge_box_id) AS charger,
               u.email, u.name
        FROM ocpp.reservations r
        JOIN ocpp.charge_boxes cb ON cb.id = r.charge_box_pk
        JOIN app.id_tags t ON lower(t.id_tag) = lower(r.id_tag)
        JOIN app.customers c ON c.id = t.customer_id
        JOIN app.users u ON u.id = c.user_id
        WHERE cb.charge_box_id = $1 AND r.id = $2
        """,
        charge_box_id,
        reservation_id,
    )


async def save_charging_profile(
    conn: asyncpg.Connection, charge_box_pk: int, connector_id: int, profile: dict, status: str
) -> None:
    await conn.execute(
        """
        INSERT INTO ocpp.charging_profiles (charge_box_pk, connector_id, charging_profile_id,
                                            stack_level, purpose, profile, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        charge_box_pk,
        connector_id,
        profile.get("chargingProfileId"),
        profile.get("stackLevel"),
        profile.get("chargingProfilePurpose"),
        profile,
        status,
    )


async def clear_charging_profiles(
    conn: asyncpg.Connection,
    charge_box_pk: int,
    *,
    profile_id: int | None = None,
    connector_id: int | None = None,
    purpose: str | None = None,
    stack_level: int | None = None,
) -> int:
    """Mark profiles cleared with the same filters ClearChargingProfile uses."""
    status = await conn.execute(
        """
        UPDATE ocpp.charging_profiles SET cleared_at = now()
        WHERE charge_box_pk = $1 AND cleared_at IS NULL
          AND ($2::int IS NULL OR charging_profile_id = $2)
          AND ($3::int IS NULL OR connector_id = $3)
          AND ($4::text IS NULL OR purpose = $4)
          AND ($5::int IS NULL OR stack_level = $5)
        """,
        charge_box_pk,
        profile_id,
        connector_id,
        purpose,
        stack_level,
    )
    return int(status.split()[-1])


async def list_charging_profiles(conn: asyncpg.Connection, charge_box_pk: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ocpp.charging_profiles WHERE charge_box_pk = $1 AND cleared_at IS NULL "
        "ORDER BY id",
        charge_box_pk,
    )


async def charging_profile_by_pk(conn: asyncpg.Connection, pk: int) -> asyncpg.Record | None:
    """A kept charging profile by its row id (SteVe's REST API names profiles by pk)."""
    return await conn.fetchrow(
        "SELECT id, charging_profile_id, connector_id, stack_level, purpose, profile FROM ocpp.charging_profiles "
        "WHERE id = $1",
        pk,
    )
