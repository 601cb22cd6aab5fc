"""Password sign-in, sessions (cookie), CSRF, bearer tokens, lock-out, roles."""

from __future__ import annotations

from http.cookies import SimpleCookie

from polaris.services.app import app_factory

LOGIN = "/api/admin/v1/auth/login"
SESSION = "/api/admin/v1/auth/session"
TOKENS = "/api/admin/v1/auth/tokens"


def set_cookie_header(resp) -> SimpleCookie:
    jar = SimpleCookie()
    for value in resp.headers.getall("Set-Cookie"):
        jar.load(value)
    return jar


async def test_password_login_sets_a_safe_session_cookie(api, make_user):
    await make_user("boss@example.com", "admin")
    resp = await api.post(LOGIN, json={"email": " Boss@Example.com ", "password": "correct horse battery staple"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["user"]["email"] == "boss@example.com" and body["user"]["role"] == "admin"
    assert body["via"] == "cookie" and len(body["csrf_token"]) > 20
    cookie = set_cookie_header(resp)["polaris_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"], "local mode (http:// base URLs): not Secure"
    # The client's jar now holds the cookie: the session works.
    resp = await api.get(SESSION)
    assert resp.status == 200
    assert (await resp.json())["csrf_token"] == body["csrf_token"]


async def test_production_cookie_is_secure_and_on_cookie_domain(aiohttp_client, web_settings, make_user):
    settings = web_settings.model_copy(
        update={
            "ADMIN_BASE_URL": "https://manage.example.com",
            "CUSTOMER_BASE_URL": "https://polaris.example.com",
            "COOKIE_DOMAIN": ".example.com",
        }
    )
    client = await aiohttp_client(app_factory(settings))
    await make_user("boss@example.com", "admin")
    resp = await client.post(
        LOGIN,
        json={"email": "boss@example.com", "password": "correct horse battery staple"},
        headers={"Host": "manage.example.com"},
    )
    assert resp.status == 200
    cookie = set_cookie_header(resp)["polaris_session"]
    assert cookie["secure"] is True
    assert cookie["domain"] == ".example.com"
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax"


async def test_wrong_password_unknown_user_and_customers_get_the_same_answer(api, make_user):
    await make_user("boss@example.com", "admin")
    await make_user("cust@example.com", "customer")
    await make_user("gone@example.com", "operator")
    async with api.app[__import__("polaris.services.appkeys", fromlist=["PG_POOL"]).PG_POOL].acquire() as conn:
        await conn.execute("UPDATE app.users SET active = false WHERE email = 'gone@example.com'")
    answers = set()
    for email, password in (
        ("boss@example.com", "wrong password!!"),
        ("nobody@example.com", "correct horse battery staple"),
        ("cust@example.com", "correct horse battery staple"),
        ("gone@example.com", "correct horse battery staple"),
    ):
        resp = await api.post(LOGIN, json={"email": email, "password": password})
        assert resp.status == 401
        answers.add(str(await resp.json()))
    assert len(answers) == 1
    assert "polaris_session" not in api.session.cookie_jar.filter_cookies(api.make_url("/"))


async def test_csrf_is_required_for_cookie_writes_only(api, make_user, admin):
    await make_user("boss@example.com", "admin")
    resp = await api.post(LOGIN, json={"email": "boss@example.com", "password": "correct horse battery staple"})
    csrf = (await resp.json())["csrf_token"]
    # A cookie-authenticated write without the token: refused, nothing changed.
    resp = await api.post(TOKENS + "/1", json={})
    assert resp.status in (403, 405)
    resp = await api.delete(f"{TOKENS}/999")
    assert resp.status == 403
    assert (await resp.json())["error"] == "csrf_failed"
    resp = await api.delete(f"{TOKENS}/999", headers={"X-CSRF-Token": "not-the-token"})
    assert resp.status == 403
    resp = await api.delete(f"{TOKENS}/999", headers={"X-CSRF-Token": csrf})
    assert resp.status == 404, "with the token the request goes through"
    # Reads need no token; bearer writes need none either.
    assert (await api.get(TOKENS)).status == 200
    api.session.cookie_jar.clear()
    resp = await api.delete(f"{TOKENS}/999", headers=admin.headers)
    assert resp.status == 404


async def test_logout_ends_the_session(api, make_user):
    await make_user("boss@example.com", "operator")
    resp = await api.post(LOGIN, json={"email": "boss@example.com", "password": "correct horse battery staple"})
    csrf = (await resp.json())["csrf_token"]
    cookie = api.session.cookie_jar.filter_cookies(api.make_url("/"))["polaris_session"].value
    resp = await api.post("/api/admin/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert resp.status == 204
    api.session.cookie_jar.clear()
    resp = await api.get(SESSION, cookies={"polaris_session": cookie})
    assert resp.status == 401, "the old cookie value no longer works"


async def test_tokens_are_hashed_listed_and_revocable(api, pool, staff):
    admin = await staff("admin")
    operator = await staff("operator")
    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT token_hash, token_prefix FROM app.api_tokens")
    assert all(operator.token.encode() not in bytes(r["token_hash"]) for r in stored)
    assert {r["token_prefix"] for r in stored} == {admin.token[:10], operator.token[:10]}

    resp = await api.get(SESSION, headers=operator.headers)
    assert (await resp.json())["user"]["role"] == "operator"
    mine = await (await api.get(TOKENS, headers=operator.headers)).json()
    assert [t["user_email"] for t in mine["items"]] == [operator.email]
    assert (await api.get(TOKENS, params={"all": "true"}, headers=operator.headers)).status == 403
    every = await (await api.get(TOKENS, params={"all": "true"}, headers=admin.headers)).json()
    assert len(every["items"]) == 2

    admin_token_id = [t["id"] for t in every["items"] if t["user_email"] == admin.email][0]
    resp = await api.delete(f"{TOKENS}/{admin_token_id}", headers=operator.headers)
    assert resp.status == 404, "another user's token is not the operator's to see"
    op_token_id = mine["items"][0]["id"]
    resp = await api.delete(f"{TOKENS}/{op_token_id}", headers=admin.headers)
    assert resp.status == 200
    assert (await resp.json())["revoked_at"] is not None
    resp = await api.get(SESSION, headers=operator.headers)
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_token"
    audit = await (await api.get("/api/admin/v1/audit", params={"action": "token.revoke"}, headers=admin.headers)).json()
    assert audit["items"][0]["actor_email"] == admin.email


async def test_logout_with_a_bearer_token_revokes_it(api, admin):
    assert (await api.post("/api/admin/v1/auth/logout", headers=admin.headers)).status == 204
    assert (await api.get(SESSION, headers=admin.headers)).status == 401


async def test_lock_out_after_repeated_failures(api, make_user):
    await make_user("boss@example.com", "admin")
    for _ in range(5):
        resp = await api.post("/api/admin/v1/auth/token", json={"email": "boss@example.com", "password": "guess-guess-guess"})
        assert resp.status == 401
    resp = await api.post("/api/admin/v1/auth/token", json={"email": "boss@example.com", "password": "correct horse battery staple"})
    assert resp.status == 429, "even the right password waits out the lock-out"
    body = await resp.json()
    assert body["error"] == "locked_out" and "minute" in body["message"]
    assert 0 < int(resp.headers["Retry-After"]) <= 900
    # Unknown accounts lock the same way: no hint about which emails exist.
    for _ in range(5):
        await api.post(LOGIN, json={"email": "ghost@example.com", "password": "x"})
    assert (await api.post(LOGIN, json={"email": "ghost@example.com", "password": "x"})).status == 429


async def test_lock_out_window_passes(api, pool, make_user):
    await make_user("boss@example.com", "admin")
    for _ in range(5):
        await api.post(LOGIN, json={"email": "boss@example.com", "password": "nope-nope-nope"})
    async with pool.acquire() as conn:
        await conn.execute("UPDATE app.login_attempts SET at = at - interval '16 minutes'")
    resp = await api.post(LOGIN, json={"email": "boss@example.com", "password": "correct horse battery staple"})
    assert resp.status == 200


async def test_roles(api, admin, operator):
    # Unauthenticated: 401 with a WWW-Authenticate challenge.
    resp = await api.get("/api/admin/v1/chargers")
    assert resp.status == 401
    assert "Bearer" in resp.headers["WWW-Authenticate"]
    assert (await resp.json())["error"] == "unauthorized"
    resp = await api.get("/api/admin/v1/chargers", headers={"Authorization": "Bearer pol_nonsense"})
    assert resp.status == 401
    # Operators: everything but users and secrets.
    assert (await api.get("/api/admin/v1/chargers", headers=operator.headers)).status == 200
    resp = await api.get("/api/admin/v1/users", headers=operator.headers)
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    assert (await api.get("/api/admin/v1/users", headers=admin.headers)).status == 200
