"""A fresh, migrated database for one benchmark run (shared by every bench_*.py)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from polaris.db.embedded import start_embedded
from polaris.db.migrate import migrate
from polaris.db.pool import connect

ROOT = Path(__file__).resolve().parent.parent


async def create_database(label: str) -> tuple[str, str]:
    """(server dsn, database dsn) of a new migrated database on DATABASE_URL's server or the
    embedded one under .polaris/bench."""
    server_dsn = os.environ.get("DATABASE_URL") or start_embedded(ROOT / ".polaris" / "bench")
    name = f"polaris_bench_{label}_{os.getpid()}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db_dsn = urlunsplit(urlsplit(server_dsn)._replace(path="/" + name))
    conn = await connect(db_dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return server_dsn, db_dsn


async def drop_database(server_dsn: str, db_dsn: str) -> None:
    name = urlsplit(db_dsn).path.lstrip("/")
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def with_database(label: str, fn: Callable[[str], Awaitable[None]]) -> None:
    """Run `fn(db_dsn)` on a fresh database, dropped afterwards."""
    server_dsn, db_dsn = await create_database(label)
    try:
        await fn(db_dsn)
    finally:
        await drop_database(server_dsn, db_dsn)
