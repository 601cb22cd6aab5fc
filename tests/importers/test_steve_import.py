"""`polaris import steve` from a SteVe database in MariaDB, then the chargers connect unchanged.

MariaDB is MARIADB_URL (default mysql://root@127.0.0.1:3306); without one reachable the test
is skipped and says why. SteVe's tables come from its own published schema (steve_schema.sql).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiomysql
import asyncpg
import bcrypt
import pytest

from polaris.importers.steve.source import mysql_params

MARIADB_URL = os.environ.get("MARIADB_URL", "mysql://root@127.0.0.1:3306")
SCHEMA = "\n".join(line for line in (Path(__file__).parent / "steve_schema.sql").read_text().splitlines()
                   if not line.startswith("--"))
OLD_PASSWORD = "steve-password-123"
_n = itertools.count(1)


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture
async def steve_db() -> AsyncIterator[str]:
    """A fresh SteVe database (its tables, no rows) on the MariaDB server; its URL."""
    name = f"polaris_steve_{os.getpid()}_{next(_n)}"
    params = mysql_params(_with_db(MARIADB_URL, "mysql"))
    try:
        admin = await aiomysql.connect(**{**params, "db": None}, autocommit=True, connect_timeout=3)
    except (OSError, aiomysql.Error) as exc:
        pytest.skip(f"no MariaDB reachable at {MARIADB_URL} (set MARIADB_URL): {exc}")
    async with admin.cursor() as cur:
        await cur.execute(f"CREATE DATABASE `{name}`")
    url = _with_db(MARIADB_URL, name)
    conn = await aiomysql.connect(**mysql_params(url), autocommit=True, init_command="SET time_zone = '+00:00'")
    async with conn.cursor() as cur:
        for statement in (s for s in SCHEMA.split(";") if s.strip()):
            await cur.execute(statement)
    conn.close()
    yield url
    async with admin.cursor() as cur:
        await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


async def steve_rows(url: str) -> None:
    """A small SteVe deployment: two chargers (profile 1 with a bcrypt password, profile 0),
    cards with a parent, expiry, a blocked one and an unlimited one, a user with an e-mail and
    one without, a finished and two open sessions, a reservation."""
    soon = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    hashed = bcrypt.hashpw(OLD_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    statements = [
        "INSERT INTO address (address_pk, street, house_number, zip_code, city, country) "
        "VALUES (1, 'Main St', '1', '10115', 'Berlin', 'DE')",
        "INSERT INTO charge_box (charge_box_pk, charge_box_id, registration_status, charge_point_vendor, "
        f"charge_point_model, description, address_pk, security_profile, auth_password) VALUES "
        f"(1, 'CB-OLD', 'Accepted', 'Acme', 'X1', 'car park', 1, 1, '{hashed}'), "
        "(2, 'CB-OPEN', 'Accepted', 'Acme', 'X2', NULL, NULL, 0, NULL)",
        "INSERT INTO connector (connector_pk, charge_box_id, connector_id) VALUES (1, 'CB-OLD', 1), (2, 'CB-OLD', 2), "
        "(3, 'CB-OPEN', 1)",
        "INSERT INTO ocpp_tag (ocpp_tag_pk, id_tag, parent_id_tag, expiry_date, max_active_transaction_count, note) "
        "VALUES (1, 'PARENT', NULL, NULL, 1, NULL), (2, 'CARD-A', 'PARENT', '2030-01-01 00:00:00', 1, 'blue fob'), "
        "(3, 'CARD-B', NULL, NULL, 0, 'lost'), (4, 'CARD-C', NULL, NULL, -1, NULL)",
        "INSERT INTO `user` (user_pk, ocpp_tag_pk, address_pk, first_name, last_name, e_mail) VALUES "
        "(1, 2, 1, 'Alice', 'Liddell', 'Alice@Example.com'), (2, 3, NULL, 'Bob', NULL, NULL)",
        "INSERT INTO transaction_start (transaction_pk, connector_pk, id_tag, start_timestamp, start_value) VALUES "
        "(101, 1, 'CARD-A', '2026-01-01 10:00:00', '1000'), (205, 2, 'CARD-C', '2026-01-02 10:00:00', '2000'), "
        "(206, 3, 'CARD-C', '2026-01-02 11:00:00', '300')",
        "INSERT INTO transaction_stop (transaction_pk, event_timestamp, event_actor, stop_timestamp, stop_value, "
        "stop_reason) VALUES (101, '2026-01-01 11:00:00', 'station', '2026-01-01 11:00:00', '5000', 'Local')",
        "INSERT INTO connector_meter_value (connector_pk, transaction_pk, value_timestamp, value, reading_context, "
        "measurand, unit) VALUES (1, 101, '2026-01-01 10:30:00', '3000', 'Sample.Periodic', "
        "'Energy.Active.Import.Register', 'Wh'), (2, 205, '2026-01-02 10:30:00', '2500', 'Sample.Periodic', "
        "'Energy.Active.Import.Register', 'Wh')",
        "INSERT INTO reservation (reservation_pk, connector_pk, id_tag, start_datetime, expiry_datetime, status) "
        f"VALUES (7, 1, 'CARD-A', NOW(), '{soon}', 'ACCEPTED')",
    ]
    conn = await aiomysql.connect(**mysql_params(url), autocommit=True, init_command="SET time_zone = '+00:00'")
    async with conn.cursor() as cur:
        for s in statements:
            await cur.execute(s)
    conn.close()


async def original_app(dsn: str) -> None:
    """The original web app's tables the importer reads (expressync's schema)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("""
        CREATE TABLE chargers_cache (charge_box_id text PRIMARY KEY, charge_box_pk integer, public_id text UNIQUE);
        CREATE TABLE user_mappings (id serial PRIMARY KEY, steve_ocpp_tag_pk integer NOT NULL UNIQUE,
            steve_ocpp_id_tag text NOT NULL, lago_customer_external_id text, lago_subscription_external_id text);
        CREATE TABLE transaction_sync_state (id serial PRIMARY KEY, steve_transaction_id integer NOT NULL UNIQUE,
            last_synced_meter_value integer NOT NULL, total_kwh_billed numeric(12, 6) DEFAULT 0,
            is_finalized boolean DEFAULT false);
        INSERT INTO chargers_cache VALUES ('CB-OLD', 1, 'k3x9m2pq');
        INSERT INTO user_mappings (steve_ocpp_tag_pk, steve_ocpp_id_tag, lago_subscription_external_id)
            VALUES (2, 'CARD-A', 'sub_alice');
        INSERT INTO transaction_sync_state (steve_transaction_id, last_synced_meter_value, total_kwh_billed, is_finalized)
            VALUES (101, 5000, 4.0, true), (205, 2500, 0.5, false);
    """)
    await conn.close()


def polaris(db_dsn: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db_dsn}
    return subprocess.run([sys.executable, "-m", "polaris", *args], capture_output=True, text=True, env=env,
                          timeout=120)


async def test_import_then_chargers_connect_unchanged_and_sessions_continue(
        steve_db, db_dsn, empty_db_dsn, conn, ocpp, open_charger, tmp_path):
    await steve_rows(steve_db)
    await original_app(empty_db_dsn)
    args = ("import", "steve", "--steve-db", steve_db, "--polaris-db", empty_db_dsn)

    dry = polaris(db_dsn, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would import 2 chargers" in dry.stdout and "would import 3 transactions" in dry.stdout
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charge_boxes") == 0  # a dry run writes nothing

    first = polaris(db_dsn, *args, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["imported"] == {"chargers": 2, "cards": 4, "customers": 1, "transactions": 3, "meter_values": 2,
                                  "reservations": 1}
    assert any("SteVe user 2 (Bob): no e-mail" in why for why in report["notMapped"])
    assert report["nextTransactionId"] == 207

    again = json.loads(polaris(db_dsn, *args, "--json").stdout)  # idempotent: nothing doubled
    assert set(again["imported"].values()) == {0}
    assert again["alreadyHere"]["transactions"] == 3 and again["alreadyHere"]["chargers"] == 2

    boxes = {r["charge_box_id"]: r for r in await conn.fetch(
        "SELECT cb.*, s.address FROM ocpp.charge_boxes cb LEFT JOIN ocpp.sites s ON s.id = cb.site_id")}
    assert (boxes["CB-OLD"]["security_profile"], boxes["CB-OLD"]["public_id"]) == (1, "k3x9m2pq")
    assert boxes["CB-OLD"]["key_hash"] is None and boxes["CB-OLD"]["steve_key_bcrypt"].startswith("$2")
    assert boxes["CB-OLD"]["address"] == "Main St 1, 10115 Berlin, DE"
    assert boxes["CB-OPEN"]["security_profile"] == 0 and len(boxes["CB-OPEN"]["public_id"]) == 10
    tags = {r["id_tag"]: r for r in await conn.fetch("SELECT * FROM app.id_tags")}
    assert tags["CARD-A"]["parent_id_tag"] == "PARENT" and tags["CARD-A"]["expiry_date"].year == 2030
    assert tags["CARD-B"]["blocked"] and tags["CARD-C"]["max_active_transactions"] == -1
    alice = await conn.fetchrow("SELECT c.*, u.email FROM app.customers c JOIN app.users u ON u.id = c.user_id")
    assert (alice["email"], alice["name"], alice["lago_subscription_id"]) == ("alice@example.com", "Alice Liddell",
                                                                              "sub_alice")
    assert tags["CARD-A"]["customer_id"] == alice["id"]
    txs = {r["id"]: r for r in await conn.fetch("SELECT * FROM ocpp.transactions")}
    assert set(txs) == {101, 205, 206}
    assert (txs[101]["meter_stop"], txs[101]["stopped_by"]) == (5000, "charger") and txs[205]["stop_timestamp"] is None
    # Each session belongs to its card's owner as imported, so Alice's portal shows her history.
    owner = {t.lower(): row["customer_id"] for t, row in tags.items()}
    assert {i: t["customer_id"] for i, t in txs.items()} == {i: owner.get(t["id_tag"].lower()) for i, t in txs.items()}
    assert alice["id"] in {t["customer_id"] for t in txs.values()}
    billed = {r["transaction_id"]: r for r in await conn.fetch("SELECT * FROM billing.transaction_sync_state")}
    assert (billed[101]["billed_wh"], billed[101]["done"]) == (4000, True)
    assert (billed[205]["billed_wh"], billed[205]["done"]) == (500, False) and 206 not in billed
    assert await conn.fetchval("SELECT count(*) FROM ocpp.meter_values WHERE transaction_id = 101") == 1
    assert await conn.fetchval("SELECT status FROM ocpp.reservations WHERE id = 7") == "Accepted"

    steve_path = ocpp.ws_url.replace("/ocpp", "/steve/websocket/CentralSystemService")
    # The charger with a password: its old one, checked against SteVe's bcrypt hash once.
    refused = pytest.raises(Exception)
    with refused:
        await open_charger(steve_path, "CB-OLD", "not-the-old-password")
    old = await open_charger(steve_path, "CB-OLD", OLD_PASSWORD)
    assert (await old.boot())["status"] == "Accepted"
    row = await conn.fetchrow("SELECT key_hash, steve_key_bcrypt FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-OLD'")
    assert row["key_hash"] is not None and row["steve_key_bcrypt"] is None
    stopped = await old.ok("StopTransaction", {"transactionId": 205, "meterStop": 2600, "timestamp": "2026-01-02T12:00:00Z"})
    assert "idTagInfo" not in stopped
    await old.ws.close()
    ocpp.server.admission.forget()
    again_old = await open_charger(steve_path, "CB-OLD", OLD_PASSWORD)  # now against our own hash
    await again_old.ws.close()
    # The charger without one: by id alone, at SteVe's URL.
    open_one = await open_charger(steve_path, "CB-OPEN", password=None)
    assert (await open_one.boot())["status"] == "Accepted"
    await open_one.ok("StopTransaction", {"transactionId": 206, "meterStop": 900, "timestamp": "2026-01-02T12:00:00Z"})
    new = await open_one.ok("StartTransaction", {"connectorId": 1, "idTag": "CARD-C", "meterStart": 900,
                                                 "timestamp": "2026-01-03T10:00:00Z"})
    assert new["transactionId"] >= 207 and new["idTagInfo"]["status"] == "Accepted"
    await open_one.ws.close()
    rows = {r["id"]: r for r in await conn.fetch("SELECT id, meter_stop, stopped_by FROM ocpp.transactions")}
    assert (rows[205]["meter_stop"], rows[205]["stopped_by"]) == (2600, "charger")
    assert (rows[206]["meter_stop"], rows[206]["stopped_by"]) == (900, "charger")
    assert await conn.fetchval("SELECT count(*) FROM ocpp.failed_stops") == 0


def test_a_bad_steve_url_is_one_clear_line(db_dsn):
    r = polaris(db_dsn, "import", "steve", "--steve-db", "postgresql://nope/x")
    assert r.returncode == 1 and "starts with mysql://" in r.stderr and "Traceback" not in r.stderr
    r = polaris(db_dsn, "import", "steve", "--steve-db", "mysql://root@127.0.0.1:1/stevedb")
    assert r.returncode == 1 and "cannot read SteVe's database" in r.stderr and "Traceback" not in r.stderr
