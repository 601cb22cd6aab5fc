"""A refused StartTransaction (Blocked, Invalid, ConcurrentTx) is no session: it never blocks the card."""

from __future__ import annotations

from pathlib import Path

import polaris.db

START = {"connectorId": 1, "idTag": "CARD-1", "meterStart": 1000, "timestamp": "2026-01-01T10:00:00Z"}


async def _card(conn) -> None:
    await conn.execute("INSERT INTO app.id_tags (id_tag) VALUES ('CARD-1')")


async def test_refused_start_without_stop_leaves_the_next_authorize_accepted(client, conn, hooks_web):
    await _card(conn)
    hooks_web.override = "BLOCKED"  # the web process says no (an unpaid account, say)
    started = await client.ok("StartTransaction", START)
    assert started["idTagInfo"]["status"] == "Blocked"
    hooks_web.override = None
    # The charger never sends a StopTransaction for the refused start (third-party simulators
    # and some chargers do this). The card is not charging anywhere:
    for _ in range(3):
        assert (await client.ok("Authorize", {"idTag": "CARD-1"}))["idTagInfo"]["status"] == "Accepted"
    again = await client.ok("StartTransaction", {**START, "connectorId": 2, "timestamp": "2026-01-01T10:05:00Z"})
    assert again["idTagInfo"]["status"] == "Accepted"
    # ...and that later start closed nothing accepted; the refused row on connector 1 is still
    # open until its connector says Available.
    rows = await conn.fetch("SELECT id, id_tag_status, stop_timestamp FROM ocpp.transactions ORDER BY id")
    assert [(r["id_tag_status"], r["stop_timestamp"] is None) for r in rows] == [("Blocked", True), ("Accepted", True)]


async def test_refused_start_is_closed_by_available_or_the_next_start_on_its_connector(client, conn, hooks_web):
    await _card(conn)
    hooks_web.override = "BLOCKED"
    first = (await client.ok("StartTransaction", START))["transactionId"]
    await client.ok("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                                           "timestamp": "2026-01-01T10:01:00Z"})
    row = await conn.fetchrow("SELECT * FROM ocpp.transactions WHERE id = $1", first)
    assert (row["stopped_by"], row["meter_stop"], row["stop_reason"]) == ("inferred", 1000, "DeAuthorized")
    second = (await client.ok("StartTransaction", {**START, "timestamp": "2026-01-01T11:00:00Z"}))["transactionId"]
    hooks_web.override = None
    third = await client.ok("StartTransaction", {**START, "timestamp": "2026-01-01T12:00:00Z"})
    assert third["idTagInfo"]["status"] == "Accepted"
    row = await conn.fetchrow("SELECT stopped_by, stuck_since FROM ocpp.transactions WHERE id = $1", second)
    assert row["stopped_by"] == "inferred" and row["stuck_since"] is None


async def test_concurrent_tx_answer_does_not_count_as_a_session(client, conn):
    await _card(conn)
    assert (await client.ok("StartTransaction", START))["idTagInfo"]["status"] == "Accepted"
    dup = await client.ok("StartTransaction", {**START, "connectorId": 2, "timestamp": "2026-01-01T10:01:00Z"})
    assert dup["idTagInfo"]["status"] == "ConcurrentTx"
    tx = (await conn.fetchrow("SELECT id FROM ocpp.transactions WHERE id_tag_status = 'Accepted'"))["id"]
    await client.ok("StopTransaction", {"transactionId": tx, "meterStop": 2000, "timestamp": "2026-01-01T11:00:00Z"})
    assert (await client.ok("Authorize", {"idTag": "CARD-1"}))["idTagInfo"]["status"] == "Accepted"


async def test_max_active_transactions_of_a_card(client, conn):
    await conn.execute("INSERT INTO app.id_tags (id_tag, max_active_transactions) VALUES ('CARD-1', 2)")
    assert (await client.ok("StartTransaction", START))["idTagInfo"]["status"] == "Accepted"
    assert (await client.ok("Authorize", {"idTag": "CARD-1"}))["idTagInfo"]["status"] == "Accepted"
    await client.ok("StartTransaction", {**START, "connectorId": 2})
    assert (await client.ok("Authorize", {"idTag": "CARD-1"}))["idTagInfo"]["status"] == "ConcurrentTx"


async def test_migration_closes_refused_rows_left_open(conn, charger):
    await _card(conn)
    pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes")
    for n, status in enumerate(("Blocked", "ConcurrentTx", "Accepted", None)):
        await conn.execute(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, id_tag_status, start_timestamp, "
            "meter_start) VALUES ($1, 1, 'CARD-1', $2, now() - make_interval(mins => $3), 5)", pk, status, n)
    sql = (Path(polaris.db.__file__).parent / "migrations" / "0081_rejected_transactions.sql").read_text()
    await conn.execute(sql.split("-- Active sessions")[0])
    rows = await conn.fetch("SELECT id_tag_status, stop_timestamp IS NULL AS open, meter_stop FROM ocpp.transactions "
                            "ORDER BY id")
    assert [(r["id_tag_status"], r["open"]) for r in rows] == [
        ("Blocked", False), ("ConcurrentTx", False), ("Accepted", True), (None, True)]
