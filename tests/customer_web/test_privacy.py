"""A session belongs to whoever charged: a card moved to another account takes no history along.

Real web app, real OCPP server, a simulated charger: Ada starts a session from the portal
(RemoteStartTransaction, then the charger's StartTransaction is recorded by the OCPP
server), an operator then moves her card to Bob. Bob sees none of it, pages, API or CSV;
Ada keeps all of it.
"""

from __future__ import annotations

import aiohttp

from polaris.db.repos import live_sessions
from polaris.services.admin.actions import Actor, edit_card

from .conftest import Browser, last_link, sign_in, start_sim


async def app_token(b: Browser, pool, email: str) -> str:
    resp, body = await b.api("POST", "/api/v1/auth/magic-link", json={"email": email})
    assert resp.status == 202, body
    token = (await last_link(pool, email)).rsplit("/", 1)[1]
    resp, body = await b.api("POST", "/api/v1/auth/magic-link/consume", json={"token": token})
    assert resp.status == 200, body
    return body["token"]


async def test_a_moved_card_shows_its_new_holder_nothing_of_the_past(stack, pool, make_customer, make_charger):
    ada = await make_customer()
    bob = await make_customer("bob@example.com", subscription="sub-bob", id_tag=None)
    cb = await make_charger(connected=False, statuses={})
    sim = await start_sim(stack, pool, cb["charge_box_id"])
    session = aiohttp.ClientSession(base_url=stack.web_url + "/", cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        a = stack.browser
        await sign_in(a, pool, ada.email)
        await a.get(f"/c/{cb['public_id']}")
        resp, _ = await a.post(f"/c/{cb['public_id']}/start", {"connector_id": "1", "card_id": str(ada.card_id)})
        assert resp.status == 303, _
        tx = int(resp.headers["Location"].rsplit("/", 1)[1])
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT customer_id FROM ocpp.transactions WHERE id = $1", tx) == ada.id

            # The operator moves the card to Bob while the session runs.
            await edit_card(conn, Actor.shell(), ada.id_tag, {"customer_id": bob.id})
            assert (await live_sessions.get_session(conn, tx))["customer_id"] == ada.id, "live energy stays Ada's"

        b = Browser(session, a.host)  # type: ignore[arg-type]
        token = await app_token(b, pool, bob.email)
        resp, listed = await b.api("GET", "/api/v1/sessions", token=token)
        assert resp.status == 200 and listed["items"] == []
        for path in (f"/api/v1/sessions/{tx}", f"/api/v1/sessions/{tx}/energy"):
            resp, _ = await b.api("GET", path, token=token)
            assert resp.status == 404, path
        resp, csv = await b.api("GET", "/api/v1/sessions.csv", token=token)
        assert resp.status == 200 and csv.strip().count("\n") == 0, "the header only"
        await sign_in(b, pool, bob.email)
        resp, html = await b.get("/sessions")
        assert resp.status == 200 and f"/sessions/{tx}" not in html
        resp, _ = await b.get(f"/sessions/{tx}")
        assert resp.status == 404

        # Ada keeps her session, without the card's new label.
        resp, doc = await a.api("GET", f"/api/v1/sessions/{tx}")
        assert resp.status == 200 and doc["id"] == tx
        resp, csv = await a.api("GET", "/api/v1/sessions.csv")
        assert str(tx) in csv
    finally:
        await session.close()
        await sim.stop()
