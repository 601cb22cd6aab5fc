"""Prices, a charger as the customer sees it, and starting a session."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import asyncpg
from aiohttp import web

from polaris.customer_web.portal.base import PortalError, pool_of, require_customer
from polaris.customer_web.strings import text
from polaris.db.repos import charging_policy
from polaris.db.repos import customer_portal as repo
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.errors import ApiError

log = get_logger(__name__)


# Statuses in which a connector can take a new session.
STARTABLE = frozenset({"Available", "Preparing"})
BUSY = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})
# How long a start waits for the charger's StartTransaction before answering "waiting".
START_WAIT = 10.0

# ------------------------------------------------------------------ prices


@dataclass
class Price:
    per_kwh: Decimal | None
    currency: str | None
    plan: str | None
    # The price in words when it is not one price per kWh (package, graduated, volume,
    # percentage with a fixed fee), or "see your plan": rendered by polaris.sync.pricing.
    text: str | None = None

    def format(self, amount: Decimal | float | None) -> str | None:
        if amount is None or self.currency is None:
            return None
        return f"{Decimal(str(amount)).quantize(Decimal('0.01'))} {self.currency}"

    @property
    def label(self) -> str | None:
        if self.per_kwh is None:
            return None
        return f"{self.per_kwh.normalize():f} {self.currency or ''}".strip()

    def cost(self, kwh: float | None) -> Decimal | None:
        if self.per_kwh is None or kwh is None:
            return None
        return (Decimal(str(kwh)) * self.per_kwh).quantize(Decimal("0.01"))


async def price_for(conn: asyncpg.Connection, subscription_id: str | None) -> Price:
    """The per-kWh price of the customer's Lago plan, as cached by the sync worker."""
    if not subscription_id:
        return Price(None, None, None)
    from polaris.db.repos.billing import get_price_for_subscription

    row = await get_price_for_subscription(conn, subscription_id)
    if row is None:
        return Price(None, None, None)
    name = row["name"] or row["code"]
    if row["price_text"] is not None:
        # Rendered by the sync worker from the subscription's own plan (all charge models).
        per_kwh = Decimal(row["price_per_kwh"]) if row["price_per_kwh"] is not None else None
        return Price(per_kwh, row["currency"], name, None if per_kwh is not None else row["price_text"])
    per_kwh = None
    if row["unit_amount"] is not None and row["charge_model"] == "standard":
        try:
            per_kwh = Decimal(row["unit_amount"])
        except InvalidOperation:
            per_kwh = None
    return Price(per_kwh, row["currency"], name, None if per_kwh is not None else "see your plan")


# ------------------------------------------------------------------ chargers


def status_words(status: str | None) -> str:
    if not status:
        return text("status_unknown")
    key = f"status_{status}"
    words = text(key)
    return status if words == key else words


def reason_words(reason: str | None) -> str | None:
    if not reason:
        return None
    words = text(f"reason_{reason}")
    return reason if words.startswith("reason_") else words


@dataclass
class ConnectorView:
    connector_id: int
    status: str | None
    status_text: str
    available: bool
    refusal: str | None
    my_transaction_id: int | None


@dataclass
class ChargerView:
    public_id: str
    charge_box_id: str
    name: str
    site_name: str | None
    site_address: str | None
    online: bool
    connectors: list[ConnectorView]
    price: Price
    cards: list[asyncpg.Record] = field(default_factory=list)
    may_charge: bool = False
    refusal: str | None = None
    charge_box_pk: int = 0


async def charger_view(app: web.Application, public_id: str, user: AuthUser | None) -> ChargerView:
    async with pool_of(app).acquire() as conn:
        cb = await repo.charger_by_public_id(conn, public_id)
        if cb is None:
            raise PortalError(404, "not_found", "charger_not_found")
        rows = await repo.charger_connectors(conn, cb["charge_box_pk"])
        whole = await repo.charger_status(conn, cb["charge_box_pk"])
        customer = None
        cards: list[asyncpg.Record] = []
        if user is not None and user.customer_id is not None:
            customer = await repo.get_customer(conn, user.customer_id)
            cards = [c for c in await repo.list_cards(conn, user.customer_id) if _card_usable(c)]
        price = await price_for(conn, customer["lago_subscription_id"] if customer else None)
    online = bool(cb["connected"])
    connectors = []
    for r in rows:
        refusal = connector_refusal(online, r["status"], r["transaction_id"], whole)
        mine = r["transaction_id"] if (user and r["session_customer_id"] == user.customer_id) else None
        connectors.append(
            ConnectorView(
                connector_id=r["connector_id"],
                status=r["status"],
                status_text=text("status_offline") if not online else status_words(r["status"]),
                available=refusal is None,
                refusal=refusal,
                my_transaction_id=mine,
            )
        )
    view = ChargerView(
        public_id=cb["public_id"],
        charge_box_id=cb["charge_box_id"],
        name=cb["description"] or cb["charge_box_id"],
        site_name=cb["site_name"],
        site_address=cb["site_address"],
        online=online,
        connectors=connectors,
        price=price,
        cards=cards,
        charge_box_pk=cb["charge_box_pk"],
    )
    if customer is not None:
        view.refusal = customer_refusal(customer, cards)
        view.may_charge = view.refusal is None
    return view


def _card_usable(card: asyncpg.Record) -> bool:
    return not card["blocked"] and (card["expiry_date"] is None or card["expiry_date"] > datetime.now(UTC))


def connector_refusal(online: bool, status: str | None, transaction_id: int | None, whole: str | None) -> str | None:
    """Why a session cannot start on this connector now (a text), or None."""
    if not online:
        return text("charger_offline")
    if status == "Faulted" or whole == "Faulted":
        return text("charger_faulted")
    if transaction_id is not None or status in BUSY:
        return text("charger_occupied")
    if status == "Reserved":
        return text("charger_reserved")
    if status == "Unavailable" or whole == "Unavailable":
        return text("charger_unavailable")
    return None


def customer_refusal(customer: asyncpg.Record, usable_cards: list[asyncpg.Record]) -> str | None:
    if not customer["active"] or not customer["user_active"] or customer["deleted_at"] is not None:
        return text("account_inactive")
    if not customer["lago_subscription_id"]:
        return text("no_subscription")
    if not usable_cards:
        return text("no_card")
    return None


async def start_charging(
    app: web.Application, user: AuthUser, public_id: str, connector_id: int, card_id: int | None = None
) -> int | None:
    """RemoteStartTransaction on one connector with one of the customer's cards.

    Returns the new session's id once the charger reported it (within START_WAIT), or None
    when the charger accepted but has not started yet (the car is not plugged in).
    """
    user = require_customer(user)
    view = await charger_view(app, public_id, user)
    connector = next((c for c in view.connectors if c.connector_id == connector_id), None)
    if connector is None:
        raise PortalError(404, "not_found", "charger_not_found")
    if not view.online:
        raise PortalError(409, "charger_offline", "charger_offline")
    if connector.refusal is not None:
        code = {
            text("charger_faulted"): "connector_faulted",
            text("charger_occupied"): "connector_occupied",
        }.get(connector.refusal, "connector_unavailable")
        raise ApiError(409, code, connector.refusal)
    if view.refusal is not None:
        raise ApiError(403, "may_not_charge", view.refusal)
    card = next((c for c in view.cards if card_id is None or c["id"] == card_id), None)
    if card is None:
        raise PortalError(404, "not_found", "no_card")
    async with pool_of(app).acquire() as conn:
        policy = await charging_policy.effective_policy(conn, app[appkeys.SETTINGS].CHARGING_POLICY)
        reason = charging_policy.refusal(await charging_policy.card_facts(conn, card["id_tag"]), policy=policy)
        since = await conn.fetchval("SELECT now()")
    if reason is not None:
        raise ApiError(403, "may_not_charge", reason)
    commands = app[appkeys.COMMAND_CLIENT]
    try:
        answer = await commands.operation(
            "RemoteStartTransaction",
            view.charge_box_id,
            {"connectorId": connector_id, "idTag": card["id_tag"]},
            requested_by=f"customer:{user.customer_id}",
        )
    except ApiError as exc:
        key = {409: "start_failed_offline", 504: "start_failed_timeout"}.get(exc.status, "start_failed")
        raise PortalError(exc.status if exc.status in (409, 504) else 502, exc.code, key) from None
    status = ((answer or {}).get("response") or {}).get("status")
    log.info("remote start", charge_box_id=view.charge_box_id, connector_id=connector_id, status=status)
    if status != "Accepted":
        raise PortalError(409, "start_rejected", "start_rejected")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_WAIT
    while loop.time() < deadline:
        async with pool_of(app).acquire() as conn:
            tx = await repo.open_session_for(
                conn, user.customer_id, view.charge_box_pk, connector_id, since=since - timedelta(seconds=5)
            )
        if tx is not None:
            return tx
        await asyncio.sleep(0.25)
    return None
