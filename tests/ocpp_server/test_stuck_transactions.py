"""Sessions that never got their StopTransaction: flagged as stuck, force-closed by an operator."""

from __future__ import annotations

import asyncio
import json

import pytest

from polaris.db.errors import InvalidInput, NotFound
from polaris.db.notify import TRANSACTION_EVENTS
from polaris.db.repos import transactions


async def _start(client, connector=1, meter_start=1000, ts="2026-01-01T10:00:00Z", tag="T1") -> int:
    reply = await client.ok("StartTransaction", {"connectorId": connector, "idTag": tag,
                                                 "meterStart": meter_start, "timestamp": ts})
    return reply["transactionId"]


async def test_force_close_uses_the_last_energy_reading(client, conn):
    tx = await _start(client)
    await client.ok("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-01T10:30:00Z", "sampledValue": [
            {"value": "4.5", "unit": "kWh"},  # kWh: must become 4500 Wh
            {"value": "230", "measurand": "Voltage", "unit": "V"}]},
        {"timestamp": "2026-01-01T10:20:00Z", "sampledValue": [{"value": "3000", "unit": "Wh"}]},
    ]})
    events: list[dict] = []
    await conn.add_listener(TRANSACTION_EVENTS, lambda *a: events.append(json.loads(a[3])))
    row = await transactions.force_close_transaction(conn, tx)
    assert (row["meter_stop"], row["stopped_by"]) == (4500, "operator")
    assert row["stop_timestamp"].isoformat() == "2026-01-01T10:30:00+00:00"
    await asyncio.sleep(0.1)
    assert events and events[0]["event"] == "stopped" and events[0]["transaction_id"] == tx
    with pytest.raises(InvalidInput):
        await transactions.force_close_transaction(conn, tx)
    with pytest.raises(NotFound):
        await transactions.force_close_transaction(conn, 987654)


async def test_force_close_without_readings_ends_with_zero_energy(client, conn):
    tx = await _start(client, meter_start=777)
    row = await transactions.force_close_transaction(conn, tx)
    assert row["meter_stop"] == 777


async def test_late_stop_after_force_close_is_kept_not_applied(client, conn):
    tx = await _start(client)
    await transactions.force_close_transaction(conn, tx)
    reply = await client.ok("StopTransaction", {"transactionId": tx, "meterStop": 9000,
                                                "timestamp": "2026-01-01T12:00:00Z"})
    assert reply == {}
    assert await conn.fetchval("SELECT meter_stop FROM ocpp.transactions WHERE id = $1", tx) == 1000
    kept = await conn.fetchrow("SELECT * FROM ocpp.failed_stops")
    assert (kept["transaction_id"], kept["reason"], kept["meter_stop"]) == (tx, "already_closed", 9000)


async def test_stuck_flag_after_configured_hours_and_cleared_by_fresh_data(client, conn):
    tx = await _start(client)
    await conn.execute("UPDATE ocpp.transactions SET created_at = now() - interval '30 hours'")
    assert await transactions.flag_stuck_transactions(conn, 24) == [tx]
    assert await transactions.flag_stuck_transactions(conn, 24) == []  # flagged once
    stuck = await transactions.list_open_transactions(conn, stuck_only=True)
    assert [r["id"] for r in stuck] == [tx]
    await client.ok("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-02T16:00:00Z", "sampledValue": [{"value": "2000"}]}]})
    assert await conn.fetchval("SELECT stuck_since FROM ocpp.transactions WHERE id = $1", tx) is None


async def test_new_session_on_same_connector_flags_the_old_one(client, conn):
    # Accepted sessions (a refused start is closed instead: test_messages covers that).
    await conn.execute("INSERT INTO app.id_tags (id_tag) VALUES ('T1'), ('T2')")
    old = await _start(client, ts="2026-01-01T10:00:00Z")
    new = await _start(client, ts="2026-01-02T10:00:00Z", tag="T2")
    rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM ocpp.transactions")}
    assert rows[old]["stuck_since"] is not None and rows[old]["stop_timestamp"] is None
    assert rows[new]["stuck_since"] is None


async def test_force_close_through_the_command_api(ocpp, client, conn):
    tx = await _start(client)
    await conn.execute("UPDATE ocpp.transactions SET stuck_since = now()")
    status, body = await ocpp.api("GET", "/api/v1/transactions?stuck=true")
    assert status == 200 and [t["id"] for t in body["transactions"]] == [tx]
    status, body = await ocpp.api("POST", f"/api/v1/transactions/{tx}/force-close")
    assert status == 200 and body["transaction"]["meter_stop"] == 1000
    assert body["transaction"]["stopped_by"] == "operator"
    status, body = await ocpp.api("POST", f"/api/v1/transactions/{tx}/force-close")
    assert status == 409 and "already stopped" in body["message"]
    status, body = await ocpp.api("POST", "/api/v1/transactions/55555/force-close")
    assert status == 404
    status, body = await ocpp.api("POST", "/api/v1/transactions/abc/force-close")
    assert status == 400
