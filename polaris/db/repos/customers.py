"""Customers: a user with role `customer`, linked to a Lago subscription."""

from __future__ import annotations

import asyncpg

from polaris.db.errors import AlreadyExists, InvalidInput
from polaris.db.repos.users import add_user


async def add_customer(
    conn: asyncpg.Connection,
    email: str,
    *,
    name: str | None = None,
    lago_subscription_id: str | None = None,
) -> asyncpg.Record:
    """Create the customer and their sign-in user in one transaction."""
    if lago_subscription_id is not None:
        lago_subscription_id = lago_subscription_id.strip()
        if not lago_subscription_id:
            raise InvalidInput("the Lago subscription id must not be empty")
    async with conn.transaction():
        user = await add_user(conn, email, "customer", name=name)
        try:
            return await conn.fetchrow(
                """
                INSERT INTO app.customers (user_id, name, lago_subscription_id)
                VALUES ($1, $2, $3)
                RETURNING id, user_id, name, lago_subscription_id, active, created_at,
                          $4::text AS email
                """,
                user["id"],
                name,
                lago_subscription_id,
                user["email"],
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"Lago subscription {lago_subscription_id} already belongs to another customer"
            ) from None


async def get_customer_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT c.id, c.user_id, u.email, c.name, c.lago_subscription_id,
               c.lago_external_customer_id, c.active, c.receipts_enabled, c.created_at
        FROM app.customers c JOIN app.users u ON u.id = c.user_id
        WHERE u.email = $1
        """,
        email.strip().lower(),
    )


async def list_customers(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT c.id, u.email, c.name, c.lago_subscription_id, c.active, c.created_at,
               (SELECT count(*) FROM app.id_tags t WHERE t.customer_id = c.id) AS id_tags
        FROM app.customers c JOIN app.users u ON u.id = c.user_id
        ORDER BY c.id
        """
    )


# ------------------------------------------------------------------ admin API (web)

CUSTOMER_COLUMNS = """
    c.id, c.user_id, u.email, c.name, c.lago_external_customer_id, c.lago_subscription_id,
    c.active, c.receipts_enabled, c.created_at, c.updated_at, u.last_login_at,
    (SELECT count(*) FROM app.id_tags t WHERE t.customer_id = c.id) AS id_tag_count
"""


async def list_customers_page(
    conn: asyncpg.Connection,
    *,
    limit: int,
    after_id: int | None = None,
    q: str | None = None,
    active: bool | None = None,
) -> list[asyncpg.Record]:
    """Customers by id, searchable by email, name and Lago ids."""
    return await conn.fetch(
        f"""
        SELECT {CUSTOMER_COLUMNS}
        FROM app.customers c JOIN app.users u ON u.id = c.user_id
        WHERE ($2::bigint IS NULL OR c.id > $2)
          AND ($3::text IS NULL OR u.email ILIKE '%' || $3 || '%' OR c.name ILIKE '%' || $3 || '%'
               OR c.lago_subscription_id ILIKE '%' || $3 || '%'
               OR c.lago_external_customer_id ILIKE '%' || $3 || '%')
          AND ($4::boolean IS NULL OR c.active = $4)
        ORDER BY c.id LIMIT $1
        """,
        limit,
        after_id,
        q,
        active,
    )


async def get_customer(conn: asyncpg.Connection, customer_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM app.customers c JOIN app.users u ON u.id = c.user_id WHERE c.id = $1",
        customer_id,
    )


async def update_customer(
    conn: asyncpg.Connection, customer_id: int, changes: dict
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Edit name, Lago ids, active and receipts; return (before, after)."""
    from polaris.db.errors import NotFound

    fields = ("name", "lago_external_customer_id", "lago_subscription_id", "active", "receipts_enabled")
    unknown = set(changes) - set(fields)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a customer")
    for key in ("lago_external_customer_id", "lago_subscription_id"):
        if isinstance(changes.get(key), str):
            changes[key] = changes[key].strip() or None
    async with conn.transaction():
        before = await get_customer(conn, customer_id)
        if before is None:
            raise NotFound(f"no customer {customer_id}")
        try:
            await conn.execute(
                """
                UPDATE app.customers SET
                    name = CASE WHEN $2 THEN $3 ELSE name END,
                    lago_external_customer_id = CASE WHEN $4 THEN $5 ELSE lago_external_customer_id END,
                    lago_subscription_id = CASE WHEN $6 THEN $7 ELSE lago_subscription_id END,
                    active = coalesce($8, active),
                    receipts_enabled = coalesce($9, receipts_enabled),
                    updated_at = now()
                WHERE id = $1
                """,
                customer_id,
                "name" in changes,
                changes.get("name"),
                "lago_external_customer_id" in changes,
                changes.get("lago_external_customer_id"),
                "lago_subscription_id" in changes,
                changes.get("lago_subscription_id"),
                changes.get("active"),
                changes.get("receipts_enabled"),
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("that Lago id already belongs to another customer") from None
        if "name" in changes:
            await conn.execute("UPDATE app.users SET name = $2 WHERE id = $1", before["user_id"], changes["name"])
        after = await get_customer(conn, customer_id)
    return before, after
