"""Cards, billing and the account (profile, email change, receipts, my data, deletion)."""

from __future__ import annotations

import json

from aiohttp import web

from polaris.customer_web import portal
from polaris.customer_web.common import (
    PageError,
    check_csrf,
    customer_or_redirect,
    redirect,
    render,
)
from polaris.customer_web.strings import text
from polaris.services.auth.middleware import clear_session_cookie
from polaris.services.auth.views import client_ip
from polaris.services.live import jsonable

routes = web.RouteTableDef()


# ------------------------------------------------------------------ cards


@routes.get("/cards", name="portal_cards")
async def cards(request: web.Request) -> web.Response:
    user = customer_or_redirect(request)
    rows = await portal.list_cards(request.app, user)
    return render(request, "cards.html", {"cards": rows})


@routes.post(r"/cards/{id:\d{1,18}}/name", name="portal_card_name")
async def card_name(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    user = customer_or_redirect(request)
    label = str(form.get("label", ""))
    await portal.name_card(request.app, user, int(request.match_info["id"]), label)
    raise redirect("/cards", "card_named")


@routes.post(r"/cards/{id:\d{1,18}}/lost", name="portal_card_lost")
async def card_lost(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    user = customer_or_redirect(request)
    if form.get("confirm") != "on":
        rows = await portal.list_cards(request.app, user)
        return render(request, "cards.html", {"cards": rows, "error": text("report_lost_unconfirmed")}, status=400)
    row = await portal.report_lost(request.app, user, int(request.match_info["id"]))
    rows = await portal.list_cards(request.app, user)
    return render(request, "cards.html", {"cards": rows, "notice": text("card_blocked_done", tag=row["id_tag"])})


# ------------------------------------------------------------------ billing


@routes.get("/billing", name="portal_billing")
async def billing(request: web.Request) -> web.Response:
    user = customer_or_redirect(request)
    return render(request, "billing.html", {"b": await portal.billing_view(request.app, user)})


# ------------------------------------------------------------------ account


async def _account(request: web.Request, status: int = 200, **extra) -> web.Response:
    user = customer_or_redirect(request)
    profile = await portal.profile(request.app, user)
    return render(request, "account.html", {"profile": profile, **extra}, status=status)


@routes.get("/account", name="portal_account")
async def account(request: web.Request) -> web.Response:
    return await _account(request)


@routes.post("/account/profile", name="portal_account_profile")
async def account_profile(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    user = customer_or_redirect(request)
    await portal.update_profile(request.app, user, name=str(form.get("name", "")))
    raise redirect("/account", "saved")


@routes.post("/account/receipts", name="portal_account_receipts")
async def account_receipts(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    user = customer_or_redirect(request)
    await portal.update_profile(request.app, user, receipts=form.get("receipts") == "on")
    raise redirect("/account", "saved")


@routes.post("/account/email", name="portal_account_email")
async def account_email(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    user = customer_or_redirect(request)
    try:
        address = await portal.request_email_change(
            request.app, user, str(form.get("email", ""))[:300], ip=client_ip(request)
        )
    except portal.PortalError as exc:
        return await _account(request, exc.status, email_error=exc.message)
    return await _account(request, notice=text("email_change_sent", email=address))


@routes.get("/account/data.json", name="portal_account_data")
async def account_data(request: web.Request) -> web.Response:
    user = customer_or_redirect(request)
    data = jsonable(await portal.export_data(request.app, user))
    return web.Response(
        text=json.dumps(data, indent=2, default=str),
        content_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"', "Cache-Control": "no-store"},
    )


@routes.post("/account/delete", name="portal_account_delete")
async def account_delete(request: web.Request) -> web.Response:
    form = await check_csrf(request)
    user = customer_or_redirect(request)
    if form.get("confirm") != "DELETE":
        return await _account(request, 400, delete_error=text("delete_confirm_wrong"))
    await portal.delete_account(request.app, user)
    response = redirect("/signin", "deleted")
    clear_session_cookie(response, request)
    raise response


__all__ = ["PageError", "routes"]
