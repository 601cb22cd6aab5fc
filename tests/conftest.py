"""Shared fixtures: a real Postgres (embedded, or the server in DATABASE_URL) and per-test databases.

A template database is migrated once per test run; each test gets its own copy
(`CREATE DATABASE ... TEMPLATE`), so tests are isolated and may commit freely.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from polaris.config import Settings
from polaris.db.embedded import start_embedded
from polaris.db.migrate import migrate
from polaris.db.pool import connect, create_pool
from polaris.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = ROOT / ".polaris" / "test"
_counter = itertools.count(1)


def with_database(dsn: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def pg_server_dsn() -> str:
    """A superuser URL of the test server: DATABASE_URL, or the embedded one under .polaris/test."""
    return os.environ.get("DATABASE_URL") or start_embedded(TEST_DATA_DIR)


@pytest.fixture(scope="session")
def template_db(pg_server_dsn: str) -> Iterator[str]:
    """Name of a database with every migration applied, copied by each test."""
    name = f"polaris_tpl_{os.getpid()}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await connect(with_database(pg_server_dsn, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@pytest.fixture
async def db_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """URL of a fresh, fully migrated database for this test only."""
    name = f"polaris_t_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield with_database(pg_server_dsn, name)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_db_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """URL of a fresh database with no migrations applied (for migration tests)."""
    name = f"polaris_e_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_server_dsn, name)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_dsn, min_size=1, max_size=5)
    yield p
    await p.close()


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(db_dsn)
    yield c
    await c.close()


TEST_SECRETS = {
    "AUTH_SECRET": "a" * 40,
    "STEVE_PREAUTH_HMAC_KEY": "p" * 40,
    "STEVE_METERVALUE_HMAC_KEY": "m" * 40,
    "STEVE_API_KEY": "k" * 32,
    "CF_EMAIL_WORKER_SECRET": "e" * 40,
}


@pytest.fixture
def settings(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a test: its own database, test secrets, no .env file."""
    for k in list(os.environ):
        if k in Settings.model_fields:
            monkeypatch.delenv(k)
    return Settings(_env_file=None, DATABASE_URL=db_dsn, **TEST_SECRETS)  # type: ignore[call-arg]


def _ours(handler: logging.Handler) -> bool:
    """Handlers that are not pytest's own capture handlers (those come and go per test)."""
    return not type(handler).__module__.startswith("_pytest")


@pytest.fixture(scope="session", autouse=True)
def _logging_configured() -> None:
    """Logs go to stderr as the services write them, whatever test ran first."""
    configure_logging("INFO", "console")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that reconfigures logging (a CLI run, a quiet smoke test) leaves it as it found it."""
    root = logging.getLogger()
    level, handlers = root.level, [h for h in root.handlers if _ours(h)]
    levels = {name: logging.getLogger(name).level for name in ("polaris", "polaris.sim", "polaris.ocpp")}
    yield
    root.setLevel(level)
    root.handlers[:] = handlers + [h for h in root.handlers if not _ours(h)]
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
        logging.getLogger(name).disabled = False
