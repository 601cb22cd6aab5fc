"""People who sign in: admins, operators and customers."""

from __future__ import annotations

import re

import asyncpg

from polaris.db.errors import AlreadyExists, InvalidInput, NotFound

ROLES = ("admin", "operator", "customer")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def normalize_email(email: str) -> str:
    """Lower-cased and trimmed; raises InvalidInput when it is not an address."""
    email = email.strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise InvalidInput(f"{email!r} is not an email address")
    return email


async def add_user(
    conn: asyncpg.Connection,
    email: str,
    role: str,
    *,
    password_hash: str | None = None,
    name: str | None = None,
) -> asyncpg.Record:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    email = normalize_email(email)
    try:
        return await conn.fetchrow(
            """
            INSERT INTO app.users (email, role, password_hash, name)
            VALUES ($1, $2, $3, $4)
            RETURNING id, email, role, name, active, created_at
            """,
            email,
            role,
            password_hash,
            name,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"a user with email {email} already exists") from None


async def get_user_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, email, role, name, active, password_hash, created_at, last_login_at, oidc_subject "
        "FROM app.users WHERE email = $1",
        email.strip().lower(),
    )


async def set_password_hash(conn: asyncpg.Connection, email: str, password_hash: str) -> None:
    status = await conn.execute(
        "UPDATE app.users SET password_hash = $2, updated_at = now() WHERE email = $1",
        normalize_email(email),
        password_hash,
    )
    if status == "UPDATE 0":
        raise NotFound(f"no user with email {email}")


async def list_users(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, email, role, name, active, created_at, last_login_at FROM app.users ORDER BY id"
    )


# ------------------------------------------------------------------ admin API (web)

USER_COLUMNS = "id, email, role, name, active, created_at, updated_at, last_login_at, oidc_subject"


async def list_users_page(
    conn: asyncpg.Connection,
    *,
    limit: int,
    after_id: int | None = None,
    role: str | None = None,
    q: str | None = None,
    active: bool | None = None,
) -> list[asyncpg.Record]:
    """Users by id; `after_id` continues a previous page."""
    return await conn.fetch(
        f"""
        SELECT {USER_COLUMNS}, (password_hash IS NOT NULL) AS has_password FROM app.users
        WHERE ($2::bigint IS NULL OR id > $2) AND ($3::text IS NULL OR role = $3)
          AND ($4::text IS NULL OR email ILIKE '%' || $4 || '%' OR name ILIKE '%' || $4 || '%')
          AND ($5::boolean IS NULL OR active = $5)
        ORDER BY id LIMIT $1
        """,
        limit,
        after_id,
        role,
        q,
        active,
    )


async def get_user(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, (password_hash IS NOT NULL) AS has_password FROM app.users WHERE id = $1",
        user_id,
    )


async def update_user(
    conn: asyncpg.Connection, user_id: int, changes: dict
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Change a user's role, name or active flag; return (before, after)."""
    unknown = set(changes) - {"role", "name", "active"}
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a user")
    if "role" in changes and changes["role"] not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    async with conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {USER_COLUMNS}, (password_hash IS NOT NULL) AS has_password "
            "FROM app.users WHERE id = $1 FOR UPDATE",
            user_id,
        )
        if before is None:
            raise NotFound(f"no user {user_id}")
        after = await conn.fetchrow(
            f"""
            UPDATE app.users SET role = coalesce($2, role),
                name = CASE WHEN $3 THEN $4 ELSE name END,
                active = coalesce($5, active), updated_at = now()
            WHERE id = $1
            RETURNING {USER_COLUMNS}, (password_hash IS NOT NULL) AS has_password
            """,
            user_id,
            changes.get("role"),
            "name" in changes,
            changes.get("name"),
            changes.get("active"),
        )
    return before, after


async def set_password_hash_by_id(conn: asyncpg.Connection, user_id: int, password_hash: str | None) -> None:
    status = await conn.execute(
        "UPDATE app.users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash
    )
    if status == "UPDATE 0":
        raise NotFound(f"no user {user_id}")


async def count_active_admins(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM app.users WHERE role = 'admin' AND active")


async def get_user_by_oidc_subject(conn: asyncpg.Connection, subject: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, email, role, name, active, oidc_subject FROM app.users WHERE oidc_subject = $1", subject
    )


async def link_oidc_subject(conn: asyncpg.Connection, user_id: int, subject: str, role: str | None) -> asyncpg.Record:
    """Remember the OIDC subject of a user (and, with an admin group configured, their role)."""
    return await conn.fetchrow(
        """
        UPDATE app.users SET oidc_subject = $2, role = coalesce($3, role), last_login_at = now(),
            updated_at = now()
        WHERE id = $1 RETURNING id, email, role, name, active, oidc_subject
        """,
        user_id,
        subject,
        role,
    )
