"""The original iOS app's device API, replayed as the app sends it (requests and answers
written from vladzaharia/expressync routes/api/devices/{register,me,heartbeat}.ts,
[deviceId].ts, [deviceId]/push-token.ts and routes/admin/expresscan/register.tsx)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from polaris.services import expresscan

from .conftest import PASSWORD

APNS = "ab" * 32


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_body(code: str, verifier: str, **over) -> dict:
    """RegisterBody as the app's ExpresScan client sends it."""
    body = {
        "oneTimeCode": code, "codeVerifier": verifier, "label": "Front desk iPhone", "platform": "ios",
        "model": "iPhone15,2", "osVersion": "17.4", "appVersion": "1.3.0", "pushToken": APNS,
        "apnsEnvironment": "sandbox", "requestedCapabilities": ["scanner"],
    }
    body.update(over)
    return body


@pytest.fixture
async def signed_in(api, make_user):
    """A staff member's browser session (the cookie the app's ASWebAuthenticationSession has)."""
    await make_user("desk@example.com", "admin", name="Desk Admin")
    resp = await api.post("/api/admin/v1/auth/login", json={"email": "desk@example.com", "password": PASSWORD})
    assert resp.status in (200, 201), await resp.text()
    return api


async def mint(client, challenge: str, label: str = "iPhone") -> str:
    resp = await client.get(expresscan.REGISTER_PAGE, params={"codeChallenge": challenge, "label": label},
                            allow_redirects=False)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    target = resp.headers["Refresh"].split("url=", 1)[1]
    assert target.startswith("expresscan://register/callback?")
    assert target in await resp.text() or target.replace("&", "&amp;") in await resp.text()
    return parse_qs(urlsplit(target).query)["code"][0]


async def registered(client) -> dict:
    verifier, challenge = pkce()
    code = await mint(client, challenge)
    resp = await client.post("/api/devices/register", json=register_body(code, verifier),
                             headers={"Idempotency-Key": str(uuid.uuid4())})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_registration_with_pkce_gives_the_originals_answer(signed_in, pool):
    verifier, challenge = pkce()
    code = await mint(signed_in, challenge, label="Front desk")
    # The app's URLSession has no cookie: the PKCE proof is the only credential.
    signed_in.session.cookie_jar.clear()
    resp = await signed_in.post("/api/devices/register", json=register_body(code, verifier))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Pragma"] == "no-cache"
    body = await resp.json()
    assert set(body) == {"ok", "deviceId", "deviceToken", "deviceSecret", "capabilities", "expiresAtIso"}
    assert body["ok"] is True and body["capabilities"] == ["scanner"]
    uuid.UUID(body["deviceId"])
    assert body["deviceToken"].startswith("dev_") and len(body["deviceToken"]) > 40
    assert len(body["deviceSecret"]) >= 43
    expires = datetime.fromisoformat(body["expiresAtIso"].replace("Z", "+00:00"))
    assert timedelta(days=364) < expires - datetime.now(UTC) < timedelta(days=366)

    async with pool.acquire() as conn:
        dev = await conn.fetchrow("SELECT * FROM app.devices WHERE public_id = $1", uuid.UUID(body["deviceId"]))
        tok = await conn.fetchrow("SELECT * FROM app.device_tokens WHERE device_id = $1", dev["id"])
        entry = await conn.fetchrow("SELECT action FROM app.audit_log WHERE target_id = $1", body["deviceId"])
    assert dev["token"] == APNS and dev["sandbox"] and dev["label"] == "Front desk iPhone"
    # The token is kept only as its hash.
    assert tok["token_hash"] == hashlib.sha256(body["deviceToken"].encode()).hexdigest()
    assert body["deviceToken"] not in str(dict(tok))
    assert entry["action"] == "device.register"

    # Single use: the same code again is refused like any bad code.
    again = await signed_in.post("/api/devices/register", json=register_body(code, verifier))
    assert again.status == 400 and await again.json() == {"error": "invalid_code"}


async def test_a_wrong_verifier_or_an_unknown_code_is_invalid_code(signed_in):
    verifier, challenge = pkce()
    code = await mint(signed_in, challenge)
    other, _ = pkce()
    resp = await signed_in.post("/api/devices/register", json=register_body(code, other))
    assert resp.status == 400 and await resp.json() == {"error": "invalid_code"}
    # A wrong verifier does not use the code up.
    resp = await signed_in.post("/api/devices/register", json=register_body(code, verifier))
    assert resp.status == 200
    resp = await signed_in.post("/api/devices/register", json=register_body("nope", verifier))
    assert resp.status == 400 and await resp.json() == {"error": "invalid_code"}


async def test_an_expired_code_is_refused(signed_in, pool):
    verifier, challenge = pkce()
    code = await mint(signed_in, challenge)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE app.device_register_codes SET expires_at = now() - interval '1 second'")
    resp = await signed_in.post("/api/devices/register", json=register_body(code, verifier))
    assert resp.status == 400 and await resp.json() == {"error": "invalid_code"}


@pytest.mark.parametrize(("over", "error"), [
    ({"platform": "android"}, "invalid_platform"),
    ({"requestedCapabilities": ["root"]}, "invalid_capabilities"),
    ({"requestedCapabilities": []}, "invalid_capabilities"),
    ({"codeVerifier": "short"}, "invalid_verifier"),
    ({"oneTimeCode": ""}, "invalid_code"),
    ({"apnsEnvironment": "wat"}, "invalid_body"),
    ({"model": ""}, "invalid_body"),
    ({"pushToken": "not-hex"}, "invalid_body"),
])
async def test_bad_register_bodies_get_the_originals_error_codes(signed_in, pool, over, error):
    verifier, challenge = pkce()
    code = await mint(signed_in, challenge)
    resp = await signed_in.post("/api/devices/register", json=register_body(code, verifier, **over))
    assert resp.status == 400 and await resp.json() == {"error": error}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.device_tokens") == 0
    resp = await signed_in.post("/api/devices/register", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and await resp.json() == {"error": "invalid_body"}


async def test_minting_needs_a_staff_browser_session(api, make_user):
    _, challenge = pkce()
    resp = await api.get(expresscan.REGISTER_PAGE, params={"codeChallenge": challenge})
    assert resp.status == 401 and "Sign in" in await resp.text()
    await make_user("c@example.com", "customer")
    # A bad challenge is refused once signed in.
    await make_user("ops@example.com", "operator")
    resp = await api.post("/api/admin/v1/auth/login", json={"email": "ops@example.com", "password": PASSWORD})
    assert resp.status in (200, 201)
    resp = await api.get(expresscan.REGISTER_PAGE, params={"codeChallenge": "plain"})
    assert resp.status == 400 and "codeChallenge" in await resp.text()


async def test_me_heartbeat_push_token_and_sign_out_as_the_app_calls_them(signed_in, pool):
    reg = await registered(signed_in)
    signed_in.session.cookie_jar.clear()
    auth = {"Authorization": f"Bearer {reg['deviceToken']}"}

    resp = await signed_in.get("/api/devices/me", headers=auth)
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert set(me) == {"ok", "deviceId", "ownerUserId", "ownerDisplayName", "ownerName", "ownerEmail",
                       "ownerRole", "planCode", "planName", "capabilities", "label", "registeredAtIso",
                       "createdAtIso", "expiresAtIso"}
    assert me["deviceId"] == reg["deviceId"] and me["ownerEmail"] == "desk@example.com"
    assert me["ownerDisplayName"] == "Desk Admin" and me["ownerRole"] == "admin"
    assert me["capabilities"] == ["scanner"] and me["expiresAtIso"] == reg["expiresAtIso"]
    assert me["createdAtIso"] == me["registeredAtIso"] and isinstance(me["ownerUserId"], str)

    for bad in ({}, {"Authorization": "Bearer dev_wrong"}, {"Authorization": "Bearer pol_x"}):
        resp = await signed_in.get("/api/devices/me", headers=bad)
        assert resp.status == 401 and await resp.json() == {"error": "unauthorized"}

    resp = await signed_in.post("/api/devices/heartbeat", headers=auth)
    assert resp.status == 200 and await resp.json() == {"ok": True}
    resp = await signed_in.post("/api/devices/heartbeat", headers=auth,
                                json={"batteryLevel": 0.8, "isCharging": True, "networkType": "wifi"})
    assert resp.status == 200
    resp = await signed_in.post("/api/devices/heartbeat", headers=auth, json={"batteryLevel": 2})
    assert resp.status == 400 and await resp.json() == {"error": "invalid_body"}
    resp = await signed_in.post("/api/devices/heartbeat", headers=auth, json={"extra": 1})
    assert resp.status == 400

    new_token = "cd" * 32
    path = f"/api/devices/{reg['deviceId']}/push-token"
    resp = await signed_in.put(path, headers=auth, json={"pushToken": new_token, "apnsEnvironment": "production"})
    assert resp.status == 200 and await resp.json() == {"ok": True}
    resp = await signed_in.put(path, headers=auth, json={"pushToken": new_token})
    assert resp.status == 400
    resp = await signed_in.put(path, headers=auth, data=b"{not-json")
    assert resp.status == 400
    resp = await signed_in.put("/api/devices/not-a-uuid/push-token", headers=auth, json={})
    assert resp.status == 404 and await resp.json() == {"error": "not_found"}
    resp = await signed_in.put(f"/api/devices/{uuid.uuid4()}/push-token", headers=auth,
                               json={"pushToken": new_token, "apnsEnvironment": "sandbox"})
    assert resp.status == 403 and await resp.json() == {"error": "forbidden"}
    async with pool.acquire() as conn:
        dev = await conn.fetchrow("SELECT token, sandbox, last_status FROM app.devices WHERE public_id = $1",
                                  uuid.UUID(reg["deviceId"]))
    assert dev["token"] == new_token and not dev["sandbox"]
    assert dev["last_status"] == {"batteryLevel": 0.8, "isCharging": True, "networkType": "wifi"}

    resp = await signed_in.get("/api/devices/me/state", headers=auth)
    assert resp.status == 200, await resp.text()
    st = await resp.json()
    assert set(st) == {"device", "capabilities", "kioskAllowed", "ownerUser", "settings", "scanStatus",
                       "pushToken", "needsPushToken", "connectivity"}
    assert set(st["device"]) == {"id", "label", "kind", "ownerUserId", "siteId", "registeredAt", "lastSeenAt"}
    assert st["device"]["id"] == reg["deviceId"] and st["device"]["kind"] == "phone_nfc"
    assert st["capabilities"] == ["scanner"] and st["kioskAllowed"] is True
    assert st["ownerUser"] == {"id": me["ownerUserId"], "role": "admin", "displayName": "Desk Admin"}
    assert st["settings"] == {} and st["scanStatus"] == {"armed": False, "pairingCode": None, "expiresAt": None}
    assert st["pushToken"] == {"last8": new_token[-8:], "environment": "production"}
    assert st["needsPushToken"] is False
    assert st["connectivity"] == {"online": True, "lastSyncAt": st["device"]["lastSeenAt"],
                                  "reconnectCount": 0, "pendingUploads": 0}

    resp = await signed_in.delete(f"/api/devices/{reg['deviceId']}", headers=auth)
    assert resp.status == 200 and await resp.json() == {"ok": True}
    resp = await signed_in.get("/api/devices/me", headers=auth)
    assert resp.status == 401


async def test_a_deactivated_owner_locks_the_device_out(signed_in, pool):
    reg = await registered(signed_in)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE app.users SET active = false WHERE email = 'desk@example.com'")
    resp = await signed_in.get("/api/devices/me", headers={"Authorization": f"Bearer {reg['deviceToken']}"})
    assert resp.status == 401


def test_the_customer_document_publishes_the_device_api(web_settings):
    import schemathesis

    from polaris.customer_web.api import customer_openapi
    from polaris.services.app import app_factory

    doc = customer_openapi(app_factory(web_settings, pool_size=1))
    schemathesis.openapi.from_dict(doc).validate()
    for ref in {part.split("'")[0] for part in str(doc).split("#/components/schemas/")[1:]}:
        assert ref in doc["components"]["schemas"], ref
    assert {"/api/v1/me", "/api/devices/register", "/api/devices/me", "/api/devices/me/state", "/api/devices/heartbeat",
            "/api/devices/{deviceId}/push-token", "/api/devices/{deviceId}", "/expresscan/register"} <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["deviceToken"]["scheme"] == "bearer"


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
async def test_schema_driven_sweep_with_a_device_token_has_no_server_errors(aiohttp_server, web_settings, pool,
                                                                          make_user):
    """Schemathesis over the device API with a live dev_ token and the device's own id."""
    import asyncio

    import aiohttp
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    from polaris.services.app import app_factory

    server = await aiohttp_server(app_factory(web_settings, pool_size=5))
    base = str(server.make_url("")).rstrip("/")
    await make_user("desk@example.com", "admin", name="Desk Admin")
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        resp = await browser.post("/api/admin/v1/auth/login", json={"email": "desk@example.com", "password": PASSWORD})
        assert resp.status in (200, 201)
        reg = await registered(browser)

    def sweep() -> tuple[int, list[str]]:
        import requests

        session = requests.Session()
        headers = {"Authorization": f"Bearer {reg['deviceToken']}"}
        schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
        failures: list[str] = []
        tested = 0
        for result in schema.get_all_operations():
            op = result.ok()
            if not op.path.startswith("/api/devices/") or op.method.upper() == "DELETE":
                continue
            tested += 1

            @hypothesis.settings(max_examples=15, deadline=None, database=None, derandomize=True,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @hypothesis.given(case=op.as_strategy())
            def check(case):
                if case.path_parameters and "deviceId" in case.path_parameters:
                    case.path_parameters["deviceId"] = reg["deviceId"]
                response = case.call(base_url=base, session=session, headers=headers, timeout=30)
                try:
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                except Exception as exc:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:500])

            check()
        return tested, failures

    tested, failures = await asyncio.to_thread(sweep)
    assert tested == 5
    assert not failures, "\n".join(failures[:10])
    # The sweep's token still works: nothing it sent broke the device.
    async with aiohttp.ClientSession(base_url=base) as app:
        resp = await app.get("/api/devices/me", headers={"Authorization": f"Bearer {reg['deviceToken']}"})
        assert resp.status == 200


# The original's tests/fixtures/hmac-vectors.json (the iOS app's ScanResultSignerTests use the same).
HMAC_VECTORS = [
    ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "04AB12CDEF1234", "X7R2KQ",
     "00000000-0000-0000-0000-000000000001", 1745622000,
     "2345bb48320f6a0f89953af9491569ba350e83e7e4c8ea136867ca6a5a648e1f"),
    ("QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI", "0123456789ABCDEF", "ABC123",
     "11111111-2222-3333-4444-555555555555", 1700000000,
     "ce4439749adbb90224d1ef50e788fc28ced71b0ed7674bb0019542e1a9aa8361"),
]


@pytest.mark.parametrize(("secret", "id_tag", "code", "device_id", "ts", "expected"), HMAC_VECTORS)
def test_scan_result_signatures_match_the_originals_vectors(secret, id_tag, code, device_id, ts, expected):
    assert expresscan.scan_result_nonce(secret, id_tag, code, device_id, ts) == expected
    assert expresscan.scan_result_nonce(secret, id_tag.lower(), code, device_id, ts) == expected
    assert expresscan.check_scan_result(secret, id_tag, code, device_id, ts, expected.upper(), now=ts + 59) is None
    assert expresscan.check_scan_result(secret, id_tag, code, device_id, ts, expected, now=ts + 61) == "clock_skew"
    assert expresscan.check_scan_result(secret, id_tag, code, device_id, ts, "0" * 64, now=ts) == "invalid_nonce"
    assert expresscan.check_scan_result("!!!", id_tag, code, device_id, ts, expected, now=ts) == "invalid_nonce"


async def test_the_issued_secret_is_the_originals_key_format(signed_in):
    reg = await registered(signed_in)
    assert len(base64.urlsafe_b64decode(reg["deviceSecret"] + "=")) == 32


async def test_push_token_taken_by_a_customer_app_leaves_the_registered_device_its_owner(signed_in, pool, make_user):
    from polaris.db.repos import devices

    reg = await registered(signed_in)  # registered with pushToken APNS
    cust = await make_user("cust@example.com", "customer")
    async with pool.acquire() as conn:
        _, created = await devices.register_device(conn, cust["id"], APNS)
        staff_row = await conn.fetchrow("SELECT user_id, token FROM app.devices WHERE public_id = $1",
                                        uuid.UUID(reg["deviceId"]))
        owner = await conn.fetchval("SELECT user_id FROM app.devices WHERE token = $1", APNS)
        # Pushes to the staff owner skip a device with no token.
        queued = await devices.queue_push_to_user(conn, staff_row["user_id"], kind="test", payload={},
                                                  dedupe_key="t1")
    assert created and staff_row["token"] is None and owner == cust["id"] and queued == 0
    resp = await signed_in.get("/api/devices/me", headers={"Authorization": f"Bearer {reg['deviceToken']}"})
    assert resp.status == 200


async def test_a_retry_with_the_same_idempotency_key_gets_the_same_device(signed_in, pool):
    verifier, challenge = pkce()
    code = await mint(signed_in, challenge)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await signed_in.post("/api/devices/register", json=register_body(code, verifier), headers=key)
    assert first.status == 200
    first = await first.json()
    # The answer was lost on the way; the app sends the same request again.
    again = await signed_in.post("/api/devices/register", json=register_body(code, verifier), headers=key)
    assert again.status == 200, await again.text()
    again = await again.json()
    assert again["deviceId"] == first["deviceId"] and again["deviceToken"] != first["deviceToken"]
    assert set(again) == set(first)
    old = await signed_in.get("/api/devices/me", headers={"Authorization": f"Bearer {first['deviceToken']}"})
    new = await signed_in.get("/api/devices/me", headers={"Authorization": f"Bearer {again['deviceToken']}"})
    assert old.status == 401 and new.status == 200
    # Another key, or no key, or another verifier: the code is used.
    for headers, v in (({"Idempotency-Key": "other"}, verifier), ({}, verifier), (key, pkce()[0])):
        resp = await signed_in.post("/api/devices/register", json=register_body(code, v), headers=headers)
        assert resp.status == 400 and await resp.json() == {"error": "invalid_code"}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.devices WHERE registered_at IS NOT NULL") == 1
