"""Every central-system operation through the command API to a simulated charger and back."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from polaris.db.repos import ocpp_journal
from polaris.ocpp.v16.operations import OPERATIONS

KEY = "charger-key-0123456789"
SOON = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


async def _op(ocpp, name: str, **fields):
    return await ocpp.api("POST", f"/api/v1/operations/{name}", {"chargeBoxId": "CB-0001", **fields})


# One valid request per operation, and what the simulated charger answers.
CASES = {
    "ChangeAvailability": ({"connectorId": 1, "type": "Inoperative"}, {"status": "Accepted"}),
    "ChangeConfiguration": ({"key": "MeterValueSampleInterval", "value": "30"}, {"status": "Accepted"}),
    "ClearCache": ({}, {"status": "Accepted"}),
    "DataTransfer": ({"vendorId": "org.example", "messageId": "hello"}, None),
    "GetConfiguration": ({"key": ["HeartbeatInterval"]}, None),
    "RemoteStartTransaction": ({"connectorId": 2, "idTag": "SIMTAG"}, {"status": "Accepted"}),
    "RemoteStopTransaction": ({"transactionId": 999999}, {"status": "Rejected"}),
    "Reset": ({"type": "Soft"}, {"status": "Accepted"}),
    "UnlockConnector": ({"connectorId": 1}, None),
    "GetDiagnostics": ({"location": "ftp://example.com/diag/"}, None),
    "UpdateFirmware": ({"location": "https://example.com/fw.bin", "retrieveDate": SOON}, {}),
    "GetLocalListVersion": ({}, None),
    "SendLocalList": ({"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
        {"idTag": "SIMTAG", "idTagInfo": {"status": "Accepted"}}]}, {"status": "Accepted"}),
    "ReserveNow": ({"connectorId": 1, "expiryDate": SOON, "idTag": "SIMTAG"}, {"status": "Accepted"}),
    "CancelReservation": ({"reservationId": 424242}, {"status": "Rejected"}),
    "TriggerMessage": ({"requestedMessage": "Heartbeat"}, {"status": "Accepted"}),
    "SetChargingProfile": ({"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 7, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}},
        {"status": "Accepted"}),
    "GetCompositeSchedule": ({"connectorId": 1, "duration": 3600}, None),
    "ClearChargingProfile": ({"id": 7}, {"status": "Unknown"}),  # a fresh charger has none
}


def test_every_operation_has_a_case():
    assert set(CASES) == set(OPERATIONS)
    assert len(OPERATIONS) == 19


@pytest.mark.parametrize("operation", list(CASES))
async def test_operation_round_trip_and_journal(ocpp, sim, conn, operation):
    request, expected = CASES[operation]
    status, body = await _op(ocpp, operation, **request)
    assert status == 200, body
    assert body["chargeBoxId"] == "CB-0001" and body["operation"] == operation
    answer = body["response"]
    if expected is not None:
        assert answer == expected
    journal = await ocpp_journal.list_journal(conn, "CB-0001")
    mine = [j for j in journal if j["action"] == operation and j["direction"] == "cs_to_cp"]
    assert mine and mine[0]["status"] == "answered"
    assert mine[0]["response"] == answer
    assert mine[0]["answered_at"] is not None


async def test_answers_carry_what_the_charger_said(ocpp, sim):
    status, body = await _op(ocpp, "GetConfiguration", key=["HeartbeatInterval"])
    assert body["response"]["configurationKey"][0]["key"] == "HeartbeatInterval"
    status, body = await _op(ocpp, "GetLocalListVersion")
    assert isinstance(body["response"]["listVersion"], int)
    status, body = await _op(ocpp, "GetCompositeSchedule", connectorId=1, duration=60)
    assert body["response"]["status"] in ("Accepted", "Rejected")


async def test_remote_start_starts_a_transaction_and_remote_stop_ends_it(ocpp, sim, conn, wait_until):
    status, body = await _op(ocpp, "RemoteStartTransaction", connectorId=1, idTag="SIMTAG")
    assert (status, body["response"]) == (200, {"status": "Accepted"})
    await sim.wait_for(lambda c: c.transaction_ids[1] is not None)
    tx = sim.transaction_ids[1]
    row = await conn.fetchrow("SELECT * FROM ocpp.transactions WHERE id = $1", tx)
    assert row["id_tag"] == "SIMTAG" and row["stop_timestamp"] is None
    status, body = await _op(ocpp, "RemoteStopTransaction", transactionId=tx)
    assert body["response"] == {"status": "Accepted"}
    await sim.wait_for(lambda c: c.transaction_ids[1] is None)
    await wait_until(lambda: conn.fetchval(
        "SELECT stop_timestamp IS NOT NULL FROM ocpp.transactions WHERE id = $1", tx), within=10)


async def test_reservation_and_charging_profile_are_kept(ocpp, sim, conn):
    status, body = await _op(ocpp, "ReserveNow", connectorId=1, expiryDate=SOON, idTag="SIMTAG")
    assert body["response"] == {"status": "Accepted"}
    row = await conn.fetchrow("SELECT * FROM ocpp.reservations")
    assert row["status"] == "Accepted" and row["id_tag"] == "SIMTAG"
    status, body = await _op(ocpp, "CancelReservation", reservationId=row["id"])
    assert body["response"] == {"status": "Accepted"}
    assert await conn.fetchval("SELECT status FROM ocpp.reservations") == "Cancelled"
    request, _ = CASES["SetChargingProfile"]
    await _op(ocpp, "SetChargingProfile", **request)
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charging_profiles WHERE cleared_at IS NULL") == 1
    await _op(ocpp, "ClearChargingProfile", id=7)
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charging_profiles WHERE cleared_at IS NULL") == 0


async def test_invalid_requests_are_refused_before_sending(ocpp, sim, conn):
    status, body = await _op(ocpp, "Reset", type="Sideways")
    assert status == 400 and body["error"] == "invalid_request" and "Sideways" in body["message"]
    status, body = await _op(ocpp, "ChangeAvailability", connectorId=1)
    assert status == 400 and "type" in body["message"]
    status, body = await _op(ocpp, "UnlockConnector", connectorId="one")
    assert status == 400
    status, body = await ocpp.api("POST", "/api/v1/operations/Reset", raw=b"{nope")
    assert (status, body["error"]) == (400, "invalid_json")
    status, body = await ocpp.api("POST", "/api/v1/operations/Reset", {"type": "Soft"})
    assert status == 400 and "chargeBoxId" in body["message"]
    status, body = await _op(ocpp, "LaunchRocket")
    assert (status, body["error"]) == (404, "unknown_operation")
    assert await conn.fetchval("SELECT count(*) FROM ocpp.message_journal") == 0


async def test_offline_charger_is_409(ocpp, charger, conn):
    status, body = await _op(ocpp, "Reset", type="Soft")
    assert status == 409 and body["error"] == "charger_offline"
    assert body["message"] == "charger CB-0001 is offline (last seen never)"
    await conn.execute("UPDATE ocpp.charge_boxes SET connected = true, connected_instance = 'other:8080'")
    status, body = await _op(ocpp, "Reset", type="Soft")
    # Held by an instance that is not running (it crashed): offline at once, saying where it was.
    assert status == 409 and "OCPP server instance other:8080, which is not running" in body["message"]
    status, body = await ocpp.api("POST", "/api/v1/operations/Reset", {"chargeBoxId": "NOPE", "type": "Soft"})
    assert status == 409 and body["message"] == "no charger NOPE is registered"


async def test_api_needs_basic_auth(ocpp, charger):
    status, body = await ocpp.api("GET", "/api/v1/status", auth="Basic YWRtaW46d3Jvbmc=")
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await ocpp.api("POST", "/api/v1/operations/Reset", {"chargeBoxId": "CB-0001"}, auth="")
    assert status == 401
    status, body = await ocpp.api("GET", "/healthz", auth="")
    assert status == 200


async def test_status_and_charger_endpoints(ocpp, sim):
    status, body = await ocpp.api("GET", "/api/v1/status")
    assert status == 200 and body["connected"] == 1
    status, body = await ocpp.api("GET", "/api/v1/chargers/CB-0001")
    assert body["connected"] is True and body["registrationStatus"] == "Accepted"
    status, body = await ocpp.api("GET", "/api/v1/chargers/NOPE")
    assert body["connected"] is False


# --- a charger that answers slowly, badly or never (raw client) -----------------------------


async def _answering(client, behaviour):
    """Answer CALLs from the server on `client` with behaviour(frame) -> reply frame or None."""
    seen = []
    while True:
        frame = json.loads(await client.ws.recv())
        seen.append(frame)
        reply = await behaviour(frame)
        if reply is not None:
            await client.ws.send(json.dumps(reply))


async def test_silent_charger_times_out_with_504(ocpp, client, conn):
    async def never(frame):
        return None

    task = asyncio.create_task(_answering(client, never))
    try:
        status, body = await _op(ocpp, "Reset", type="Soft")
        assert status == 504 and body["error"] == "timeout" and "2 s" in body["message"]
        assert await conn.fetchval("SELECT status FROM ocpp.message_journal") == "timeout"
    finally:
        task.cancel()


async def test_call_error_answer_is_502_with_the_chargers_error(ocpp, client, conn):
    async def refuse(frame):
        return [4, frame[1], "NotImplemented", "no such thing here", {"why": "old firmware"}]

    task = asyncio.create_task(_answering(client, refuse))
    try:
        status, body = await _op(ocpp, "ClearCache")
        assert status == 502 and body["errorCode"] == "NotImplemented"
        assert body["errorDetails"] == {"why": "old firmware"}
        row = await conn.fetchrow("SELECT * FROM ocpp.message_journal")
        assert (row["status"], row["error_code"]) == ("call_error", "NotImplemented")
    finally:
        task.cancel()


async def test_one_outstanding_call_per_charger_others_queued(ocpp, client):
    outstanding = 0
    most = 0

    async def slow(frame):
        nonlocal outstanding, most
        outstanding += 1
        most = max(most, outstanding)
        await asyncio.sleep(0.15)
        outstanding -= 1
        return [3, frame[1], {"status": "Accepted"}]

    task = asyncio.create_task(_answering(client, slow))
    try:
        results = await asyncio.gather(*[_op(ocpp, "ClearCache") for _ in range(5)])
        assert [r[0] for r in results] == [200] * 5
        assert most == 1
    finally:
        task.cancel()


async def test_disconnect_while_waiting_is_409(ocpp, client):
    async def hang_up(frame):
        await client.ws.close()
        return None

    task = asyncio.create_task(_answering(client, hang_up))
    status, body = await _op(ocpp, "ClearCache")
    assert status == 409 and "disconnected" in body["message"]
    task.cancel()


async def test_metrics_count_messages_and_commands(ocpp, sim):
    await _op(ocpp, "ClearCache")
    await _op(ocpp, "Reset", type="Sideways")
    status, text = await ocpp.api("GET", "/metrics", auth="")
    assert status == 200
    assert 'polaris_ocpp_messages_total{action="BootNotification",outcome="ok"} 1.0' in text
    assert 'polaris_ocpp_commands_total{operation="ClearCache",outcome="answered"} 1.0' in text
    assert 'polaris_ocpp_commands_total{operation="Reset",outcome="invalid_request"} 1.0' in text
    assert "polaris_ocpp_connected_chargers 1.0" in text
    # Latency is observed for every outcome, the refused one included.
    assert 'polaris_ocpp_command_seconds_count{operation="ClearCache"} 1.0' in text
    assert 'polaris_ocpp_command_seconds_count{operation="Reset"} 1.0' in text
