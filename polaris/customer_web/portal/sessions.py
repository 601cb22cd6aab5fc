"""A session with live figures, stopping it, the history and its CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, PlainSerializer

from polaris.customer_web.portal.base import PortalError, pool_of, require_customer
from polaris.customer_web.portal.charging import Price, price_for, reason_words, status_words
from polaris.customer_web.strings import text
from polaris.db.errors import NotFound
from polaris.db.repos import customer_portal as repo
from polaris.db.repos import sites
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.errors import ApiError

log = get_logger(__name__)

# The price of a session, exact (Decimal) for the page, as its decimal text in JSON and CSV.
Cost = Annotated[Decimal | None, PlainSerializer(lambda d: None if d is None else str(d), return_type=str | None)]


# ------------------------------------------------------------------ sessions


class SessionOut(BaseModel):
    """One of a customer's sessions with live figures: the session pages render it and the
    customer API returns it as it is, so the page and the app show the same numbers."""

    id: int
    charge_box_id: str
    public_id: str
    place: str
    connector_id: int
    card: str
    started_at: datetime
    ended_at: datetime | None
    running: bool
    energy_kwh: float
    power_kw: float | None
    duration_s: int
    cost: Cost
    cost_text: str | None
    currency: str | None
    status: str | None
    status_text: str
    stop_reason: str | None
    # Set while the site's load management holds the session under its charger's maximum.
    site_limit_kw: float | None = None
    site_limit_text: str | None = None


def site_limit(running: bool, limit: asyncpg.Record | None) -> tuple[float | None, str | None]:
    """What the site's load management allows this session now, when it is under the charger's maximum."""
    if not running or limit is None or limit["limit_amps"] >= limit["max_amps"] - 0.05:
        return None, None
    kw = round(limit["limit_amps"] * 230 * limit["phases"] / 1000, 1)
    if kw == 0:
        return 0.0, text("site_paused")
    return kw, text("site_limited", kw=f"{kw:.1f}")


def _session_view(row: asyncpg.Record, price: Price, *, now: datetime | None = None) -> SessionOut:
    now = now or datetime.now(UTC)
    running = row["stop_timestamp"] is None
    if row["meter_stop"] is not None:
        wh = row["meter_stop"] - row["meter_start"]
    elif row["last_register"] is not None:
        wh = row["last_register"] - row["meter_start"]
    else:
        wh = 0
    kwh = round(max(0.0, float(wh)) / 1000, 3)
    end = row["stop_timestamp"] or now
    cost = price.cost(kwh)
    if running:
        status = row.get("connector_status") if hasattr(row, "get") else None
        if row.get("charger_connected") is False:
            status_text = text("status_offline")
        elif status and status != "Available":
            status_text = status_words(status)
        else:
            status_text = text("session_state_running")
    else:
        status = None
        status_text = text("session_state_finished")
    place = row["site_name"] or row["charger_description"] or row["charge_box_id"]
    return SessionOut(
        id=row["id"],
        charge_box_id=row["charge_box_id"],
        public_id=row["public_id"],
        place=place,
        connector_id=row["connector_id"],
        card=row["card_label"] or row["id_tag"],
        started_at=row["start_timestamp"],
        ended_at=row["stop_timestamp"],
        running=running,
        energy_kwh=kwh,
        power_kw=round(float(row["power_kw"]), 2) if running and row.get("power_kw") is not None else None,
        duration_s=max(0, int((end - row["start_timestamp"]).total_seconds())),
        cost=cost,
        cost_text=price.format(cost),
        currency=price.currency,
        status=status,
        status_text=status_text,
        stop_reason=reason_words(row["stop_reason"]),
    )


async def _customer_price(conn: asyncpg.Connection, customer_id: int) -> Price:
    customer = await repo.get_customer(conn, customer_id)
    return await price_for(conn, customer["lago_subscription_id"] if customer else None)


async def session_view(app: web.Application, user: AuthUser, transaction_id: int) -> SessionOut:
    """One of the customer's sessions with live figures; another customer's is 404."""
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        try:
            row = await repo.get_session(conn, user.customer_id, transaction_id)
        except NotFound:
            raise PortalError(404, "not_found", "session_not_found") from None
        price = await _customer_price(conn, user.customer_id)
        limit = await sites.transaction_limit(conn, transaction_id)
    view = _session_view(row, price)
    view.site_limit_kw, view.site_limit_text = site_limit(view.running, limit)
    return view


async def session_chart_points(app: web.Application, user: AuthUser, transaction_id: int) -> list[tuple[datetime, float]]:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        try:
            row = await repo.get_session(conn, user.customer_id, transaction_id)
        except NotFound:
            raise PortalError(404, "not_found", "session_not_found") from None
        series = await repo.energy_series(conn, transaction_id)
    start = row["meter_start"]
    points = [(row["start_timestamp"], 0.0)]
    points += [(r["sampled_at"], max(0.0, (r["wh"] - start) / 1000)) for r in series if r["sampled_at"] >= row["start_timestamp"]]
    if row["stop_timestamp"] is not None and row["meter_stop"] is not None:
        points.append((row["stop_timestamp"], max(0.0, (row["meter_stop"] - start) / 1000)))
    # Chargers' clocks and late readings: draw in time order, the register never going back.
    points.sort(key=lambda p: p[0])
    top = 0.0
    for i, (t, kwh) in enumerate(points):
        top = max(top, kwh)
        points[i] = (t, top)
    return points


async def stop_charging(app: web.Application, user: AuthUser, transaction_id: int) -> None:
    """RemoteStopTransaction for one of the customer's running sessions."""
    view = await session_view(app, user, transaction_id)
    if not view.running:
        raise PortalError(409, "session_finished", "session_finished")
    commands = app[appkeys.COMMAND_CLIENT]
    try:
        answer = await commands.operation(
            "RemoteStopTransaction",
            view.charge_box_id,
            {"transactionId": transaction_id},
            requested_by=f"customer:{user.customer_id}",
        )
    except ApiError as exc:
        key = {409: "start_failed_offline", 504: "start_failed_timeout"}.get(exc.status, "start_failed")
        raise PortalError(exc.status if exc.status in (409, 504) else 502, exc.code, key) from None
    status = ((answer or {}).get("response") or {}).get("status")
    log.info("remote stop", transaction_id=transaction_id, status=status)
    if status != "Accepted":
        raise PortalError(409, "stop_rejected", "stop_rejected")


async def list_sessions(
    app: web.Application, user: AuthUser, *, limit: int = 50, before_id: int | None = None
) -> list[SessionOut]:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        rows = await repo.list_sessions(conn, user.customer_id, limit=limit, before_id=before_id)
        price = await _customer_price(conn, user.customer_id)
    return [_session_view(r, price) for r in rows]


CSV_COLUMNS = ("id", "started_at", "ended_at", "place", "charge_box_id", "connector_id", "card",
               "energy_kwh", "duration_s", "cost", "currency", "stop_reason")


async def sessions_csv(app: web.Application, user: AuthUser) -> str:
    views = await list_sessions(app, user, limit=10_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for v in views:
        doc = v.model_dump(include=set(CSV_COLUMNS))
        writer.writerow([_csv_cell(doc[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    # A spreadsheet runs a cell starting with = + - @ as a formula; card names are user input.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value
