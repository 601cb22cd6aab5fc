"""Sign in by magic link: two steps, one use, 15 minutes, rate limits, CSRF, sign out."""

from __future__ import annotations

import pytest

from polaris.db.repos import magic_links

from .conftest import last_link, path_of, sign_in


@pytest.fixture
def portal_settings(settings):
    """The portal with the welcome mail turned on (off by default: the original never sent it)."""
    return settings.model_copy(update={"SSE_TRANSPORT": "memory", "EMAIL_OPTIONAL_CATEGORIES": "welcome"})


async def _request(b, email: str):
    await b.get("/signin")
    return await b.post("/signin", {"email": email})


async def test_link_signs_in_only_after_the_confirm_post(browser, pool, make_customer):
    cust = await make_customer()
    resp, html = await _request(browser, cust.email)
    assert resp.status == 200 and "Check your email" in html
    link = await last_link(pool, cust.email)
    assert link.startswith("http://localhost:8000/auth/link/")
    path = path_of(link)
    # Opening the link (or a mail client's previewer fetching it) only shows a button.
    for _ in range(2):
        resp, html = await browser.get(path)
        assert resp.status == 200 and "Sign me in" in html and cust.email in html
    resp, _ = await browser.api("GET", "/api/v1/me")
    assert resp.status == 401
    resp, _ = await browser.post(path)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.cookies["polaris_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    resp, me = await browser.api("GET", "/api/v1/me")
    assert resp.status == 200 and me["email"] == cust.email and me["customer_id"] == cust.id

    # The first sign-in brings the welcome mail; the next ones do not.
    await browser.post("/signout")
    await _request(browser, cust.email)
    resp, _ = await browser.post(path_of(await last_link(pool, cust.email)))
    assert resp.status == 303
    async with pool.acquire() as conn:
        welcomes = await conn.fetch(
            "SELECT subject, text FROM app.email_outbox WHERE to_address = $1 AND category = 'welcome'", cust.email)
    assert len(welcomes) == 1 and welcomes[0]["subject"].startswith("Welcome to ")
    assert "http://localhost:8000" in welcomes[0]["text"]


async def test_reused_expired_and_forged_links_are_refused(browser, other_browser, pool, make_customer):
    cust = await make_customer()
    await sign_in(browser, pool, cust.email)
    used = path_of(await last_link(pool, cust.email))
    # Reused, from another browser: the link worked once.
    resp, html = await other_browser.get(used)
    assert resp.status == 410 and "already used" in html
    resp, html = await other_browser.post(used, {"csrf_token": "x"}, csrf=False)
    assert resp.status in (403, 410)
    await other_browser.get("/signin")
    resp, html = await other_browser.post(used)
    assert resp.status == 410 and "already used" in html

    # Expired: 15 minutes later.
    resp, _ = await _request(other_browser, cust.email)
    fresh = path_of(await last_link(pool, cust.email))
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE app.magic_links SET created_at = now() - interval '16 minutes', "
            "expires_at = now() - interval '1 minute' WHERE consumed_at IS NULL"
        )
    resp, html = await other_browser.get(fresh)
    assert resp.status == 410 and "expired" in html
    await other_browser.get("/signin")
    resp, html = await other_browser.post(fresh)
    assert resp.status == 410 and "expired" in html
    resp, _ = await other_browser.api("GET", "/api/v1/me")
    assert resp.status == 401

    # Forged.
    resp, html = await other_browser.get("/auth/link/" + "A" * 43)
    assert resp.status == 404 and "not valid" in html
    await other_browser.get("/signin")
    resp, html = await other_browser.post("/auth/link/" + "A" * 43)
    assert resp.status == 404


async def test_link_lifetimes(pool, make_customer):
    cust = await make_customer()
    async with pool.acquire() as conn:
        _, signin = await magic_links.create_link(conn, cust.user_id, cust.email)
        _, invite = await magic_links.create_link(conn, cust.user_id, cust.email, purpose="invite")
    assert abs((signin["expires_at"] - signin["created_at"]).total_seconds() - 900) < 2
    assert abs((invite["expires_at"] - invite["created_at"]).total_seconds() - 86400) < 2


async def test_unknown_address_gets_the_same_answer_and_no_mail(browser, pool):
    resp, html = await _request(browser, "nobody@example.com")
    assert resp.status == 200 and "Check your email" in html
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == 0


async def test_bad_address_is_explained(browser):
    resp, html = await _request(browser, "not-an-address")
    assert resp.status == 400 and "does not look like an email address" in html


async def test_rate_limited_per_email_and_per_address(browser, pool, make_customer):
    cust = await make_customer()
    for _ in range(magic_links.MAX_PER_EMAIL):
        resp, _ = await _request(browser, cust.email)
        assert resp.status == 200
    resp, html = await _request(browser, cust.email)
    assert resp.status == 429 and "Too many sign-in links were asked for this address" in html
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == magic_links.MAX_PER_EMAIL
    # Many addresses from one network address.
    for i in range(magic_links.MAX_PER_IP - magic_links.MAX_PER_EMAIL):
        resp, _ = await _request(browser, f"someone{i}@example.com")
        assert resp.status == 200
    resp, html = await _request(browser, "another@example.com")
    assert resp.status == 429 and "from your network" in html


async def test_signed_out_forms_need_the_csrf_token(browser, pool, make_customer):
    cust = await make_customer()
    await browser.get("/signin")
    resp, html = await browser.post("/signin", {"email": cust.email}, csrf=False)
    assert resp.status == 403 and "expired or was sent from elsewhere" in html
    resp, html = await browser.post("/signin", {"email": cust.email, "csrf_token": "forged-token-" * 4}, csrf=False)
    assert resp.status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == 0


async def test_return_to_comes_back_and_never_leaves_the_site(browser, pool, make_customer):
    cust = await make_customer()
    await browser.get("/signin?next=/cards")
    await browser.post("/signin", {"email": cust.email, "next": "/cards"})
    link = path_of(await last_link(pool, cust.email))
    await browser.get(link)
    resp, _ = await browser.post(link)
    assert resp.headers["Location"] == "/cards"
    for evil in ("//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com"):
        await browser.get("/signin")
        await browser.post("/signin", {"email": cust.email, "next": evil})
    async with pool.acquire() as conn:
        targets = await conn.fetch("SELECT return_to FROM app.magic_links ORDER BY id OFFSET 1")
    assert all(r["return_to"] is None for r in targets)


async def test_sign_out_and_sign_out_everywhere(browser, other_browser, pool, make_customer):
    cust = await make_customer()
    await sign_in(browser, pool, cust.email)
    await sign_in(other_browser, pool, cust.email)
    await browser.get("/account")
    resp, _ = await browser.post("/signout")
    assert resp.status == 303
    resp, _ = await browser.api("GET", "/api/v1/me")
    assert resp.status == 401
    resp, _ = await other_browser.api("GET", "/api/v1/me")
    assert resp.status == 200

    await sign_in(browser, pool, cust.email)
    await browser.get("/account")
    resp, _ = await browser.post("/signout/everywhere")
    assert resp.status == 303
    for b in (browser, other_browser):
        resp, _ = await b.api("GET", "/api/v1/me")
        assert resp.status == 401


async def test_pages_need_a_signed_in_customer(browser):
    for path in ("/sessions", "/cards", "/billing", "/account", "/sessions/1", "/sessions.csv"):
        resp, _ = await browser.get(path)
        assert resp.status == 303 and resp.headers["Location"].startswith("/signin?next="), path
