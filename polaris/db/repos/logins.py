"""Sign-in flows: password attempts (lock-out), the device-login flow, OIDC logins in flight."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import asyncpg

from polaris.db.repos.sessions import hash_secret

# ------------------------------------------------------------------ password attempts


async def record_attempt(conn: asyncpg.Connection, email: str, ip: str | None, succeeded: bool) -> None:
    await conn.execute(
        "INSERT INTO app.login_attempts (email, ip, succeeded) VALUES ($1, $2, $3)",
        email,
        ip,
        succeeded,
    )


async def recent_failures(
    conn: asyncpg.Connection, email: str, ip: str | None, window: timedelta
) -> tuple[int, int, datetime | None]:
    """(failures for this email since its last success, failures from this address, oldest counted).

    Counted within `window`; the oldest failure tells when the lock-out ends.
    """
    row = await conn.fetchrow(
        """
        WITH by_email AS (
            SELECT at FROM app.login_attempts
            WHERE email = $1 AND at > now() - $3::interval AND NOT succeeded
              AND at > coalesce((SELECT max(at) FROM app.login_attempts
                                 WHERE email = $1 AND succeeded), '-infinity')
        )
        SELECT (SELECT count(*) FROM by_email) AS email_failures,
               (SELECT min(at) FROM by_email) AS oldest,
               (SELECT count(*) FROM app.login_attempts
                WHERE ip = $2 AND at > now() - $3::interval AND NOT succeeded) AS ip_failures
        """,
        email,
        ip,
        window,
    )
    return row["email_failures"], row["ip_failures"], row["oldest"]


async def purge_attempts(conn: asyncpg.Connection, older_than: timedelta) -> None:
    await conn.execute("DELETE FROM app.login_attempts WHERE at < now() - $1::interval", older_than)


# ------------------------------------------------------------------ device login

# No vowels or look-alikes: codes are read aloud and typed on phones.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


def new_user_code() -> str:
    raw = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_user_code(code: str) -> str:
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else raw


async def create_device_code(
    conn: asyncpg.Connection, client_name: str, lifetime: timedelta
) -> tuple[str, asyncpg.Record]:
    """Start a device login; return (device_code, row with user_code)."""
    device_code = secrets.token_urlsafe(32)
    for _ in range(5):
        try:
            row = await conn.fetchrow(
                """
                INSERT INTO app.device_codes (device_code_hash, user_code, client_name, expires_at)
                VALUES ($1, $2, $3, now() + $4::interval)
                RETURNING id, user_code, client_name, status, created_at, expires_at
                """,
                hash_secret(device_code),
                new_user_code(),
                client_name,
                lifetime,
            )
            return device_code, row
        except asyncpg.UniqueViolationError:
            continue  # a live code with the same user_code: draw again
    raise RuntimeError("could not draw a unique device user code")


async def get_device_code_by_user_code(conn: asyncpg.Connection, user_code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT id, user_code, client_name, status, created_at, expires_at
        FROM app.device_codes
        WHERE user_code = $1 AND status IN ('pending', 'approved') AND expires_at > now()
        """,
        normalize_user_code(user_code),
    )


async def decide_device_code(
    conn: asyncpg.Connection, code_id: int, user_id: int, approve: bool
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        UPDATE app.device_codes
        SET status = $3, approved_by = $2, decided_at = now()
        WHERE id = $1 AND status = 'pending' AND expires_at > now()
        RETURNING id, user_code, client_name, status
        """,
        code_id,
        user_id,
        "approved" if approve else "denied",
    )


async def poll_device_code(conn: asyncpg.Connection, device_code: str) -> asyncpg.Record | None:
    """The code's state; records the poll time (for slow_down) and returns the previous one.

    An approved code is marked consumed by this call: it yields one token, once.
    """
    return await conn.fetchrow(
        """
        WITH old AS (
            SELECT id, status, last_polled_at FROM app.device_codes
            WHERE device_code_hash = $1 FOR UPDATE
        )
        UPDATE app.device_codes d
        SET last_polled_at = now(),
            status = CASE WHEN d.status = 'approved' AND d.expires_at > now()
                          THEN 'consumed' ELSE d.status END
        FROM old
        WHERE d.id = old.id
        RETURNING d.id, old.status AS status, old.last_polled_at AS previous_poll,
                  d.expires_at, d.approved_by, d.client_name, (d.expires_at <= now()) AS expired
        """,
        hash_secret(device_code),
    )


# ------------------------------------------------------------------ OIDC logins in flight


async def save_oidc_login(
    conn: asyncpg.Connection,
    state: str,
    *,
    nonce: str,
    code_verifier: str,
    return_to: str | None,
    lifetime: timedelta,
    ip: str | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO app.oidc_logins (state_hash, nonce, code_verifier, return_to, expires_at, ip)
        VALUES ($1, $2, $3, $4, now() + $5::interval, $6)
        """,
        hash_secret(state),
        nonce,
        code_verifier,
        return_to,
        lifetime,
        ip,
    )
    await conn.execute("DELETE FROM app.oidc_logins WHERE expires_at < now()")


async def oidc_logins_pending(conn: asyncpg.Connection, ip: str | None) -> tuple[int, int]:
    """OIDC sign-ins started and not finished: (from this address, from anywhere)."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE ip = $1) AS mine, count(*) AS total "
        "FROM app.oidc_logins WHERE expires_at > now()",
        ip,
    )
    return row["mine"], row["total"]


async def take_oidc_login(conn: asyncpg.Connection, state: str) -> asyncpg.Record | None:
    """The login for `state`, removed so a state is used once."""
    return await conn.fetchrow(
        """
        DELETE FROM app.oidc_logins WHERE state_hash = $1 AND expires_at > now()
        RETURNING nonce, code_verifier, return_to
        """,
        hash_secret(state),
    )
