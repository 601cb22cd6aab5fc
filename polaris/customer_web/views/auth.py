"""Sign in by emailed link (two steps: open, then confirm), sign out, and the start page."""

from __future__ import annotations

from aiohttp import web

from polaris.customer_web import portal
from polaris.customer_web.common import (
    check_csrf,
    current_user,
    customer_or_redirect,
    redirect,
    render,
    safe_next,
)
from polaris.customer_web.strings import text
from polaris.services.auth.middleware import (
    AUTH_ID,
    AUTH_VIA,
    clear_session_cookie,
    set_session_cookie,
)
from polaris.services.auth.views import client_ip

routes = web.RouteTableDef()


@routes.get("/", name="portal_home")
async def home(request: web.Request) -> web.Response:
    user = current_user(request)
    running = []
    if user is not None and user.customer_id is not None:
        running = [s for s in await portal.list_sessions(request.app, user, limit=20) if s.running]
    return render(request, "home.html", {"running": running})


@routes.get("/c", name="portal_charger_lookup")
async def charger_lookup(request: web.Request) -> web.Response:
    code = request.query.get("code", "").strip()
    if code and code.replace("-", "").replace("_", "").isalnum() and len(code) <= 64:
        raise web.HTTPSeeOther(f"/c/{code}")
    raise redirect("/")


@routes.get("/signin", name="portal_signin")
async def signin_form(request: web.Request) -> web.Response:
    return render(request, "signin.html", {"next": safe_next(request.query.get("next")), "email": ""})


@routes.post("/signin", name="portal_signin_post")
async def signin(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    email = str(form.get("email", ""))[:300]
    next_path = safe_next(form.get("next"))
    try:
        address = await portal.request_link(
            request.app, email, ip=client_ip(request), return_to=next_path if next_path != "/" else None
        )
    except portal.PortalError as exc:
        return render(
            request, "signin.html", {"next": next_path, "email": email, "error": exc.message}, status=exc.status
        )
    return render(request, "signin_sent.html", {"email": address})


@routes.get("/auth/link/{token}", name="portal_link")
async def link_confirm(request: web.Request) -> web.Response:
    """Shows a button; a mail client's link previewer following this GET does not use the link."""
    token = request.match_info["token"]
    try:
        link = await portal.peek_link(request.app, token)
    except portal.PortalError as exc:
        return render(request, "link_refused.html", {"message": exc.message}, status=exc.status)
    return render(request, "link_confirm.html", {"link": link, "token": token})


@routes.post("/auth/link/{token}", name="portal_link_post")
async def link_consume(request: web.Request) -> web.Response:
    await check_csrf(request)
    token = request.match_info["token"]
    try:
        link = await portal.consume_link(request.app, token)
    except portal.PortalError as exc:
        return render(request, "link_refused.html", {"message": exc.message}, status=exc.status)
    if link["purpose"] == "email_change" and request.get(AUTH_VIA) == "cookie" and (
        current_user(request) and current_user(request).id == link["user_id"]
    ):
        raise redirect("/account", "saved")
    cookie = await portal.start_browser_session(
        request.app, link["user_id"], ip=client_ip(request), user_agent=request.headers.get("User-Agent")
    )
    response = web.HTTPSeeOther(safe_next(link["return_to"]))
    set_session_cookie(response, request, cookie)
    raise response


@routes.post("/signout", name="portal_signout")
async def signout(request: web.Request) -> web.Response:
    await check_csrf(request)
    if request.get(AUTH_VIA) == "cookie":
        from polaris.db.repos import sessions as sessions_repo

        async with request.app[portal.appkeys.PG_POOL].acquire() as conn:
            await sessions_repo.delete_session(conn, request[AUTH_ID])
    response = redirect("/signin", "signed_out")
    clear_session_cookie(response, request)
    raise response


@routes.post("/signout/everywhere", name="portal_signout_everywhere")
async def signout_everywhere(request: web.Request) -> web.Response:
    await check_csrf(request)
    user = customer_or_redirect(request)
    await portal.sign_out_everywhere(request.app, user)
    response = redirect("/signin", "signed_out_everywhere")
    clear_session_cookie(response, request)
    raise response


__all__ = ["routes", "text"]
