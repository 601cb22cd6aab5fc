"""Admin API: the version-neutral charger actions pick the 2.0.1 message for a 2.0.1 charger,
and its answer comes back in the shape the console reads; the role check holds for both."""

from __future__ import annotations

from polaris.db.repos import charge_boxes

BASE = "/api/admin/v1/chargers"
KEY = "charger-key-0123456789"


async def seed(pool) -> None:
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-16", "CB-201"], KEY)
        await conn.execute("UPDATE ocpp.charge_boxes SET ocpp_version = '2.0.1', ocpp_protocol = 'ocpp2.0.1' "
                           "WHERE charge_box_id = 'CB-201'")
        pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-201'")
        tx = await conn.fetchval(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start) "
            "VALUES ($1, 1, 'CARD', now(), 0) RETURNING id", pk)
        await conn.execute("INSERT INTO ocpp.transaction_ids (charge_box_pk, charger_tx_id, transaction_id) "
                           "VALUES ($1, 'a1b2-c3', $2)", pk, tx)
        return tx


async def test_neutral_actions_speak_the_chargers_version(command_api, api, pool, operator):
    tx = await seed(pool)
    h = operator.headers

    async def run(cid: str, op: str, fields: dict):
        resp = await api.post(f"{BASE}/{cid}/operations/{op}", json=fields, headers=h)
        assert resp.status == 200, await resp.text()
        return command_api.calls[-1], await resp.json()

    # A 1.6 charger gets the 1.6 messages as named.
    (op, body), _ = await run("CB-16", "Reset", {"type": "Soft"})
    assert (op, body) == ("Reset", {"type": "Soft", "chargeBoxId": "CB-16"})
    # A 2.0.1 charger gets their 2.0.1 counterparts.
    cases = [
        ("Reset", {"type": "Hard"}, "Reset", {"type": "Immediate"}),
        ("RemoteStartTransaction", {"connectorId": 1, "idTag": "CARD"}, "RequestStartTransaction",
         {"idToken": {"idToken": "CARD", "type": "Central"}, "evseId": 1}),
        ("RemoteStopTransaction", {"transactionId": tx}, "RequestStopTransaction", {"transactionId": "a1b2-c3"}),
        ("UnlockConnector", {"connectorId": 2}, "UnlockConnector", {"evseId": 2, "connectorId": 1}),
        ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}, "ChangeAvailability",
         {"operationalStatus": "Inoperative"}),
        ("GetConfiguration", {}, "GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"}),
    ]
    for neutral, fields, sent, sent_fields in cases:
        (op, body), _ = await run("CB-201", neutral, fields)
        assert (op, body) == (sent, {**sent_fields, "chargeBoxId": "CB-201"}), neutral

    command_api.answers[("SetVariables", "CB-201")] = {"setVariableResult": [{
        "attributeStatus": "RebootRequired", "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"}}]}
    (op, body), out = await run("CB-201", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "600"})
    assert op == "SetVariables" and body["setVariableData"][0]["attributeValue"] == "600"
    assert out["status"] == "RebootRequired"
    command_api.answers[("GetVariables", "CB-201")] = {"getVariableResult": [
        {"attributeStatus": "Accepted", "attributeValue": "600", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}},
        {"attributeStatus": "UnknownVariable", "component": {"name": "Foo"}, "variable": {"name": "Bar"}}]}
    (op, _), out = await run("CB-201", "GetConfiguration", {"key": ["HeartbeatInterval", "Foo.Bar"]})
    assert op == "GetVariables"
    assert out["response"] == {"configurationKey": [{"key": "OCPPCommCtrlr.HeartbeatInterval", "readonly": False,
                                                     "value": "600"}], "unknownKey": ["Foo.Bar"]}
    # 2.0.1 operations by name pass unchanged.
    (op, body), _ = await run("CB-201", "GetBaseReport", {"requestId": 9, "reportBase": "FullInventory"})
    assert op == "GetBaseReport" and body["requestId"] == 9


async def test_role_checks_hold_for_the_translated_message(command_api, api, pool, operator):
    await seed(pool)
    calls = len(command_api.calls)
    resp = await api.post(f"{BASE}/CB-201/operations/ChangeConfiguration", json={"key": "SecurityCtrlr.Identity",
                                                                                "value": "x"}, headers=operator.headers)
    assert resp.status == 403, await resp.text()
    resp = await api.post(f"{BASE}/CB-201/operations/SetNetworkProfile", json={}, headers=operator.headers)
    assert resp.status == 403
    resp = await api.post(f"{BASE}/CB-201/operations/RemoteStopTransaction", json={"transactionId": 999999},
                          headers=operator.headers)
    assert resp.status == 404  # no such 2.0.1 transaction: nothing is sent
    assert len(command_api.calls) == calls


async def test_version_pin_is_set_shown_audited_and_cleared(api, pool, operator):
    await seed(pool)
    resp = await api.patch(f"{BASE}/CB-201", json={"ocpp_version_pinned": "1.6"}, headers=operator.headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["ocpp_version"] == "2.0.1" and body["ocpp_version_pinned"] == "1.6"
    resp = await api.patch(f"{BASE}/CB-201", json={"ocpp_version_pinned": "2.1"}, headers=operator.headers)
    assert resp.status == 400
    resp = await api.patch(f"{BASE}/CB-201", json={"ocpp_version_pinned": None}, headers=operator.headers)
    assert (await resp.json())["ocpp_version_pinned"] is None
    async with pool.acquire() as conn:
        audited = await conn.fetchval("SELECT count(*) FROM app.audit_log WHERE action = 'charger.edit' "
                                      "AND after ? 'ocpp_version_pinned'")
    assert audited == 2
    resp = await api.get(f"{BASE}/CB-201", headers=operator.headers)
    assert (await resp.json())["variables"] == []
