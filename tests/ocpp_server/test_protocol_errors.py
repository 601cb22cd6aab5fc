"""CALLERROR codes per OCPP-J 1.6 Table 7 (where the ocpp library deviates), over a real socket."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("charger")


def _code(reply: list) -> str:
    assert reply[0] == 4, reply
    return reply[2]


async def test_unknown_action_is_not_implemented(client):
    reply = await client.call("FlyToTheMoon", {})
    assert _code(reply) == "NotImplemented"  # the library says NotSupported
    assert len(reply) == 5 and isinstance(reply[4], dict)


async def test_central_system_action_sent_by_charger_is_not_supported(client):
    assert _code(await client.call("Reset", {"type": "Hard"})) == "NotSupported"


async def test_payload_not_an_object_is_formation_violation(client):
    assert _code(await client.call("Heartbeat", ["not", "an", "object"])) == "FormationViolation"


async def test_missing_required_field_is_protocol_error(client):
    reply = await client.call("BootNotification", {"chargePointVendor": "Acme"})
    assert _code(reply) == "ProtocolError"
    assert "chargePointModel" in reply[3]


async def test_wrong_type_is_type_constraint_violation(client):
    reply = await client.call("StatusNotification", {"connectorId": "one", "errorCode": "NoError",
                                                     "status": "Available"})
    assert _code(reply) == "TypeConstraintViolation"


async def test_value_outside_enum_is_property_constraint_violation(client):
    reply = await client.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                     "status": "Dancing"})
    assert _code(reply) == "PropertyConstraintViolation"


async def test_empty_required_array_is_occurence_constraint_violation(client):
    reply = await client.call("MeterValues", {"connectorId": 1, "meterValue": []})
    assert _code(reply) == "OccurenceConstraintViolation"  # the 1.6 errata's spelling


async def test_invalid_json_gets_a_callerror_and_the_connection_lives_on(client):
    await client.send_raw('[2, "abc-1", "Heartbeat", {')
    reply = await client.recv()
    assert reply[:3] == [4, "abc-1", "FormationViolation"]
    await client.send_raw("this is not json at all")
    reply = await client.recv()
    assert reply[:3] == [4, "-1", "FormationViolation"]
    assert "currentTime" in await client.ok("Heartbeat", {})


@pytest.mark.parametrize(
    "frame",
    ['{"a": 1}', "[]", "[2]", '[2, 5, "Heartbeat", {}]', '[2, "x", 7, {}]', '[9, "x", "Heartbeat", {}]',
     '[2, "' + "x" * 40 + '", "Heartbeat", {}]'],
)
async def test_bad_structure_is_formation_violation(client, frame):
    await client.send_raw(frame)
    reply = await client.recv()
    assert reply[0] == 4 and reply[2] == "FormationViolation", reply
    assert "currentTime" in await client.ok("Heartbeat", {})


async def test_database_down_answers_internal_error_for_transaction_messages(client, ocpp):
    await client.boot()
    await ocpp.server.pool.close()
    reply = await client.call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                   "timestamp": "2026-01-01T00:00:00Z"})
    assert _code(reply) == "InternalError"
    reply = await client.call("MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}]})
    assert _code(reply) == "InternalError"
    reply = await client.call("StopTransaction", {"transactionId": 1, "meterStop": 5,
                                                  "timestamp": "2026-01-01T00:00:00Z"})
    assert _code(reply) == "InternalError"
    # Heartbeats and status are answered from memory and written later.
    assert "currentTime" in await client.ok("Heartbeat", {})
    assert await client.ok("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                  "status": "Available"}) == {}
    assert len(ocpp.server.presence.deferred_status) == 1


async def test_deeply_nested_payload_is_refused_and_the_connection_lives_on(client):
    deep = "[" * 5000 + "]" * 5000
    await client.send_raw('[2, "deep", "DataTransfer", {"vendorId": "x", "data": ' + deep + "}]")
    reply = await client.recv()
    assert reply[0] == 4 and reply[2] in ("FormationViolation", "TypeConstraintViolation"), reply
    assert "currentTime" in await client.ok("Heartbeat", {})


async def test_answers_to_unknown_calls_are_dropped_quietly(client):
    await client.send_raw(json.dumps([3, "never-sent", {}]))
    await client.send_raw(json.dumps([4, "never-sent", "GenericError", "", {}]))
    assert "currentTime" in await client.ok("Heartbeat", {})


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_actions = st.sampled_from(["BootNotification", "Heartbeat", "StatusNotification", "Authorize",
                            "StartTransaction", "StopTransaction", "MeterValues", "DataTransfer",
                            "Reset", "Nope"])
_frames = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=40),
    _json_values.map(json.dumps),
    st.tuples(st.sampled_from([2, 3, 4, 5, "2"]), st.text(min_size=1, max_size=40), _actions, _json_values)
    .map(lambda t: json.dumps(list(t))),
    st.tuples(_actions, st.dictionaries(
        st.sampled_from(["connectorId", "idTag", "meterStart", "timestamp", "transactionId", "meterStop",
                         "meterValue", "status", "errorCode", "vendorId", "chargePointVendor",
                         "chargePointModel"]), _json_values, max_size=6))
    .map(lambda t: json.dumps([2, "fuzz", t[0], t[1]])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_frames, min_size=1, max_size=5))
async def test_fuzz_malformed_frames_never_break_the_server(client, frames):
    for frame in frames:
        await client.send_raw(frame)
        try:
            reply = await client.recv(wait=0.3)
        except TimeoutError:
            continue  # responses and unanswerable garbage get no reply
        assert reply[0] in (3, 4)
        if reply[0] == 4:
            assert reply[2] in {"NotImplemented", "NotSupported", "FormationViolation", "ProtocolError",
                                "OccurenceConstraintViolation", "TypeConstraintViolation",
                                "PropertyConstraintViolation", "InternalError"}, reply
            assert reply[2] != "InternalError" or "could not store" in reply[3], reply
    # Still serving, on the same socket.
    assert "currentTime" in await client.ok("Heartbeat", {})
