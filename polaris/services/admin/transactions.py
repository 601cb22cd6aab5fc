"""Transactions (charging sessions): list with filters, detail with meter values, force-close."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, Field

from polaris.db.repos import transaction_reports
from polaris.services.admin import actions
from polaris.services.admin.common import (
    BIGINT_MAX,
    INT_MAX,
    Page,
    PageQuery,
    actor_of,
    decode_cursor,
    page_of,
    pool,
)
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "transactions"
BASE = "/api/admin/v1/transactions"
MAX_SAMPLES = 5000


class TransactionOut(Out):
    id: int
    charge_box_id: str
    connector_id: int
    id_tag: str
    id_tag_status: str | None = None
    customer_id: int | None
    customer_email: str | None
    start_timestamp: datetime
    meter_start: int
    stop_timestamp: datetime | None
    meter_stop: int | None
    stop_reason: str | None
    stopped_by: str | None
    stuck_since: datetime | None
    is_test: bool
    energy_wh: float | None = Field(None, description="delivered so far (open) or in total (stopped)")
    billing_state: str = Field(description="open, pending, billed, unbillable or test")
    billed_wh: int | None = None
    unbillable_reason: str | None = None


class MeterSampleOut(Out):
    sampled_at: datetime
    value: float | None = Field(None, description="the parsed value (raw text in value_raw)")
    value_raw: str
    measurand: str | None
    unit: str | None
    phase: str | None
    context: str | None
    location: str | None
    format: str | None


class TransactionDetailOut(TransactionOut):
    meter_values: list[MeterSampleOut] = []
    meter_values_truncated: bool = False


class TransactionListQuery(PageQuery):
    charge_box_id: str | None = Field(None, max_length=48)
    customer_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    customer: str | None = Field(None, max_length=254, description="part of the customer's email")
    id_tag: str | None = Field(None, max_length=20)
    state: Literal["active", "stopped", "stuck"] | None = None
    active: bool | None = Field(None, description="shorthand for state=active / state=stopped")
    since: AwareDatetime | None = Field(None, description="started at or after (ISO 8601 with offset)")
    until: AwareDatetime | None = Field(None, description="started before")


class TransactionParams(Model):
    id: int = Field(ge=1, le=INT_MAX)


class ForceClose(Model):
    reason: str = Field("Other", min_length=1, max_length=50, description="the OCPP stop reason recorded")


TransactionPage = Page[TransactionOut]


def billing_state(row) -> str:
    if row["is_test"]:
        return "test"
    if row["stop_timestamp"] is None:
        return "open"
    if row["unbillable_reason"]:
        return "unbillable"
    if row["final_sent"]:
        return "billed"
    return "pending"


def transaction_out(row, model=TransactionOut, **extra):
    return model.model_validate({**dict(row), "billing_state": billing_state(row), **extra})


@endpoint("GET", BASE, summary="List sessions, newest first", tag=TAG, query=TransactionListQuery, response=TransactionPage)
async def list_transactions(request: web.Request, call: Call) -> TransactionPage:
    q = call.query
    state = q.state
    if q.active is not None:
        if state is not None and (state == "active") != q.active:
            raise ApiError(400, "invalid_input", "active and state disagree")
        state = state or ("active" if q.active else "stopped")
    before = decode_cursor(q.cursor, int)
    if before is not None and not 0 < before[0] <= INT_MAX:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out")
    async with pool(request).acquire() as conn:
        rows = await transaction_reports.list_transactions_page(
            conn,
            limit=q.limit + 1,
            before_id=before[0] if before else None,
            charge_box_id=q.charge_box_id,
            customer_id=q.customer_id,
            customer=q.customer,
            id_tag=q.id_tag,
            state=state,
            since=q.since,
            until=q.until,
        )
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    return TransactionPage(items=[transaction_out(r) for r in rows], next_cursor=cursor)


@endpoint(
    "GET", BASE + "/{id}", summary="One session with its meter values and energy", tag=TAG,
    params=TransactionParams, response=TransactionDetailOut,
)
async def get_transaction(request: web.Request, call: Call) -> TransactionDetailOut:
    async with pool(request).acquire() as conn:
        row = await transaction_reports.get_transaction_detail(conn, call.params.id)
        if row is None:
            raise ApiError(404, "not_found", f"no transaction {call.params.id}")
        samples = await transaction_reports.meter_values_for(conn, call.params.id, limit=MAX_SAMPLES + 1)
    truncated = len(samples) > MAX_SAMPLES
    samples = samples[-MAX_SAMPLES:] if truncated else samples
    values = [
        MeterSampleOut.model_validate({**dict(s), "value": s["value_num"], "value_raw": s["value"]}) for s in samples
    ]
    return transaction_out(row, TransactionDetailOut, meter_values=values, meter_values_truncated=truncated)


@endpoint(
    "POST", BASE + "/{id}/force-close",
    summary="Close a stuck session at its last meter reading", tag=TAG,
    params=TransactionParams, body=ForceClose, response=TransactionOut,
    description="For a session whose StopTransaction never came. It ends at the last energy "
    "register reading, so billing gets exactly what the charger reported. 400 if already stopped.",
)
async def force_close(request: web.Request, call: Call) -> TransactionOut:
    async with pool(request).acquire() as conn:
        await actions.force_close(conn, actor_of(request, call), call.params.id, reason=call.body.reason)
        row = await transaction_reports.get_transaction_detail(conn, call.params.id)
    return transaction_out(row)


def setup(app: web.Application) -> None:
    add_endpoints(app, list_transactions, get_transaction, force_close)
