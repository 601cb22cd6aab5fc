"""A running session held under its charger's maximum by the site says so, on the page and in the API."""

from __future__ import annotations

from polaris.db.repos import sites

from .conftest import sign_in
from .test_api import app_token


async def allocate(pool, charger, tx: int, amps: float) -> None:
    async with pool.acquire() as conn:
        await sites.set_site_limits(conn, "Harbour", {"limit_amps": 40})
        site_id = await conn.fetchval("SELECT id FROM ocpp.sites WHERE name = 'Harbour'")
        await sites.save_allocation(conn, charge_box_pk=charger["id"], connector_id=1, site_id=site_id,
                                    transaction_id=tx, limit_amps=amps, phases=3, paused_reason=None,
                                    drawn_amps=amps)


async def test_the_live_session_says_limited_to_n_kw_by_the_site(browser, pool, make_customer, make_charger,
                                                                 add_session):
    cust = await make_customer()
    cb = await make_charger()
    tx = await add_session(cb, cust.id_tag, kwh=2, running=True)
    token = await app_token(browser, pool, cust.email)
    resp, one = await browser.api("GET", f"/api/v1/sessions/{tx}", token=token)
    assert one["site_limit_kw"] is None and one["site_limit_text"] is None  # not managed: nothing said

    await allocate(pool, cb, tx, 10.0)  # 10 A x 3 phases x 230 V
    resp, one = await browser.api("GET", f"/api/v1/sessions/{tx}", token=token)
    assert one["site_limit_kw"] == 6.9
    assert one["site_limit_text"].startswith("Limited to 6.9 kW by the site")
    await sign_in(browser, pool, cust.email)
    resp, page = await browser.get(f"/sessions/{tx}")
    assert resp.status == 200 and "Limited to 6.9 kW by the site" in page

    await allocate(pool, cb, tx, 0.0)
    resp, one = await browser.api("GET", f"/api/v1/sessions/{tx}", token=token)
    assert one["site_limit_kw"] == 0 and one["site_limit_text"].startswith("Paused by the site")

    await allocate(pool, cb, tx, 32.0)  # the charger's full 32 A: not limited
    resp, one = await browser.api("GET", f"/api/v1/sessions/{tx}", token=token)
    assert one["site_limit_text"] is None
