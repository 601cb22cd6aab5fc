"""The customer JSON API (iOS app): the same capabilities as the pages, a bearer token, its own OpenAPI."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import last_link, sign_in


async def app_token(b, pool, email: str) -> str:
    resp, body = await b.api("POST", "/api/v1/auth/magic-link", json={"email": email})
    assert resp.status == 202, body
    token = (await last_link(pool, email)).rsplit("/", 1)[1]
    resp, body = await b.api("POST", "/api/v1/auth/magic-link/consume", json={"token": token, "device_name": "Ada's iPhone"})
    assert resp.status == 200, body
    return body["token"]


async def test_magic_link_ends_in_a_bearer_token_used_once(browser, pool, make_customer):
    cust = await make_customer()
    resp, body = await browser.api("POST", "/api/v1/auth/magic-link", json={"email": "nobody@example.com"})
    assert resp.status == 202 and body["email"] == "nobody@example.com"
    resp, body = await browser.api("POST", "/api/v1/auth/magic-link", json={"email": "bad"})
    assert resp.status == 400 and body["error"] == "invalid_email"
    resp, body = await browser.api("POST", "/api/v1/auth/magic-link", json={"mail": cust.email})
    assert resp.status == 400 and body["error"] == "invalid_input"

    await browser.api("POST", "/api/v1/auth/magic-link", json={"email": cust.email})
    token = (await last_link(pool, cust.email)).rsplit("/", 1)[1]
    resp, body = await browser.api("POST", "/api/v1/auth/magic-link/consume", json={"token": token})
    assert resp.status == 200 and body["token"].startswith("pol_")
    bearer = body["token"]
    resp, body = await browser.api("POST", "/api/v1/auth/magic-link/consume", json={"token": token})
    assert resp.status == 410 and body["error"] == "link_used"
    resp, body = await browser.api("POST", "/api/v1/auth/magic-link/consume", json={"token": "x" * 43})
    assert resp.status == 404 and body["error"] == "link_unknown"
    resp, me = await browser.api("GET", "/api/v1/me", token=bearer)
    assert resp.status == 200 and me["customer_id"] == cust.id
    resp, _ = await browser.api("GET", "/api/v1/profile", token="pol_forged")
    assert resp.status == 401


async def test_rate_limit_answers_429(browser, make_customer):
    cust = await make_customer()
    statuses = [(await browser.api("POST", "/api/v1/auth/magic-link", json={"email": cust.email}))[0].status
                for _ in range(6)]
    assert statuses == [202] * 5 + [429]


async def test_charger_sessions_cards_billing_profile(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    bob = await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    cb = await make_charger(statuses={1: "Available", 2: "Faulted"})
    mine = await add_session(cb, cust.id_tag, kwh=10)
    bobs = await add_session(cb, bob.id_tag, kwh=3)
    token = await app_token(browser, pool, cust.email)

    resp, charger = await browser.api("GET", f"/api/v1/chargers/{cb['public_id']}")
    assert resp.status == 200 and charger["may_charge"] is False and charger["price_per_kwh"] is None
    resp, charger = await browser.api("GET", f"/api/v1/chargers/{cb['public_id']}", token=token)
    assert charger["may_charge"] and charger["price_per_kwh"] == "0.35" and charger["currency"] == "EUR"
    assert [c["available"] for c in charger["connectors"]] == [True, False]
    assert charger["connectors"][1]["status_text"] == "Out of order"
    resp, body = await browser.api("GET", "/api/v1/chargers/nope", token=token)
    assert resp.status == 404
    resp, body = await browser.api("POST", f"/api/v1/chargers/{cb['public_id']}/start", token=token,
                                   json={"connector_id": 2})
    assert resp.status == 409 and body["error"] == "connector_faulted"

    resp, sessions = await browser.api("GET", "/api/v1/sessions", token=token)
    assert [s["id"] for s in sessions["items"]] == [mine]
    assert sessions["items"][0]["energy_kwh"] == 10.0 and sessions["items"][0]["cost"] == "3.50"
    resp, one = await browser.api("GET", f"/api/v1/sessions/{mine}", token=token)
    assert one["running"] is False and one["place"] == "Harbour"
    resp, body = await browser.api("GET", f"/api/v1/sessions/{bobs}", token=token)
    assert resp.status == 404
    resp, body = await browser.api("POST", f"/api/v1/sessions/{bobs}/stop", token=token)
    assert resp.status == 404
    resp, body = await browser.api("POST", f"/api/v1/sessions/{mine}/stop", token=token)
    assert resp.status == 409 and body["error"] == "session_finished"
    resp, points = await browser.api("GET", f"/api/v1/sessions/{mine}/energy", token=token)
    assert points[0]["kwh"] == 0 and points[-1]["kwh"] == 10.0

    resp, cards = await browser.api("GET", "/api/v1/cards", token=token)
    assert [c["id_tag"] for c in cards["items"]] == ["CARD-ADA"]
    resp, card = await browser.api("PATCH", f"/api/v1/cards/{cust.card_id}", token=token, json={"label": "Keyfob"})
    assert resp.status == 200 and card["label"] == "Keyfob"
    resp, _ = await browser.api("PATCH", f"/api/v1/cards/{bob.card_id}", token=token, json={"label": "Mine"})
    assert resp.status == 404
    resp, _ = await browser.api("POST", f"/api/v1/cards/{bob.card_id}/lost", token=token)
    assert resp.status == 404

    resp, b = await browser.api("GET", "/api/v1/billing", token=token)
    assert b["subscription_id"] == "sub-ada" and b["plan"] == "EV Standard" and b["invoices"] == []
    resp, p = await browser.api("PATCH", "/api/v1/profile", token=token, json={"name": "Ada L", "receipts_enabled": False})
    assert p == {"email": cust.email, "name": "Ada L", "receipts_enabled": False, "subscription_id": "sub-ada"}
    resp, body = await browser.api("PATCH", "/api/v1/profile", token=token, json={"name": "x" * 101})
    assert resp.status == 400
    resp, data = await browser.api("GET", "/api/v1/account/export", token=token)
    assert data["profile"]["email"] == cust.email and len(data["sessions"]) == 1
    resp, _ = await browser.api("POST", f"/api/v1/cards/{cust.card_id}/lost", token=token)
    assert resp.status == 200
    resp, charger = await browser.api("GET", f"/api/v1/chargers/{cb['public_id']}", token=token)
    assert charger["may_charge"] is False and "charging card" in charger["refusal"]

    resp, _ = await browser.api("DELETE", "/api/v1/account", token=token)
    assert resp.status == 204
    resp, _ = await browser.api("GET", "/api/v1/profile", token=token)
    assert resp.status == 401


async def test_cookie_writes_need_the_csrf_header(browser, pool, make_customer):
    cust = await make_customer()
    await sign_in(browser, pool, cust.email)
    resp, body = await browser.api("PATCH", "/api/v1/profile", json={"name": "Eve"})
    assert resp.status == 403 and body["error"] == "csrf_failed"
    await browser.get("/account")
    resp, body = await browser.api("PATCH", "/api/v1/profile", json={"name": "Ada"},
                                   headers={"X-CSRF-Token": browser.csrf})
    assert resp.status == 200 and body["name"] == "Ada"


async def test_staff_are_not_customers(browser, pool):
    from polaris.db.repos import sessions, users

    async with pool.acquire() as conn:
        admin = await users.add_user(conn, "admin@example.com", "admin")
        token, _ = await sessions.create_api_token(conn, admin["id"], name="t", method="password")
    resp, body = await browser.api("GET", "/api/v1/sessions", token=token)
    assert resp.status == 403


async def test_openapi_document(browser):
    resp, doc = await browser.api("GET", "/api/v1/openapi.json")
    assert resp.status == 200 and doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "Polaris Express customer API"
    assert doc["servers"] == [{"url": "http://localhost:8000"}]
    for path in ("/api/v1/auth/magic-link", "/api/v1/auth/magic-link/consume", "/api/v1/chargers/{public_id}",
                 "/api/v1/chargers/{public_id}/start", "/api/v1/sessions/{id}", "/api/v1/sessions/{id}/stop",
                 "/api/v1/cards", "/api/v1/pairings", "/api/v1/billing", "/api/v1/profile", "/api/v1/account",
                 "/api/v1/me", "/api/v1/events"):
        assert path in doc["paths"], path
    assert not any(p.startswith("/api/admin/") for p in doc["paths"])
    resp, admin = await browser.api("GET", "/api/admin/v1/openapi.json")
    if resp.status == 200:
        assert not any(p.startswith("/api/v1/") for p in admin["paths"])


async def test_openapi_document_is_valid():
    from polaris.config import Settings
    from polaris.customer_web.api import customer_openapi
    from polaris.services.app import app_factory

    schemathesis_openapi = __import__("schemathesis").openapi
    app = app_factory(Settings(_env_file=None), pool_size=1)  # type: ignore[call-arg]
    doc = customer_openapi(app)
    schemathesis_openapi.from_dict(doc).validate()
    schemas = doc["components"]["schemas"]
    for ref in {part.split("'")[0] for part in str(doc).split("#/components/schemas/")[1:]}:
        assert ref in schemas, ref


# Operations the sweep leaves out: they end the sweep's own account or reach a charger.
SKIP = {("DELETE", "/api/v1/account"), ("POST", "/api/v1/auth/signout-everywhere"),
        ("POST", "/api/v1/chargers/{public_id}/start"), ("POST", "/api/v1/sessions/{id}/stop"),
        ("GET", "/api/v1/events")}  # a stream: it never ends


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
async def test_schema_driven_sweep_has_no_server_errors(aiohttp_server, portal_settings, pool, make_customer,
                                                        make_charger, add_session):
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    from polaris.db.repos import sessions
    from polaris.services.app import app_factory

    cust = await make_customer()
    cb = await make_charger()
    await add_session(cb, cust.id_tag)
    async with pool.acquire() as conn:
        token, _ = await sessions.create_api_token(conn, cust.user_id, name="sweep", method="magic_link")
    server = await aiohttp_server(app_factory(portal_settings, pool_size=5))
    base = str(server.make_url("")).rstrip("/")

    def sweep() -> list[str]:
        import requests

        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Host": portal_settings.customer_host}
        schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
        failures: list[str] = []
        tested = 0
        for result in schema.get_all_operations():
            op = result.ok()
            if (op.method.upper(), op.path) in SKIP:
                continue
            tested += 1

            @hypothesis.settings(max_examples=8, deadline=None, database=None, derandomize=True,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @hypothesis.given(case=op.as_strategy())
            def check(case):
                response = case.call(base_url=base, session=session, headers=headers, timeout=30)
                try:
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                except Exception as exc:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:500])

            check()
        assert tested >= 15
        return failures

    failures = await asyncio.to_thread(sweep)
    assert not failures, "\n".join(failures[:10])
