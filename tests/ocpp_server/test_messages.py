"""Every charger-initiated OCPP 1.6 message over a real WebSocket, checked in Postgres."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg

from polaris.db.notify import CHARGER_EVENTS, TRANSACTION_EVENTS
from polaris.db.repos import charge_boxes, id_tags
from polaris.db.repos.customers import add_customer


def _aware(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert ts.tzinfo is not None, text
    return ts


async def _pk(conn: asyncpg.Connection, cbid: str) -> int:
    return await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = $1", cbid)


async def test_boot_notification_accepted_stores_details(client, conn, ocpp_settings):
    reply = await client.ok("BootNotification", {
        "chargePointVendor": "A vendor name well over twenty characters",  # real chargers do this
        "chargePointModel": "Model-7",
        "chargePointSerialNumber": "SERIAL-0123456789-0123456789-01",
        "firmwareVersion": "1.2.3",
        "iccid": "8944", "imsi": "2620", "meterType": "MID", "meterSerialNumber": "M-1",
        "someVendorExtra": True,
    })
    assert reply["status"] == "Accepted"
    assert reply["interval"] == ocpp_settings.OCPP_HEARTBEAT_INTERVAL
    assert abs(_aware(reply["currentTime"]) - datetime.now(UTC)) < timedelta(seconds=5)
    row = await conn.fetchrow("SELECT * FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-0001'")
    assert row["vendor"] == "A vendor name well over twenty characters"
    assert row["model"] == "Model-7"
    assert row["charge_point_serial_number"] == "SERIAL-0123456789-0123456789-01"
    assert row["firmware_version"] == "1.2.3"
    assert row["meter_serial_number"] == "M-1"
    assert row["last_boot_at"] is not None


async def test_boot_pending_and_rejected_get_retry_interval(client, conn):
    await conn.execute("UPDATE ocpp.charge_boxes SET registration_status = 'Pending'")
    reply = await client.boot()
    assert (reply["status"], reply["interval"]) == ("Pending", 60)
    await conn.execute("UPDATE ocpp.charge_boxes SET registration_status = 'Rejected'")
    assert (await client.boot())["status"] == "Rejected"
    await conn.execute("UPDATE ocpp.charge_boxes SET registration_status = 'Accepted'")
    assert (await client.boot())["status"] == "Accepted"


async def test_boot_never_closes_open_transactions(client, conn):
    await client.boot()
    start = await client.ok("StartTransaction", {
        "connectorId": 1, "idTag": "ANY", "meterStart": 0, "timestamp": "2026-01-01T10:00:00Z"})
    await client.boot()
    row = await conn.fetchrow("SELECT stop_timestamp FROM ocpp.transactions WHERE id = $1",
                              start["transactionId"])
    assert row["stop_timestamp"] is None


async def test_heartbeat_answers_utc_and_is_written_in_batches(client, conn, ocpp, wait_until):
    reply = await client.ok("Heartbeat", {})
    ts = _aware(reply["currentTime"])
    assert ts.utcoffset() == timedelta(0)
    await ocpp.server.presence.flush()
    at = await conn.fetchval("SELECT last_heartbeat_at FROM ocpp.charge_boxes")
    assert at is not None and abs(at - datetime.now(UTC)) < timedelta(seconds=5)


async def test_status_notification_connector_0_and_1_with_history(client, conn):
    await conn.add_listener(CHARGER_EVENTS, lambda *a: events.append(json.loads(a[3])))
    events: list[dict] = []
    await client.ok("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
    await client.ok("StatusNotification", {
        "connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted", "info": "RCD tripped",
        "vendorId": "acme", "vendorErrorCode": "E42", "timestamp": "2026-03-01T12:00:00"})
    # An older report arriving late never overwrites the newer state.
    await client.ok("StatusNotification", {
        "connectorId": 1, "errorCode": "NoError", "status": "Available",
        "timestamp": "2026-03-01T11:00:00Z"})
    rows = {r["connector_id"]: r for r in await conn.fetch("SELECT * FROM ocpp.connectors")}
    assert rows[0]["status"] == "Available"
    assert rows[1]["status"] == "Faulted"
    assert rows[1]["error_code"] == "GroundFailure"
    assert rows[1]["vendor_error_code"] == "E42"
    assert rows[1]["status_at"] == datetime(2026, 3, 1, 12, tzinfo=UTC)  # naive read as UTC
    assert await conn.fetchval("SELECT count(*) FROM ocpp.connector_status_history") == 3
    await asyncio.sleep(0.1)
    assert {"event": "status", "charge_box_id": "CB-0001", "connector_id": 1, "status": "Faulted",
            "error_code": "GroundFailure"} in events


async def _customer_tag(conn, tag: str, **fields) -> None:
    await add_customer(conn, f"{tag.lower()}@example.com")
    await id_tags.add_id_tag(conn, tag, customer_email=f"{tag.lower()}@example.com")
    for column, value in fields.items():
        await conn.execute(f"UPDATE app.id_tags SET {column} = $2 WHERE id_tag = $1", tag, value)


async def test_authorize_statuses(client, conn):
    future = datetime.now(UTC) + timedelta(days=30)
    await _customer_tag(conn, "GOOD", expiry_date=future, parent_id_tag="FAMILY")
    await _customer_tag(conn, "BLOCKED", blocked=True)
    await _customer_tag(conn, "OLD", expiry_date=datetime.now(UTC) - timedelta(days=1))
    await _customer_tag(conn, "BUSY")
    good = (await client.ok("Authorize", {"idTag": "good"}))["idTagInfo"]  # case-insensitive
    assert good["status"] == "Accepted"
    assert good["parentIdTag"] == "FAMILY"
    assert abs(_aware(good["expiryDate"]) - future) < timedelta(seconds=1)
    assert (await client.ok("Authorize", {"idTag": "BLOCKED"}))["idTagInfo"]["status"] == "Blocked"
    assert (await client.ok("Authorize", {"idTag": "OLD"}))["idTagInfo"]["status"] == "Expired"
    assert (await client.ok("Authorize", {"idTag": "NOBODY"}))["idTagInfo"] == {"status": "Invalid"}
    await client.ok("StartTransaction", {"connectorId": 1, "idTag": "BUSY", "meterStart": 0,
                                         "timestamp": datetime.now(UTC).isoformat()})
    assert (await client.ok("Authorize", {"idTag": "busy"}))["idTagInfo"]["status"] == "ConcurrentTx"
    # An Authorize never stores a tag nobody registered (only a started session does).
    assert await conn.fetchval("SELECT count(*) FROM app.id_tags WHERE id_tag = 'NOBODY'") == 0
    await conn.execute("UPDATE app.customers SET active = false")
    assert (await client.ok("Authorize", {"idTag": "GOOD"}))["idTagInfo"]["status"] == "Blocked"


async def test_start_transaction_ids_from_database_and_resend_gets_same_id(client, conn):
    await _customer_tag(conn, "TAG1")
    events: list[dict] = []
    await conn.add_listener(TRANSACTION_EVENTS, lambda *a: events.append(json.loads(a[3])))
    payload = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000,
               "timestamp": "2026-02-01T08:00:00.000Z"}
    first = await client.ok("StartTransaction", payload)
    assert first["idTagInfo"]["status"] == "Accepted"
    again = await client.ok("StartTransaction", dict(payload, idTag="tag1"))  # lost reply, resent
    assert again["transactionId"] == first["transactionId"]
    row = await conn.fetchrow("SELECT * FROM ocpp.transactions WHERE id = $1", first["transactionId"])
    assert row["meter_start"] == 1000
    assert row["start_timestamp"] == datetime(2026, 2, 1, 8, tzinfo=UTC)
    assert row["id_tag_status"] == "Accepted"
    assert await conn.fetchval("SELECT count(*) FROM ocpp.transactions") == 1
    await asyncio.sleep(0.1)
    assert events == [{"event": "started", "transaction_id": first["transactionId"],
                       "charge_box_id": "CB-0001", "connector_id": 1, "id_tag": "TAG1"}]


async def test_late_start_with_unknown_tag_is_stored_not_lost(client, conn):
    reply = await client.ok("StartTransaction", {"connectorId": 2, "idTag": "deadbeef", "meterStart": 5,
                                                 "timestamp": "2026-01-01T00:00:00+01:00"})
    assert reply["idTagInfo"]["status"] == "Invalid"
    assert reply["transactionId"] > 0
    tag = await conn.fetchrow("SELECT * FROM app.id_tags WHERE id_tag = 'deadbeef'")
    assert tag["unknown"] is True
    tx = await conn.fetchrow("SELECT * FROM ocpp.transactions WHERE id = $1", reply["transactionId"])
    assert tx["id_tag_status"] == "Invalid"
    assert tx["start_timestamp"] == datetime(2025, 12, 31, 23, tzinfo=UTC)


async def test_concurrent_tx_on_start_elsewhere(client, conn):
    await _customer_tag(conn, "TWICE")
    ts = datetime.now(UTC).isoformat()
    await client.ok("StartTransaction", {"connectorId": 1, "idTag": "TWICE", "meterStart": 0, "timestamp": ts})
    second = await client.ok("StartTransaction", {"connectorId": 2, "idTag": "TWICE", "meterStart": 0,
                                                  "timestamp": ts})
    assert second["idTagInfo"]["status"] == "ConcurrentTx"


async def test_meter_values_tolerant_parsing_in_one_batch(client, conn):
    start = await client.ok("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                 "timestamp": "2026-01-01T00:00:00Z"})
    tx = start["transactionId"]
    await client.ok("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-01T00:05:00", "sampledValue": [
            {"value": "3058620.000", "measurand": "Energy.Active.Import.Register", "unit": "Wh",
             "context": "Sample.Periodic", "location": "Outlet"},
            {"value": 7.2, "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"},
            {"value": "230", "measurand": "Voltage", "unit": "V", "phase": "N"},
            {"value": "1", "measurand": "Request.Energy", "unit": "Celcius"},  # not in the 1.6 enums
        ]},
        {"timestamp": "2026-01-01T00:06:00Z", "sampledValue": [{"value": "3.1"}]},
    ]})
    rows = await conn.fetch("SELECT * FROM ocpp.meter_values ORDER BY id")
    assert len(rows) == 5
    assert all(r["transaction_id"] == tx for r in rows)
    assert rows[0]["value"] == "3058620.000" and rows[0]["value_num"] == 3058620.0
    assert rows[0]["sampled_at"] == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert (rows[1]["value"], rows[1]["value_num"], rows[1]["unit"], rows[1]["phase"]) == ("7.2", 7.2, "kW", "L1")
    assert rows[3]["measurand"] == "Request.Energy" and rows[3]["unit"] == "Celcius"
    assert rows[4]["measurand"] is None


async def test_meter_values_for_another_chargers_transaction_are_kept_unlinked(client, conn):
    await client.ok("MeterValues", {"connectorId": 1, "transactionId": 999999, "meterValue": [
        {"timestamp": "2026-01-01T00:05:00Z", "sampledValue": [{"value": "10"}]}]})
    row = await conn.fetchrow("SELECT * FROM ocpp.meter_values")
    assert row["transaction_id"] is None and row["value"] == "10"


async def test_stop_transaction_stores_everything_and_resend_changes_nothing(client, conn):
    await _customer_tag(conn, "TAG1")
    start = await client.ok("StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 100,
                                                 "timestamp": "2026-01-01T10:00:00Z"})
    tx = start["transactionId"]
    events: list[dict] = []
    await conn.add_listener(TRANSACTION_EVENTS, lambda *a: events.append(json.loads(a[3])))
    stop = {"transactionId": tx, "meterStop": 7100, "timestamp": "2026-01-01T11:00:00Z",
            "idTag": "TAG1", "reason": "EVDisconnected", "transactionData": [
                {"timestamp": "2026-01-01T11:00:00Z", "sampledValue": [
                    {"value": "7.1", "unit": "kWh", "context": "Transaction.End"},
                    {"value": "OCMF|{...}|{...}", "format": "SignedData", "context": "Transaction.End"}]}]}
    reply = await client.ok("StopTransaction", stop)
    assert reply["idTagInfo"]["status"] == "Accepted"
    row = await conn.fetchrow("SELECT * FROM ocpp.transactions WHERE id = $1", tx)
    assert (row["meter_stop"], row["stop_reason"], row["stopped_by"]) == (7100, "EVDisconnected", "charger")
    assert row["stop_timestamp"] == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert row["transaction_data"][0]["sampledValue"][1]["value"] == "OCMF|{...}|{...}"
    assert await conn.fetchval("SELECT count(*) FROM ocpp.meter_values WHERE transaction_id = $1", tx) == 2
    await client.ok("StopTransaction", dict(stop, meterStop=9999))  # resent: nothing changes
    assert await conn.fetchval("SELECT meter_stop FROM ocpp.transactions WHERE id = $1", tx) == 7100
    await asyncio.sleep(0.1)
    assert [e["event"] for e in events] == ["stopped"]


async def test_stop_for_unknown_or_bad_transaction_is_answered_and_kept(client, conn):
    for bad_id in (424242, -1, 0):
        reply = await client.ok("StopTransaction", {"transactionId": bad_id, "meterStop": 5,
                                                    "timestamp": "2026-01-01T11:00:00Z"})
        assert reply == {}
    rows = await conn.fetch("SELECT * FROM ocpp.failed_stops ORDER BY id")
    assert [(r["transaction_id"], r["reason"]) for r in rows] == [
        (424242, "unknown_transaction"), (-1, "unknown_transaction"), (0, "unknown_transaction")]
    assert rows[0]["meter_stop"] == 5 and rows[0]["payload"]["transactionId"] == 424242


async def test_data_transfer_unknown_vendor_and_registered_handler(client, ocpp, conn, wait_until):
    reply = await client.ok("DataTransfer", {"vendorId": "com.example", "messageId": "x", "data": "{}"})
    assert reply == {"status": "UnknownVendorId"}

    async def echo(cp, message_id, data):
        return "Accepted", f"{cp.id}:{message_id}:{data}"

    ocpp.server.data_transfer_handlers["org.polaris"] = echo
    reply = await client.ok("DataTransfer", {"vendorId": "org.polaris", "messageId": "ping", "data": "1"})
    assert reply == {"status": "Accepted", "data": "CB-0001:ping:1"}
    rows = await wait_until(lambda: conn.fetch(
        "SELECT * FROM ocpp.message_journal WHERE direction = 'cp_to_cs' ORDER BY id"))
    await wait_until(lambda: conn.fetchval("SELECT count(*) = 2 FROM ocpp.message_journal"))
    assert rows[0]["action"] == "DataTransfer"


async def test_diagnostics_and_firmware_status(client, conn):
    assert await client.ok("DiagnosticsStatusNotification", {"status": "Uploaded"}) == {}
    assert await client.ok("FirmwareStatusNotification", {"status": "Installing"}) == {}
    row = await conn.fetchrow("SELECT * FROM ocpp.charge_boxes")
    assert (row["diagnostics_status"], row["firmware_status"]) == ("Uploaded", "Installing")


async def test_connected_state_and_notify(ocpp, charger, conn, open_charger, wait_until):
    events: list[dict] = []
    await conn.add_listener(CHARGER_EVENTS, lambda *a: events.append(json.loads(a[3])))
    c = await open_charger(ocpp.ws_url)
    await c.boot()
    await wait_until(lambda: conn.fetchval("SELECT connected FROM ocpp.charge_boxes"))
    assert await conn.fetchval("SELECT connected_instance FROM ocpp.charge_boxes") == "test"
    await c.ws.close()
    await wait_until(lambda: conn.fetchval("SELECT NOT connected FROM ocpp.charge_boxes"))
    await wait_until(lambda: any(e["event"] == "disconnected" for e in events))
    kinds = [e["event"] for e in events]
    assert kinds.count("connected") == 1 and "boot" in kinds
    pk = await _pk(conn, "CB-0001")
    assert (await charge_boxes.get_credentials(conn, "CB-0001"))["id"] == pk
