"""SteVe's REST API as the original web app (expressync src/lib/steve-client.ts) calls it.

Every request body here is the one its client builds (`normalizeSelection` puts the charger
in `chargeBoxIdList`; `createOcppTag` / `updateOcppTag` send SteVe's OcppTagForm), and every
answer is checked against the client's zod schemas (types/steve.ts), with a simulated
charger answering.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

KEY = "charger-key-0123456789"
API = "/steve/api"  # STEVE_BASE_URL (http://host:port/steve) + /api, as the client's config.ts builds it


def steve_date(at: datetime) -> str:
    """formatDateForStEvE: ISO without milliseconds and zone."""
    return at.astimezone(UTC).isoformat().split(".")[0].split("+")[0]


def is_task_result(body) -> bool:
    """OcppTaskResultSchema."""
    return (isinstance(body, dict) and isinstance(body["taskId"], int) and isinstance(body["taskFinished"], bool)
            and all(isinstance(r["chargeBoxId"], str) and "response" in r for r in body["successResponses"])
            and all(isinstance(r["chargeBoxId"], str) for r in body["errorResponses"])
            and all(isinstance(r["chargeBoxId"], str) for r in body["exceptions"]))


def is_transaction(t) -> bool:
    """StEvETransactionSchema."""
    ints = ("id", "chargeBoxPk", "connectorId", "ocppTagPk")
    strs = ("chargeBoxId", "ocppIdTag", "startTimestamp", "startValue")
    nullable = ("stopTimestamp", "stopValue", "stopEventActor", "stopReason")
    return (all(isinstance(t[k], int) for k in ints) and all(isinstance(t[k], str) for k in strs)
            and all(t[k] is None or isinstance(t[k], str) for k in nullable))


def is_tag(t) -> bool:
    """StEvEOcppTagSchema."""
    return (isinstance(t["idTag"], str) and isinstance(t["ocppTagPk"], int)
            and all(t[k] is None or isinstance(t[k], str) for k in ("note", "parentIdTag", "expiryDate"))
            and isinstance(t["blocked"], bool) and isinstance(t["inTransaction"], bool)
            and isinstance(t["maxActiveTransactionCount"], int) and isinstance(t["activeTransactionCount"], int))


async def op(ocpp, name: str, body: dict) -> tuple[int, dict]:
    return await ocpp.api("POST", f"{API}/v1/operations/{name}", body)


async def test_operations_with_the_original_apps_bodies(ocpp, sim, conn):
    soon = steve_date(datetime.now(UTC) + timedelta(hours=1))
    cases = [
        ("ChangeAvailability", {"connectorId": 1, "availType": "Inoperative"}, "Accepted"),
        ("ChangeAvailability", {"connectorId": 1, "availType": "OPERATIVE"}, "Accepted"),
        ("TriggerMessage", {"triggerMessage": "Heartbeat"}, "Accepted"),
        ("GetConfiguration", {"confKeyList": ["HeartbeatInterval"]}, None),
        ("GetConfiguration", {"commaSeparatedCustomConfKeys": "HeartbeatInterval,NoSuchKey"}, None),
        ("GetLocalListVersion", {}, None),
        ("GetCompositeSchedule", {"connectorId": 1, "durationInSeconds": 3600, "chargingRateUnit": "W"}, None),
        ("DataTransfer", {"vendorId": "org.example", "messageId": "hello", "data": "x"}, None),
        ("ReserveNow", {"connectorId": 1, "expiry": soon, "idTag": "SIMTAG"}, "Accepted"),
        ("UnlockConnector", {"connectorId": 2}, None),
        ("GetDiagnostics", {"location": "ftp://example.com/diag/", "retries": 1, "retryInterval": 60}, None),
        ("ChangeConfiguration", {"keyType": "CUSTOM", "customConfKey": "MeterValueSampleInterval", "value": "30"},
         "Accepted"),
        ("ChangeConfiguration", {"confKey": "HeartbeatInterval", "value": "300"}, "Accepted"),
        ("RemoteStartTransaction", {"connectorId": 2, "idTag": "SIMTAG"}, "Accepted"),
    ]
    for name, fields, expected in cases:
        status, body = await op(ocpp, name, {**fields, "chargeBoxIdList": ["CB-0001"]})
        assert status == 200 and is_task_result(body), (name, body)
        assert body["taskFinished"] and [r["chargeBoxId"] for r in body["successResponses"]] == ["CB-0001"], (name, body)
        response = body["successResponses"][0]["response"]
        if expected is not None:
            assert response == expected, (name, response)
        if name == "GetConfiguration":
            assert response["configurationKeys"][0]["key"] == "HeartbeatInterval"
        if name == "GetLocalListVersion":
            assert isinstance(response, int)
        # The task the client polls (GET /v1/operations/{taskId}) and SteVe's own path answer the same.
        for path in (f"/v1/operations/{body['taskId']}", f"/v1/operations/tasks/{body['taskId']}",
                     f"/v1/tasks/task?id={body['taskId']}"):
            assert await ocpp.api("GET", API + path) == (200, body)
    # Cancel the reservation made above, by the id the charger got.
    reservation = await conn.fetchval("SELECT id FROM ocpp.reservations")
    status, body = await op(ocpp, "CancelReservation", {"chargeBoxIdList": ["CB-0001"], "reservationId": reservation})
    assert body["successResponses"][0]["response"] == "Accepted"
    # RemoteStop of the session RemoteStart began.
    await sim.wait_for(lambda c: c.transaction_ids[2] is not None)
    status, body = await op(ocpp, "RemoteStopTransaction", {"chargeBoxIdList": ["CB-0001"],
                                                            "transactionId": sim.transaction_ids[2]})
    assert body["successResponses"][0]["response"] == "Accepted"
    journal = await conn.fetch("SELECT action, requested_by FROM ocpp.message_journal WHERE direction = 'cs_to_cp'")
    assert len(journal) == len(cases) + 2 and {j["requested_by"] for j in journal} == {"steve-api:admin"}


async def test_offline_unknown_and_bad_params_are_answered_like_steve(ocpp, sim):
    status, body = await op(ocpp, "Reset", {"chargeBoxIdList": ["CB-0001", "CB-GONE"], "resetType": "SOFT"})
    assert status == 200 and is_task_result(body)
    assert [r["response"] for r in body["successResponses"]] == ["Accepted"]
    assert body["exceptions"][0]["chargeBoxId"] == "CB-GONE" and "no charger CB-GONE" in body["exceptions"][0][
        "exceptionMessage"]
    status, body = await op(ocpp, "Reset", {"chargeBoxIdList": ["CB-0001"]})
    assert status == 400 and body["status"] == 400 and "resetType" in body["message"] and body["path"]
    status, body = await op(ocpp, "Reset", {"resetType": "SOFT"})
    assert status == 400 and "chargeBoxIdList" in body["message"]
    status, body = await op(ocpp, "LaunchRocket", {"chargeBoxIdList": ["CB-0001"]})
    assert status == 404
    assert (await ocpp.api("GET", API + "/v1/operations/tasks/999999"))[0] == 404


async def test_tags_created_updated_listed_and_deleted(ocpp, conn):
    # createOcppTag(idTag, {note, parentIdTag, expiryDate}): maxActiveTransactionCount defaults to 1.
    status, parent = await ocpp.api("POST", API + "/v1/ocppTags", {"idTag": "PARENT1", "maxActiveTransactionCount": 1})
    assert status == 201 and is_tag(parent)
    status, body = await ocpp.api("POST", API + "/v1/ocppTags", {
        "idTag": "CARD42", "maxActiveTransactionCount": 1, "note": "blue fob", "parentIdTag": "PARENT1",
        "expiryDate": "2030-01-01T00:00:00"})
    assert status == 201 and isinstance(body["ocppTagPk"], int)
    pk = body["ocppTagPk"]
    assert body["parentOcppTagPk"] == parent["ocppTagPk"] and body["expiryDate"].startswith("2030-01-01T00:00:00")
    assert (await ocpp.api("POST", API + "/v1/ocppTags", {"idTag": "card42", "maxActiveTransactionCount": 1}))[0] == 422
    # updateOcppTag(tag): the whole form; maxActiveTransactionCount 0 blocks the card (SteVe's meaning).
    status, body = await ocpp.api("PUT", f"{API}/v1/ocppTags/{pk}", {
        "idTag": "CARD42", "maxActiveTransactionCount": 0, "note": "lost"})
    assert status == 200 and body["blocked"] and body["maxActiveTransactionCount"] == 0 and body["note"] == "lost"
    assert await conn.fetchval("SELECT blocked FROM app.id_tags WHERE id = $1", pk)
    status, tags = await ocpp.api("GET", API + "/v1/ocppTags")
    assert status == 200 and all(is_tag(t) for t in tags) and {t["idTag"] for t in tags} == {"PARENT1", "CARD42"}
    status, tags = await ocpp.api("GET", API + "/v1/ocppTags?blocked=TRUE")
    assert [t["idTag"] for t in tags] == ["CARD42"]
    status, tags = await ocpp.api("GET", API + "/v1/ocppTags?inTransaction=TRUE")
    assert tags == []
    status, body = await ocpp.api("DELETE", f"{API}/v1/ocppTags/{pk}")
    assert status == 200 and body["idTag"] == "CARD42"
    assert (await ocpp.api("GET", f"{API}/v1/ocppTags/{pk}"))[0] == 404
    audit = await conn.fetch("SELECT action, actor_email FROM app.audit_log ORDER BY id")
    assert [a["action"] for a in audit] == ["id_tag.create", "id_tag.create", "id_tag.edit", "id_tag.delete"]


async def test_transactions_and_charge_boxes(ocpp, sim, conn):
    status, body = await op(ocpp, "RemoteStartTransaction", {"chargeBoxIdList": ["CB-0001"], "connectorId": 1,
                                                             "idTag": "SIMTAG"})
    await sim.wait_for(lambda c: c.transaction_ids[1] is not None)
    tx = sim.transaction_ids[1]
    # getActiveTransactions(): type=ACTIVE
    status, active = await ocpp.api("GET", API + "/v1/transactions?type=ACTIVE")
    assert status == 200 and [t["id"] for t in active] == [tx] and is_transaction(active[0])
    assert active[0]["stopTimestamp"] is None and active[0]["ocppIdTag"] == "SIMTAG"
    await op(ocpp, "RemoteStopTransaction", {"chargeBoxIdList": ["CB-0001"], "transactionId": tx})
    await sim.wait_for(lambda c: c.transaction_ids[1] is None)
    # getRecentlyCompletedTransactions(): type=ALL, periodType=FROM_TO, zone-less from/to.
    now = datetime.now(UTC)
    query = (f"type=ALL&periodType=FROM_TO&from={steve_date(now - timedelta(days=1))}"
             f"&to={steve_date(now + timedelta(minutes=1))}")
    for _ in range(50):
        status, done = await ocpp.api("GET", f"{API}/v1/transactions?{query}")
        if done and done[0]["stopTimestamp"]:
            break
    assert status == 200 and done[0]["id"] == tx and is_transaction(done[0])
    assert done[0]["stopEventActor"] == "station" and int(done[0]["stopValue"]) >= int(done[0]["startValue"])
    status, one = await ocpp.api("GET", f"{API}/v1/transactions?transactionPk={tx}&chargeBoxId=cb-0001")
    assert [t["id"] for t in one] == [tx]
    status, boxes = await ocpp.api("GET", API + "/v1/chargeBoxes")
    assert status == 200 and [(b["chargeBoxId"], isinstance(b["chargeBoxPk"], int)) for b in boxes] == [
        ("CB-0001", True)]
    assert (await ocpp.api("GET", API + "/v1/transactions?periodType=SOMETIME"))[0] == 400


async def test_auth_basic_or_steves_api_key_header(ocpp, charger):
    assert (await ocpp.api("GET", API + "/v1/chargeBoxes", auth="Basic " + base64.b64encode(b"admin:wrong").decode()))[0] == 401
    key = ocpp.server.settings.STEVE_API_KEY.get_secret_value()
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(ocpp.api_url + API + "/v1/chargeBoxes", headers={"X-API-KEY": key}) as r:
            assert r.status == 200
        async with s.get(ocpp.api_url + API + "/v1/chargeBoxes", headers={"X-API-KEY": "nope"}) as r:
            assert r.status == 401


async def test_our_own_dialect_works_at_steves_path(ocpp, sim):
    """The web process with the original's STEVE_BASE_URL (.../steve) posts ours to base + /api."""
    status, body = await ocpp.api("POST", API + "/v1/operations/Reset", {"chargeBoxId": "CB-0001", "type": "Soft"})
    assert (status, body["response"]) == (200, {"status": "Accepted"})
    assert (await ocpp.api("GET", API + "/v1/status"))[0] == 200


async def test_the_web_process_client_takes_the_originals_steve_base_url(ocpp, sim):
    """STEVE_BASE_URL=http://host:port/steve (the original's value: SteVe base, + /api) works as is."""
    import httpx

    from polaris.services.command_client import CommandClient

    settings = ocpp.server.settings.model_copy(update={"STEVE_BASE_URL": ocpp.api_url + "/steve/"})
    async with httpx.AsyncClient() as http:
        answer = await CommandClient(settings, http).operation("TriggerMessage", "CB-0001",
                                                               {"requestedMessage": "Heartbeat"})
    assert answer["response"] == {"status": "Accepted"}
