"""Who is asking: a bearer token or the session cookie becomes `request["user"]`.

CSRF: a write authenticated by the cookie must carry the session's CSRF token
(`X-CSRF-Token` header, or a `csrf_token` form field); bearer-token requests are exempt
because a browser never adds that header on its own.
"""

from __future__ import annotations

import hmac
import warnings
from typing import Any

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning

from polaris.db.repos import sessions as sessions_repo
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.errors import ApiError

SESSION_COOKIE = "polaris_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# How the caller authenticated ("cookie" or "bearer"), the session row (cookie only) and
# the id of the session or token used.
AUTH_VIA = web.RequestKey("auth_via", str)
SESSION = web.RequestKey("session", object)
AUTH_ID = web.RequestKey("auth_id", int)

# Paths that never look at the caller's identity (health, machine-to-machine hooks).
# /api/devices/: the original iOS app's API authenticates its own `dev_` tokens (services/expresscan.py).
NO_AUTH_PREFIXES = ("/healthz", "/readyz", "/metrics", "/api/ocpp/", "/api/webhook/", "/static/", "/api/devices/")
# Writes that start a session cannot carry a session's CSRF token yet.
CSRF_EXEMPT = frozenset(
    {
        "/api/admin/v1/auth/login",
        "/api/admin/v1/auth/token",
        "/api/admin/v1/auth/device",
        "/api/admin/v1/auth/device/token",
        "/api/admin/v1/auth/password-reset",
    }
)
# The secret token in these URLs is the proof a CSRF attacker cannot forge.
CSRF_EXEMPT_PREFIXES = ("/api/admin/v1/auth/password-reset/",)


def _principal(row) -> AuthUser:
    return AuthUser(id=row["user_id"], email=row["email"], role=row["role"], customer_id=row["customer_id"])


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler):
    set_user(request, None)
    if request.path.startswith(NO_AUTH_PREFIXES):
        return await handler(request)
    token = bearer_token(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if token is not None or cookie:
        pool = request.app[appkeys.PG_POOL]
        async with pool.acquire() as conn:
            if token is not None:
                row = await sessions_repo.get_api_token(conn, token)
                if row is None:
                    # A wrong token is an error even on public paths: the client believes
                    # it is signed in and must learn it is not.
                    raise ApiError(
                        401,
                        "invalid_token",
                        "the bearer token is unknown, revoked or expired; sign in again",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    )
                set_user(request, _principal(row))
                request[AUTH_VIA] = "bearer"
                request[AUTH_ID] = row["id"]
            else:
                row = await sessions_repo.get_session(conn, cookie)
                if row is not None:
                    set_user(request, _principal(row))
                    request[AUTH_VIA] = "cookie"
                    request[AUTH_ID] = row["id"]
                    request[SESSION] = row
    if request.get(AUTH_VIA) == "cookie" and request.method not in SAFE_METHODS:
        await _check_csrf(request)
    return await handler(request)


async def _check_csrf(request: web.Request) -> None:
    if request.path in CSRF_EXEMPT or request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    expected = request[SESSION]["csrf_token"]
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(
            403,
            "csrf_failed",
            f"a cookie-authenticated write needs the session's CSRF token in the {CSRF_HEADER} header",
        )


def set_user(request: web.Request, user: AuthUser | None) -> None:
    """Store the caller as `request["user"]`, the key every module reads.

    A plain string key is the contract between modules (push, SSE, hooks read it with
    `request.get("user")`); aiohttp 3.14 nudges toward RequestKey with a warning, which
    is silenced here, in the one place that writes it.
    """
    state: Any = request
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAppKeyWarning)
        state["user"] = user


def current_user(request: web.Request) -> AuthUser | None:
    return request.get("user")


def require_user(request: web.Request, *roles: str) -> AuthUser:
    """The signed-in user, if their role is one of `roles` (any role when none given)."""
    user = request.get("user")
    if user is None:
        raise ApiError(
            401,
            "unauthorized",
            "sign in first (session cookie or bearer token)",
            headers={"WWW-Authenticate": 'Bearer realm="polaris"'},
        )
    if roles and user.role not in roles:
        raise ApiError(403, "forbidden", f"this needs the {' or '.join(roles)} role; you are {user.role}")
    return user


def set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    settings = request.app[appkeys.SETTINGS]
    response.set_cookie(
        SESSION_COOKIE,
        token,
        domain=settings.COOKIE_DOMAIN or None,
        path="/",
        max_age=int(sessions_repo.SESSION_ABSOLUTE.total_seconds()),
        httponly=True,
        secure=not settings.local_mode,
        samesite="Lax",
    )


def clear_session_cookie(response: web.StreamResponse, request: web.Request) -> None:
    settings = request.app[appkeys.SETTINGS]
    response.del_cookie(
        SESSION_COOKIE,
        domain=settings.COOKIE_DOMAIN or None,
        path="/",
        secure=not settings.local_mode,
        httponly=True,
        samesite="Lax",
    )
