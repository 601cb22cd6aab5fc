"""OCPP 2.0.1 stations on the same server: driven by the `ocpp` library's own v201 ChargePoint
over real WebSockets and Postgres, and the resulting sessions billed by the sync, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from ocpp.v201 import ChargePoint as LibraryStation
from ocpp.v201 import call
from websockets.asyncio.client import connect

from polaris.db.repos import customers, id_tags
from polaris.sim.lago import FakeLago
from polaris.sync.lago import LagoClient
from polaris.sync.worker import SyncEngine
from tests.sync.sync_helpers import short

from .conftest import CHARGER_ID, CHARGER_KEY, basic, open_client

CARD = "04A2B3C4D5E6F7"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def energy(wh: float, minutes: float, *, context: str = "Sample.Periodic", kwh: bool = False) -> list[dict]:
    unit = {"unit": "kWh"} if kwh else {"unit": "Wh"}
    return [{"timestamp": ts(minutes), "sampled_value": [{
        "value": wh / 1000 if kwh else wh, "measurand": "Energy.Active.Import.Register", "context": context,
        "unit_of_measure": unit}]}]


class Station:
    """The library's v201 ChargePoint on a real WebSocket, its reader running in a task."""

    def __init__(self, cp: LibraryStation, ws, task: asyncio.Task):
        self.cp, self.ws, self.task = cp, ws, task

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def event(self, event_type: str, seq_no: int, tx: str, minutes: float, *, trigger: str = "MeterValuePeriodic",
                    meter: list | None = None, id_token: dict | None = None, offline: bool = False,
                    stopped_reason: str | None = None, evse: dict | None = None):
        info = {"transaction_id": tx, **({"stopped_reason": stopped_reason} if stopped_reason else {})}
        return await self.cp.call(call.TransactionEvent(
            event_type=event_type, timestamp=ts(minutes), trigger_reason=trigger, seq_no=seq_no,
            transaction_info=info, meter_value=meter, id_token=id_token, offline=offline or None, evse=evse))


async def open_station(ws_url: str, station_cls: type[LibraryStation] = LibraryStation,
                       subprotocols: tuple[str, ...] = ("ocpp2.0.1", "ocpp1.6")) -> Station:
    ws = await connect(f"{ws_url}/{CHARGER_ID}", subprotocols=list(subprotocols),  # type: ignore[arg-type]
                       additional_headers={"Authorization": basic(CHARGER_ID, CHARGER_KEY)}, open_timeout=5)
    assert ws.subprotocol == "ocpp2.0.1"
    cp = station_cls(CHARGER_ID, ws, response_timeout=5)
    task = asyncio.create_task(cp.start())
    return Station(cp, ws, task)


@pytest.fixture
async def station(ocpp, charger) -> AsyncIterator[Station]:
    s = await open_station(ocpp.ws_url)
    yield s
    await s.close()


@pytest.fixture
async def card(conn: asyncpg.Connection) -> str:
    await customers.add_customer(conn, "ev@example.com", lago_subscription_id="sub_ev")
    await id_tags.add_id_tag(conn, CARD, customer_email="ev@example.com")
    return CARD


async def boot(s: Station):
    return await s.cp.call(call.BootNotification(
        charging_station={"model": "Wallbox-2", "vendor_name": "Acme Energy Systems GmbH", "serial_number": "S-1",
                          "firmware_version": "2.0.1-7"}, reason="PowerUp"))


async def test_newest_version_wins_a_pin_holds_and_the_version_is_stored(ocpp, charger, conn):
    s = await open_station(ocpp.ws_url)  # offers 2.0.1 and 1.6: gets 2.0.1
    try:
        answer = await boot(s)
        assert answer.status == "Accepted" and answer.interval > 0
        heartbeat = await s.cp.call(call.Heartbeat())
        assert heartbeat.current_time.endswith("Z")
    finally:
        await s.close()
    row = await conn.fetchrow("SELECT ocpp_version, ocpp_protocol, vendor, model FROM ocpp.charge_boxes "
                              "WHERE charge_box_id = $1", CHARGER_ID)
    assert dict(row) == {"ocpp_version": "2.0.1", "ocpp_protocol": "ocpp2.0.1",
                         "vendor": "Acme Energy Systems GmbH", "model": "Wallbox-2"}
    # Pinned to 1.6: the same offer now gets 1.6; a station offering only 2.0.1 is refused.
    await conn.execute("UPDATE ocpp.charge_boxes SET ocpp_version_pinned = '1.6' WHERE charge_box_id = $1",
                       CHARGER_ID)
    ocpp.server.admission.forget()
    c = await open_client(ocpp.ws_url, subprotocols=["ocpp2.0.1", "ocpp1.6"])
    assert c.ws.subprotocol == "ocpp1.6"
    await c.ws.close()
    with pytest.raises(Exception, match="400"):
        await open_client(ocpp.ws_url, subprotocols=["ocpp2.0.1"])


async def test_authorize_id_token_types(station, card, conn):
    await boot(station)
    ok = await station.cp.call(call.Authorize(id_token={"id_token": card.lower(), "type": "ISO14443"}))
    assert ok.id_token_info["status"] == "Accepted"
    central = await station.cp.call(call.Authorize(id_token={"id_token": card, "type": "Central"}))
    assert central.id_token_info["status"] == "Accepted"
    unknown = await station.cp.call(call.Authorize(id_token={"id_token": "DEADBEEF", "type": "ISO14443"}))
    assert unknown.id_token_info["status"] == "Invalid"
    # An eMAID longer than our cards' 20 characters: answered, never stored as a card.
    emaid = await station.cp.call(call.Authorize(id_token={"id_token": "DE-ABC-C12345678-X-LONG", "type": "eMAID"}))
    assert emaid.id_token_info["status"] == "Invalid"
    assert await conn.fetchval("SELECT count(*) FROM app.id_tags WHERE id_tag LIKE 'DE-ABC%'") == 0
    await conn.execute("UPDATE app.id_tags SET blocked = true WHERE id_tag = $1", card)
    blocked = await station.cp.call(call.Authorize(id_token={"id_token": card, "type": "ISO14443"}))
    assert blocked.id_token_info["status"] == "Blocked"


async def test_transaction_life_cycle_with_a_gap_and_a_resend_is_one_session(station, card, conn, wait_until):
    await boot(station)
    token = {"id_token": card, "type": "ISO14443"}
    started = await station.event("Started", 0, "tx-abc-1", 0, trigger="Authorized", id_token=token,
                                  meter=energy(10_000, 0, context="Transaction.Begin"), evse={"id": 1, "connector_id": 1})
    assert started.id_token_info["status"] == "Accepted"
    await station.event("Updated", 1, "tx-abc-1", 15, meter=energy(12_500, 15, kwh=True))
    # seqNo 2 never arrives (a gap); a resent Started (lost reply) with a new seqNo; a duplicate seqNo 3.
    await station.event("Updated", 3, "tx-abc-1", 30, meter=energy(15_000, 30))
    again = await station.event("Started", 4, "tx-abc-1", 0, trigger="Authorized", id_token=token,
                                meter=energy(10_000, 0, context="Transaction.Begin"), evse={"id": 1})
    assert again.id_token_info["status"] == "Accepted"
    await station.event("Updated", 3, "tx-abc-1", 30, meter=energy(15_000, 30))
    await station.event("Ended", 5, "tx-abc-1", 45, trigger="EVCommunicationLost", stopped_reason="EVDisconnected",
                        meter=energy(17_500, 45, context="Transaction.End"))
    rows = await conn.fetch("SELECT * FROM ocpp.transactions")
    assert len(rows) == 1
    tx = rows[0]
    assert (tx["meter_start"], tx["meter_stop"], tx["stop_reason"], tx["id_tag"]) == (
        10_000, 17_500, "EVDisconnected", card)
    assert tx["start_timestamp"] == T0 and tx["stop_timestamp"] == T0 + timedelta(minutes=45)
    mapping = await conn.fetchrow("SELECT * FROM ocpp.transaction_ids")
    assert (mapping["transaction_id"], mapping["gaps"], mapping["last_seq_no"]) == (tx["id"], 1, 5)
    assert await conn.fetchval("SELECT count(*) FROM ocpp.transaction_events") == 5  # the duplicate once
    readings = await conn.fetch("SELECT value_num, unit FROM ocpp.meter_values WHERE transaction_id = $1 "
                                "ORDER BY sampled_at", tx["id"])
    assert [(r["value_num"], r["unit"]) for r in readings] == [
        (10_000, "Wh"), (12.5, "kWh"), (15_000, "Wh"), (17_500, "Wh")]
    # An Updated replayed after the Ended never reopens the session.
    await station.event("Updated", 6, "tx-abc-1", 50, meter=energy(17_500, 50))
    assert await conn.fetchval("SELECT stop_timestamp IS NOT NULL FROM ocpp.transactions") is True


async def test_cardless_start_authorized_later_is_not_a_refused_card(station, card, conn):
    await boot(station)
    await station.event("Started", 0, "plug-1", 0, trigger="CablePluggedIn", evse={"id": 2, "connector_id": 1},
                        meter=energy(500, 0))
    tx = await conn.fetchrow("SELECT connector_id, id_tag, id_tag_status, meter_start FROM ocpp.transactions")
    assert dict(tx) == {"connector_id": 2, "id_tag": "", "id_tag_status": None, "meter_start": 500}
    later = await station.event("Updated", 1, "plug-1", 1, trigger="Authorized",
                                id_token={"id_token": card, "type": "ISO14443"})
    assert later.id_token_info["status"] == "Accepted"
    tx = await conn.fetchrow("SELECT id_tag, id_tag_status, customer_id FROM ocpp.transactions")
    assert tx["id_tag"] == card and tx["id_tag_status"] == "Accepted" and tx["customer_id"] is not None


async def test_offline_queue_replayed_in_order_then_billed_once(ocpp, charger, card, conn, pool):
    s = await open_station(ocpp.ws_url)
    await boot(s)
    await s.close()
    # The station was offline for the whole session: its queue arrives on reconnect, in order.
    s = await open_station(ocpp.ws_url)
    try:
        await boot(s)
        token = {"id_token": card, "type": "ISO14443"}
        await s.event("Started", 0, "off-7", 0, trigger="Authorized", id_token=token, offline=True,
                      evse={"id": 1, "connector_id": 1})  # no register reading in the Started
        await s.event("Updated", 1, "off-7", 10, meter=energy(2_000_000, 10), offline=True)
        await s.event("Updated", 2, "off-7", 40, meter=energy(2_008_000, 40), offline=True)
        await s.event("Ended", 3, "off-7", 60, trigger="StopAuthorized", stopped_reason="Local", id_token=token,
                      offline=True)  # nor in the Ended: meterStop from the highest reading
        await s.cp.call(call.StatusNotification(timestamp=ts(61), connector_status="Available", evse_id=1,
                                                connector_id=1))
    finally:
        await s.close()
    tx = await conn.fetchrow("SELECT id, meter_start, meter_stop, stop_timestamp FROM ocpp.transactions")
    assert (tx["meter_start"], tx["meter_stop"]) == (2_000_000, 2_008_000)
    assert tx["stop_timestamp"] == T0 + timedelta(hours=1)
    offline = await conn.fetchval("SELECT bool_and(offline) FROM ocpp.transaction_events")
    assert offline is True

    lago = FakeLago()
    await lago.start()
    client = LagoClient(lago.url, lago.api_key, timeout=2.0, backoff_base=0.01, backoff_cap=0.05, max_attempts=3)
    try:
        lago.add_subscription("sub_ev")
        settings = ocpp.server.settings.model_copy(update={"LAGO_API_URL": lago.url,
                                                           "SYNC_LOOKBACK_MINUTES": 10_000})
        engine = SyncEngine(pool, client, settings)
        first = await engine.run()
        assert first.status == "succeeded", first.error
        second = await engine.run()
        assert second.events_sent == 0
        assert lago.wh_by_subscription() == {"sub_ev": 8_000}
        assert list(short(lago.events)) == [f"steve_tx_{tx['id']}_final"]  # one final event, no increments
    finally:
        await client.aclose()
        await lago.stop()


async def test_reports_and_notifications_are_stored(station, conn):
    await boot(station)
    await station.cp.call(call.NotifyReport(request_id=1, generated_at=ts(0), seq_no=0, tbc=False, report_data=[
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
         "variable_attribute": [{"type": "Actual", "value": "300", "mutability": "ReadWrite"}],
         "variable_characteristics": {"data_type": "integer", "supports_monitoring": False, "unit": "s"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
         "variable_attribute": [{"type": "MaxSet", "value": "22000", "mutability": "ReadOnly"}],
         "variable_characteristics": {"data_type": "decimal", "supports_monitoring": True}},
    ]))
    rows = await conn.fetch("SELECT component, evse_id, variable, attribute_type, value, mutability, data_type "
                            "FROM ocpp.device_model_variables ORDER BY component")
    assert [tuple(r) for r in rows] == [("EVSE", 1, "Power", "MaxSet", "22000", "ReadOnly", "decimal"),
                                        ("OCPPCommCtrlr", -1, "HeartbeatInterval", "Actual", "300", "ReadWrite",
                                         "integer")]
    await station.cp.call(call.StatusNotification(timestamp=ts(1), connector_status="Occupied", evse_id=1,
                                                  connector_id=1))
    assert await conn.fetchval("SELECT status FROM ocpp.connectors WHERE connector_id = 1") == "Occupied"
    await station.cp.call(call.NotifyEvent(generated_at=ts(2), seq_no=0, event_data=[{
        "event_id": 1, "timestamp": ts(2), "trigger": "Alerting", "actual_value": "Faulted",
        "event_notification_type": "HardWiredNotification", "component": {"name": "Connector"},
        "variable": {"name": "AvailabilityState"}}]))
    await station.cp.call(call.SecurityEventNotification(type="TamperDetectionActivated", timestamp=ts(3)))
    await station.cp.call(call.FirmwareStatusNotification(status="Downloading", request_id=4))
    await station.cp.call(call.LogStatusNotification(status="Uploaded", request_id=5))
    await station.cp.call(call.ReservationStatusUpdate(reservation_id=99, reservation_update_status="Expired"))
    await station.cp.call(call.NotifyChargingLimit(charging_limit={"charging_limit_source": "EMS"}, evse_id=1))
    await station.cp.call(call.ReportChargingProfiles(request_id=6, charging_limit_source="CSO", evse_id=1,
                                                      charging_profile=[{
                                                          "id": 1, "stack_level": 0,
                                                          "charging_profile_purpose": "TxDefaultProfile",
                                                          "charging_profile_kind": "Absolute",
                                                          "charging_schedule": [{
                                                              "id": 1, "charging_rate_unit": "A",
                                                              "charging_schedule_period": [
                                                                  {"start_period": 0, "limit": 16}]}]}]))
    await station.cp.call(call.MeterValues(evse_id=1, meter_value=energy(1234, 4)))
    answer = await station.cp.call(call.DataTransfer(vendor_id="com.example", message_id="x", data="y"))
    assert answer.status == "UnknownVendorId"
    reports = await conn.fetch("SELECT action FROM ocpp.station_reports ORDER BY id")
    assert [r["action"] for r in reports] == ["NotifyEvent", "SecurityEventNotification", "LogStatusNotification",
                                              "ReservationStatusUpdate", "NotifyChargingLimit",
                                              "ReportChargingProfiles"]
    box = await conn.fetchrow("SELECT firmware_status, diagnostics_status FROM ocpp.charge_boxes")
    assert (box["firmware_status"], box["diagnostics_status"]) == ("Downloading", "Uploaded")
    assert await conn.fetchval("SELECT value_num FROM ocpp.meter_values WHERE transaction_id IS NULL") == 1234
