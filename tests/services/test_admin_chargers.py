"""Admin API, chargers: list/filter/paginate, detail, add/edit/deactivate, operations."""

from __future__ import annotations

from polaris.db.repos import charge_boxes

BASE = "/api/admin/v1/chargers"
KEY = "charger-key-0123456789"


async def seed(pool, n: int = 5):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, [f"CB-{i:03d}" for i in range(n)], KEY, site_name="Depot")
        if n < 3:
            return
        await conn.execute("UPDATE ocpp.charge_boxes SET connected = true WHERE charge_box_id IN ('CB-001', 'CB-002')")
        pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-001'")
        await conn.execute(
            "INSERT INTO ocpp.connectors (charge_box_pk, connector_id, status, error_code) VALUES "
            "($1, 1, 'Charging', 'NoError'), ($1, 2, 'Faulted', 'GroundFailure')",
            pk,
        )


async def test_list_paginates_and_filters(api, pool, operator):
    await seed(pool, 5)
    h = operator.headers
    resp = await api.get(BASE, params={"limit": 2}, headers=h)
    assert resp.status == 200, await resp.text()
    page = await resp.json()
    assert [c["charge_box_id"] for c in page["items"]] == ["CB-000", "CB-001"]
    assert page["items"][1]["connectors"][0] == {
        "connector_id": 1, "status": "Charging", "error_code": "NoError", "info": None, "status_at": None
    }
    seen = [c["charge_box_id"] for c in page["items"]]
    while page["next_cursor"]:
        page = await (await api.get(BASE, params={"limit": 2, "cursor": page["next_cursor"]}, headers=h)).json()
        seen += [c["charge_box_id"] for c in page["items"]]
    assert seen == [f"CB-{i:03d}" for i in range(5)]

    async def ids(**params):
        resp = await api.get(BASE, params=params, headers=h)
        assert resp.status == 200, await resp.text()
        return [c["charge_box_id"] for c in (await resp.json())["items"]]

    assert await ids(state="online") == ["CB-001", "CB-002"]
    assert await ids(state="faulted") == ["CB-001"]
    assert await ids(state="charging") == ["CB-001"]
    assert len(await ids(state="offline")) == 3
    assert await ids(q="b-00") == [f"CB-{i:03d}" for i in range(5)]
    assert await ids(q="%") == []
    resp = await api.get(BASE, params={"state": "sleeping"}, headers=h)
    assert resp.status == 400
    assert "state" in (await resp.json())["message"]
    resp = await api.get(BASE, params={"cursor": "garbage!"}, headers=h)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_cursor"
    resp = await api.get(BASE, params={"limit": "0"}, headers=h)
    assert resp.status == 400


async def test_detail_and_404(api, pool, operator):
    await seed(pool, 3)
    resp = await api.get(f"{BASE}/CB-001", headers=operator.headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["site_name"] == "Depot"
    assert len(body["connectors"]) == 2
    assert body["messages"] == []
    assert "key_hash" not in body and "key_salt" not in body
    resp = await api.get(f"{BASE}/NOPE", headers=operator.headers)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_add_needs_admin_and_is_audited(api, admin, operator):
    body = {"charge_box_ids": ["NEW-1", "NEW-2"], "password": KEY, "site_name": "Lot"}
    resp = await api.post(BASE, json=body, headers=operator.headers)
    assert resp.status == 403
    resp = await api.post(BASE, json=body)
    assert resp.status == 401
    resp = await api.post(BASE, json=body, headers=admin.headers)
    assert resp.status == 201, await resp.text()
    assert [c["charge_box_id"] for c in (await resp.json())["items"]] == ["NEW-1", "NEW-2"]
    resp = await api.post(BASE, json=body, headers=admin.headers)
    assert resp.status == 409
    resp = await api.post(BASE, json={**body, "charge_box_ids": ["X"], "password": "short"}, headers=admin.headers)
    assert resp.status == 400
    audit = await (await api.get("/api/admin/v1/audit", params={"target_type": "charger"}, headers=admin.headers)).json()
    assert {(e["action"], e["target_id"], e["actor_email"]) for e in audit["items"]} == {
        ("charger.add", "NEW-1", admin.email),
        ("charger.add", "NEW-2", admin.email),
    }


async def test_edit_deactivate_and_password(command_api, api, pool, admin, operator):
    await seed(pool, 1)
    resp = await api.patch(f"{BASE}/CB-000", json={"active": False, "description": "broken screen"}, headers=operator.headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["active"] is False and body["description"] == "broken screen"
    resp = await api.patch(f"{BASE}/CB-000", json={"site_name": None}, headers=operator.headers)
    assert (await resp.json())["site_name"] is None
    resp = await api.patch(f"{BASE}/CB-000", json={"active": None}, headers=operator.headers)
    assert resp.status == 400
    resp = await api.patch(f"{BASE}/CB-000", json={"colour": "red"}, headers=operator.headers)
    assert resp.status == 400
    resp = await api.put(f"{BASE}/CB-000/password", json={"password": "another-key-0123456789"}, headers=operator.headers)
    assert resp.status == 403
    command_api.offline.add("CB-000")
    resp = await api.put(f"{BASE}/CB-000/password", json={"password": "another-key-0123456789"}, headers=admin.headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["charger_updated"] is False
    async with pool.acquire() as conn:
        assert await charge_boxes.verify_key(conn, "CB-000", "another-key-0123456789") is False  # inactive
        await conn.execute("UPDATE ocpp.charge_boxes SET active = true")
        assert await charge_boxes.verify_key(conn, "CB-000", "another-key-0123456789") is True
    audit = await (await api.get("/api/admin/v1/audit", params={"target_id": "CB-000"}, headers=admin.headers)).json()
    entries = {e["action"]: e for e in audit["items"]}
    assert entries["charger.password"]["after"] == {"password": "changed", "charger": "not connected"}
    edit = [e for e in audit["items"] if e["action"] == "charger.edit"][-1]
    assert edit["before"]["active"] is True and edit["after"]["active"] is False


async def test_a_cancelled_reservation_is_mailed_to_its_holder(command_api, api, pool, operator):
    from polaris.db.repos import customers, id_tags

    await seed(pool, 1)
    async with pool.acquire() as conn:
        await customers.add_customer(conn, "res@example.com", name="Rae")
        await id_tags.add_id_tag(conn, "RES-1", customer_email="res@example.com")
        rid = await conn.fetchval(
            "INSERT INTO ocpp.reservations (charge_box_pk, connector_id, id_tag, expiry_date, status) "
            "SELECT id, 1, 'res-1', '2026-12-24T18:00Z', 'Accepted' FROM ocpp.charge_boxes "
            "WHERE charge_box_id = 'CB-000' RETURNING id")
    command_api.answers[("CancelReservation", "CB-000")] = {"status": "Rejected"}
    resp = await api.post(f"{BASE}/CB-000/operations/CancelReservation", json={"reservationId": rid}, headers=operator.headers)
    assert resp.status == 200 and (await resp.json())["status"] == "Rejected"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.email_outbox WHERE category = 'reservation-cancelled'") == 0
    command_api.answers[("CancelReservation", "CB-000")] = {"status": "Accepted"}
    for _ in range(2):  # said twice, mailed once
        resp = await api.post(f"{BASE}/CB-000/operations/CancelReservation", json={"reservationId": rid},
                              headers=operator.headers)
        assert resp.status == 200
    async with pool.acquire() as conn:
        mails = await conn.fetch("SELECT to_address, subject, text FROM app.email_outbox WHERE category = 'reservation-cancelled'")
    assert len(mails) == 1 and mails[0]["to_address"] == "res@example.com"
    assert "2026-12-24 18:00 UTC" in mails[0]["text"] and "the operator cancelled it" in mails[0]["text"]
    # An unknown reservation id: the charger's answer stands, nobody is mailed.
    resp = await api.post(f"{BASE}/CB-000/operations/CancelReservation", json={"reservationId": 999999}, headers=operator.headers)
    assert resp.status == 200


async def test_operations_pass_through_the_command_api(command_api, api, pool, operator):
    await seed(pool, 3)
    command_api.answers[("GetConfiguration", "CB-000")] = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}
    resp = await api.post(f"{BASE}/CB-000/operations/Reset", json={"type": "Soft"}, headers=operator.headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"operation": "Reset", "charge_box_id": "CB-000", "status": "Accepted", "response": {"status": "Accepted"}}
    assert command_api.calls[-1] == ("Reset", {"type": "Soft", "chargeBoxId": "CB-000"})
    resp = await api.post(f"{BASE}/CB-000/operations/GetConfiguration", headers=operator.headers)
    assert (await resp.json())["response"]["configurationKey"][0]["key"] == "HeartbeatInterval"

    command_api.offline.add("CB-001")
    resp = await api.post(f"{BASE}/CB-001/operations/ClearCache", json={}, headers=operator.headers)
    assert resp.status == 409
    assert await resp.json() == {"error": "charger_offline", "message": "charger CB-001 is not connected"}
    command_api.slow.add("CB-000")
    resp = await api.post(f"{BASE}/CB-000/operations/ClearCache", json={}, headers=operator.headers)
    assert resp.status == 504
    assert (await resp.json())["error"] == "charger_timeout"

    resp = await api.post(f"{BASE}/CB-000/operations/Explode", json={}, headers=operator.headers)
    assert resp.status == 404
    resp = await api.post(f"{BASE}/NOPE/operations/Reset", json={"type": "Soft"}, headers=operator.headers)
    assert resp.status == 404
    resp = await api.post(f"{BASE}/CB-000/operations/Reset", data=b"[1]", headers={**operator.headers, "Content-Type": "application/json"})
    assert resp.status == 400


async def test_operation_when_the_ocpp_server_is_down_is_502(web_settings, api, pool, operator):
    await seed(pool, 1)
    resp = await api.post(f"{BASE}/CB-000/operations/Reset", json={"type": "Hard"}, headers=operator.headers)
    assert resp.status == 502
    assert (await resp.json())["error"] == "ocpp_server_unreachable"


async def test_add_with_security_profile_0_and_public_id_then_edit_profile(command_api, api, pool, admin):
    h = admin.headers
    resp = await api.post(BASE, json={"charge_box_ids": ["Station 7"], "security_profile": 0, "public_id": "ab12cd34"},
                          headers=h)
    assert resp.status == 201, await resp.text()
    item = (await resp.json())["items"][0]
    assert (item["security_profile"], item["public_id"]) == (0, "ab12cd34")
    resp = await api.post(BASE, json={"charge_box_ids": ["CB-P"], "security_profile": 0, "password": KEY}, headers=h)
    assert resp.status == 400 and "has no password" in (await resp.json())["message"]
    resp = await api.post(BASE, json={"charge_box_ids": ["CB-P"]}, headers=h)
    assert resp.status == 400 and "needs a password" in (await resp.json())["message"]
    resp = await api.post(BASE, json={"charge_box_ids": ["Bad(1)"], "password": KEY}, headers=h)
    assert resp.status == 400 and "may not contain" in (await resp.json())["message"]
    # Profile 1 needs a password first; setting one moves the charger to profile 1.
    resp = await api.patch(BASE + "/Station 7", json={"security_profile": 1}, headers=h)
    assert resp.status == 400 and "set one first" in (await resp.json())["message"]
    command_api.offline.add("Station 7")  # not connected: only the stored key is set
    resp = await api.put(BASE + "/Station 7/password", json={"password": KEY}, headers=h)
    assert resp.status == 200 and (await resp.json())["charger_updated"] is False, await resp.text()
    detail = await (await api.get(BASE + "/Station 7", headers=h)).json()
    assert detail["security_profile"] == 1 and detail["rival_claims"] == 0
    resp = await api.patch(BASE + "/Station 7", json={"security_profile": 0}, headers=h)
    assert resp.status == 200 and (await resp.json())["security_profile"] == 0
