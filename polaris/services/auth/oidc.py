"""Admin single sign-on with OpenID Connect (authorization code + PKCE, state, nonce).

authlib builds the authorization URL, the PKCE challenge and the token request; joserfc
verifies the id_token against the issuer's JWKS (authlib.jose is deprecated).

Who gets in: a subject seen before signs in as its user. An unknown subject is linked to
the staff account with its email only when the issuer says `email_verified: true` and
that account is not linked to another subject. With no account, one is made only when
ADMIN_OIDC_ALLOWED_GROUPS or ADMIN_OIDC_ALLOWED_DOMAINS allow it (default: nobody; an
admin adds people). The new account is an operator, or an admin when ADMIN_OIDC_ADMIN_GROUP
is set and they are in that group (their role follows the group at every sign-in).

The `state` is bound to the browser that started the sign-in by a short-lived cookie,
compared on the callback, so a sign-in link cannot be finished in someone else's browser;
the unauthenticated start is limited per address (and in total) while sign-ins are in flight.
"""

from __future__ import annotations

import hmac
import html
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from polaris.config import Settings
from polaris.db.repos import audit, logins, users
from polaris.db.repos import sessions as sessions_repo
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth.middleware import set_session_cookie
from polaris.services.auth.views import client_ip
from polaris.services.errors import ApiError

log = get_logger(__name__)

LOGIN_PATH = "/api/admin/v1/auth/oidc/login"
CALLBACK_PATH = "/api/admin/v1/auth/oidc/callback"
DONE_PATH = "/api/admin/v1/auth/oidc/done"
LOGIN_LIFETIME = timedelta(minutes=10)
# The cookie binding a sign-in's state to the browser that started it (lives as long as the sign-in).
STATE_COOKIE = "polaris_oidc_state"
# Sign-ins in flight (started, not finished, within LOGIN_LIFETIME): per address, and in all.
MAX_PENDING_PER_ADDRESS = 20
MAX_PENDING = 5000
METADATA_TTL = 3600.0
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class OidcError(Exception):
    """Sign-in failed; the message is shown to the person."""


class OidcClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient):
        self.issuer = (settings.ADMIN_OIDC_ISSUER or "").rstrip("/")
        self.client_id = settings.ADMIN_OIDC_CLIENT_ID or ""
        secret = settings.ADMIN_OIDC_CLIENT_SECRET
        self.client_secret = secret.get_secret_value() if secret else ""
        self.admin_group = settings.ADMIN_OIDC_ADMIN_GROUP
        self.redirect_uri = settings.ADMIN_BASE_URL.rstrip("/") + CALLBACK_PATH
        self.http = http
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: KeySet | None = None

    async def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (cached for an hour)."""
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL:
            url = self.issuer + "/.well-known/openid-configuration"
            try:
                resp = await self.http.get(url, timeout=10)
                resp.raise_for_status()
                doc = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcError(f"cannot read the identity provider's configuration at {url}") from exc
            if doc.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError("the identity provider names another issuer than ADMIN_OIDC_ISSUER")
            self._metadata, self._metadata_at = doc, time.monotonic()
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            meta = await self.metadata()
            try:
                resp = await self.http.get(meta["jwks_uri"], timeout=10)
                resp.raise_for_status()
                self._jwks = KeySet.import_key_set(resp.json())
            except (httpx.HTTPError, ValueError, KeyError, jose_errors.JoseError) as exc:
                raise OidcError("cannot read the identity provider's signing keys") from exc
        return self._jwks

    async def authorization_url(self, state: str, nonce: str, code_verifier: str) -> str:
        meta = await self.metadata()
        return prepare_grant_uri(
            meta["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=self.redirect_uri,
            scope="openid email profile",
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        meta = await self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=self.redirect_uri, code_verifier=code_verifier
        )
        try:
            resp = await self.http.post(
                meta["token_endpoint"],
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                auth=httpx.BasicAuth(self.client_id, self.client_secret),
                timeout=10,
            )
        except httpx.HTTPError as exc:
            raise OidcError("the identity provider did not answer the token request") from exc
        if resp.status_code != 200:
            log.warning("oidc token request refused", status=resp.status_code)
            raise OidcError("the identity provider refused the sign-in code (expired or reused?)")
        try:
            tokens = resp.json()
        except ValueError:
            raise OidcError("the identity provider's token answer is not JSON") from None
        if not isinstance(tokens, dict) or "id_token" not in tokens:
            raise OidcError("the identity provider sent no id_token")
        return tokens

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The id_token's claims after checking signature, issuer, audience, expiry and nonce."""
        keys = await self.keys()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except (jose_errors.MissingKeyError, jose_errors.InvalidKeyIdError):
                token = jwt.decode(id_token, await self.keys(refresh=True), algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.issuer},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except jose_errors.JoseError as exc:
            log.warning("oidc id_token rejected", error=exc.__class__.__name__)
            raise OidcError("the identity provider's id_token did not verify") from None
        claims = token.claims
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != self.client_id):
            raise OidcError("the id_token was issued for another client")
        return claims

    def role_for(self, claims: dict[str, Any]) -> str | None:
        """admin/operator from the group claim, or None when no admin group is configured."""
        if not self.admin_group:
            return None
        groups = claims.get("groups") or []
        if isinstance(groups, str):
            groups = [groups]
        return "admin" if self.admin_group in groups else "operator"

    def may_provision(self, claims: dict[str, Any], settings: Settings) -> bool:
        """Whether a person with no account gets one: a verified address, and an allowed group or domain."""
        if claims.get("email_verified") is not True:
            return False
        groups = claims.get("groups") or []
        if isinstance(groups, str):
            groups = [groups]
        if settings.oidc_allowed_groups & {g for g in groups if isinstance(g, str)}:
            return True
        domain = str(claims.get("email", "")).rpartition("@")[2].lower()
        return bool(domain) and domain in settings.oidc_allowed_domains


def safe_return_to(value: str | None) -> str | None:
    """Only paths on this host (no scheme, no //host), so the login is no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    return value[:500]


async def oidc_login(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    ip = client_ip(request)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        mine, total = await logins.oidc_logins_pending(conn, ip)
        if mine >= MAX_PENDING_PER_ADDRESS or total >= MAX_PENDING:
            log.warning("oidc sign-in starts limited", ip=ip, pending_here=mine, pending=total)
            response = page(429, "Too many sign-ins", "Too many sign-ins were started from here. "
                            "Finish one, or try again in a few minutes.")
            response.headers["Retry-After"] = str(int(LOGIN_LIFETIME.total_seconds()))
            return response
        await logins.save_oidc_login(
            conn, state, nonce=nonce, code_verifier=verifier,
            return_to=safe_return_to(request.query.get("return_to")), lifetime=LOGIN_LIFETIME, ip=ip,
        )
    try:
        url = await client.authorization_url(state, nonce, verifier)
    except OidcError as exc:
        return page(502, "Sign-in unavailable", str(exc))
    response = web.HTTPFound(url)
    _set_state_cookie(response, request, state)
    raise response


def _set_state_cookie(response: web.StreamResponse, request: web.Request, state: str) -> None:
    settings = request.app[appkeys.SETTINGS]
    response.set_cookie(
        STATE_COOKIE, state, path=CALLBACK_PATH, max_age=int(LOGIN_LIFETIME.total_seconds()),
        httponly=True, secure=not settings.local_mode, samesite="Lax",
    )


def _clear_state_cookie(response: web.StreamResponse, request: web.Request) -> None:
    settings = request.app[appkeys.SETTINGS]
    response.del_cookie(STATE_COOKIE, path=CALLBACK_PATH, secure=not settings.local_mode,
                        httponly=True, samesite="Lax")


def _same_browser(request: web.Request, state: str) -> bool:
    cookie = request.cookies.get(STATE_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), state.encode())


async def oidc_callback(request: web.Request) -> web.StreamResponse:
    response = await _callback(request)
    _clear_state_cookie(response, request)
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _callback(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    if "error" in request.query:
        return page(401, "Sign-in cancelled", f"The identity provider said: {request.query['error']}")
    state, code = request.query.get("state"), request.query.get("code")
    if not state or not code:
        return page(400, "Sign-in failed", "The answer from the identity provider is incomplete.")
    if not _same_browser(request, state):
        log.warning("oidc callback from another browser than the sign-in's", ip=client_ip(request))
        return page(400, "Sign-in failed", "This sign-in was started in another browser (or its cookie "
                    "expired). Start again here.")
    pool = request.app[appkeys.PG_POOL]
    async with pool.acquire() as conn:
        pending = await logins.take_oidc_login(conn, state)
    if pending is None:
        return page(400, "Sign-in failed", "This sign-in link expired or was already used. Start again.")
    try:
        tokens = await client.exchange_code(code, pending["code_verifier"])
        claims = await client.verify_id_token(tokens["id_token"], pending["nonce"])
    except OidcError as exc:
        return page(401, "Sign-in failed", str(exc))
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is False:
        return page(403, "Sign-in refused", "The identity provider did not give a verified email address.")
    role = client.role_for(claims)
    ip = client_ip(request)
    subject = str(claims["sub"])
    async with pool.acquire() as conn, conn.transaction():
        user = await users.get_user_by_oidc_subject(conn, subject)
        if user is None:
            user = await users.get_user_by_email(conn, email)
            if user is not None and (claims.get("email_verified") is not True or user["oidc_subject"]):
                # An address the issuer does not vouch for, or an account another identity holds.
                log.warning("oidc link refused", user_id=user["id"], verified=claims.get("email_verified"))
                return page(403, "Sign-in refused", "This identity cannot be linked to the account with that "
                            "address: the identity provider must mark the address verified, and the account "
                            "must not be linked to another identity. Ask an admin.")
        if user is None:
            if not client.may_provision(claims, request.app[appkeys.SETTINGS]):
                log.info("oidc sign-in without an account", verified=claims.get("email_verified"))
                return page(403, "No account", f"There is no account for {email}. Ask an admin to add you.")
            created = await users.add_user(conn, email, role or "operator", name=claims.get("name"))
            user = created
            await audit.record(
                conn, actor_user_id=created["id"], actor_email=created["email"], action="user.create",
                target_type="user", target_id=created["id"],
                after={"email": created["email"], "role": created["role"], "via": "oidc"}, ip=ip,
            )
        if user["role"] == "customer":
            return page(403, "Sign-in refused", "This is a customer account; customers sign in on the portal.")
        if not user["active"]:
            return page(403, "Sign-in refused", "This account is deactivated.")
        if role is not None and role != user["role"]:
            await audit.record(
                conn, actor_user_id=user["id"], actor_email=user["email"], action="user.edit",
                target_type="user", target_id=user["id"], before={"role": user["role"]},
                after={"role": role, "via": "oidc group"}, ip=ip,
            )
        linked = await users.link_oidc_subject(conn, user["id"], subject, role)
        token, _ = await sessions_repo.create_session(
            conn, linked["id"], method="oidc", ip=ip, user_agent=request.headers.get("User-Agent")
        )
    log.info("oidc sign-in", user_id=linked["id"], role=linked["role"])
    target = pending["return_to"] or DONE_PATH
    response = web.HTTPFound(target)
    set_session_cookie(response, request, token)
    return response


async def oidc_done(request: web.Request) -> web.Response:
    user = request.get("user")
    if user is None:
        return page(401, "Not signed in", "Sign in first.")
    return page(200, "Signed in", f"Signed in as {user.email} ({user.role}). You can close this window.")


def page(status: int, title: str, message: str, body_html: str = "") -> web.Response:
    """A minimal HTML page for the browser steps (sign-in, device approval)."""
    text = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)} · Polaris Express</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{body_html}</body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html")


def _client(request: web.Request) -> OidcClient:
    client = request.app.get(appkeys.OIDC)
    if client is None:
        raise ApiError(404, "not_found", "OIDC sign-in is not configured (ADMIN_OIDC_ISSUER)")
    return client


async def _oidc_ctx(app: web.Application):
    settings = app[appkeys.SETTINGS]
    app[appkeys.OIDC] = OidcClient(settings, app[appkeys.HTTP_CLIENT]) if settings.oidc_enabled else None
    yield


def login_url(return_to: str) -> str:
    return LOGIN_PATH + "?" + urlencode({"return_to": return_to})


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_oidc_ctx)
    app.router.add_get(LOGIN_PATH, oidc_login, name="oidc_login")
    app.router.add_get(CALLBACK_PATH, oidc_callback, name="oidc_callback")
    app.router.add_get(DONE_PATH, oidc_done, name="oidc_done")

