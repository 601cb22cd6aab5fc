"""Sign-in links sent by email: one use, short-lived, consumed only by an explicit POST."""

from __future__ import annotations

import secrets
from datetime import timedelta

import asyncpg

from polaris.db.errors import InvalidInput
from polaris.db.repos.sessions import hash_secret

SIGNIN_TTL = timedelta(minutes=15)
INVITE_TTL = timedelta(hours=24)
EMAIL_CHANGE_TTL = timedelta(hours=1)
TTL = {"signin": SIGNIN_TTL, "invite": INVITE_TTL, "email_change": EMAIL_CHANGE_TTL}

# Requests allowed per window: a person retrying is fine, a script mailing someone is not.
RATE_WINDOW = timedelta(minutes=15)
MAX_PER_EMAIL = 5
MAX_PER_IP = 20


class LinkRefused(Exception):
    """A link that cannot be used; `reason` is unknown, expired or used."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_return_to(path: str | None) -> str | None:
    """A local path to go to after signing in, or None (never another host: no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 300:
        return None
    return path


async def record_request(conn: asyncpg.Connection, email: str, ip: str | None) -> str | None:
    """Count a request for a link; return 'email' or 'ip' when that limit is already reached."""
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE email = $1) AS by_email,
               count(*) FILTER (WHERE $2::text IS NOT NULL AND ip = $2) AS by_ip
        FROM app.magic_link_requests
        WHERE at > now() - $3::interval AND (email = $1 OR ip = $2)
        """,
        email,
        ip,
        RATE_WINDOW,
    )
    if row["by_email"] >= MAX_PER_EMAIL:
        return "email"
    if row["by_ip"] >= MAX_PER_IP:
        return "ip"
    await conn.execute("INSERT INTO app.magic_link_requests (email, ip) VALUES ($1, $2)", email, ip)
    return None


async def create_link(
    conn: asyncpg.Connection,
    user_id: int,
    email: str,
    *,
    purpose: str = "signin",
    new_email: str | None = None,
    return_to: str | None = None,
    ip: str | None = None,
    ttl: timedelta | None = None,
) -> tuple[str, asyncpg.Record]:
    """Issue a link valid `ttl` (default: its purpose's); return (token for the URL, row).
    Only the token's hash is stored."""
    if purpose not in TTL:
        raise InvalidInput(f"a link's purpose is one of {', '.join(TTL)}, not {purpose!r}")
    token = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        """
        INSERT INTO app.magic_links
            (token_hash, user_id, purpose, email, new_email, return_to, requested_ip, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)
        RETURNING id, user_id, purpose, email, new_email, return_to, created_at, expires_at
        """,
        hash_secret(token),
        user_id,
        purpose,
        email,
        new_email,
        check_return_to(return_to),
        ip,
        ttl if ttl is not None else TTL[purpose],
    )
    return token, row


async def peek_link(conn: asyncpg.Connection, token: str) -> asyncpg.Record:
    """The link behind a token without using it (the confirm page); LinkRefused if unusable."""
    row = await conn.fetchrow(
        """
        SELECT l.id, l.user_id, l.purpose, l.email, l.new_email, l.return_to, l.expires_at,
               l.consumed_at, l.expires_at <= now() AS expired
        FROM app.magic_links l WHERE l.token_hash = $1
        """,
        hash_secret(token),
    )
    if row is None:
        raise LinkRefused("unknown")
    if row["consumed_at"] is not None:
        raise LinkRefused("used")
    if row["expired"]:
        raise LinkRefused("expired")
    return row


async def consume_link(conn: asyncpg.Connection, token: str) -> asyncpg.Record:
    """Use a link once: one statement, so two clicks racing cannot both succeed.

    An email-change link also moves the account to the new address. Returns the link with
    its user; raises LinkRefused (unknown, used, expired, inactive, taken).
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            UPDATE app.magic_links l SET consumed_at = now()
            FROM app.users u
            WHERE l.token_hash = $1 AND l.consumed_at IS NULL AND l.expires_at > now()
              AND u.id = l.user_id
            RETURNING l.id, l.user_id, l.purpose, l.email, l.new_email, l.return_to,
                      u.active AS user_active, u.role
            """,
            hash_secret(token),
        )
        if row is None:
            await peek_link(conn, token)  # raises with the reason
            raise LinkRefused("unknown")
        if not row["user_active"]:
            raise LinkRefused("inactive")
        if row["purpose"] == "email_change":
            try:
                await conn.execute(
                    "UPDATE app.users SET email = $2, updated_at = now() WHERE id = $1",
                    row["user_id"],
                    row["new_email"],
                )
            except asyncpg.UniqueViolationError:
                raise LinkRefused("taken") from None
        # Other links still out there for this person are now stale.
        await conn.execute(
            "UPDATE app.magic_links SET consumed_at = now() "
            "WHERE user_id = $1 AND consumed_at IS NULL AND purpose = $2",
            row["user_id"],
            row["purpose"],
        )
        return row


async def purge_old(conn: asyncpg.Connection, older_than: timedelta = timedelta(days=7)) -> None:
    await conn.execute("DELETE FROM app.magic_links WHERE expires_at < now() - $1::interval", older_than)
    await conn.execute("DELETE FROM app.magic_link_requests WHERE at < now() - $1::interval", older_than)
