"""Customers: list, detail (cards, Lago link), invite by email, edit, deactivate (the customer is
mailed when their account is deactivated or active again)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from aiohttp import web
from pydantic import Field

from polaris.db.repos import customers, id_tags
from polaris.services import appkeys
from polaris.services.admin import actions
from polaris.services.admin.common import (
    BIGINT_MAX,
    IdParams,
    Page,
    PageQuery,
    actor_of,
    decode_cursor,
    page_of,
    pool,
)
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "customers"
BASE = "/api/admin/v1/customers"


class CardOut(Out):
    id_tag: str
    label: str | None = None
    blocked: bool
    unknown: bool
    expiry_date: datetime | None = None
    last_seen_at: datetime | None = None


class CustomerOut(Out):
    id: int
    user_id: int
    email: str
    name: str | None
    lago_external_customer_id: str | None
    lago_subscription_id: str | None
    lago_url: str | None = Field(None, description="the customer in Lago's dashboard (LAGO_DASHBOARD_URL)")
    active: bool
    receipts_enabled: bool
    created_at: datetime
    last_login_at: datetime | None
    id_tag_count: int
    id_tags: list[CardOut] = []
    invite_sent: bool | None = Field(None, description="on create: whether an invite mail was queued")


class CustomerListQuery(PageQuery):
    q: str | None = Field(None, max_length=200, description="search email, name and Lago ids")
    active: bool | None = None


class CustomerCreate(Model):
    email: str = Field(min_length=3, max_length=254)
    name: str | None = Field(None, max_length=200)
    lago_subscription_id: str | None = Field(None, min_length=1, max_length=200)
    lago_external_customer_id: str | None = Field(None, min_length=1, max_length=200)
    invite: bool = Field(True, description="mail a 24 h sign-in link")


class CustomerPatch(Model):
    name: str | None = Field(None, max_length=200)
    lago_subscription_id: str | None = Field(None, max_length=200)
    lago_external_customer_id: str | None = Field(None, max_length=200)
    active: bool | None = Field(None, description="false: the customer's cards stop working")
    receipts_enabled: bool | None = None


CustomerPage = Page[CustomerOut]


def lago_url(settings, row) -> str | None:
    """Deep link into Lago's dashboard: the customer by external id when known."""
    base = settings.LAGO_DASHBOARD_URL.rstrip("/")
    if row["lago_external_customer_id"]:
        return f"{base}/customers?search={quote(row['lago_external_customer_id'])}"
    if row["lago_subscription_id"]:
        return f"{base}/subscriptions?search={quote(row['lago_subscription_id'])}"
    return None


def customer_out(request: web.Request, row, cards=None, **extra) -> CustomerOut:
    data = {**dict(row), "lago_url": lago_url(request.app[appkeys.SETTINGS], row), **extra}
    if cards is not None:
        data["id_tags"] = [dict(c) for c in cards]
    return CustomerOut.model_validate(data)


@endpoint("GET", BASE, summary="List customers", tag=TAG, query=CustomerListQuery, response=CustomerPage)
async def list_customers(request: web.Request, call: Call) -> CustomerPage:
    q = call.query
    after = decode_cursor(q.cursor, int)
    async with pool(request).acquire() as conn:
        rows = await customers.list_customers_page(
            conn, limit=q.limit + 1, after_id=after[0] if after else None, q=q.q, active=q.active
        )
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    return CustomerPage(items=[customer_out(request, r) for r in rows], next_cursor=cursor)


async def _cards(conn, customer_id: int):
    return await id_tags.list_id_tags_page(conn, limit=1000, customer_id=customer_id)


@endpoint(
    "GET", BASE + "/{id}", summary="One customer with their cards and Lago link", tag=TAG,
    params=IdParams, response=CustomerOut,
)
async def get_customer(request: web.Request, call: Call) -> CustomerOut:
    async with pool(request).acquire() as conn:
        row = await customers.get_customer(conn, call.params.id)
        if row is None:
            raise ApiError(404, "not_found", f"no customer {call.params.id}")
        cards = await _cards(conn, row["id"])
    return customer_out(request, row, cards)


@endpoint(
    "POST", BASE, summary="Add a customer and invite them by email", tag=TAG,
    body=CustomerCreate, response=CustomerOut, status=201, errors=(409,),
)
async def create_customer(request: web.Request, call: Call) -> CustomerOut:
    b = call.body
    async with pool(request).acquire() as conn:
        row = await actions.create_customer(
            conn, request.app[appkeys.SETTINGS], actor_of(request, call), b.email, name=b.name,
            lago_subscription_id=b.lago_subscription_id, lago_external_customer_id=b.lago_external_customer_id,
            invite=b.invite,
        )
    return customer_out(request, row, [], invite_sent=b.invite)


@endpoint(
    "PATCH", BASE + "/{id}", summary="Edit a customer: name, Lago ids, receipts, deactivate", tag=TAG,
    params=IdParams, body=CustomerPatch, response=CustomerOut, errors=(409,),
)
async def edit_customer(request: web.Request, call: Call) -> CustomerOut:
    async with pool(request).acquire() as conn:
        after = await actions.edit_customer(
            conn, request.app[appkeys.SETTINGS], actor_of(request, call), call.params.id,
            call.body.model_dump(exclude_unset=True),
        )
        cards = await _cards(conn, call.params.id)
    return customer_out(request, after, cards)


def setup(app: web.Application) -> None:
    add_endpoints(app, list_customers, create_customer, get_customer, edit_customer)


__all__ = ["BIGINT_MAX", "setup"]
