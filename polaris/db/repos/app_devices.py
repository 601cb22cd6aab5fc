"""Devices registered by the original iOS app (one-time code + PKCE), and their bearer tokens.

They are rows of app.devices (push uses the same table); a token is kept as its SHA-256.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import asyncpg

from polaris.db.repos.devices import check_token

CODE_LIFETIME = timedelta(seconds=60)
TOKEN_LIFETIME = timedelta(days=365)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def create_code(
    conn: asyncpg.Connection, user_id: int, code: str, code_challenge: str, label: str
) -> None:
    await conn.execute(
        """
        INSERT INTO app.device_register_codes (code_hash, code_challenge, user_id, label, expires_at)
        VALUES ($1, $2, $3, $4, now() + $5::interval)
        """,
        sha256_hex(code), code_challenge, user_id, label, CODE_LIFETIME,
    )


async def claim_code(conn: asyncpg.Connection, code: str, code_challenge: str) -> asyncpg.Record | None:
    """Use a live, unused code whose PKCE challenge matches (at most once, even when two
    claims race); its row, or None for any failure (unknown, expired, used, wrong verifier)."""
    return await conn.fetchrow(
        """
        UPDATE app.device_register_codes SET consumed_at = now()
        WHERE code_hash = $1 AND code_challenge = $2 AND consumed_at IS NULL AND expires_at > now()
        RETURNING id, user_id, label
        """,
        sha256_hex(code), code_challenge,
    )


async def mark_code_used(conn: asyncpg.Connection, code_id: int, device_id: int, key: str | None) -> None:
    await conn.execute(
        "UPDATE app.device_register_codes SET device_id = $2, idempotency_key = $3 WHERE id = $1",
        code_id, device_id, key,
    )


async def retried_code(
    conn: asyncpg.Connection, code: str, code_challenge: str, key: str
) -> asyncpg.Record | None:
    """The live code already used under this Idempotency-Key (same verifier), with its device."""
    return await conn.fetchrow(
        """
        SELECT c.id, c.device_id, c.user_id FROM app.device_register_codes c
        JOIN app.devices d ON d.id = c.device_id AND d.deleted_at IS NULL
        WHERE c.code_hash = $1 AND c.code_challenge = $2 AND c.idempotency_key = $3
          AND c.consumed_at IS NOT NULL AND c.expires_at > now()
        FOR UPDATE OF c
        """,
        sha256_hex(code), code_challenge, key,
    )


async def device_by_id(conn: asyncpg.Connection, device_id: int) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT id, public_id, user_id, label, capabilities, registered_at FROM app.devices WHERE id = $1", device_id
    )


async def revoke_tokens(conn: asyncpg.Connection, device_id: int) -> None:
    await conn.execute(
        "UPDATE app.device_tokens SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL", device_id
    )


async def create_device(conn: asyncpg.Connection, user_id: int, info: dict[str, Any]) -> asyncpg.Record:
    push = check_token(info["push_token"]) if info.get("push_token") else None
    if push is not None:
        # The APNs token belongs to this phone: it leaves whichever row had it before.
        await conn.execute("UPDATE app.devices SET token = NULL WHERE token = $1", push)
    return await conn.fetchrow(
        """
        INSERT INTO app.devices (user_id, platform, token, sandbox, label, model, os_version,
                                 app_version, capabilities, registered_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
        RETURNING id, public_id, user_id, label, capabilities, registered_at
        """,
        user_id, info["platform"], push, info["sandbox"], info["label"], info["model"],
        info["os_version"], info["app_version"], info["capabilities"],
    )


async def create_token(
    conn: asyncpg.Connection, device_id: int, token: str, secret: str
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        INSERT INTO app.device_tokens (device_id, token_hash, secret, expires_at)
        VALUES ($1, $2, $3, now() + $4::interval)
        RETURNING id, expires_at
        """,
        device_id, sha256_hex(token), secret, TOKEN_LIFETIME,
    )


async def resolve_token(conn: asyncpg.Connection, token: str) -> asyncpg.Record | None:
    """The live device and token for a bearer `dev_...` (owner still active staff), or None."""
    return await conn.fetchrow(
        """
        UPDATE app.device_tokens t SET last_used_at = now()
        FROM app.devices d, app.users u
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()
          AND d.id = t.device_id AND d.deleted_at IS NULL
          AND u.id = d.user_id AND u.active AND u.role IN ('admin', 'operator')
        RETURNING t.id AS token_id, t.expires_at AS token_expires_at, t.secret,
                  d.id, d.public_id, d.user_id, d.label, d.capabilities, d.registered_at,
                  d.last_seen_at, d.last_status, d.token AS push_token, d.sandbox,
                  u.email, u.role, u.name
        """,
        sha256_hex(token),
    )


async def heartbeat(conn: asyncpg.Connection, device_id: int, status: dict[str, Any] | None) -> bool:
    done = await conn.execute(
        "UPDATE app.devices SET last_seen_at = now(), last_status = coalesce($2::jsonb, last_status) "
        "WHERE id = $1 AND deleted_at IS NULL",
        device_id, status,
    )
    return done != "UPDATE 0"


async def set_push_token(conn: asyncpg.Connection, device_id: int, token: str, sandbox: bool) -> bool:
    token = check_token(token)
    async with conn.transaction():
        await conn.execute("UPDATE app.devices SET token = NULL WHERE token = $1 AND id <> $2", token, device_id)
        done = await conn.execute(
            "UPDATE app.devices SET token = $2, sandbox = $3, last_seen_at = now() "
            "WHERE id = $1 AND deleted_at IS NULL",
            device_id, token, sandbox,
        )
    return done != "UPDATE 0"


async def deregister(conn: asyncpg.Connection, device_id: int) -> None:
    """The app signs out: the device is gone (soft) and its tokens revoked; no more pushes."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE app.devices SET deleted_at = now(), token = NULL WHERE id = $1 AND deleted_at IS NULL", device_id
        )
        await conn.execute(
            "UPDATE app.device_tokens SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL", device_id
        )
