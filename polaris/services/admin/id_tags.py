"""Cards / id tags: list, create, link to a customer, block (with ClearCache), expire."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import AwareDatetime, Field

from polaris.db.repos import id_tags
from polaris.services import appkeys
from polaris.services.admin import actions
from polaris.services.admin.common import (
    BIGINT_MAX,
    Page,
    PageQuery,
    actor_of,
    decode_cursor,
    page_of,
    pool,
)
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "id_tags"
BASE = "/api/admin/v1/id-tags"
IdTagText = Field(min_length=1, max_length=20, pattern=r"^[\x20-\x7e]+$")


class IdTagOut(Out):
    id: int
    id_tag: str
    label: str | None
    customer_id: int | None
    customer_email: str | None
    parent_id_tag: str | None = None
    expiry_date: datetime | None
    blocked: bool
    unknown: bool = Field(description="seen by a charger without being registered")
    last_seen_at: datetime | None
    last_seen_charge_box_id: str | None = None
    created_at: datetime


class ClearCacheResult(Out):
    charge_box_id: str
    status: str | None = Field(None, description="the charger's answer (Accepted / Rejected)")
    error: str | None = Field(None, description="why it could not be asked (offline, timeout)")


class IdTagChangeOut(IdTagOut):
    clear_cache: list[ClearCacheResult] = Field(
        [], description="on blocking: ClearCache sent to the chargers the card was last seen on"
    )


class IdTagListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="search tag, label and customer email")
    customer_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    blocked: bool | None = None
    unknown: bool | None = None


class IdTagParams(Model):
    id_tag: str = IdTagText


class IdTagCreate(Model):
    id_tag: str = IdTagText
    customer_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    customer_email: str | None = Field(None, min_length=3, max_length=254)
    label: str | None = Field(None, max_length=200)
    expiry_date: AwareDatetime | None = None


class IdTagPatch(Model):
    blocked: bool | None = Field(None, description="true stops the card at once (ClearCache on its chargers)")
    customer_id: int | None = Field(None, ge=1, le=BIGINT_MAX, description="null unlinks the card")
    label: str | None = Field(None, max_length=200)
    expiry_date: AwareDatetime | None = Field(None, description="null: never expires")


IdTagPage = Page[IdTagOut]


@endpoint("GET", BASE, summary="List cards (id tags)", tag=TAG, query=IdTagListQuery, response=IdTagPage)
async def list_id_tags(request: web.Request, call: Call) -> IdTagPage:
    q = call.query
    after = decode_cursor(q.cursor, int)
    async with pool(request).acquire() as conn:
        rows = await id_tags.list_id_tags_page(
            conn, limit=q.limit + 1, after_id=after[0] if after else None, q=q.q,
            customer_id=q.customer_id, blocked=q.blocked, unknown=q.unknown,
        )
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    return IdTagPage(items=[IdTagOut.model_validate(dict(r)) for r in rows], next_cursor=cursor)


@endpoint("GET", BASE + "/{id_tag}", summary="One card", tag=TAG, params=IdTagParams, response=IdTagOut)
async def get_id_tag(request: web.Request, call: Call) -> IdTagOut:
    async with pool(request).acquire() as conn:
        row = await id_tags.get_id_tag_detail(conn, call.params.id_tag)
    if row is None:
        raise ApiError(404, "not_found", f"no id tag {call.params.id_tag}")
    return IdTagOut.model_validate(dict(row))


@endpoint(
    "POST", BASE, summary="Register a card, optionally for a customer", tag=TAG,
    body=IdTagCreate, response=IdTagOut, status=201, errors=(404, 409),
)
async def create_id_tag(request: web.Request, call: Call) -> IdTagOut:
    b = call.body
    async with pool(request).acquire() as conn:
        row = await actions.add_card(
            conn, actor_of(request, call), b.id_tag, customer_id=b.customer_id, customer_email=b.customer_email,
            label=b.label, expiry_date=b.expiry_date,
        )
    return IdTagOut.model_validate(dict(row))


@endpoint(
    "PATCH", BASE + "/{id_tag}", summary="Block / unblock, link to a customer, label, expiry", tag=TAG,
    params=IdTagParams, body=IdTagPatch, response=IdTagChangeOut,
)
async def edit_id_tag(request: web.Request, call: Call) -> IdTagChangeOut:
    actor = actor_of(request, call)
    async with pool(request).acquire() as conn:
        edit = await actions.edit_card(conn, actor, call.params.id_tag, call.body.model_dump(exclude_unset=True))
    cleared = await actions.clear_caches(request.app[appkeys.COMMAND_CLIENT], edit.to_clear, actor) if edit.to_clear else []
    results = [ClearCacheResult(charge_box_id=c.charge_box_id, status=c.status, error=c.error) for c in cleared]
    return IdTagChangeOut.model_validate({**dict(edit.card), "clear_cache": results})


def setup(app: web.Application) -> None:
    add_endpoints(app, list_id_tags, create_id_tag, get_id_tag, edit_id_tag)
