"""Migration runner: numbered `.sql` files applied once each, in order, under an advisory lock.

Each file runs in its own transaction and is recorded in `public.schema_migrations` with
a SHA-256 checksum; a file that was edited after it was applied is a loud error, never
silently re-run. Two runners at once are safe: the second waits for the lock and then
finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from polaris.logs import get_logger

log = get_logger(__name__)

# Arbitrary constant: the advisory lock key every migration runner takes.
MIGRATION_LOCK_KEY = 0x706F6C61726973  # "polaris"
FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_migrations_dir() -> Path:
    return Path(str(resources.files("polaris.db") / "migrations"))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read every NNNN_name.sql in version order; reject gaps in naming or duplicate numbers."""
    directory = directory or default_migrations_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = FILENAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version = int(m["version"])
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version:04d} is also used by {found[version].filename}"
            )
        found[version] = Migration(version, m["name"], path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM public.schema_migrations")
    return {r["version"]: r for r in rows}


async def pending_migrations(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Migrations not yet applied; raises if an applied one was edited or is unknown."""
    migrations = load_migrations() if migrations is None else migrations
    applied = await applied_migrations(conn)
    check_applied(applied, migrations)
    return [m for m in migrations if m.version not in applied]


def check_applied(applied: dict[int, asyncpg.Record], migrations: list[Migration]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{row['name']} which this code does not know: "
                "it was applied by a newer version of Polaris"
            )
        if m.checksum != row["checksum"]:
            raise MigrationError(
                f"{m.filename} was edited after it was applied on {row['applied_at']:%Y-%m-%d}: "
                "applied migrations must never change; add a new migration instead"
            )


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration; return the ones applied by this call."""
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        todo = await pending_migrations(conn, migrations)
        for m in todo:
            try:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
            except asyncpg.PostgresError as exc:
                where = f" (line {exc.position})" if getattr(exc, "position", None) else ""
                raise MigrationError(f"{m.filename} failed and was rolled back{where}: {exc}") from exc
            log.info("migration applied", migration=m.filename)
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def is_current(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> bool:
    """True when every known migration is applied and none was edited (for /readyz)."""
    try:
        return not await pending_migrations(conn, migrations)
    except MigrationError:
        return False
