"""asyncpg connection pools with the codecs every repository relies on."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any) -> asyncpg.Pool:
    """Open a pool; JSON columns come back as Python objects."""
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, **kwargs
    )


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection with the same codecs as the pool."""
    conn = await asyncpg.connect(dsn, **kwargs)
    await _init_connection(conn)
    return conn


def describe_connect_error(exc: BaseException) -> str:
    """One line for a person: why the database could not be reached."""
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "the database refused the password in DATABASE_URL"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"the database in DATABASE_URL does not exist ({exc})"
    if isinstance(exc, OSError | TimeoutError):
        return f"cannot reach the Postgres server in DATABASE_URL ({exc.__class__.__name__}: {exc})"
    if isinstance(exc, ValueError):
        return f"DATABASE_URL is not a valid Postgres URL ({exc})"
    return f"{exc.__class__.__name__}: {exc}"
