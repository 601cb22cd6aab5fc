"""What a signed-in customer may see and change: always scoped by their customer id.

Every query here filters by `customer_id`, so another customer's session, card or invoice
is simply not found. Sessions filter on the customer recorded when each started
(`ocpp.transactions.customer_id`), never on who holds the card now: a card moved to
another account takes none of its history along.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from polaris.db.errors import AlreadyExists, InvalidInput, NotFound
from polaris.db.repos.id_tags import check_id_tag
from polaris.db.repos.meter_values import ENERGY_REGISTER

LABEL_MAX = 60
NAME_MAX = 100


# ------------------------------------------------------------------ profile


async def get_customer(conn: asyncpg.Connection, customer_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT c.id, c.user_id, u.email, coalesce(c.name, u.name) AS name, c.lago_subscription_id,
               c.lago_external_customer_id, c.active, u.active AS user_active, c.receipts_enabled,
               c.created_at, c.deleted_at
        FROM app.customers c JOIN app.users u ON u.id = c.user_id
        WHERE c.id = $1
        """,
        customer_id,
    )


async def customer_for_signin(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    """The active customer with this address (a sign-in link goes only to them)."""
    return await conn.fetchrow(
        """
        SELECT c.id AS customer_id, u.id AS user_id, u.email, coalesce(c.name, u.name) AS name
        FROM app.users u JOIN app.customers c ON c.user_id = u.id
        WHERE u.email = $1 AND u.active AND c.active AND c.deleted_at IS NULL
        """,
        email,
    )


async def email_taken(conn: asyncpg.Connection, email: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM app.users WHERE email = $1)", email))


async def update_profile(
    conn: asyncpg.Connection, customer_id: int, *, name: str | None = None, receipts: bool | None = None
) -> None:
    if name is not None:
        name = name.strip()
        if len(name) > NAME_MAX:
            raise InvalidInput(f"a name is at most {NAME_MAX} characters")
    await conn.execute(
        """
        UPDATE app.customers SET
            name = CASE WHEN $2::text IS NULL THEN name ELSE nullif($2, '') END,
            receipts_enabled = coalesce($3, receipts_enabled),
            updated_at = now()
        WHERE id = $1
        """,
        customer_id,
        name,
        receipts,
    )


# ------------------------------------------------------------------ chargers


async def charger_by_public_id(conn: asyncpg.Connection, public_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT cb.id AS charge_box_pk, cb.charge_box_id, cb.public_id, cb.description,
               cb.connected, cb.active, cb.registration_status, cb.last_seen_at,
               s.name AS site_name, s.address AS site_address
        FROM ocpp.charge_boxes cb LEFT JOIN ocpp.sites s ON s.id = cb.site_id
        WHERE cb.public_id = $1 AND cb.active
        """,
        public_id,
    )


async def charger_connectors(conn: asyncpg.Connection, charge_box_pk: int) -> list[asyncpg.Record]:
    """Connectors (not 0, the charger itself) with their status and the session running on each."""
    return await conn.fetch(
        """
        SELECT c.connector_id, c.status, c.error_code, c.info, c.status_at,
               t.id AS transaction_id, t.customer_id AS session_customer_id
        FROM ocpp.connectors c
        LEFT JOIN LATERAL (
            SELECT id, customer_id FROM ocpp.transactions
            WHERE charge_box_pk = c.charge_box_pk AND connector_id = c.connector_id
              AND stop_timestamp IS NULL
            ORDER BY start_timestamp DESC LIMIT 1
        ) t ON true
        WHERE c.charge_box_pk = $1 AND c.connector_id > 0
        ORDER BY c.connector_id
        """,
        charge_box_pk,
    )


async def charger_status(conn: asyncpg.Connection, charge_box_pk: int) -> str | None:
    """The status of connector 0 (the charger as a whole), if reported."""
    return await conn.fetchval(
        "SELECT status FROM ocpp.connectors WHERE charge_box_pk = $1 AND connector_id = 0", charge_box_pk
    )


# ------------------------------------------------------------------ cards

CARD_COLUMNS = "t.id, t.id_tag, t.label, t.blocked, t.expiry_date, t.last_seen_at, t.created_at"


async def list_cards(conn: asyncpg.Connection, customer_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {CARD_COLUMNS} FROM app.id_tags t WHERE t.customer_id = $1 ORDER BY t.blocked, t.id",
        customer_id,
    )


async def get_card(conn: asyncpg.Connection, customer_id: int, card_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {CARD_COLUMNS} FROM app.id_tags t WHERE t.id = $1 AND t.customer_id = $2",
        card_id,
        customer_id,
    )
    if row is None:
        raise NotFound(f"no card {card_id}")
    return row


async def name_card(conn: asyncpg.Connection, customer_id: int, card_id: int, label: str) -> asyncpg.Record:
    label = label.strip()
    if len(label) > LABEL_MAX:
        raise InvalidInput(f"a card's name is at most {LABEL_MAX} characters")
    row = await conn.fetchrow(
        f"""
        UPDATE app.id_tags t SET label = nullif($3, ''), updated_at = now()
        WHERE t.id = $1 AND t.customer_id = $2 RETURNING {CARD_COLUMNS}
        """,
        card_id,
        customer_id,
        label,
    )
    if row is None:
        raise NotFound(f"no card {card_id}")
    return row


async def block_card(conn: asyncpg.Connection, customer_id: int, card_id: int) -> asyncpg.Record:
    """Report a card lost: blocked at once (the pre-authorize hook refuses it from now on)."""
    row = await conn.fetchrow(
        f"""
        UPDATE app.id_tags t SET blocked = true, updated_at = now()
        WHERE t.id = $1 AND t.customer_id = $2 RETURNING {CARD_COLUMNS}
        """,
        card_id,
        customer_id,
    )
    if row is None:
        raise NotFound(f"no card {card_id}")
    return row


async def link_card(conn: asyncpg.Connection, customer_id: int, id_tag: str) -> asyncpg.Record:
    """Link a tapped card to this customer: a new card, or one the chargers saw unregistered.

    A card of another customer is refused (it is theirs until an operator says otherwise).
    """
    id_tag = check_id_tag(id_tag)
    async with conn.transaction():
        existing = await conn.fetchrow(
            "SELECT id, customer_id FROM app.id_tags WHERE lower(id_tag) = lower($1) FOR UPDATE", id_tag
        )
        if existing is not None and existing["customer_id"] not in (None, customer_id):
            raise AlreadyExists("this card belongs to another account; ask the operator to move it")
        if existing is None:
            card_id = await conn.fetchval(
                "INSERT INTO app.id_tags (id_tag, customer_id) VALUES ($1, $2) RETURNING id",
                id_tag,
                customer_id,
            )
        else:
            card_id = existing["id"]
            await conn.execute(
                "UPDATE app.id_tags SET customer_id = $2, unknown = false, updated_at = now() WHERE id = $1",
                card_id,
                customer_id,
            )
        return await get_card(conn, customer_id, card_id)


async def card_owner(conn: asyncpg.Connection, id_tag: str) -> asyncpg.Record | None:
    """The active customer a card belongs to (tap to sign in); None for unknown or blocked cards."""
    return await conn.fetchrow(
        """
        SELECT c.id AS customer_id, u.id AS user_id, u.email
        FROM app.id_tags t
        JOIN app.customers c ON c.id = t.customer_id
        JOIN app.users u ON u.id = c.user_id
        WHERE lower(t.id_tag) = lower($1) AND NOT t.blocked AND c.active AND u.active
          AND c.deleted_at IS NULL
        """,
        id_tag,
    )


# ------------------------------------------------------------------ sessions

SESSION_COLUMNS = """
    t.id, t.connector_id, t.id_tag, t.start_timestamp, t.stop_timestamp, t.meter_start,
    t.meter_stop, t.stop_reason, t.stopped_by, tag.label AS card_label,
    cb.charge_box_id, cb.public_id, cb.description AS charger_description,
    s.name AS site_name, s.address AS site_address
"""
# The card's label only while the card is still the session's customer's.
SESSION_FROM = """
    FROM ocpp.transactions t
    LEFT JOIN app.id_tags tag ON lower(tag.id_tag) = lower(t.id_tag) AND tag.customer_id = t.customer_id
    JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
    LEFT JOIN ocpp.sites s ON s.id = cb.site_id
"""


async def list_sessions(
    conn: asyncpg.Connection, customer_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[asyncpg.Record]:
    """The customer's sessions, newest first, with the latest energy reading of running ones."""
    return await conn.fetch(
        f"""
        SELECT {SESSION_COLUMNS}, {_LAST_REGISTER} AS last_register
        {SESSION_FROM}
        WHERE t.customer_id = $1 AND NOT t.is_test AND ($2::int IS NULL OR t.id < $2)
        ORDER BY t.id DESC LIMIT $3
        """,
        customer_id,
        before_id,
        max(1, min(limit, 10_000)),
    )


_LAST_REGISTER = f"""
    (SELECT CASE WHEN lower(mv.unit) = 'kwh' THEN mv.value_num * 1000 ELSE mv.value_num END
     FROM ocpp.meter_values mv
     WHERE mv.transaction_id = t.id AND mv.value_num IS NOT NULL
       AND coalesce(mv.measurand, '{ENERGY_REGISTER}') = '{ENERGY_REGISTER}' AND mv.phase IS NULL
       AND coalesce(mv.location, 'Outlet') = 'Outlet' AND coalesce(mv.format, 'Raw') = 'Raw'
     ORDER BY mv.sampled_at DESC, mv.id DESC LIMIT 1)
"""
_LAST_POWER = """
    (SELECT CASE WHEN lower(mv.unit) = 'kw' THEN mv.value_num ELSE mv.value_num / 1000 END
     FROM ocpp.meter_values mv
     WHERE mv.transaction_id = t.id AND mv.value_num IS NOT NULL
       AND mv.measurand = 'Power.Active.Import' AND mv.phase IS NULL
     ORDER BY mv.sampled_at DESC, mv.id DESC LIMIT 1)
"""


async def get_session(conn: asyncpg.Connection, customer_id: int, transaction_id: int) -> asyncpg.Record:
    """One of the customer's sessions with live figures and connector status; NotFound otherwise."""
    row = await conn.fetchrow(
        f"""
        SELECT {SESSION_COLUMNS}, {_LAST_REGISTER} AS last_register, {_LAST_POWER} AS power_kw,
               cb.connected AS charger_connected,
               (SELECT c.status FROM ocpp.connectors c
                WHERE c.charge_box_pk = t.charge_box_pk AND c.connector_id = t.connector_id) AS connector_status,
               (SELECT c.error_code FROM ocpp.connectors c
                WHERE c.charge_box_pk = t.charge_box_pk AND c.connector_id = t.connector_id) AS error_code
        {SESSION_FROM}
        WHERE t.id = $1 AND t.customer_id = $2
        """,
        transaction_id,
        customer_id,
    )
    if row is None:
        raise NotFound(f"no session {transaction_id}")
    return row


async def open_session_for(
    conn: asyncpg.Connection, customer_id: int, charge_box_pk: int, connector_id: int, *, since: Any = None
) -> int | None:
    """The id of the customer's session running on this connector (started after `since`)."""
    return await conn.fetchval(
        """
        SELECT t.id FROM ocpp.transactions t
        WHERE t.customer_id = $1 AND t.charge_box_pk = $2 AND t.connector_id = $3
          AND t.stop_timestamp IS NULL AND ($4::timestamptz IS NULL OR t.created_at >= $4)
        ORDER BY t.id DESC LIMIT 1
        """,
        customer_id,
        charge_box_pk,
        connector_id,
        since,
    )


async def open_sessions(conn: asyncpg.Connection, customer_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {SESSION_COLUMNS} {SESSION_FROM}
        WHERE t.customer_id = $1 AND t.stop_timestamp IS NULL ORDER BY t.id DESC
        """,
        customer_id,
    )


async def energy_series(conn: asyncpg.Connection, transaction_id: int) -> list[asyncpg.Record]:
    """Energy register readings of a session (Wh), oldest first, for its chart."""
    return await conn.fetch(
        """
        SELECT mv.sampled_at,
               CASE WHEN lower(mv.unit) = 'kwh' THEN mv.value_num * 1000 ELSE mv.value_num END AS wh
        FROM ocpp.meter_values mv
        WHERE mv.transaction_id = $1 AND mv.value_num IS NOT NULL
          AND coalesce(mv.measurand, $2) = $2 AND mv.phase IS NULL
          AND coalesce(mv.location, 'Outlet') = 'Outlet' AND coalesce(mv.format, 'Raw') = 'Raw'
        ORDER BY mv.sampled_at, mv.id
        """,
        transaction_id,
        ENERGY_REGISTER,
    )


# ------------------------------------------------------------------ billing


async def list_invoices(conn: asyncpg.Connection, customer_id: int, *, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, lago_id, number, invoice_type, status, payment_status, currency,
               total_amount_cents, issuing_date, file_url
        FROM app.invoices WHERE customer_id = $1
        ORDER BY issuing_date DESC NULLS LAST, id DESC LIMIT $2
        """,
        customer_id,
        limit,
    )


async def subscription_of(conn: asyncpg.Connection, external_id: str) -> asyncpg.Record | None:
    """What Lago last said about a subscription (the sync worker keeps it)."""
    return await conn.fetchrow(
        "SELECT external_id, found, status, plan_code, checked_at FROM billing.lago_subscriptions "
        "WHERE external_id = $1",
        external_id,
    )


# ------------------------------------------------------------------ account


async def export_data(conn: asyncpg.Connection, customer_id: int) -> dict[str, Any]:
    """Everything stored about the customer, for "download my data"."""
    profile = await get_customer(conn, customer_id)
    if profile is None:
        raise NotFound(f"no customer {customer_id}")
    user_id = profile["user_id"]
    sessions = await list_sessions(conn, customer_id, limit=10_000)
    cards = await list_cards(conn, customer_id)
    invoices = await list_invoices(conn, customer_id, limit=10_000)
    logins = await conn.fetch(
        "SELECT created_at, method, ip, user_agent, last_seen_at FROM app.sessions WHERE user_id = $1 "
        "ORDER BY id",
        user_id,
    )
    devices = await conn.fetch(
        "SELECT platform, created_at, last_seen_at FROM app.devices WHERE user_id = $1 ORDER BY id", user_id
    )
    mail = await conn.fetch(
        "SELECT category, subject, created_at, sent_at FROM app.email_outbox WHERE to_address = $1 "
        "ORDER BY id",
        profile["email"],
    )
    return {
        "profile": dict(profile),
        "cards": [dict(r) for r in cards],
        "sessions": [dict(r) for r in sessions],
        "invoices": [dict(r) for r in invoices],
        "sign_ins": [dict(r) for r in logins],
        "devices": [dict(r) for r in devices],
        "emails": [dict(r) for r in mail],
    }


async def delete_account(conn: asyncpg.Connection, customer_id: int) -> None:
    """Delete the person, keep what billing law needs.

    Gone: name, email address (replaced by a placeholder), sign-ins, devices, pending links,
    card names; cards are blocked so nobody charges on them. Kept: the customer row (now
    anonymous) with its Lago subscription id, its sessions (energy, time, place) and its
    invoices, which tax and billing law require us to keep for years.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT user_id, deleted_at FROM app.customers WHERE id = $1 FOR UPDATE", customer_id
        )
        if row is None or row["deleted_at"] is not None:
            raise NotFound(f"no customer {customer_id}")
        user_id = row["user_id"]
        await conn.execute(
            """
            UPDATE app.users SET email = 'deleted-' || id || '@deleted.invalid', name = NULL,
                password_hash = NULL, active = false, updated_at = now()
            WHERE id = $1
            """,
            user_id,
        )
        await conn.execute(
            """
            UPDATE app.customers SET name = NULL, active = false, receipts_enabled = false,
                deleted_at = now(), updated_at = now()
            WHERE id = $1
            """,
            customer_id,
        )
        await conn.execute(
            "UPDATE app.id_tags SET blocked = true, label = NULL, updated_at = now() WHERE customer_id = $1",
            customer_id,
        )
        for table in ("app.sessions", "app.api_tokens", "app.magic_links", "app.devices"):
            await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)
        await conn.execute("DELETE FROM app.card_pairings WHERE customer_id = $1", customer_id)
