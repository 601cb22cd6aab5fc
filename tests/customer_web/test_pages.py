"""Every portal page and form: what a customer sees, bad input, other people's data."""

from __future__ import annotations

import csv
import io
import json

from .conftest import last_link, path_of, sign_in


async def test_security_headers_and_friendly_404(browser):
    resp, html = await browser.get("/no/such/page")
    assert resp.status == 404 and "Page not found" in html and "<html" in html
    resp, html = await browser.get("/signin")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert 'lang="en"' in html and 'name="viewport"' in html and 'href="#main"' in html
    resp, _ = await browser.get("/static/portal/portal.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    resp, body = await browser.api("GET", "/api/v1/nothing")
    assert resp.status == 404 and body["error"] == "not_found"  # APIs keep JSON errors


async def test_unknown_charger_is_a_friendly_404(browser):
    resp, html = await browser.get("/c/doesnotexist")
    assert resp.status == 404 and "We do not know this charger" in html


async def test_charger_page_states(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    other = await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    cb = await make_charger(statuses={1: "Available", 2: "Faulted", 3: "Charging"})
    await add_session(cb, other.id_tag, running=True, connector_id=3)
    # Signed out: statuses and an invitation to sign in; no price, no start.
    resp, html = await browser.get(f"/c/{cb['public_id']}")
    assert resp.status == 200
    assert "Free" in html and "Out of order" in html and "Charging" in html
    assert "Sign in to charge here" in html and "Start charging" not in html

    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get(f"/c/{cb['public_id']}")
    assert "Price: 0.35 EUR per kWh" in html and "EV Standard" in html
    assert "This connector is out of order." in html and "This connector is in use." in html
    assert 'value="1"' in html and 'name="connector_id" value="2"' not in html

    # Starting on a faulted or occupied connector is refused with the reason.
    resp, html = await browser.post(f"/c/{cb['public_id']}/start", {"connector_id": "2"})
    assert resp.status == 409 and "out of order" in html
    await browser.get(f"/c/{cb['public_id']}")
    resp, html = await browser.post(f"/c/{cb['public_id']}/start", {"connector_id": "3"})
    assert resp.status == 409 and "in use" in html
    await browser.get(f"/c/{cb['public_id']}")
    resp, html = await browser.post(f"/c/{cb['public_id']}/start", {"connector_id": "abc"})
    assert resp.status == 400


async def test_offline_charger(browser, pool, make_customer, make_charger):
    cust = await make_customer()
    cb = await make_charger(connected=False)
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get(f"/c/{cb['public_id']}")
    assert "This charger is offline right now" in html and "Start charging" not in html
    resp, html = await browser.post(f"/c/{cb['public_id']}/start", {"connector_id": "1"})
    assert resp.status == 409 and "offline" in html


async def test_customer_who_may_not_charge(browser, pool, make_customer, make_charger):
    cb = await make_charger()
    nosub = await make_customer("nosub@example.com", subscription=None, id_tag="CARD-NS")
    await sign_in(browser, pool, nosub.email)
    resp, html = await browser.get(f"/c/{cb['public_id']}")
    assert "no subscription" in html and "Start charging" not in html
    resp, html = await browser.post(f"/c/{cb['public_id']}/start", {"connector_id": "1"})
    assert resp.status == 403 and "no subscription" in html


async def test_customer_without_a_card(browser, pool, make_customer, make_charger):
    cb = await make_charger()
    cust = await make_customer("nocard@example.com", subscription="sub-nc", id_tag=None)
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get(f"/c/{cb['public_id']}")
    assert "You need a charging card" in html


async def test_signed_in_forms_need_the_csrf_token(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    cb = await make_charger()
    tx = await add_session(cb, cust.id_tag, running=True)
    await sign_in(browser, pool, cust.email)
    for path, data in ((f"/sessions/{tx}/stop", {}), (f"/cards/{cust.card_id}/lost", {}),
                       ("/account/profile", {"name": "Mallory"}), ("/account/delete", {"confirm": "DELETE"})):
        resp, html = await browser.post(path, data, csrf=False)
        assert resp.status == 403, path
        # A page for people, not the API's JSON.
        assert resp.content_type == "text/html" and "<html" in html and "X-CSRF-Token" not in html
        resp, _ = await browser.post(path, {**data, "csrf_token": "wrong"}, csrf=False)
        assert resp.status == 403, path
    async with pool.acquire() as conn:
        assert not await conn.fetchval("SELECT blocked FROM app.id_tags WHERE id = $1", cust.card_id)
        assert await conn.fetchval("SELECT deleted_at FROM app.customers WHERE id = $1", cust.id) is None


async def test_history_detail_chart_and_csv(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    cb = await make_charger()
    tx = await add_session(cb, cust.id_tag, kwh=12.5)
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get("/sessions")
    assert resp.status == 200 and f"/sessions/{tx}" in html
    assert "12.500" in html and "Harbour" in html and "4.38 EUR" in html and "30 min" in html
    resp, html = await browser.get(f"/sessions/{tx}")
    assert "Finished" in html and "<svg" in html and "Energy over time" in html and "polyline" in html
    assert "Stop charging" not in html and "The car was unplugged" in html
    resp, body = await browser.get("/sessions.csv")
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows[0]["id"] == str(tx) and rows[0]["energy_kwh"] == "12.5" and rows[0]["cost"] == "4.38"


async def test_another_customers_session_is_not_found(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    bob = await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    cb = await make_charger()
    bobs = await add_session(cb, bob.id_tag, running=True)
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get(f"/sessions/{bobs}")
    assert resp.status == 404 and "no such session" in html
    resp, html = await browser.post(f"/sessions/{bobs}/stop") if await browser.get("/sessions") else None
    assert resp.status == 404
    resp, body = await browser.api("GET", f"/api/v1/sessions/{bobs}")
    assert resp.status == 404 and body["error"] == "not_found"
    resp, html = await browser.get("/sessions")
    assert f"/sessions/{bobs}" not in html
    resp, _ = await browser.get("/sessions/999999")
    assert resp.status == 404


async def test_cards_name_and_report_lost(browser, pool, make_customer):
    cust = await make_customer()
    bob = await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get("/cards")
    assert "CARD-ADA" in html and "CARD-BOB" not in html
    resp, _ = await browser.post(f"/cards/{cust.card_id}/name", {"label": "Blue keyfob"})
    assert resp.status == 303
    resp, html = await browser.get("/cards?msg=card_named")
    assert "Blue keyfob" in html and "Saved." in html
    resp, html = await browser.post(f"/cards/{cust.card_id}/name", {"label": "x" * 61})
    assert resp.status == 400 and "at most 60 characters" in html
    await browser.get("/cards")
    resp, html = await browser.post(f"/cards/{cust.card_id}/lost")
    assert resp.status == 400 and "Tick the box" in html
    resp, html = await browser.post(f"/cards/{bob.card_id}/lost", {"confirm": "on"})
    assert resp.status == 404
    await browser.get("/cards")
    resp, html = await browser.post(f"/cards/{cust.card_id}/lost", {"confirm": "on"})
    assert resp.status == 200 and "is blocked" in html and "Blocked" in html
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT blocked FROM app.id_tags WHERE id = $1", cust.card_id)
        assert not await conn.fetchval("SELECT blocked FROM app.id_tags WHERE id = $1", bob.card_id)


async def test_billing_shows_subscription_and_own_invoices(browser, pool, make_customer):
    cust = await make_customer()
    bob = await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    async with pool.acquire() as conn:
        for who, number in ((cust, "INV-ADA-1"), (bob, "INV-BOB-1")):
            await conn.execute(
                "INSERT INTO app.invoices (lago_id, customer_id, number, status, payment_status, currency, "
                "total_amount_cents, issuing_date, file_url, payload) "
                "VALUES ($1, $2, $3, 'finalized', 'succeeded', 'EUR', 1234, current_date, $4, '{}')",
                f"lago-{number}", who.id, number, f"https://lago.example.com/{number}.pdf",
            )
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get("/billing")
    assert "EV Standard" in html and "0.35 EUR per kWh" in html and "Status: active" in html
    assert "INV-ADA-1" in html and "12.34 EUR" in html and "https://lago.example.com/INV-ADA-1.pdf" in html
    assert "INV-BOB-1" not in html


async def test_account_profile_receipts_and_email_change(browser, other_browser, pool, make_customer):
    cust = await make_customer()
    await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    await sign_in(browser, pool, cust.email)
    await browser.get("/account")
    resp, _ = await browser.post("/account/profile", {"name": "Ada Lovelace"})
    assert resp.status == 303
    await browser.get("/account")
    resp, _ = await browser.post("/account/receipts", {})
    resp, html = await browser.get("/account")
    assert 'value="Ada Lovelace"' in html and 'name="receipts" checked' not in html
    async with pool.acquire() as conn:
        assert not await conn.fetchval("SELECT receipts_enabled FROM app.customers WHERE id = $1", cust.id)

    resp, html = await browser.post("/account/email", {"email": "bob@example.com"})
    assert resp.status == 409 and "already used" in html
    await browser.get("/account")
    resp, html = await browser.post("/account/email", {"email": "nope"})
    assert resp.status == 400
    await browser.get("/account")
    resp, html = await browser.post("/account/email", {"email": "Ada.New@Example.com"})
    assert resp.status == 200 and "We sent a link to ada.new@example.com" in html
    link = path_of(await last_link(pool, "ada.new@example.com"))
    resp, html = await other_browser.get(link)
    assert "Confirm that ada.new@example.com is your new email address" in html
    await browser.get(link)
    resp, _ = await browser.post(link)
    assert resp.status == 303
    resp, me = await browser.api("GET", "/api/v1/me")
    assert me["email"] == "ada.new@example.com"


async def test_download_my_data(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    cb = await make_charger()
    await add_session(cb, cust.id_tag)
    await sign_in(browser, pool, cust.email)
    resp, body = await browser.get("/account/data.json")
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    data = json.loads(body)
    assert data["profile"]["email"] == cust.email
    assert data["cards"][0]["id_tag"] == "CARD-ADA" and len(data["sessions"]) == 1 and data["sign_ins"]


async def test_delete_account_keeps_billing_records(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    cb = await make_charger()
    tx = await add_session(cb, cust.id_tag)
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get("/account")
    assert "billing and tax law" in html
    resp, html = await browser.post("/account/delete", {"confirm": "delete"})
    assert resp.status == 400 and "Type DELETE" in html
    await browser.get("/account")
    resp, _ = await browser.post("/account/delete", {"confirm": "DELETE"})
    assert resp.status == 303 and resp.headers["Location"] == "/signin?msg=deleted"
    resp, _ = await browser.api("GET", "/api/v1/me")
    assert resp.status == 401
    async with pool.acquire() as conn:
        user = await conn.fetchrow("SELECT email, name, active FROM app.users WHERE id = $1", cust.user_id)
        assert user["email"].endswith("@deleted.invalid") and user["name"] is None and not user["active"]
        c = await conn.fetchrow("SELECT name, deleted_at, lago_subscription_id FROM app.customers WHERE id = $1",
                                cust.id)
        assert c["name"] is None and c["deleted_at"] is not None and c["lago_subscription_id"] == "sub-ada"
        assert await conn.fetchval("SELECT blocked FROM app.id_tags WHERE id = $1", cust.card_id)
        assert await conn.fetchval("SELECT count(*) FROM ocpp.transactions WHERE id = $1", tx) == 1
        assert await conn.fetchval("SELECT count(*) FROM app.sessions WHERE user_id = $1", cust.user_id) == 0
    # The old address can no longer ask for a link.
    await browser.get("/signin")
    await browser.post("/signin", {"email": cust.email})
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM app.email_outbox WHERE to_address = $1 AND category = 'magic-link'", cust.email) == 1


async def test_home_lists_running_sessions(browser, pool, make_customer, make_charger, add_session):
    cust = await make_customer()
    cb = await make_charger()
    tx = await add_session(cb, cust.id_tag, running=True)
    await sign_in(browser, pool, cust.email)
    resp, html = await browser.get("/")
    assert f"/sessions/{tx}" in html
    resp, html = await browser.get(f"/sessions/{tx}")
    assert "Stop charging" in html and "7.4" in html and "live.js" in html
    resp, _ = await browser.get(f"/c?code={cb['public_id']}")
    assert resp.status == 303 and resp.headers["Location"] == f"/c/{cb['public_id']}"


async def test_unexpected_failure_is_a_friendly_500_with_a_reference(aiohttp_client, portal_settings):
    from polaris.services.app import app_factory

    from .conftest import Browser

    app = app_factory(portal_settings, pool_size=2)

    async def boom(request):
        raise RuntimeError("a bug")

    app.router.add_get("/boom", boom)
    b = Browser(await aiohttp_client(app), portal_settings.customer_host)
    resp, html = await b.get("/boom")
    assert resp.status == 500 and "Something went wrong" in html and "Reference:" in html
    assert "a bug" not in html and "Traceback" not in html
    assert resp.headers["Content-Security-Policy"]
