"""Admin OIDC sign-on and the console's device login, against a local OIDC provider.

The fake provider speaks real OIDC over HTTP: discovery, JWKS, authorize (with PKCE),
token (client_secret_basic, code_verifier checked) and RS256 id_tokens signed by joserfc.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from polaris.services.app import app_factory

CLIENT_ID = "polaris-admin"
CLIENT_SECRET = "oidc-client-secret-0123456789"
SESSION = "/api/admin/v1/auth/session"


class FakeIdP:
    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.issuer = ""
        self.user: dict = {"sub": "u-1", "email": "ada@example.com", "email_verified": True, "name": "Ada"}
        self.codes: dict[str, dict] = {}
        self.tamper: str | None = None  # "nonce", "signature", "audience"
        self.token_requests: list[dict] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        return app

    async def discovery(self, request):
        return web.json_response({
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })

    async def jwks(self, request):
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request):
        q = request.query
        assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256" and "openid" in q["scope"].split()
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "nonce": q["nonce"], "challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"], "user": dict(self.user),
        }
        raise web.HTTPFound(f"{q['redirect_uri']}?code={code}&state={q['state']}")

    async def token(self, request):
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        self.token_requests.append(dict(form))
        grant = self.codes.pop(form.get("code"), None)  # single use
        if grant is None or form.get("grant_type") != "authorization_code" or form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        digest = hashlib.sha256(form["code_verifier"].encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": "wrong" if self.tamper == "nonce" else grant["nonce"], **grant["user"],
        }
        if self.tamper == "audience":
            claims["aud"] = "someone-else"
        key = self.other_key if self.tamper == "signature" else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        return web.json_response({"access_token": "at", "token_type": "Bearer", "id_token": id_token})


@pytest.fixture
async def idp(aiohttp_server):
    fake = FakeIdP()
    server = await aiohttp_server(fake.app())
    fake.issuer = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def oidc_app(aiohttp_client, web_settings, idp):
    """A test client of the app with OIDC on; keyword arguments override settings."""

    async def make(**overrides):
        settings = web_settings.model_copy(update={
            "ADMIN_OIDC_ISSUER": idp.issuer, "ADMIN_OIDC_CLIENT_ID": CLIENT_ID,
            "ADMIN_OIDC_CLIENT_SECRET": SecretStr(CLIENT_SECRET), "ADMIN_OIDC_ADMIN_GROUP": "ev-admins",
            **overrides,
        })
        return await aiohttp_client(app_factory(settings))

    return make


@pytest.fixture
async def oidc_api(oidc_app):
    """OIDC on, and verified example.com addresses get an account at first sign-in."""
    return await oidc_app(ADMIN_OIDC_ALLOWED_DOMAINS="example.com")


async def browser_sign_in(api, return_to: str | None = None, start: str | None = None):
    """Follow the redirects a browser would: our login -> the IdP -> our callback."""
    start = start or "/api/admin/v1/auth/oidc/login" + (f"?return_to={return_to}" if return_to else "")
    resp = await api.get(start, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    authorize = resp.headers["Location"]
    params = parse_qs(urlsplit(authorize).query)
    assert params["code_challenge_method"] == ["S256"] and params["state"] and params["nonce"]
    async with aiohttp.ClientSession() as browser:
        resp = await browser.get(authorize, allow_redirects=False)
        callback = urlsplit(resp.headers["Location"])
    assert callback.path == "/api/admin/v1/auth/oidc/callback"
    return await api.get(f"{callback.path}?{callback.query}", allow_redirects=False), callback


async def test_oidc_sign_in_creates_an_operator_and_a_session(oidc_api, idp):
    resp, _ = await browser_sign_in(oidc_api, return_to="/api/admin/v1/auth/session")
    assert resp.status == 302
    assert resp.headers["Location"] == "/api/admin/v1/auth/session"
    assert "HttpOnly" in resp.headers["Set-Cookie"] and "SameSite=Lax" in resp.headers["Set-Cookie"]
    me = await (await oidc_api.get(SESSION)).json()
    assert me["user"]["email"] == "ada@example.com" and me["user"]["role"] == "operator"
    assert idp.token_requests[0]["code_verifier"], "PKCE verifier sent with the code"


async def test_admin_group_makes_an_admin_and_follows_the_group(oidc_api, idp, pool):
    idp.user = {**idp.user, "groups": ["staff", "ev-admins"]}
    await browser_sign_in(oidc_api)
    assert (await (await oidc_api.get(SESSION)).json())["user"]["role"] == "admin"
    # Removed from the group at the IdP: the next sign-in demotes them.
    idp.user = {**idp.user, "groups": ["staff"]}
    oidc_api.session.cookie_jar.clear()
    await browser_sign_in(oidc_api)
    assert (await (await oidc_api.get(SESSION)).json())["user"]["role"] == "operator"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT oidc_subject FROM app.users WHERE email = 'ada@example.com'") == "u-1"


@pytest.mark.parametrize("tamper", ["nonce", "signature", "audience"])
async def test_bad_id_tokens_are_refused(oidc_api, idp, tamper):
    idp.tamper = tamper
    resp, _ = await browser_sign_in(oidc_api)
    assert resp.status == 401
    assert "Sign-in failed" in await resp.text()
    assert (await oidc_api.get(SESSION)).status == 401


async def test_state_is_single_use_and_customers_are_refused(oidc_api, idp, make_user):
    resp, callback = await browser_sign_in(oidc_api)
    assert resp.status == 302
    oidc_api.session.cookie_jar.clear()
    replay = await oidc_api.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    assert replay.status == 400
    await make_user("cust@example.com", "customer", password=None)
    idp.user = {"sub": "u-2", "email": "cust@example.com", "email_verified": True}
    resp, _ = await browser_sign_in(oidc_api)
    assert resp.status == 403
    idp.user = {"sub": "u-3", "email": "new@example.com", "email_verified": False}
    resp, _ = await browser_sign_in(oidc_api)
    assert resp.status == 403


async def test_oidc_is_404_when_not_configured(api):
    resp = await api.get("/api/admin/v1/auth/oidc/login", allow_redirects=False)
    assert resp.status == 404


async def test_device_login_for_an_oidc_admin(oidc_api, idp, pool):
    idp.user = {**idp.user, "groups": ["ev-admins"]}
    resp = await oidc_api.post("/api/admin/v1/auth/device", json={"client_name": "console on ops-1"})
    assert resp.status == 201
    grant = await resp.json()
    assert grant["verification_uri_complete"].endswith(grant["user_code"])
    poll = {"device_code": grant["device_code"]}
    resp = await oidc_api.post("/api/admin/v1/auth/device/token", json=poll)
    assert (resp.status, (await resp.json())["error"]) == (400, "authorization_pending")
    resp = await oidc_api.post("/api/admin/v1/auth/device/token", json=poll)
    assert (await resp.json())["error"] == "slow_down"

    # The browser: the verify page sends an unsigned-in admin through OIDC and back.
    verify = urlsplit(grant["verification_uri_complete"])
    resp = await oidc_api.get(f"{verify.path}?{verify.query}", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/api/admin/v1/auth/oidc/login")
    resp, _ = await browser_sign_in(oidc_api, start=resp.headers["Location"])
    assert resp.headers["Location"] == f"{verify.path}?{verify.query}"
    page = await (await oidc_api.get(resp.headers["Location"])).text()
    assert grant["user_code"] in page and "console on ops-1" in page
    csrf = page.split("name=csrf_token value='")[1].split("'")[0]
    # Without the CSRF token the approval is refused.
    resp = await oidc_api.post(verify.path, data={"user_code": grant["user_code"], "decision": "approve"})
    assert resp.status == 403
    resp = await oidc_api.post(verify.path, data={"user_code": grant["user_code"], "decision": "approve", "csrf_token": csrf})
    assert resp.status == 200 and "Approved" in await resp.text()

    async with pool.acquire() as conn:
        await conn.execute("UPDATE app.device_codes SET last_polled_at = now() - interval '1 minute'")
    resp = await oidc_api.post("/api/admin/v1/auth/device/token", json=poll)
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["token"]
    oidc_api.session.cookie_jar.clear()
    me = await (await oidc_api.get(SESSION, headers={"Authorization": f"Bearer {token}"})).json()
    assert me["user"]["email"] == "ada@example.com" and me["user"]["role"] == "admin" and me["via"] == "bearer"
    resp = await oidc_api.post("/api/admin/v1/auth/device/token", json=poll)
    assert (await resp.json())["error"] == "expired_token", "a device code yields one token"


async def test_denied_and_unknown_device_codes(api, make_user, pool):
    await make_user("boss@example.com", "admin")
    grant = await (await api.post("/api/admin/v1/auth/device", json={})).json()
    resp = await api.post("/api/admin/v1/auth/login", json={"email": "boss@example.com", "password": "correct horse battery staple"})
    csrf = (await resp.json())["csrf_token"]
    page = await (await api.get("/api/admin/v1/auth/device/verify", params={"user_code": grant["user_code"].replace("-", "").lower()})).text()
    assert "Approve" in page
    resp = await api.post("/api/admin/v1/auth/device/verify", data={"user_code": grant["user_code"], "decision": "deny", "csrf_token": csrf})
    assert "Denied" in await resp.text()
    resp = await api.post("/api/admin/v1/auth/device/token", json={"device_code": grant["device_code"]})
    assert (await resp.json())["error"] == "access_denied"
    resp = await api.post("/api/admin/v1/auth/device/token", json={"device_code": "x" * 40})
    assert (await resp.json())["error"] == "invalid_grant"


# ------------------------------------------------------------------ who gets in (issue 15)


async def test_nobody_gets_an_account_by_default(oidc_app, idp, pool):
    api = await oidc_app()
    resp, _ = await browser_sign_in(api)
    assert resp.status == 403 and "Ask an admin to add you" in await resp.text()
    assert (await api.get(SESSION)).status == 401
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.users") == 0


async def test_allowed_groups_and_domains_provision_verified_people_only(oidc_app, idp, pool):
    api = await oidc_app(ADMIN_OIDC_ALLOWED_GROUPS="ev-staff, ev-admins", ADMIN_OIDC_ALLOWED_DOMAINS="corp.example")
    idp.user = {"sub": "g-1", "email": "gil@elsewhere.example", "email_verified": True, "groups": ["ev-staff"]}
    assert (await browser_sign_in(api))[0].status == 302
    api.session.cookie_jar.clear()
    idp.user = {"sub": "d-1", "email": "dee@corp.example", "email_verified": True}
    assert (await browser_sign_in(api))[0].status == 302
    api.session.cookie_jar.clear()
    # The right domain, but the issuer does not say the address is verified (missing counts as no).
    idp.user = {"sub": "d-2", "email": "eve@corp.example"}
    assert (await browser_sign_in(api))[0].status == 403
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT email, role FROM app.users ORDER BY id")
    assert [tuple(r) for r in rows] == [("gil@elsewhere.example", "operator"), ("dee@corp.example", "operator")]


async def test_an_unverified_address_never_takes_over_an_account(oidc_api, idp, make_user, pool):
    await make_user("boss@example.com", "admin")
    for claims in ({}, {"email_verified": False}, {"email_verified": "true"}):
        idp.user = {"sub": "attacker", "email": "boss@example.com", **claims}
        resp, _ = await browser_sign_in(oidc_api)
        assert resp.status == 403, claims
        assert (await oidc_api.get(SESSION)).status == 401
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT oidc_subject FROM app.users WHERE email = 'boss@example.com'") is None
    # Verified: linked. Another subject with the same verified address later: refused.
    idp.user = {"sub": "boss-1", "email": "boss@example.com", "email_verified": True}
    assert (await browser_sign_in(oidc_api))[0].status == 302
    oidc_api.session.cookie_jar.clear()
    idp.user = {"sub": "boss-2", "email": "boss@example.com", "email_verified": True}
    assert (await browser_sign_in(oidc_api))[0].status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT oidc_subject FROM app.users WHERE email = 'boss@example.com'") == "boss-1"


async def test_a_sign_in_finishes_only_in_the_browser_that_started_it(oidc_api, idp, aiohttp_client):
    # The victim is sent a callback URL from the attacker's own sign-in (login CSRF).
    resp = await oidc_api.get("/api/admin/v1/auth/oidc/login", allow_redirects=False)
    assert "polaris_oidc_state" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    async with aiohttp.ClientSession() as browser:
        callback = urlsplit((await browser.get(resp.headers["Location"], allow_redirects=False)).headers["Location"])
    victim = await aiohttp_client(oidc_api.server)
    resp = await victim.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    assert resp.status == 400 and "another browser" in await resp.text()
    assert (await victim.get(SESSION)).status == 401
    # The browser that started it can finish it (the state was not used up by the attempt).
    resp = await oidc_api.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    assert resp.status == 302
    (cleared,) = [c for c in resp.headers.getall("Set-Cookie") if c.startswith("polaris_oidc_state=")]
    assert "Max-Age=0" in cleared, "the binding cookie goes once used"


async def test_the_unauthenticated_login_start_is_limited_per_address(oidc_api, pool):
    for _ in range(20):
        resp = await oidc_api.get("/api/admin/v1/auth/oidc/login", allow_redirects=False)
        assert resp.status == 302
    # Another address in X-Forwarded-For does not help: the peer is no trusted proxy.
    resp = await oidc_api.get("/api/admin/v1/auth/oidc/login", allow_redirects=False,
                              headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status == 429 and resp.headers["Retry-After"] == "600"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app.oidc_logins") == 20
