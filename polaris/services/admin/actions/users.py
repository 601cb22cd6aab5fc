"""Admin and operator accounts: add, change role or name, deactivate (signed out), password."""

from __future__ import annotations

import asyncio

import asyncpg

from polaris.db.repos import sessions, users
from polaris.keys import hash_password
from polaris.services.admin.actions.base import Actor, changed, record, refuse_nulls
from polaris.services.auth.passwords import check_new_password
from polaris.services.errors import ApiError


async def _hashed(password: str | None) -> str | None:
    if password is None:
        return None
    check_new_password(password)
    return await asyncio.to_thread(hash_password, password)  # argon2id takes a while: off the loop


async def add_user(
    conn: asyncpg.Connection, actor: Actor, email: str, role: str, *, password: str | None = None,
    name: str | None = None,
) -> asyncpg.Record:
    """An admin or operator; without a password they sign in by OIDC only."""
    hashed = await _hashed(password)
    async with conn.transaction():
        created = await users.add_user(conn, email, role, password_hash=hashed, name=name)
        row = await users.get_user(conn, created["id"])
        await record(
            conn, actor, "user.create", "user", row["id"],
            after={"email": row["email"], "role": row["role"], "name": row["name"], "has_password": hashed is not None},
        )
    return row


async def edit_user(conn: asyncpg.Connection, actor: Actor, user_id: int, changes: dict) -> asyncpg.Record:
    """Role, name, active; deactivating signs them out everywhere; the last active admin stays."""
    refuse_nulls(changes, "role", "active")
    async with conn.transaction():
        target = await users.get_user(conn, user_id)
        if target is None:
            raise ApiError(404, "not_found", f"no user {user_id}")
        if target["role"] == "customer":
            raise ApiError(409, "is_customer", "customers are managed under /customers")
        demoting = changes.get("role") == "operator" or changes.get("active") is False
        if demoting and target["role"] == "admin" and target["active"] and await users.count_active_admins(conn) <= 1:
            raise ApiError(409, "last_admin", "this is the last active admin; add another admin first")
        before, after = await users.update_user(conn, user_id, changes)
        if changes.get("active") is False:
            await sessions.delete_user_sessions(conn, user_id)
            await sessions.revoke_user_tokens(conn, user_id)
        b, a = changed(before, after)
        if a:
            action = "user.deactivate" if a.get("active") is False else "user.edit"
            await record(conn, actor, action, "user", user_id, before=b, after=a)
    return after


async def set_user_password(conn: asyncpg.Connection, actor: Actor, user_id: int, password: str | None) -> None:
    """Set (or with None remove) an admin's or operator's password; their sessions end."""
    hashed = await _hashed(password)
    async with conn.transaction():
        target = await users.get_user(conn, user_id)
        if target is None or target["role"] == "customer":
            raise ApiError(404, "not_found", f"no admin or operator {user_id}")
        await users.set_password_hash_by_id(conn, user_id, hashed)
        await sessions.delete_user_sessions(conn, user_id)
        await record(conn, actor, "user.password", "user", user_id,
                     after={"password": "set" if hashed else "removed"})
