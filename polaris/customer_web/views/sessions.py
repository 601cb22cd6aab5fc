"""The live session page (stop button), the history with its chart, and the CSV export."""

from __future__ import annotations

from aiohttp import web
from markupsafe import Markup

from polaris.customer_web import portal
from polaris.customer_web.chart import energy_svg
from polaris.customer_web.common import check_csrf, customer_or_redirect, redirect, render
from polaris.customer_web.strings import text

routes = web.RouteTableDef()
PAGE = 50


@routes.get("/sessions", name="portal_sessions")
async def history(request: web.Request) -> web.Response:
    user = customer_or_redirect(request)
    before = request.query.get("before")
    before_id = int(before) if before and before.isdigit() and len(before) < 10 else None
    views = await portal.list_sessions(request.app, user, limit=PAGE + 1, before_id=before_id)
    older = views[PAGE].id + 1 if len(views) > PAGE else None
    return render(request, "sessions.html", {"sessions": views[:PAGE], "older": older})


@routes.get("/sessions.csv", name="portal_sessions_csv")
async def history_csv(request: web.Request) -> web.Response:
    user = customer_or_redirect(request)
    body = await portal.sessions_csv(request.app, user)
    return web.Response(
        text=body,
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="sessions.csv"', "Cache-Control": "no-store"},
    )


@routes.get(r"/sessions/{id:\d{1,9}}", name="portal_session")
async def session_page(request: web.Request) -> web.Response:
    user = customer_or_redirect(request)
    tx = int(request.match_info["id"])
    view = await portal.session_view(request.app, user, tx)
    points = await portal.session_chart_points(request.app, user, tx)
    chart = Markup(energy_svg(points, title=text("chart_title"), empty_text=text("chart_empty")))
    return render(request, "session.html", {"s": view, "chart": chart})


@routes.post(r"/sessions/{id:\d{1,9}}/stop", name="portal_session_stop")
async def stop(request: web.Request) -> web.Response:
    await check_csrf(request)
    user = customer_or_redirect(request)
    tx = int(request.match_info["id"])
    try:
        await portal.stop_charging(request.app, user, tx)
    except portal.PortalError as exc:
        if exc.status == 404:
            raise
        view = await portal.session_view(request.app, user, tx)
        return render(request, "session.html", {"s": view, "chart": None, "error": exc.message}, status=exc.status)
    raise redirect(f"/sessions/{tx}", "stop_sent")
