"""Which database a command uses: DATABASE_URL, or the embedded Postgres in local mode."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from polaris.cli.errors import CommandError
from polaris.config import ConfigError, Settings
from polaris.db.embedded import EmbeddedPostgresError, start_embedded
from polaris.db.errors import RepoError
from polaris.db.migrate import MigrationError
from polaris.db.pool import connect, describe_connect_error

T = TypeVar("T")


def resolve_database_url(settings: Settings, *, start_embedded_if_missing: bool = False) -> str:
    """DATABASE_URL if set; else the embedded server next to a local `.polaris/` data dir.

    `start_embedded_if_missing` (for `polaris up` and the tests) creates that data dir.
    """
    if settings.database_url:
        settings.require("database")
        return settings.database_url
    data_dir = settings.POLARIS_DATA_DIR
    if start_embedded_if_missing or (data_dir / "pgdata" / "PG_VERSION").exists():
        try:
            return start_embedded(data_dir)
        except EmbeddedPostgresError as exc:
            raise CommandError(str(exc)) from None
    raise ConfigError(
        [
            "DATABASE_URL is not set and there is no local data dir "
            f"({data_dir}/pgdata): set DATABASE_URL, or run `make up` here first to create "
            "the embedded Postgres"
        ]
    )


def run_with_connection(
    settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """Run `work(conn)` on one connection; turn database and domain errors into one line."""
    url = resolve_database_url(settings)

    async def runner() -> T:
        try:
            conn = await connect(url, timeout=10)
        except Exception as exc:  # any connect failure is one line for a person
            raise CommandError(describe_connect_error(exc)) from None
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(runner())
    except (RepoError, MigrationError) as exc:
        raise CommandError(str(exc)) from None
    except asyncpg.UndefinedTableError:
        raise CommandError("the database has no Polaris tables yet: run `polaris migrate` first") from None
    except asyncpg.PostgresError as exc:
        raise CommandError(f"database error: {exc}") from None
