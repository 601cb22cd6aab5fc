"""Admin password resets: one-use links mailed to admins and operators."""

from __future__ import annotations

import secrets
from datetime import timedelta

import asyncpg

from polaris.db.repos.sessions import hash_secret


async def create_reset(
    conn: asyncpg.Connection, user_id: int, *, lifetime: timedelta, requested_by: str | None
) -> str:
    """A new reset token for the user (shown once, in the mail)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """
        INSERT INTO app.password_resets (token_hash, user_id, requested_by, expires_at)
        VALUES ($1, $2, $3, now() + $4::interval)
        """,
        hash_secret(token),
        user_id,
        requested_by,
        lifetime,
    )
    return token


async def recent_resets(conn: asyncpg.Connection, user_id: int, window: timedelta) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM app.password_resets WHERE user_id = $1 AND created_at > now() - $2::interval",
        user_id,
        window,
    )


async def peek_reset(conn: asyncpg.Connection, token: str) -> asyncpg.Record | None:
    """The live reset for a token with its user (does not use it up)."""
    return await conn.fetchrow(
        """
        SELECT r.id, r.user_id, u.email, u.role, u.active FROM app.password_resets r
        JOIN app.users u ON u.id = r.user_id
        WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now()
        """,
        hash_secret(token),
    )


async def use_reset(conn: asyncpg.Connection, reset_id: int) -> bool:
    """Mark a reset used, and every other open one of the same user; False if already used."""
    user_id = await conn.fetchval(
        "UPDATE app.password_resets SET used_at = now() WHERE id = $1 AND used_at IS NULL RETURNING user_id",
        reset_id,
    )
    if user_id is None:
        return False
    await conn.execute(
        "UPDATE app.password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id
    )
    return True
