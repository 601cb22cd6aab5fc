"""Signatures of signed hook requests already answered (replay protection)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg


async def first_use(conn: asyncpg.Connection, signature: bytes) -> bool:
    """Remember a signature; False when it was seen before (the request is a replay)."""
    return bool(await conn.fetchval(
        "INSERT INTO app.hook_signatures (signature) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
        signature,
    ))


async def forget_older_than(conn: asyncpg.Connection, age: timedelta) -> int:
    """Drop signatures older than `age` (their timestamps are outside the window by then)."""
    status = await conn.execute("DELETE FROM app.hook_signatures WHERE seen_at < now() - $1::interval", age)
    return int(status.split()[-1])
