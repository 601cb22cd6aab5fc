"""CALLERROR codes per OCPP-J 2.0.1 (section 4.3) for a station that negotiated ocpp2.0.1,
over a real socket, and a (lean) fuzz of 2.0.1 frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import open_client

pytestmark = pytest.mark.usefixtures("charger")


@pytest.fixture
async def station(ocpp, charger):
    c = await open_client(ocpp.ws_url, subprotocols=["ocpp2.0.1"])
    assert c.ws.subprotocol == "ocpp2.0.1"
    yield c
    await c.ws.close()


def _code(reply: list) -> str:
    assert reply[0] == 4, reply
    return reply[2]


BOOT = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}


async def test_error_codes_follow_ocpp_j_201(station):
    assert _code(await station.call("FlyToTheMoon", {})) == "NotImplemented"
    assert _code(await station.call("RequestStartTransaction", {"idToken": {"idToken": "A", "type": "Central"},
                                                                "remoteStartId": 1})) == "NotSupported"
    assert _code(await station.call("Heartbeat", ["not", "an", "object"])) == "FormatViolation"
    missing = await station.call("BootNotification", {"reason": "PowerUp"})
    assert _code(missing) == "OccurrenceConstraintViolation" and "chargingStation" in missing[3]
    assert _code(await station.call("StatusNotification", {
        "timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": "one",
        "connectorId": 1})) == "TypeConstraintViolation"
    assert _code(await station.call("StatusNotification", {
        "timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Dancing", "evseId": 1,
        "connectorId": 1})) == "PropertyConstraintViolation"
    assert _code(await station.call("MeterValues", {"evseId": 1, "meterValue": []})) == "OccurrenceConstraintViolation"
    # Schema deviations real stations send are tolerated: a vendor name over 50, extra properties.
    ok = await station.call("BootNotification", {"chargingStation": {"model": "M", "vendorName": "V" * 60,
                                                                     "colour": "red"}, "reason": "PowerUp"})
    assert ok[0] == 3 and ok[2]["status"] == "Accepted"


async def test_framing_errors_are_rpc_framework_errors(station):
    await station.send_raw('[2, "abc-1", "Heartbeat", {')
    assert (await station.recv())[:3] == [4, "abc-1", "RpcFrameworkError"]
    await station.send_raw(json.dumps([2, "abc-2", "Heartbeat"]))
    assert (await station.recv())[:3] == [4, "abc-2", "RpcFrameworkError"]
    await station.send_raw(json.dumps([7, "abc-3", "Heartbeat", {}]))
    assert (await station.recv())[:3] == [4, "abc-3", "MessageTypeNotSupported"]
    assert (await station.call("Heartbeat", {}))[0] == 3  # the connection lives on


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)
_actions = st.sampled_from(["BootNotification", "Heartbeat", "StatusNotification", "Authorize", "TransactionEvent",
                            "MeterValues", "NotifyReport", "NotifyEvent", "DataTransfer", "Reset", "Nope"])
_frames = st.one_of(
    st.text(max_size=40),
    _json_values.map(json.dumps),
    st.tuples(st.sampled_from([2, 3, 4, 6]), st.text(min_size=1, max_size=36), _actions, _json_values)
    .map(lambda t: json.dumps(list(t))),
    st.tuples(_actions, st.dictionaries(
        st.sampled_from(["eventType", "timestamp", "triggerReason", "seqNo", "transactionInfo", "idToken",
                         "evseId", "connectorId", "connectorStatus", "meterValue", "reportData", "vendorId"]),
        _json_values, max_size=6))
    .map(lambda t: json.dumps([2, "fuzz", t[0], t[1]])),
)
CODES_201 = {"FormatViolation", "NotImplemented", "NotSupported", "PropertyConstraintViolation",
             "OccurrenceConstraintViolation", "TypeConstraintViolation", "MessageTypeNotSupported",
             "RpcFrameworkError", "InternalError"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_frames, min_size=1, max_size=4))
async def test_fuzz_201_frames_never_break_the_server(station, frames):
    for frame in frames:
        await station.send_raw(frame)
        try:
            reply = await station.recv(wait=0.3)
        except TimeoutError:
            continue
        assert reply[0] in (3, 4)
        if reply[0] == 4:
            assert reply[2] in CODES_201, reply
            assert reply[2] != "InternalError" or "could not store" in reply[3], reply
    assert (await station.call("Heartbeat", {}))[0] == 3
