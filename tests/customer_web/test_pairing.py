"""Tap to link a card, tap to sign in: the page arms a window, the pre-authorize hook catches the tap."""

from __future__ import annotations

import json
import time

from polaris.services.hooks import sign

from .conftest import sign_in


async def tap(b, settings, charge_box_id: str, id_tag: str, *, start: bool = False) -> str | None:
    body = json.dumps({"idTag": id_tag, "chargeBoxId": charge_box_id, "connectorId": 1, "isStartTx": start,
                       "ts": int(time.time() * 1000)}).encode()
    resp = await b.client.post("/api/ocpp/pre-authorize", data=body, headers={
        "X-Signature": sign(settings.STEVE_PREAUTH_HMAC_KEY.get_secret_value(), body),
        "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["override"]


async def test_tap_to_link_a_card(browser, pool, portal_settings, make_customer, make_charger):
    cust = await make_customer()
    cb = await make_charger()
    await sign_in(browser, pool, cust.email)
    await browser.get(f"/c/{cb['public_id']}")
    resp, _ = await browser.post(f"/c/{cb['public_id']}/pair")
    assert resp.status == 303
    page = resp.headers["Location"]
    resp, html = await browser.get(page)
    assert resp.status == 200 and "Hold your card against the reader" in html
    # The tap is caught: no charging starts, and the card joins the account.
    assert await tap(browser, portal_settings, cb["charge_box_id"], "NEW-CARD-1") == "BLOCKED"
    assert await tap(browser, portal_settings, cb["charge_box_id"], "NEW-CARD-1", start=True) == "BLOCKED"
    resp, _ = await browser.get(page)
    assert resp.status == 303 and resp.headers["Location"] == "/cards?msg=card_linked"
    resp, html = await browser.get("/cards?msg=card_linked")
    assert "NEW-CARD-1" in html and "now on your account" in html
    # A second, different card during the window charges normally (not caught).
    assert await tap(browser, portal_settings, cb["charge_box_id"], "CARD-ADA") is None


async def test_tap_of_another_customers_card_is_refused(browser, pool, portal_settings, make_customer,
                                                        make_charger):
    cust = await make_customer()
    await make_customer("bob@example.com", subscription="sub-bob", id_tag="CARD-BOB")
    cb = await make_charger()
    await sign_in(browser, pool, cust.email)
    await browser.get(f"/c/{cb['public_id']}")
    resp, _ = await browser.post(f"/c/{cb['public_id']}/pair")
    page = resp.headers["Location"]
    assert await tap(browser, portal_settings, cb["charge_box_id"], "CARD-BOB") == "BLOCKED"
    resp, html = await browser.get(page)
    assert resp.status == 200 and "belongs to another account" in html
    async with pool.acquire() as conn:
        owner = await conn.fetchval("SELECT customer_id FROM app.id_tags WHERE id_tag = 'CARD-BOB'")
    assert owner != cust.id


async def test_tap_to_sign_in(browser, other_browser, pool, portal_settings, make_customer, make_charger):
    cust = await make_customer()
    cb = await make_charger()
    resp, html = await browser.get(f"/c/{cb['public_id']}")
    assert "Sign in with my card" in html
    resp, _ = await browser.post(f"/c/{cb['public_id']}/pair")
    assert resp.status == 303
    page = resp.headers["Location"]
    # Nobody else can read (or use) this browser's window.
    resp, _ = await other_browser.get(page)
    assert resp.status == 404
    assert await tap(browser, portal_settings, cb["charge_box_id"], cust.id_tag) == "BLOCKED"
    resp, html = await browser.get(page)
    assert resp.status == 200 and 'id="continue"' in html
    await other_browser.get("/signin")
    resp, _ = await other_browser.post(page + "/signin")
    assert resp.status == 404 or resp.headers.get("Location", "").startswith("/pairings")
    resp, _ = await browser.post(page + "/signin")
    assert resp.status == 303 and resp.headers["Location"] == "/"
    resp, me = await browser.api("GET", "/api/v1/me")
    assert resp.status == 200 and me["customer_id"] == cust.id
    resp, _ = await other_browser.api("GET", "/api/v1/me")
    assert resp.status == 401


async def test_tap_to_sign_in_with_an_unknown_card_and_expiry(browser, pool, portal_settings, make_charger):
    cb = await make_charger()
    await browser.get(f"/c/{cb['public_id']}")
    resp, _ = await browser.post(f"/c/{cb['public_id']}/pair")
    page = resp.headers["Location"]
    assert await tap(browser, portal_settings, cb["charge_box_id"], "STRANGER") == "BLOCKED"
    resp, html = await browser.get(page)
    assert "not on an account" in html
    await browser.get(f"/c/{cb['public_id']}")
    resp, _ = await browser.post(page + "/signin")
    assert resp.status == 303 and resp.headers["Location"] == page
    resp, _ = await browser.api("GET", "/api/v1/me")
    assert resp.status == 401

    await browser.get(f"/c/{cb['public_id']}")
    resp, _ = await browser.post(f"/c/{cb['public_id']}/pair")
    page = resp.headers["Location"]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE app.card_pairings SET armed_at = now() - interval '5 minutes', "
                           "expires_at = now() - interval '1 second'")
    resp, html = await browser.get(page)
    assert "Nothing was tapped in time" in html
    # The window is shut: a tap now is not caught.
    assert await tap(browser, portal_settings, cb["charge_box_id"], "STRANGER2") is None


async def test_a_card_reported_lost_is_refused_by_the_charger_at_once(browser, pool, portal_settings,
                                                                      make_customer, make_charger):
    cust = await make_customer()
    cb = await make_charger()
    assert await tap(browser, portal_settings, cb["charge_box_id"], cust.id_tag, start=True) is None
    await sign_in(browser, pool, cust.email)
    await browser.get("/cards")
    resp, _ = await browser.post(f"/cards/{cust.card_id}/lost", {"confirm": "on"})
    assert resp.status == 200
    assert await tap(browser, portal_settings, cb["charge_box_id"], cust.id_tag, start=True) == "BLOCKED"
