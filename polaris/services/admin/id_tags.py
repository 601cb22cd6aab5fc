"""Cards / id tags: list, create, link to a customer, block (with ClearCache), expire."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, Field

from polaris.db.repos import charge_boxes, customers, id_tags
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.admin.common import (
    BIGINT_MAX,
    Page,
    PageQuery,
    changed,
    decode_cursor,
    page_of,
    pool,
    record_audit,
)
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

log = get_logger(__name__)
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
    if b.customer_id is not None and b.customer_email is not None:
        raise ApiError(400, "invalid_input", "give customer_id or customer_email, not both")
    async with pool(request).acquire() as conn, conn.transaction():
        email = b.customer_email
        if b.customer_id is not None:
            customer = await customers.get_customer(conn, b.customer_id)
            if customer is None:
                raise ApiError(404, "not_found", f"no customer {b.customer_id}")
            email = customer["email"]
        created = await id_tags.add_id_tag(conn, b.id_tag, customer_email=email, label=b.label)
        if b.expiry_date is not None:
            await id_tags.update_id_tag(conn, created["id_tag"], {"expiry_date": b.expiry_date})
        row = await id_tags.get_id_tag_detail(conn, created["id_tag"])
        await record_audit(
            conn, request, call, "id_tag.create", "id_tag", row["id_tag"],
            after={"customer_email": row["customer_email"], "label": row["label"], "expiry_date": row["expiry_date"]},
        )
    return IdTagOut.model_validate(dict(row))


@endpoint(
    "PATCH", BASE + "/{id_tag}", summary="Block / unblock, link to a customer, label, expiry", tag=TAG,
    params=IdTagParams, body=IdTagPatch, response=IdTagChangeOut,
)
async def edit_id_tag(request: web.Request, call: Call) -> IdTagChangeOut:
    changes = call.body.model_dump(exclude_unset=True)
    if "blocked" in changes and changes["blocked"] is None:
        raise ApiError(400, "invalid_input", "blocked cannot be null")
    async with pool(request).acquire() as conn, conn.transaction():
        before, after = await id_tags.update_id_tag(conn, call.params.id_tag, changes)
        b, a = changed(before, after)
        if a:
            action = "id_tag.block" if a.get("blocked") is True else "id_tag.edit"
            await record_audit(conn, request, call, action, "id_tag", after["id_tag"], before=b, after=a)
        newly_blocked = after["blocked"] and not before["blocked"]
        chargers = await charge_boxes.charge_boxes_seen_with_tag(conn, after["id_tag"]) if newly_blocked else []
    results = await _clear_caches(request, chargers, call.user.email) if chargers else []
    return IdTagChangeOut.model_validate({**dict(after), "clear_cache": results})


async def _clear_caches(request: web.Request, chargers: list[str], by: str) -> list[ClearCacheResult]:
    """ClearCache on each charger, concurrently: a lost card must stop working at once.

    The block is already committed; a charger that is offline clears nothing now, but its
    next Authorize asks us (and the pre-authorize hook answers BLOCKED).
    """
    client = request.app[appkeys.STEVE_CLIENT]

    async def one(cid: str) -> ClearCacheResult:
        try:
            answer: Any = await client.operation("ClearCache", cid, {}, requested_by=by)
        except ApiError as exc:
            return ClearCacheResult(charge_box_id=cid, error=exc.code)
        response = answer.get("response", answer) if isinstance(answer, dict) else {}
        return ClearCacheResult(charge_box_id=cid, status=response.get("status") if isinstance(response, dict) else None)

    results = list(await asyncio.gather(*(one(c) for c in chargers)))
    log.info("clear cache after block", chargers=len(chargers), failed=sum(1 for r in results if r.error))
    return results


def setup(app: web.Application) -> None:
    add_endpoints(app, list_id_tags, create_id_tag, get_id_tag, edit_id_tag)
