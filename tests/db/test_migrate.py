"""Migration runner: idempotent, safe with two runners at once, loud on edited files."""

import asyncio
import shutil

import asyncpg
import pytest

from polaris.db.migrate import (
    MigrationError,
    default_migrations_dir,
    is_current,
    load_migrations,
    migrate,
)
from polaris.db.pool import connect


async def test_fresh_database_gets_every_schema_and_table(empty_db_dsn):
    conn = await connect(empty_db_dsn)
    try:
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        schemas = {r[0] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
        assert {"ocpp", "app", "billing"} <= schemas
        for table in ("ocpp.charge_boxes", "ocpp.connectors", "ocpp.transactions", "ocpp.meter_values",
                      "app.users", "app.customers", "app.id_tags",
                      "billing.sync_runs", "billing.transaction_sync_state"):
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table), table
        assert await is_current(conn)
    finally:
        await conn.close()


async def test_second_run_applies_nothing(empty_db_dsn):
    conn = await connect(empty_db_dsn)
    try:
        await migrate(conn)
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert await migrate(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == count
    finally:
        await conn.close()


async def test_two_concurrent_runners_apply_each_migration_once(empty_db_dsn):
    a, b = await connect(empty_db_dsn), await connect(empty_db_dsn)
    try:
        done_a, done_b = await asyncio.gather(migrate(a), migrate(b))
        total = len(load_migrations())
        assert len(done_a) + len(done_b) == total
        assert {len(done_a), len(done_b)} == {0, total}
        rows = await a.fetch("SELECT version FROM schema_migrations")
        assert len(rows) == total
    finally:
        await a.close()
        await b.close()


async def test_edited_migration_is_a_loud_error(empty_db_dsn, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), migrations)
    conn = await connect(empty_db_dsn)
    try:
        await migrate(conn, load_migrations(migrations))
        first = sorted(migrations.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=f"{first.name} was edited after it was applied"):
            await migrate(conn, load_migrations(migrations))
        assert not await is_current(conn, load_migrations(migrations))
    finally:
        await conn.close()


async def test_failing_migration_rolls_back_and_names_the_file(empty_db_dsn, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), migrations)
    bad = migrations / "9999_broken.sql"
    bad.write_text("CREATE TABLE app.half_done (id int);\nSELECT * FROM no_such_table;\n")
    conn = await connect(empty_db_dsn)
    try:
        with pytest.raises(MigrationError, match="9999_broken.sql failed and was rolled back"):
            await migrate(conn, load_migrations(migrations))
        assert not await conn.fetchval("SELECT to_regclass('app.half_done') IS NOT NULL")
        assert not await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9999")
        # Everything before the broken file was kept.
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(load_migrations())
    finally:
        await conn.close()


async def test_badly_named_file_is_refused(tmp_path):
    (tmp_path / "1_nope.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_lowercase_name.sql"):
        load_migrations(tmp_path)


async def test_unknown_applied_migration_is_reported(db_dsn):
    conn = await connect(db_dsn)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (9998, 'future', 'x')")
        with pytest.raises(MigrationError, match="applied by a newer version"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_schema_matches_a_fresh_build(db_dsn, empty_db_dsn):
    """The template every test copies is exactly what `migrate` builds from nothing."""
    async def columns(dsn):
        c = await asyncpg.connect(dsn)
        try:
            return await c.fetch(
                "SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema IN ('ocpp','app','billing') "
                "ORDER BY 1, 2, 3"
            )
        finally:
            await c.close()

    conn = await connect(empty_db_dsn)
    await migrate(conn)
    await conn.close()
    assert [tuple(r) for r in await columns(db_dsn)] == [tuple(r) for r in await columns(empty_db_dsn)]


async def test_sessions_recorded_before_0100_get_their_cards_customer(empty_db_dsn):
    """0100 backfills the customer of existing sessions from their card (case-insensitive)."""
    all_migrations = load_migrations()
    conn = await connect(empty_db_dsn)
    try:
        await migrate(conn, [m for m in all_migrations if m.version < 100])
        await conn.execute(
            """
            INSERT INTO app.users (email, role) VALUES ('ada@example.com', 'customer');
            INSERT INTO app.customers (user_id) SELECT id FROM app.users;
            INSERT INTO app.id_tags (id_tag, customer_id) SELECT 'CARD-ADA', id FROM app.customers;
            INSERT INTO app.id_tags (id_tag) VALUES ('LOOSE-1');
            INSERT INTO ocpp.charge_boxes (charge_box_id, public_id) VALUES ('CB-1', 'p1');
            INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start)
            SELECT id, 1, tag, now(), 0 FROM ocpp.charge_boxes, unnest(ARRAY['card-ada', 'LOOSE-1', 'NEVER-SEEN']) tag;
            """
        )
        await migrate(conn, all_migrations)
        rows = await conn.fetch(
            "SELECT t.id_tag, c.id IS NOT NULL AS has_customer FROM ocpp.transactions t "
            "LEFT JOIN app.customers c ON c.id = t.customer_id ORDER BY t.id"
        )
        assert [tuple(r) for r in rows] == [("card-ada", True), ("LOOSE-1", False), ("NEVER-SEEN", False)]
    finally:
        await conn.close()
