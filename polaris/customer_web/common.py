"""What every portal page needs: rendering with the texts, CSRF tokens, the signed-out browser id."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from polaris.customer_web.strings import TEXT, text
from polaris.db.repos.magic_links import check_return_to
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.auth.middleware import SESSION

JINJA = web.AppKey("customer_web_jinja", jinja2.Environment)
# A signed-out browser's random id: the CSRF token of its forms (double submit) and, for
# tap-to-sign-in, the owner of its pairing window. Only ever compared, never trusted alone.
ANON_COOKIE = "polaris_anon"
_ANON = web.RequestKey("customer_web_anon", str)

# Flash messages travel as ?msg=<key>; only keys listed here are shown (no text injection).
FLASH_KEYS = frozenset(
    {
        "signed_out", "signed_out_everywhere", "card_named", "stop_sent", "start_waiting", "saved",
        "deleted", "tap_expired", "card_linked", "link_expired", "link_used", "link_unknown",
    }
)


class PageError(Exception):
    """Render the error page with this status and texts."""

    def __init__(self, status: int, message: str, title_key: str = "error_generic_title"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.title_key = title_key


def current_user(request: web.Request) -> AuthUser | None:
    return request.get("user")


def customer_or_redirect(request: web.Request) -> AuthUser:
    """The signed-in customer, or a redirect to sign in that comes back here."""
    user = current_user(request)
    if user is None or user.customer_id is None:
        raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
    return user


def anon_id(request: web.Request) -> str:
    """This browser's signed-out id, created on first use (set on the response by `render`)."""
    if _ANON in request:
        return request[_ANON]
    value = request.cookies.get(ANON_COOKIE, "")
    if not (32 <= len(value) <= 100) or not value.replace("-", "").replace("_", "").isalnum():
        value = secrets.token_urlsafe(32)
    request[_ANON] = value
    return value


def csrf_token(request: web.Request) -> str:
    """The token forms carry: the session's when signed in, else the browser's signed-out id."""
    session = request.get(SESSION)
    if session is not None:
        return session["csrf_token"]
    return anon_id(request)


async def check_csrf(request: web.Request) -> Any:
    """Read the form and check its token; the auth middleware already checked signed-in posts."""
    form = await request.post()
    if request.get(SESSION) is None:
        sent = form.get("csrf_token")
        cookie = request.cookies.get(ANON_COOKIE)
        if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            raise PageError(403, text("error_403_body"), "error_403_title")
    return form


def set_anon_cookie(request: web.Request, response: web.StreamResponse) -> None:
    if _ANON in request and request.cookies.get(ANON_COOKIE) != request[_ANON]:
        settings = request.app[appkeys.SETTINGS]
        response.set_cookie(
            ANON_COOKIE,
            request[_ANON],
            path="/",
            max_age=30 * 24 * 3600,
            httponly=True,
            secure=not settings.local_mode,
            samesite="Lax",
        )


def render(request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200) -> web.Response:
    ctx = {
        "t": TEXT,
        "text": text,
        "user": current_user(request),
        "csrf_token": csrf_token(request),
        "flash": _flash(request),
        "path": request.path,
        **(context or {}),
    }
    response = aiohttp_jinja2.render_template(template, request, ctx, status=status, app_key=JINJA)
    response.headers["Cache-Control"] = "no-store"
    set_anon_cookie(request, response)
    return response


def _flash(request: web.Request) -> str | None:
    key = request.query.get("msg")
    return text(key) if key in FLASH_KEYS else None


def redirect(location: str, msg: str | None = None) -> web.HTTPSeeOther:
    if msg:
        location += ("&" if "?" in location else "?") + f"msg={msg}"
    return web.HTTPSeeOther(location)


def safe_next(value: Any, default: str = "/") -> str:
    return check_return_to(value if isinstance(value, str) else None) or default


def int_field(form: Any, name: str) -> int | None:
    value = form.get(name)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        return int(value.strip())
    return None
