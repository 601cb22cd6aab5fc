"""The charger page a QR code opens, starting a session, and "tap your card" windows."""

from __future__ import annotations

from aiohttp import web

from polaris.customer_web import portal
from polaris.customer_web.common import (
    PageError,
    anon_id,
    check_csrf,
    current_user,
    customer_or_redirect,
    int_field,
    redirect,
    render,
)
from polaris.customer_web.strings import text
from polaris.services.auth.middleware import set_session_cookie
from polaris.services.auth.views import client_ip

routes = web.RouteTableDef()


@routes.get("/c/{public_id}", name="portal_charger")
async def charger_page(request: web.Request) -> web.Response:
    user = current_user(request)
    view = await portal.charger_view(request.app, request.match_info["public_id"], user)
    return render(request, "charger.html", {"charger": view, "error": None})


@routes.post("/c/{public_id}/start", name="portal_start")
async def start(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    public_id = request.match_info["public_id"]
    user = customer_or_redirect(request)
    connector_id = int_field(form, "connector_id")
    if connector_id is None:
        raise PageError(400, text("charger_unavailable"))
    try:
        tx = await portal.start_charging(request.app, user, public_id, connector_id, int_field(form, "card_id"))
    except portal.ApiError as exc:
        if exc.status in (401, 403) and exc.code in ("unauthorized", "forbidden"):
            raise
        view = await portal.charger_view(request.app, public_id, user)
        return render(request, "charger.html", {"charger": view, "error": exc.message}, status=exc.status)
    if tx is None:
        raise redirect(f"/c/{public_id}", "start_waiting")
    raise redirect(f"/sessions/{tx}")


@routes.post("/c/{public_id}/pair", name="portal_pair")
async def arm_pairing(request: web.Request) -> web.Response:
    """Signed in: link the next card tapped here. Signed out: sign in with it."""
    await check_csrf(request)
    public_id = request.match_info["public_id"]
    user = current_user(request)
    if user is not None and user.customer_id is not None:
        pairing = await portal.arm_link_pairing(request.app, user, public_id)
    else:
        pairing = await portal.arm_signin_pairing(request.app, anon_id(request), public_id)
    raise redirect(f"/pairings/{pairing['id']}")


async def _pairing_result(request: web.Request, pairing_id: int) -> portal.PairingResult:
    user = current_user(request)
    if user is not None and user.customer_id is not None:
        return await portal.link_pairing_result(request.app, user, pairing_id)
    return await portal.signin_pairing_result(request.app, anon_id(request), pairing_id)


@routes.get(r"/pairings/{pairing_id:\d{1,18}}", name="portal_pairing")
async def pairing_page(request: web.Request) -> web.Response:
    pairing_id = int(request.match_info["pairing_id"])
    try:
        result = await _pairing_result(request, pairing_id)
    except portal.ApiError as exc:
        raise PageError(404, text("error_404_body"), "error_404_title") from exc
    if result.state == "linked":
        raise redirect("/cards", "card_linked")
    return render(request, "pairing.html", {"pairing": result})


@routes.post(r"/pairings/{pairing_id:\d{1,18}}/signin", name="portal_pairing_signin")
async def pairing_signin(request: web.Request) -> web.Response:
    await check_csrf(request)
    pairing_id = int(request.match_info["pairing_id"])
    result = await portal.signin_pairing_result(request.app, anon_id(request), pairing_id)
    if result.state != "signed_in" or result.user_id is None:
        raise redirect(f"/pairings/{pairing_id}")
    cookie = await portal.start_browser_session(
        request.app, result.user_id, ip=client_ip(request), user_agent=request.headers.get("User-Agent")
    )
    response = web.HTTPSeeOther("/")
    set_session_cookie(response, request, cookie)
    raise response
