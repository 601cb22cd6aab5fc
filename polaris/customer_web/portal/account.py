"""Billing (subscription, price, invoices) and the account (profile, email, data, deletion)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from polaris.customer_web import mail
from polaris.customer_web.portal.base import PortalError, pool_of, require_customer
from polaris.customer_web.portal.charging import price_for
from polaris.db.errors import InvalidInput
from polaris.db.repos import customer_portal as repo
from polaris.db.repos import magic_links
from polaris.db.repos.users import normalize_email
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.auth.signin_links import link_url
from polaris.services.errors import ApiError

log = get_logger(__name__)


# ------------------------------------------------------------------ billing and account


async def billing_view(app: web.Application, user: AuthUser) -> dict[str, Any]:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        customer = await repo.get_customer(conn, user.customer_id)
        assert customer is not None
        sub_id = customer["lago_subscription_id"]
        subscription = await repo.subscription_of(conn, sub_id) if sub_id else None
        price = await price_for(conn, sub_id)
        invoices = await repo.list_invoices(conn, user.customer_id)
    return {
        "subscription_id": sub_id,
        "subscription_status": subscription["status"] if subscription else None,
        "plan": price.plan,
        "price_per_kwh": str(price.per_kwh) if price.per_kwh is not None else None,
        "price_label": price.label,
        "price_text": price.text,
        "currency": price.currency,
        "invoices": [
            {
                "id": r["id"],
                "number": r["number"],
                "issuing_date": r["issuing_date"].isoformat() if r["issuing_date"] else None,
                "status": r["status"],
                "payment_status": r["payment_status"],
                "currency": r["currency"],
                "total_amount_cents": r["total_amount_cents"],
                "total": _money(r["total_amount_cents"], r["currency"]),
                "file_url": r["file_url"] if _safe_url(r["file_url"]) else None,
            }
            for r in invoices
        ],
    }


def _money(cents: int | None, currency: str | None) -> str | None:
    if cents is None:
        return None
    return f"{Decimal(cents) / 100:.2f} {currency or ''}".strip()


def _safe_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("https://", "http://"))


async def profile(app: web.Application, user: AuthUser) -> asyncpg.Record:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        row = await repo.get_customer(conn, user.customer_id)
    if row is None:
        raise ApiError(404, "not_found", "no such customer")
    return row


async def update_profile(
    app: web.Application, user: AuthUser, *, name: str | None = None, receipts: bool | None = None
) -> asyncpg.Record:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        await repo.update_profile(conn, user.customer_id, name=name, receipts=receipts)
        return await repo.get_customer(conn, user.customer_id)


async def request_email_change(app: web.Application, user: AuthUser, new_email: str, *, ip: str | None) -> str:
    """Mail a confirmation link to the new address; the change happens when it is opened."""
    user = require_customer(user)
    try:
        new_email = normalize_email(new_email)
    except InvalidInput:
        raise PortalError(400, "invalid_email", "email_invalid") from None
    if new_email == user.email:
        raise PortalError(400, "email_same", "email_same")
    settings = app[appkeys.SETTINGS]
    async with pool_of(app).acquire() as conn:
        async with conn.transaction():
            limited = await magic_links.record_request(conn, new_email, ip)
            if limited:
                raise PortalError(429, "rate_limited", f"rate_limited_{limited}")
            if await repo.email_taken(conn, new_email):
                raise PortalError(409, "email_taken", "link_taken")
            token, link = await magic_links.create_link(
                conn, user.id, new_email, purpose="email_change", new_email=new_email, ip=ip,
                return_to="/account",
            )
            url = link_url(settings.CUSTOMER_BASE_URL, token)
            await mail.email_change_link(conn, to=new_email, url=url, dedupe_key=f"magic-link:{link['id']}")
    return new_email


async def export_data(app: web.Application, user: AuthUser) -> dict[str, Any]:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        data = await repo.export_data(conn, user.customer_id)
    data["exported_at"] = datetime.now(UTC)
    return data


async def delete_account(app: web.Application, user: AuthUser) -> None:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        await repo.delete_account(conn, user.customer_id)
    log.info("customer deleted their account", customer_id=user.customer_id)
