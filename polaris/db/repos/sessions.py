"""Browser sessions and API tokens: both stored as SHA-256 of a random secret."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg

from polaris.db.errors import InvalidInput, NotFound

# A session ends after 8 hours without a request (the portal's promise to customers; staff
# sessions share the rule).
SESSION_IDLE = timedelta(hours=8)
SESSION_ABSOLUTE = timedelta(days=7)
TOKEN_PREFIX = "pol_"
# Seconds between writes of last_seen_at / last_used_at (one write per request is waste).
TOUCH_EVERY = timedelta(seconds=60)

# The columns an AuthUser is built from, with the customer id when there is one.
_PRINCIPAL = """
    u.id AS user_id, u.email, u.role, u.active AS user_active,
    (SELECT c.id FROM app.customers c WHERE c.user_id = u.id) AS customer_id
"""


def hash_secret(value: str) -> bytes:
    """SHA-256 of a high-entropy secret (session cookie, API token, device code)."""
    return hashlib.sha256(value.encode()).digest()


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ sessions


async def create_session(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    method: str,
    ip: str | None = None,
    user_agent: str | None = None,
    idle: timedelta | None = None,
) -> tuple[str, asyncpg.Record]:
    """Start a session that ends after `idle` unused (default SESSION_IDLE); return
    (cookie value, row). Only the hash is stored."""
    token = secrets.token_urlsafe(32)
    now = _now()
    row = await conn.fetchrow(
        """
        INSERT INTO app.sessions
            (token_hash, user_id, csrf_token, method, ip, user_agent, expires_at, absolute_expires_at,
             idle_seconds)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING id, user_id, csrf_token, method, created_at, expires_at
        """,
        hash_secret(token),
        user_id,
        secrets.token_urlsafe(24),
        method,
        ip,
        (user_agent or "")[:300] or None,
        now + (idle or SESSION_IDLE),
        now + SESSION_ABSOLUTE,
        int(idle.total_seconds()) if idle is not None else None,
    )
    await conn.execute("UPDATE app.users SET last_login_at = now() WHERE id = $1", user_id)
    return token, row


async def get_session(conn: asyncpg.Connection, token: str) -> asyncpg.Record | None:
    """The live session for a cookie value with its user; slides its expiry when used."""
    row = await conn.fetchrow(
        f"""
        SELECT s.id, s.csrf_token, s.method, s.last_seen_at, s.expires_at,
               s.absolute_expires_at, {_PRINCIPAL}
        FROM app.sessions s JOIN app.users u ON u.id = s.user_id
        WHERE s.token_hash = $1 AND s.expires_at > now() AND u.active
        """,
        hash_secret(token),
    )
    if row is not None and _now() - row["last_seen_at"] > TOUCH_EVERY:
        await conn.execute(
            """
            UPDATE app.sessions
            SET last_seen_at = now(),
                expires_at = least(now() + coalesce(make_interval(secs => idle_seconds), $2::interval),
                                   absolute_expires_at)
            WHERE id = $1
            """,
            row["id"],
            SESSION_IDLE,
        )
    return row


async def never_signed_in(conn: asyncpg.Connection, user_id: int) -> bool:
    """No browser session and no app token yet: the person's first sign-in is under way."""
    return await conn.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM app.sessions WHERE user_id = $1) "
        "AND NOT EXISTS (SELECT 1 FROM app.api_tokens WHERE user_id = $1)",
        user_id,
    )


async def delete_session(conn: asyncpg.Connection, session_id: int) -> None:
    await conn.execute("DELETE FROM app.sessions WHERE id = $1", session_id)


async def delete_user_sessions(conn: asyncpg.Connection, user_id: int) -> int:
    """Sign a person out everywhere (deactivation, password reset)."""
    status = await conn.execute("DELETE FROM app.sessions WHERE user_id = $1", user_id)
    return int(status.split()[-1])


async def purge_expired(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM app.sessions WHERE expires_at < now()")


# ------------------------------------------------------------------ API tokens


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_api_token(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    name: str,
    method: str,
    expires_at: datetime | None = None,
) -> tuple[str, asyncpg.Record]:
    """Issue a bearer token; return (token, row). The token is shown once, never stored."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("a token name is 1 to 100 characters")
    token = new_token()
    row = await conn.fetchrow(
        """
        INSERT INTO app.api_tokens (token_hash, token_prefix, user_id, name, method, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id, token_prefix, user_id, name, method, created_at, last_used_at, expires_at,
                  revoked_at
        """,
        hash_secret(token),
        token[: len(TOKEN_PREFIX) + 6],
        user_id,
        name,
        method,
        expires_at,
    )
    return token, row


async def get_api_token(conn: asyncpg.Connection, token: str) -> asyncpg.Record | None:
    """The live token with its user; records when it was last used (at most once a minute)."""
    row = await conn.fetchrow(
        f"""
        SELECT t.id, t.last_used_at, {_PRINCIPAL}
        FROM app.api_tokens t JOIN app.users u ON u.id = t.user_id
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL
          AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.active
        """,
        hash_secret(token),
    )
    if row is not None and (row["last_used_at"] is None or _now() - row["last_used_at"] > TOUCH_EVERY):
        await conn.execute("UPDATE app.api_tokens SET last_used_at = now() WHERE id = $1", row["id"])
    return row


TOKEN_COLUMNS = """
    t.id, t.token_prefix, t.name, t.method, t.created_at, t.last_used_at, t.expires_at,
    t.revoked_at, t.user_id, u.email AS user_email
"""


async def list_api_tokens(
    conn: asyncpg.Connection, *, user_id: int | None = None, include_revoked: bool = False
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {TOKEN_COLUMNS}
        FROM app.api_tokens t JOIN app.users u ON u.id = t.user_id
        WHERE ($1::bigint IS NULL OR t.user_id = $1) AND ($2 OR t.revoked_at IS NULL)
        ORDER BY t.id DESC
        """,
        user_id,
        include_revoked,
    )


async def get_api_token_by_id(conn: asyncpg.Connection, token_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {TOKEN_COLUMNS} FROM app.api_tokens t JOIN app.users u ON u.id = t.user_id "
        "WHERE t.id = $1",
        token_id,
    )


async def revoke_api_token(conn: asyncpg.Connection, token_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        UPDATE app.api_tokens t SET revoked_at = coalesce(t.revoked_at, now())
        FROM app.users u WHERE u.id = t.user_id AND t.id = $1
        RETURNING {TOKEN_COLUMNS}
        """,
        token_id,
    )
    if row is None:
        raise NotFound(f"no API token {token_id}")
    return row


async def revoke_user_tokens(conn: asyncpg.Connection, user_id: int) -> None:
    await conn.execute(
        "UPDATE app.api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
