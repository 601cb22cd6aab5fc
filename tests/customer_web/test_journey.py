"""The journey on the aiohttp test client: sign in by link, open a charger, start, follow, stop.

Real web app, real OCPP server, a simulated charger: the start goes out as
RemoteStartTransaction through the command API, the charger's StartTransaction passes the
pre-authorize hook, and meter values arrive through the meter-values hook.
"""

from __future__ import annotations

from .conftest import sign_in, start_sim, wait_until


async def test_sign_in_start_follow_stop(stack, pool, make_customer, make_charger):
    cust = await make_customer()
    cb = await make_charger(connected=False, statuses={})
    sim = await start_sim(stack, pool, cb["charge_box_id"])
    try:
        b = stack.browser
        # Signed out, the charger page invites to sign in and comes back here afterwards.
        resp, html = await b.get(f"/c/{cb['public_id']}")
        assert resp.status == 200 and "Sign in to charge here" in html
        await sign_in(b, pool, cust.email)
        resp, html = await b.get(f"/c/{cb['public_id']}")
        assert "0.35 EUR per kWh" in html
        assert "Start charging" in html

        resp, _ = await b.post(f"/c/{cb['public_id']}/start", {"connector_id": "1", "card_id": str(cust.card_id)})
        assert resp.status == 303, _
        location = resp.headers["Location"]
        assert location.startswith("/sessions/"), location
        tx = int(location.rsplit("/", 1)[1])

        async def energy() -> float:
            r, doc = await b.api("GET", f"/api/v1/sessions/{tx}")
            assert r.status == 200, doc
            return doc["energy_kwh"]

        first = await energy()
        await wait_until(lambda: _rises(energy, first), 15)
        resp, html = await b.get(f"/sessions/{tx}")
        assert resp.status == 200 and "Stop charging" in html

        resp, _ = await b.post(f"/sessions/{tx}/stop")
        assert resp.status == 303 and resp.headers["Location"].endswith("msg=stop_sent")

        async def finished() -> bool:
            r, doc = await b.api("GET", f"/api/v1/sessions/{tx}")
            return not doc["running"]

        await wait_until(finished, 15)
        resp, html = await b.get("/sessions")
        assert f'href="/sessions/{tx}"' in html
        resp, html = await b.get(f"/sessions/{tx}")
        assert "Finished" in html and "<svg" in html
    finally:
        await sim.stop()


async def _rises(energy, first: float) -> bool:
    return await energy() > first
