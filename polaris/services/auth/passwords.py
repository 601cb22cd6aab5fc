"""Password sign-in for admins and operators: argon2id, constant time, lock-out.

Lock-out counts failures per email (since its last success) and per client address
within a window; it applies to unknown emails too, so it reveals nothing about which
accounts exist. The hash is always verified (a dummy one for unknown users), so the
answer takes the same time either way.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from polaris.db.repos import logins, users
from polaris.keys import hash_password, password_needs_rehash, verify_password
from polaris.services.errors import ApiError

WINDOW = timedelta(minutes=15)
MAX_EMAIL_FAILURES = 5
MAX_IP_FAILURES = 30
STAFF_ROLES = ("admin", "operator")
PASSWORD_MIN = 12


def check_new_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise ApiError(400, "weak_password", f"a password is at least {PASSWORD_MIN} characters")
    if len(password) > 1024:
        raise ApiError(400, "invalid_input", "a password is at most 1024 characters")


async def authenticate(
    conn: asyncpg.Connection, email: str, password: str, ip: str | None
) -> asyncpg.Record:
    """The staff user for these credentials, or ApiError 401 / 429 (locked out)."""
    email = email.strip().lower()
    email_failures, ip_failures, oldest = await logins.recent_failures(conn, email, ip, WINDOW)
    if email_failures >= MAX_EMAIL_FAILURES or ip_failures >= MAX_IP_FAILURES:
        retry = _retry_after(oldest)
        raise ApiError(
            429,
            "locked_out",
            f"too many failed sign-ins; try again in {max(1, retry // 60)} minute(s)",
            headers={"Retry-After": str(retry)},
        )
    user = await users.get_user_by_email(conn, email)
    hashed = user["password_hash"] if user is not None else None
    # argon2 takes tens of milliseconds of CPU: keep the event loop free meanwhile.
    ok = await asyncio.to_thread(verify_password, password, hashed)
    allowed = ok and user is not None and user["active"] and user["role"] in STAFF_ROLES
    await logins.record_attempt(conn, email, ip, allowed)
    if not allowed:
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    if password_needs_rehash(hashed):
        await users.set_password_hash(conn, email, await asyncio.to_thread(hash_password, password))
    return user


def _retry_after(oldest: datetime | None) -> int:
    if oldest is None:
        return int(WINDOW.total_seconds())
    left = oldest + WINDOW - datetime.now(UTC)
    return max(1, int(left.total_seconds()))
