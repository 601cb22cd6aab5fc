"""Customers: add (and invite), invite again, edit, deactivate or reactivate (they hear of it)."""

from __future__ import annotations

import asyncpg

from polaris.config import Settings
from polaris.db.repos import customers
from polaris.services.admin.actions.base import Actor, changed, record, refuse_nulls
from polaris.services.auth import signin_links
from polaris.services.email import category_enabled, send_mail


async def create_customer(
    conn: asyncpg.Connection,
    settings: Settings,
    actor: Actor,
    email: str,
    *,
    name: str | None = None,
    lago_subscription_id: str | None = None,
    lago_external_customer_id: str | None = None,
    invite: bool = True,
) -> asyncpg.Record:
    """Add a customer (and their sign-in user); with `invite`, mail a 24 h sign-in link too."""
    async with conn.transaction():
        created = await customers.add_customer(conn, email, name=name, lago_subscription_id=lago_subscription_id)
        if lago_external_customer_id:
            await customers.update_customer(conn, created["id"], {"lago_external_customer_id": lago_external_customer_id})
        if invite:
            await signin_links.invite(conn, settings, created["email"])
        row = await customers.get_customer(conn, created["id"])
        await record(
            conn, actor, "customer.create", "customer", row["id"],
            after={k: row[k] for k in ("email", "name", "lago_subscription_id", "lago_external_customer_id")}
            | {"invite_sent": invite},
        )
    return row


async def invite_customer(conn: asyncpg.Connection, settings: Settings, actor: Actor, email: str) -> asyncpg.Record:
    """Mail an existing, active customer an invitation (a one-use sign-in link, valid 24 hours)."""
    async with conn.transaction():
        link = await signin_links.invite(conn, settings, email)
        customer = await customers.get_customer_by_email(conn, link["email"])
        await record(conn, actor, "customer.invite", "customer", customer["id"],
                     after={"email": link["email"], "expires_at": link["expires_at"]})
    return link


async def edit_customer(
    conn: asyncpg.Connection, settings: Settings, actor: Actor, customer_id: int, changes: dict
) -> asyncpg.Record:
    """Name, Lago ids, receipts, active; the customer is mailed when `active` changes. Returns the row."""
    refuse_nulls(changes, "active", "receipts_enabled")
    async with conn.transaction():
        before, after = await customers.update_customer(conn, customer_id, changes)
        b, a = changed(before, after)
        if a:
            action = {False: "customer.deactivate", True: "customer.reactivate"}.get(a.get("active"), "customer.edit")
            await record(conn, actor, action, "customer", customer_id, before=b, after=a)
        category = "account-inactive" if a.get("active") is False else "account-reactivated"
        if "active" in a and category_enabled(settings, category):  # off unless EMAIL_OPTIONAL_CATEGORIES
            await send_mail(
                conn, category, to=after["email"], name=after["name"], portal_url=settings.CUSTOMER_BASE_URL,
            )
    return after
