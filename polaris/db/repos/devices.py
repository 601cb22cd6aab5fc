"""iOS devices (APNs tokens) and the push outbox."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import asyncpg

from polaris.db.errors import InvalidInput

# web -> push senders: new pushes are due (payload empty).
PUSH_OUTBOX_CHANNEL = "push_outbox"
TOKEN = re.compile(r"^[0-9a-f]{64,200}$")
DEVICE_COLUMNS = "id, user_id, platform, token, sandbox, created_at, last_seen_at"


def check_token(token: str) -> str:
    """An APNs device token: hex (64 characters today, longer allowed), stored lower-case."""
    token = token.strip().lower().replace(" ", "")
    if not TOKEN.match(token):
        raise InvalidInput("an APNs device token is 64 to 200 hexadecimal characters")
    return token


async def register_device(
    conn: asyncpg.Connection, user_id: int, token: str, *, sandbox: bool = False
) -> tuple[asyncpg.Record, bool]:
    """Register (or refresh) a token for this user; returns (device, created).

    A token already registered to someone else moves to this user: the phone changed hands
    or accounts, and pushes must follow whoever is signed in on it now.
    """
    token = check_token(token)
    # A device registered by the original iOS app keeps its row (and its owner); only the
    # token moves.
    await conn.execute(
        "UPDATE app.devices SET token = NULL WHERE token = $1 AND registered_at IS NOT NULL", token
    )
    row = await conn.fetchrow(
        f"""
        INSERT INTO app.devices (user_id, token, sandbox) VALUES ($1, $2, $3)
        ON CONFLICT (token) DO UPDATE
            SET user_id = EXCLUDED.user_id, sandbox = EXCLUDED.sandbox, last_seen_at = now()
        RETURNING {DEVICE_COLUMNS}, (xmax = 0) AS created
        """,
        user_id,
        token,
        sandbox,
    )
    return row, row["created"]


async def remove_device(conn: asyncpg.Connection, user_id: int, token: str) -> bool:
    """Forget this user's token (sign-out on the phone); False when it is not theirs."""
    status = await conn.execute(
        "DELETE FROM app.devices WHERE token = $1 AND user_id = $2", check_token(token), user_id
    )
    return status != "DELETE 0"


async def delete_token(conn: asyncpg.Connection, token: str) -> bool:
    """APNs said the token is dead (410, BadDeviceToken, Unregistered)."""
    status = await conn.execute("DELETE FROM app.devices WHERE token = $1", token)
    return status != "DELETE 0"


async def devices_of_user(conn: asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {DEVICE_COLUMNS} FROM app.devices WHERE user_id = $1 ORDER BY id", user_id)


# ------------------------------------------------------------------ push outbox

PUSH_COLUMNS = """
    p.id, p.device_id, p.token, p.kind, p.payload, p.dedupe_key, p.status, p.attempts,
    p.next_attempt_at, p.expires_at, p.last_error, p.created_at, p.sent_at
"""


async def queue_push_to_user(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str,
    ttl: timedelta = timedelta(hours=1),
) -> int:
    """Queue one push per device of the user (once per dedupe key and device); returns how many."""
    status = await conn.execute(
        """
        INSERT INTO app.push_outbox (device_id, token, kind, payload, dedupe_key, expires_at)
        SELECT d.id, d.token, $2, $3, $4 || ':' || d.id, now() + $5::interval
        FROM app.devices d WHERE d.user_id = $1 AND d.token IS NOT NULL AND d.deleted_at IS NULL
        ON CONFLICT (dedupe_key) DO NOTHING
        """,
        user_id,
        kind,
        payload,
        dedupe_key,
        ttl,
    )
    count = int(status.split()[-1])
    if count:
        await conn.execute("SELECT pg_notify($1, '')", PUSH_OUTBOX_CHANNEL)
    return count


async def claim_due_pushes(conn: asyncpg.Connection, *, limit: int, lease: timedelta) -> list[asyncpg.Record]:
    """Take due pushes (SKIP LOCKED: several senders never take the same); expire stale ones."""
    await conn.execute(
        "UPDATE app.push_outbox SET status = 'expired', locked_until = NULL "
        "WHERE status IN ('pending', 'sending') AND expires_at < now()"
    )
    return await conn.fetch(
        f"""
        UPDATE app.push_outbox p SET status = 'sending', attempts = p.attempts + 1,
               locked_until = now() + $2::interval
        WHERE p.id IN (
            SELECT id FROM app.push_outbox
            WHERE (status = 'pending' AND next_attempt_at <= now())
               OR (status = 'sending' AND locked_until < now())
            ORDER BY next_attempt_at, id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        RETURNING {PUSH_COLUMNS},
            coalesce((SELECT d.sandbox FROM app.devices d WHERE d.id = p.device_id), false) AS sandbox
        """,
        limit,
        lease,
    )


async def finish_push(
    conn: asyncpg.Connection,
    push_id: int,
    status: str,
    *,
    error: str | None = None,
    retry_in: timedelta | None = None,
) -> None:
    """Record a result: sent, dropped (dead token or refused), or pending again after `retry_in`."""
    if status not in ("sent", "dropped", "pending"):
        raise ValueError(status)
    await conn.execute(
        """
        UPDATE app.push_outbox SET status = $2, locked_until = NULL, last_error = $3,
               sent_at = CASE WHEN $2 = 'sent' THEN now() END,
               next_attempt_at = CASE WHEN $2 = 'pending' THEN now() + $4::interval ELSE next_attempt_at END
        WHERE id = $1
        """,
        push_id,
        status,
        error[:500] if error else None,
        retry_in or timedelta(0),
    )


async def next_push_due_at(conn: asyncpg.Connection):
    return await conn.fetchval(
        "SELECT min(CASE WHEN status = 'pending' THEN next_attempt_at ELSE locked_until END) "
        "FROM app.push_outbox WHERE status IN ('pending', 'sending')"
    )
