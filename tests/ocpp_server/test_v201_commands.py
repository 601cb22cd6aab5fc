"""Every OCPP 2.0.1 CSMS operation through the command API to the `ocpp` library's own v201
ChargePoint and back: checked against the 2.0.1 schemas on our side before sending, and by
the library on the station's side when it arrives; journaled, and what the answer changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.routing import on
from ocpp.v201 import ChargePoint as LibraryStation
from ocpp.v201 import call_result

from polaris.ocpp.v201.operations import OPERATIONS

from .test_v201 import open_station

SOON = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
TOKEN = {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}
HB = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
HB_SNAKE = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
PROFILE = {"id": 7, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
           "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}]}

# operation -> (request fields, what the station answers (snake_case call_result fields))
CASES: dict[str, tuple[dict, dict]] = {
    "RequestStartTransaction": ({"idToken": TOKEN, "evseId": 1}, {"status": "Accepted"}),
    "RequestStopTransaction": ({"transactionId": "tx-1"}, {"status": "Accepted"}),
    "Reset": ({"type": "Immediate"}, {"status": "Accepted"}),
    "GetVariables": ({"getVariableData": [HB]}, {"get_variable_result": [
        {"attribute_status": "Accepted", "attribute_value": "300", **HB_SNAKE}]}),
    "SetVariables": ({"setVariableData": [{**HB, "attributeValue": "600"}]}, {"set_variable_result": [
        {"attribute_status": "Accepted", **HB_SNAKE}]}),
    "GetBaseReport": ({"requestId": 1, "reportBase": "FullInventory"}, {"status": "Accepted"}),
    "GetReport": ({"requestId": 2, "componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]},
                  {"status": "Accepted"}),
    "ChangeAvailability": ({"operationalStatus": "Inoperative", "evse": {"id": 1}}, {"status": "Accepted"}),
    "TriggerMessage": ({"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
                       {"status": "Accepted"}),
    "UnlockConnector": ({"evseId": 1, "connectorId": 1}, {"status": "Unlocked"}),
    "SetChargingProfile": ({"evseId": 1, "chargingProfile": PROFILE}, {"status": "Accepted"}),
    "GetChargingProfiles": ({"requestId": 3, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}},
                            {"status": "NoProfiles"}),
    "ClearChargingProfile": ({"chargingProfileId": 7}, {"status": "Accepted"}),
    "GetCompositeSchedule": ({"duration": 3600, "evseId": 1}, {"status": "Rejected"}),
    "ReserveNow": ({"expiryDateTime": SOON, "idToken": TOKEN, "evseId": 1}, {"status": "Accepted"}),
    "CancelReservation": ({"reservationId": 424242}, {"status": "Rejected"}),
    "SendLocalList": ({"versionNumber": 3, "updateType": "Full", "localAuthorizationList": [
        {"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}]}, {"status": "Accepted"}),
    "GetLocalListVersion": ({}, {"version_number": 3}),
    "ClearCache": ({}, {"status": "Accepted"}),
    "DataTransfer": ({"vendorId": "org.example", "messageId": "hello"}, {"status": "Accepted", "data": "hi"}),
    "GetLog": ({"logType": "DiagnosticsLog", "requestId": 4, "log": {"remoteLocation": "https://example.com/l/"}},
               {"status": "Accepted", "filename": "diag.log"}),
    "UpdateFirmware": ({"requestId": 5, "firmware": {"location": "https://example.com/fw.bin",
                                                     "retrieveDateTime": SOON}}, {"status": "Accepted"}),
    "GetTransactionStatus": ({"transactionId": "tx-1"}, {"messages_in_queue": False, "ongoing_indicator": True}),
    "SetNetworkProfile": ({"configurationSlot": 1, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://csms.example.com/ocpp",
        "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}}, {"status": "Accepted"}),
}


def _handler(action: str, answer: dict):
    async def handler(self, **fields):
        self.received.append((action, fields))
        return getattr(call_result, action)(**answer)

    handler.__name__ = f"on_{action}"
    return on(action)(handler)


# The library finds handlers by their `@on` marker on the class: one per operation.
AnsweringStation = type("AnsweringStation", (LibraryStation,), {
    **{f"on_{a}": _handler(a, answer) for a, (_, answer) in CASES.items()},
    "received": None,
})


@pytest.fixture
async def station(ocpp, charger):
    s = await open_station(ocpp.ws_url, AnsweringStation)
    s.cp.received = []
    yield s
    await s.close()


async def _op(ocpp, name: str, fields: dict):
    return await ocpp.api("POST", f"/api/v1/operations/{name}", {"chargeBoxId": "CB-0001", **fields})


def test_every_201_operation_has_a_case():
    assert set(CASES) == set(OPERATIONS)


@pytest.mark.parametrize("operation", sorted(CASES))
async def test_201_operation_round_trip_and_journal(ocpp, station, conn, operation):
    fields, answer = CASES[operation]
    status, body = await _op(ocpp, operation, fields)
    assert status == 200, body
    assert body["response"] == {k: v for k, v in _camel(answer).items()}
    action, received = station.cp.received[-1]
    assert action == operation
    row = await conn.fetchrow("SELECT action, status, request FROM ocpp.message_journal ORDER BY id DESC LIMIT 1")
    assert (row["action"], row["status"]) == (operation, "answered")
    if operation == "RequestStartTransaction":
        assert isinstance(received["remote_start_id"], int)  # filled in by us
    if operation == "GetVariables" or operation == "SetVariables":
        value = await conn.fetchval("SELECT value FROM ocpp.device_model_variables WHERE variable = "
                                    "'HeartbeatInterval'")
        assert value == ("300" if operation == "GetVariables" else "600")
    if operation == "SetChargingProfile":
        row = await conn.fetchrow("SELECT connector_id, charging_profile_id, purpose FROM ocpp.charging_profiles")
        assert tuple(row) == (1, 7, "TxDefaultProfile")
    if operation == "ReserveNow":
        row = await conn.fetchrow("SELECT connector_id, id_tag, status FROM ocpp.reservations")
        assert tuple(row) == (1, TOKEN["idToken"], "Accepted")


async def test_201_requests_are_checked_against_201_schemas_before_sending(ocpp, station, conn):
    status, body = await _op(ocpp, "Reset", {"type": "Hard"})  # a 1.6 value
    assert status == 400 and "Reset" in body["message"], body
    status, body = await _op(ocpp, "RemoteStartTransaction", {"idTag": "X"})  # a 1.6 operation
    assert status == 404, body
    await asyncio.sleep(0.05)
    assert station.cp.received == []
    assert await conn.fetchval("SELECT count(*) FROM ocpp.message_journal") == 0


def _camel(answer: dict) -> dict:
    from ocpp.charge_point import snake_to_camel_case

    return snake_to_camel_case(answer)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("connector_id", [0, 1])
def test_charging_limit_is_a_valid_set_charging_profile_in_each_version(version, connector_id):
    from polaris.ocpp.charging_limits import STATION_MAX, TX, TX_DEFAULT, Limit, limit_command
    from polaris.ocpp.v16.operations import OPERATIONS as OPERATIONS_16

    table = OPERATIONS if version == "2.0.1" else OPERATIONS_16
    purposes = {}
    for kind, tx_ref in ((STATION_MAX, None), (TX_DEFAULT, None), (TX, "tx-abc"), (TX, None)):
        limit = Limit(kind, 0 if kind == STATION_MAX else connector_id or 1, 16.0, transaction_id=5,
                      lease_s=600 if kind == STATION_MAX else None, fallback_amps=6.0)
        operation, payload = limit_command(version, limit, charger_tx_id=tx_ref)
        table[operation].validate(payload)  # raises InvalidCommand if the schema refuses it
        profile = payload.get("chargingProfile") or payload.get("csChargingProfiles")
        purposes[(kind, tx_ref)] = profile["chargingProfilePurpose"]
    if version == "2.0.1":
        assert purposes == {(STATION_MAX, None): "ChargingStationMaxProfile", (TX_DEFAULT, None): "TxDefaultProfile",
                            (TX, "tx-abc"): "TxProfile", (TX, None): "TxDefaultProfile"}
    else:
        assert purposes == {(STATION_MAX, None): "ChargePointMaxProfile", (TX_DEFAULT, None): "TxDefaultProfile",
                            (TX, "tx-abc"): "TxProfile", (TX, None): "TxProfile"}


async def test_send_limit_to_a_201_station_is_stored_when_accepted(ocpp, station, conn):
    from polaris.ocpp.charging_limits import PROFILE_IDS, STATION_MAX, Limit, send_limit

    answer = await send_limit(ocpp.server, "CB-0001", None, Limit(STATION_MAX, 0, 32.0), requested_by="test")
    assert answer.accepted, answer
    action, received = station.cp.received[-1]
    assert action == "SetChargingProfile" and received["evse_id"] == 0
    row = await conn.fetchrow("SELECT connector_id, charging_profile_id, purpose FROM ocpp.charging_profiles")
    assert tuple(row) == (0, PROFILE_IDS[STATION_MAX], "ChargingStationMaxProfile")
