"""docs/backups.md's procedure, run for real: pg_dump -Fc of a populated database with a
pg_dump at least as new as the server, pg_restore into a fresh database, and the data and
the migration history survive."""

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from polaris.db.embedded import pg_bin_dir
from polaris.db.migrate import is_current, load_migrations
from polaris.db.repos import charge_boxes, customers, id_tags

ROOT = Path(__file__).resolve().parents[2]


def tool(name):
    return str(pg_bin_dir() / name)


def split_password(dsn):
    """The URL without its password, and an environment carrying it (kept out of argv)."""
    parts = urlsplit(dsn)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
        netloc = parts.netloc.replace(f":{parts.password}@", "@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts), env


async def run(*argv, dsn):
    url, env = split_password(dsn)
    proc = await asyncio.create_subprocess_exec(
        *argv, f"--dbname={url}", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def snapshot(conn):
    return {
        "migrations": [tuple(r) for r in await conn.fetch(
            "SELECT version, name, checksum FROM public.schema_migrations ORDER BY version"
        )],
        "charge_boxes": [tuple(r) for r in await conn.fetch(
            "SELECT charge_box_id, public_id, key_salt, key_hash, registration_status FROM ocpp.charge_boxes ORDER BY 1"
        )],
        "sites": [tuple(r) for r in await conn.fetch("SELECT name, address FROM ocpp.sites ORDER BY 1")],
        "customers": [tuple(r) for r in await conn.fetch(
            "SELECT u.email, c.name, c.lago_subscription_id FROM app.customers c "
            "JOIN app.users u ON u.id = c.user_id ORDER BY 1"
        )],
        "id_tags": [tuple(r) for r in await conn.fetch("SELECT id_tag, blocked FROM app.id_tags ORDER BY 1")],
    }


async def test_pg_dump_is_at_least_the_server_version(conn):
    out = (await asyncio.to_thread(
        subprocess.run, [tool("pg_dump"), "--version"], capture_output=True, text=True, check=True
    )).stdout
    tool_major = int(re.search(r"(\d+)(?:\.\d+)?", out)[1])
    server_major = int(await conn.fetchval("SHOW server_version_num")) // 10000
    assert tool_major >= server_major, f"pg_dump {tool_major} cannot dump a PostgreSQL {server_major} server"


async def test_dump_and_restore_into_a_fresh_database(conn, db_dsn, empty_db_dsn, tmp_path):
    await charge_boxes.add_charge_boxes(
        conn, ["CB-0001", "CB-0002"], "a-charger-key-0123456789", site_name="Depot", site_address="1 Main St"
    )
    await customers.add_customer(conn, "ana@example.com", name="Ana", lago_subscription_id="sub_ana")
    await id_tags.add_id_tag(conn, "TAG-ANA-1", customer_email="ana@example.com")
    await id_tags.set_blocked(conn, "TAG-ANA-1", True)
    before = await snapshot(conn)
    assert len(before["charge_boxes"]) == 2 and len(before["migrations"]) == len(load_migrations())

    dump = tmp_path / "polaris.dump"
    await run(tool("pg_dump"), "--format=custom", f"--file={dump}", dsn=db_dsn)
    assert dump.stat().st_size > 0
    listing = await asyncio.to_thread(
        subprocess.run, [tool("pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=True
    )
    assert "schema_migrations" in listing.stdout

    await run(
        tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
        str(dump), dsn=empty_db_dsn,
    )
    restored = await asyncpg.connect(empty_db_dsn)
    try:
        assert await snapshot(restored) == before
        assert await is_current(restored), "the restored database needs no migration"
        # sequences came along: a new row does not collide with restored ids
        await charge_boxes.add_charge_boxes(restored, ["CB-0003"], "a-charger-key-0123456789")
    finally:
        await restored.close()


async def polaris(*args, env):
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**base, **env}
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_polaris_backup_and_restore_commands(conn, db_dsn, empty_db_dsn, tmp_path):
    await charge_boxes.add_charge_boxes(conn, ["CB-0100"], "a-charger-key-0123456789", site_name="Yard")
    await customers.add_customer(conn, "bo@example.com", name="Bo")
    before = await snapshot(conn)
    dump = tmp_path / "nightly.dump"

    code, out, err = await polaris("backup", str(dump), env={"DATABASE_URL": db_dsn})
    assert code == 0, err
    assert out.startswith(f"backup written: {dump} (") and "migration(s) applied" in out
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.partial"))

    code, out, err = await polaris("restore", str(dump), env={"DATABASE_URL": empty_db_dsn})
    assert code == 0, err
    assert "restored" in out and "run `polaris migrate`" not in out
    restored = await asyncpg.connect(empty_db_dsn)
    try:
        assert await snapshot(restored) == before
    finally:
        await restored.close()

    # a second restore into the now populated database is refused, nothing touched
    code, out, err = await polaris("restore", str(dump), env={"DATABASE_URL": empty_db_dsn})
    assert code == 1 and "restore into a new, empty database" in err and "Traceback" not in err


async def test_backup_errors_are_one_line(tmp_path, unused_tcp_port, empty_db_dsn):
    code, _, err = await polaris(
        "backup", str(tmp_path / "x.dump"), env={"DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{unused_tcp_port}/db"}
    )
    assert code == 1 and "cannot reach the Postgres server" in err and "Traceback" not in err
    assert not (tmp_path / "x.dump").exists()
    code, _, err = await polaris("restore", str(tmp_path / "missing.dump"), env={"DATABASE_URL": empty_db_dsn})
    assert code == 1 and "is not a file" in err


def test_backups_doc_uses_the_same_commands():
    doc = (ROOT / "docs" / "backups.md").read_text()
    assert "pg_dump" in doc and "--format=custom" in doc
    assert "pg_restore" in doc and "--no-owner" in doc and "--single-transaction" in doc
    assert "docker compose exec" in doc
