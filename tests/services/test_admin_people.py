"""Admin API: customers (invite, edit, deactivate), users (admins only), cards (block -> ClearCache)."""

from __future__ import annotations

import pytest

from polaris.db.repos import charge_boxes, customers, id_tags

API = "/api/admin/v1"



@pytest.fixture
def web_settings(settings):
    """The services' web settings with the account mails turned on (off by default, as in the original)."""
    return settings.model_copy(update={"SSE_TRANSPORT": "memory", "STEVE_BASE_URL": "http://127.0.0.1:9",
                                       "EMAIL_OPTIONAL_CATEGORIES": "account-inactive,account-reactivated"})

async def test_customers_create_list_detail_edit(api, pool, operator, admin):
    h = operator.headers
    resp = await api.post(f"{API}/customers", json={"email": "Ann@Example.com", "name": "Ann", "lago_subscription_id": "sub_1", "lago_external_customer_id": "cus_1"}, headers=h)
    assert resp.status == 201, await resp.text()
    ann = await resp.json()
    assert ann["email"] == "ann@example.com"
    assert ann["lago_url"] == "https://app.getlago.com/customers?search=cus_1"
    assert ann["invite_sent"] is True
    async with pool.acquire() as conn:
        mail = await conn.fetchrow("SELECT to_address, category, text FROM app.email_outbox")
    assert mail["to_address"] == "ann@example.com" and mail["category"] == "magic-link"
    assert "/auth/link/" in mail["text"], "the mail carries the 24 h sign-in link"
    resp = await api.post(f"{API}/customers", json={"email": "ann@example.com"}, headers=h)
    assert resp.status == 409
    resp = await api.post(f"{API}/customers", json={"email": "not-an-email"}, headers=h)
    assert resp.status == 400
    for i in range(3):
        await api.post(f"{API}/customers", json={"email": f"c{i}@example.com", "invite": False}, headers=h)

    page = await (await api.get(f"{API}/customers", params={"limit": 3}, headers=h)).json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    rest = await (await api.get(f"{API}/customers", params={"limit": 3, "cursor": page["next_cursor"]}, headers=h)).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    found = await (await api.get(f"{API}/customers", params={"q": "sub_1"}, headers=h)).json()
    assert [c["email"] for c in found["items"]] == ["ann@example.com"]

    resp = await api.get(f"{API}/customers/{ann['id']}", headers=h)
    assert (await resp.json())["id_tags"] == []
    assert (await api.get(f"{API}/customers/999999", headers=h)).status == 404
    assert (await api.get(f"{API}/customers/abc", headers=h)).status == 404

    resp = await api.patch(f"{API}/customers/{ann['id']}", json={"active": False, "name": "Ann B"}, headers=h)
    assert resp.status == 200
    body = await resp.json()
    assert body["active"] is False and body["name"] == "Ann B"
    audit = await (await api.get(f"{API}/audit", params={"target_type": "customer", "target_id": str(ann["id"])}, headers=admin.headers)).json()
    assert [e["action"] for e in audit["items"]] == ["customer.deactivate", "customer.create"]
    assert audit["items"][0]["before"] == {"active": True, "name": "Ann"}

    # The customer is told, once per change (a rename alone mails nothing).
    assert (await api.patch(f"{API}/customers/{ann['id']}", json={"name": "Ann C"}, headers=h)).status == 200
    assert (await api.patch(f"{API}/customers/{ann['id']}", json={"active": True}, headers=h)).status == 200
    async with pool.acquire() as conn:
        mails = await conn.fetch("SELECT to_address, category, subject, text FROM app.email_outbox "
                                 "WHERE category LIKE 'account-%' ORDER BY id")
    assert [(m["to_address"], m["category"]) for m in mails] == [
        ("ann@example.com", "account-inactive"), ("ann@example.com", "account-reactivated")]
    assert "Hello Ann B" in mails[0]["text"] and "no longer start charging" in mails[0]["text"]
    assert mails[1]["subject"].endswith("account is active again")
    audit = await (await api.get(f"{API}/audit", params={"target_type": "customer", "target_id": str(ann["id"])}, headers=admin.headers)).json()
    assert audit["items"][0]["action"] == "customer.reactivate"


async def test_users_are_for_admins_only(api, admin, operator):
    resp = await api.post(f"{API}/users", json={"email": "new@example.com", "role": "operator", "password": "long enough password"}, headers=operator.headers)
    assert resp.status == 403
    resp = await api.post(f"{API}/users", json={"email": "new@example.com", "role": "operator", "password": "short"}, headers=admin.headers)
    assert resp.status == 400
    resp = await api.post(f"{API}/users", json={"email": "new@example.com", "role": "operator", "password": "long enough password"}, headers=admin.headers)
    assert resp.status == 201, await resp.text()
    new = await resp.json()
    assert new["has_password"] is True and new["role"] == "operator"
    resp = await api.post(f"{API}/users", json={"email": "sso@example.com", "role": "admin"}, headers=admin.headers)
    assert (await resp.json())["has_password"] is False
    resp = await api.post(f"{API}/users", json={"email": "x@example.com", "role": "customer"}, headers=admin.headers)
    assert resp.status == 400

    # The new operator can sign in; promoting and deactivating work and are audited.
    resp = await api.post(f"{API}/auth/token", json={"email": "new@example.com", "password": "long enough password"})
    token = (await resp.json())["token"]
    resp = await api.patch(f"{API}/users/{new['id']}", json={"role": "admin"}, headers=admin.headers)
    assert (await resp.json())["role"] == "admin"
    resp = await api.patch(f"{API}/users/{new['id']}", json={"active": False}, headers=admin.headers)
    assert (await resp.json())["active"] is False
    assert (await api.get(f"{API}/auth/session", headers={"Authorization": f"Bearer {token}"})).status == 401

    # The last active admin cannot be demoted or deactivated.
    resp = await api.patch(f"{API}/users/{new['id']}", json={"active": True}, headers=admin.headers)
    users = await (await api.get(f"{API}/users", params={"role": "admin"}, headers=admin.headers)).json()
    assert {u["email"] for u in users["items"]} == {admin.email, "new@example.com", "sso@example.com"}
    for u in users["items"]:
        if u["email"] != admin.email:
            await api.patch(f"{API}/users/{u['id']}", json={"active": False}, headers=admin.headers)
    resp = await api.patch(f"{API}/users/{admin.id}", json={"role": "operator"}, headers=admin.headers)
    assert resp.status == 409
    assert (await resp.json())["error"] == "last_admin"

    resp = await api.put(f"{API}/users/{operator.id}/password", json={"password": "a brand new password"}, headers=admin.headers)
    assert resp.status == 204
    resp = await api.post(f"{API}/auth/login", json={"email": operator.email, "password": "a brand new password"})
    assert resp.status == 200
    audit = await (await api.get(f"{API}/audit", params={"target_type": "user"}, headers=admin.headers)).json()
    actions = [e["action"] for e in audit["items"]]
    assert "user.password" in actions and "user.deactivate" in actions and "user.create" in actions
    assert all(e["after"].get("password") in (None, "set") for e in audit["items"])


async def test_id_tags_create_link_block_clears_caches(command_api, api, pool, operator):
    h = operator.headers
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-A", "CB-B", "CB-C"], "charger-key-0123456789")
        cust = await customers.add_customer(conn, "ann@example.com")
    resp = await api.post(f"{API}/id-tags", json={"id_tag": "CARD01", "customer_id": cust["id"], "label": "blue"}, headers=h)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["customer_email"] == "ann@example.com"
    resp = await api.post(f"{API}/id-tags", json={"id_tag": "card01"}, headers=h)
    assert resp.status == 409
    resp = await api.post(f"{API}/id-tags", json={"id_tag": "X" * 21}, headers=h)
    assert resp.status == 400
    resp = await api.post(f"{API}/id-tags", json={"id_tag": "LOOSE", "customer_id": 99999}, headers=h)
    assert resp.status == 404

    # The card was seen on CB-A and charged at CB-B; CB-B is offline.
    async with pool.acquire() as conn:
        pk_a = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-A'")
        pk_b = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-B'")
        await id_tags.record_seen(conn, "CARD01", pk_a, keep_unknown=False)
        await conn.execute(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, "
            "stop_timestamp, meter_stop) VALUES ($1, 1, 'card01', now() - interval '2 hours', 0, now() - interval '1 hour', 5000)",
            pk_b,
        )
    command_api.offline.add("CB-B")
    resp = await api.patch(f"{API}/id-tags/CARD01", json={"blocked": True}, headers=h)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["blocked"] is True
    assert body["clear_cache"] == [
        {"charge_box_id": "CB-A", "status": "Accepted", "error": None},
        {"charge_box_id": "CB-B", "status": None, "error": "charger_offline"},
    ]
    assert sorted(c[1]["chargeBoxId"] for c in command_api.calls if c[0] == "ClearCache") == ["CB-A", "CB-B"]
    # Blocking again sends nothing; unlinking and expiry are plain edits.
    command_api.calls.clear()
    resp = await api.patch(f"{API}/id-tags/card01", json={"blocked": True, "customer_id": None, "expiry_date": "2030-01-01T00:00:00Z"}, headers=h)
    body = await resp.json()
    assert body["clear_cache"] == [] and command_api.calls == []
    assert body["customer_id"] is None and body["expiry_date"].startswith("2030-01-01")
    resp = await api.patch(f"{API}/id-tags/card01", json={"expiry_date": "2030-01-01T00:00:00"}, headers=h)
    assert resp.status == 400, "naive timestamps are refused"
    page = await (await api.get(f"{API}/id-tags", params={"blocked": "true"}, headers=h)).json()
    assert [t["id_tag"] for t in page["items"]] == ["CARD01"]
    assert (await api.get(f"{API}/id-tags/NOPE", headers=h)).status == 404
