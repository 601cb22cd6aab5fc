"""Cards / id tags: what a charger sends in Authorize and StartTransaction."""

from __future__ import annotations

import asyncpg

from polaris.db.errors import AlreadyExists, InvalidInput, NotFound
from polaris.db.repos.customers import get_customer_by_email

ID_TAG_MAX = 20  # OCPP 1.6 IdToken is CiString20Type


def check_id_tag(id_tag: str) -> str:
    id_tag = id_tag.strip()
    if not 1 <= len(id_tag) <= ID_TAG_MAX:
        raise InvalidInput(f"an id tag is 1 to {ID_TAG_MAX} characters (OCPP IdToken), got {len(id_tag)}")
    if not id_tag.isascii() or not id_tag.isprintable():
        raise InvalidInput("an id tag must be printable ASCII")
    return id_tag


async def add_id_tag(
    conn: asyncpg.Connection,
    id_tag: str,
    *,
    customer_email: str | None = None,
    label: str | None = None,
) -> asyncpg.Record:
    id_tag = check_id_tag(id_tag)
    customer_id = None
    if customer_email is not None:
        customer = await get_customer_by_email(conn, customer_email)
        if customer is None:
            raise NotFound(f"no customer with email {customer_email.strip().lower()}")
        customer_id = customer["id"]
    try:
        return await conn.fetchrow(
            """
            INSERT INTO app.id_tags (id_tag, customer_id, label)
            VALUES ($1, $2, $3)
            RETURNING id, id_tag, customer_id, label, blocked, expiry_date, created_at
            """,
            id_tag,
            customer_id,
            label,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"id tag {id_tag} already exists (tags match case-insensitively)") from None


async def set_blocked(conn: asyncpg.Connection, id_tag: str, blocked: bool = True) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        UPDATE app.id_tags SET blocked = $2, updated_at = now()
        WHERE lower(id_tag) = lower($1)
        RETURNING id, id_tag, customer_id, blocked, last_seen_charge_box_pk
        """,
        id_tag.strip(),
        blocked,
    )
    if row is None:
        raise NotFound(f"no id tag {id_tag.strip()}")
    return row


async def get_id_tag(conn: asyncpg.Connection, id_tag: str) -> asyncpg.Record | None:
    """The tag with its customer's state, for authorization decisions."""
    return await conn.fetchrow(
        """
        SELECT t.id, t.id_tag, t.customer_id, t.label, t.parent_id_tag, t.expiry_date,
               t.blocked, t.unknown, t.last_seen_at, t.last_seen_charge_box_pk,
               c.active AS customer_active, c.lago_subscription_id, u.email AS customer_email
        FROM app.id_tags t
        LEFT JOIN app.customers c ON c.id = t.customer_id
        LEFT JOIN app.users u ON u.id = c.user_id
        WHERE lower(t.id_tag) = lower($1)
        """,
        id_tag,
    )


async def list_id_tags(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT t.id, t.id_tag, t.label, t.blocked, t.unknown, t.expiry_date, t.last_seen_at,
               u.email AS customer_email
        FROM app.id_tags t
        LEFT JOIN app.customers c ON c.id = t.customer_id
        LEFT JOIN app.users u ON u.id = c.user_id
        ORDER BY t.id
        """
    )


async def record_seen(
    conn: asyncpg.Connection, id_tag: str, charge_box_pk: int, *, keep_unknown: bool
) -> asyncpg.Record | None:
    """Note where a tag was presented and return it (with its customer's state), or None.

    With `keep_unknown` (a StartTransaction: energy was delivered) a tag nobody registered
    is stored, marked unknown, so the session is not lost. A tag over 20 characters is not
    a valid OCPP IdToken and is never stored.
    """
    if keep_unknown and 1 <= len(id_tag) <= ID_TAG_MAX:
        await conn.execute(
            """
            INSERT INTO app.id_tags (id_tag, unknown, last_seen_at, last_seen_charge_box_pk)
            VALUES ($1, true, now(), $2)
            ON CONFLICT (lower(id_tag)) DO UPDATE
                SET last_seen_at = now(), last_seen_charge_box_pk = EXCLUDED.last_seen_charge_box_pk
            """,
            id_tag,
            charge_box_pk,
        )
    else:
        await conn.execute(
            "UPDATE app.id_tags SET last_seen_at = now(), last_seen_charge_box_pk = $2 "
            "WHERE lower(id_tag) = lower($1)",
            id_tag,
            charge_box_pk,
        )
    return await get_id_tag(conn, id_tag)


# ------------------------------------------------------------------ admin API (web)

ID_TAG_COLUMNS = """
    t.id, t.id_tag, t.customer_id, t.label, t.parent_id_tag, t.expiry_date, t.blocked, t.unknown,
    t.last_seen_at, t.created_at, t.updated_at, u.email AS customer_email,
    cb.charge_box_id AS last_seen_charge_box_id
"""
_ID_TAG_FROM = """
    FROM app.id_tags t
    LEFT JOIN app.customers c ON c.id = t.customer_id
    LEFT JOIN app.users u ON u.id = c.user_id
    LEFT JOIN ocpp.charge_boxes cb ON cb.id = t.last_seen_charge_box_pk
"""


async def list_id_tags_page(
    conn: asyncpg.Connection,
    *,
    limit: int,
    after_id: int | None = None,
    q: str | None = None,
    customer_id: int | None = None,
    blocked: bool | None = None,
    unknown: bool | None = None,
) -> list[asyncpg.Record]:
    """Cards by id, searchable by tag, label and customer email."""
    return await conn.fetch(
        f"""
        SELECT {ID_TAG_COLUMNS} {_ID_TAG_FROM}
        WHERE ($2::bigint IS NULL OR t.id > $2)
          AND ($3::text IS NULL OR t.id_tag ILIKE '%' || $3 || '%' OR t.label ILIKE '%' || $3 || '%'
               OR u.email ILIKE '%' || $3 || '%')
          AND ($4::bigint IS NULL OR t.customer_id = $4)
          AND ($5::boolean IS NULL OR t.blocked = $5)
          AND ($6::boolean IS NULL OR t.unknown = $6)
        ORDER BY t.id LIMIT $1
        """,
        limit,
        after_id,
        q,
        customer_id,
        blocked,
        unknown,
    )


async def get_id_tag_detail(conn: asyncpg.Connection, id_tag: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ID_TAG_COLUMNS} {_ID_TAG_FROM} WHERE lower(t.id_tag) = lower($1)", id_tag)


async def update_id_tag(
    conn: asyncpg.Connection, id_tag: str, changes: dict
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Block / unblock, link to a customer (None unlinks), label, expiry; return (before, after).

    Linking a card a charger saw without registration (unknown) makes it a known card.
    """
    unknown_fields = set(changes) - {"blocked", "customer_id", "label", "expiry_date"}
    if unknown_fields:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown_fields))} of an id tag")
    async with conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {ID_TAG_COLUMNS} {_ID_TAG_FROM} WHERE lower(t.id_tag) = lower($1) FOR UPDATE OF t",
            id_tag,
        )
        if before is None:
            raise NotFound(f"no id tag {id_tag}")
        if changes.get("customer_id") is not None:
            exists = await conn.fetchval("SELECT 1 FROM app.customers WHERE id = $1", changes["customer_id"])
            if not exists:
                raise NotFound(f"no customer {changes['customer_id']}")
        await conn.execute(
            """
            UPDATE app.id_tags SET
                blocked = coalesce($2, blocked),
                customer_id = CASE WHEN $3 THEN $4 ELSE customer_id END,
                unknown = CASE WHEN $3 AND $4::bigint IS NOT NULL THEN false ELSE unknown END,
                label = CASE WHEN $5 THEN $6 ELSE label END,
                expiry_date = CASE WHEN $7 THEN $8 ELSE expiry_date END,
                updated_at = now()
            WHERE id = $1
            """,
            before["id"],
            changes.get("blocked"),
            "customer_id" in changes,
            changes.get("customer_id"),
            "label" in changes,
            changes.get("label"),
            "expiry_date" in changes,
            changes.get("expiry_date"),
        )
        after = await get_id_tag_detail(conn, before["id_tag"])
    return before, after
