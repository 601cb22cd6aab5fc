"""Billing sync: status and cadence, runs, pin a tier, sync now, unbillable sessions, and
the two ways an operator releases a held session: settle an anomaly with the energy to
bill, or send events Lago refused again once the cause is fixed.

Reads use the sync worker's repository (polaris.db.repos.billing) so the rules live in one
place; the changes are polaris.services.admin.actions' (pin, trigger, settle, retry).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import Field

from polaris.db.repos import billing
from polaris.services.admin import actions
from polaris.services.admin.common import (
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

TAG = "billing"
BASE = "/api/admin/v1/sync"


class SyncRunOut(Out):
    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    tier: str | None
    trigger: str
    requested_by: str | None = None
    transactions_seen: int | None = None
    events_sent: int
    events_held: int | None = None
    errors: int | None = None
    kwh_sent: float
    error: str | None


class SyncStatusOut(Out):
    tier: str | None = Field(None, description="the tier in effect (the pin wins)")
    adaptive_tier: str | None = None
    pinned_tier: str | None = None
    pinned_by: str | None = None
    last_activity_at: datetime | None = None
    last_run: SyncRunOut | None = None
    backlog: int | None = Field(None, description="usage events waiting to be sent")
    invalid_events: int | None = None
    unbillable_count: int | None = None
    last_success_at: datetime | None = None


class UnbillableOut(Out):
    transaction_id: int
    code: str | None = None
    reason: str | None = None
    held_since: datetime | None = None
    charge_box_id: str | None = None
    connector_id: int | None = None
    id_tag: str | None = None
    start_timestamp: datetime | None = None
    stop_timestamp: datetime | None = None
    energy_wh: float | None = None


class RunsQuery(PageQuery):
    pass


class UnbillableQuery(PageQuery):
    code: str | None = Field(None, max_length=50, description="only this reason code")


class HoldParams(Model):
    id: int = Field(ge=1, le=INT_MAX, description="the session (transaction) id")


class SettleBody(Model):
    energy_wh: int = Field(ge=0, le=10_000_000, description="the session's energy to bill, in Wh")


class Released(Out):
    transaction_id: int
    action: Literal["settled", "retry"]
    energy_wh: int | None = Field(None, description="settled: the energy that will be billed")
    events: int | None = Field(None, description="retry: refused events queued again")
    message: str


class PinBody(Model):
    tier: Literal["active", "idle", "dormant"] | None = Field(description="null unpins (adaptive cadence)")


class Triggered(Out):
    requested: bool = True
    requested_by: str


SyncRunPage = Page[SyncRunOut]
UnbillablePage = Page[UnbillableOut]


def run_out(row) -> SyncRunOut:
    data = dict(row)
    if isinstance(data.get("kwh_sent"), Decimal):
        data["kwh_sent"] = float(data["kwh_sent"])
    return SyncRunOut.model_validate(data)


async def sync_status(conn: asyncpg.Connection) -> SyncStatusOut:
    """Everything the console's sync panel and the dashboard show."""
    runs = await billing.list_sync_runs(conn, limit=1, before_id=None)
    out = SyncStatusOut(last_run=run_out(runs[0]) if runs else None)
    cadence = await billing.get_cadence_state(conn)
    if cadence is not None:
        out.tier = cadence["effective_tier"]
        out.adaptive_tier = cadence["tier"]
        out.pinned_tier = cadence["pinned_tier"]
        out.pinned_by = cadence["pinned_by"]
        out.last_activity_at = cadence["last_activity_at"]
    overview = await billing.billing_overview(conn)
    out.backlog = overview["pending_events"]
    out.invalid_events = overview["invalid_events"]
    out.unbillable_count = overview["held_transactions"]
    out.last_success_at = overview["last_success_at"]
    return out


@endpoint("GET", BASE, summary="Sync status: tier, pin, last run, backlog, unbillable count", tag=TAG, response=SyncStatusOut)
async def get_sync_status(request: web.Request, call: Call) -> SyncStatusOut:
    async with pool(request).acquire() as conn:
        return await sync_status(conn)


@endpoint("GET", BASE + "/runs", summary="Sync runs, newest first", tag=TAG, query=RunsQuery, response=SyncRunPage)
async def list_runs(request: web.Request, call: Call) -> SyncRunPage:
    q = call.query
    before = decode_cursor(q.cursor, int)
    async with pool(request).acquire() as conn:
        rows = await billing.list_sync_runs(conn, limit=q.limit + 1, before_id=before[0] if before else None)
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    return SyncRunPage(items=[run_out(r) for r in rows], next_cursor=cursor)


@endpoint(
    "PUT", BASE + "/pin", summary="Pin the sync cadence to a tier, or unpin with null", tag=TAG,
    body=PinBody, response=SyncStatusOut,
)
async def pin_tier(request: web.Request, call: Call) -> SyncStatusOut:
    async with pool(request).acquire() as conn:
        await actions.pin_tier(conn, actor_of(request, call), call.body.tier)
        return await sync_status(conn)


@endpoint(
    "POST", BASE + "/trigger", summary="Run a sync now (NOTIFY sync_trigger)", tag=TAG,
    response=Triggered, status=202,
)
async def trigger_sync(request: web.Request, call: Call) -> Triggered:
    actor = actor_of(request, call)
    async with pool(request).acquire() as conn:
        await actions.request_sync(conn, actor)
    return Triggered(requested_by=actor.email)


@endpoint(
    "GET", BASE + "/unbillable", summary="Sessions held back from billing, with the reason", tag=TAG,
    query=UnbillableQuery, response=UnbillablePage,
)
async def list_unbillable(request: web.Request, call: Call) -> UnbillablePage:
    q = call.query
    after = decode_cursor(q.cursor, int)
    if after is not None and not 0 <= after[0] <= INT_MAX:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out")
    async with pool(request).acquire() as conn:
        rows = await billing.list_unbillable(conn, code=q.code, limit=q.limit + 1, after_id=after[0] if after else None)
    rows, cursor = page_of(rows, q.limit, lambda r: (r["transaction_id"],))
    items = [
        UnbillableOut.model_validate({**dict(r), "code": r["unbillable_code"], "reason": r["unbillable_reason"]})
        for r in rows
    ]
    return UnbillablePage(items=items, next_cursor=cursor)


@endpoint(
    "POST", BASE + "/unbillable/{id}/settle",
    summary="Settle an anomaly: bill this energy for the session", tag=TAG,
    params=HoldParams, body=SettleBody, response=Released, errors=(404, 409),
    description="For a finished session held as `anomaly` (negative energy, a register reset, "
    "absurd power): the operator decides how many Wh to bill. The next sync run sends it "
    "(less what in-progress increments already billed) and the hold clears.",
)
async def settle_anomaly(request: web.Request, call: Call) -> Released:
    tx, energy = call.params.id, call.body.energy_wh
    async with pool(request).acquire() as conn:
        await actions.settle_anomaly(conn, actor_of(request, call), tx, energy)
    return Released(transaction_id=tx, action="settled", energy_wh=energy,
                    message=f"session {tx}: {energy / 1000:.3f} kWh will be billed on the next sync run")


@endpoint(
    "POST", BASE + "/unbillable/{id}/retry",
    summary="Send the events Lago refused for this session again", tag=TAG,
    params=HoldParams, response=Released, errors=(404, 409),
    description="For a session held as `invalid_event`, once its cause is fixed in Lago (the "
    "metric, the subscription). The next sync run sends them; refused again, they are held "
    "again with Lago's new reason.",
)
async def retry_refused(request: web.Request, call: Call) -> Released:
    tx = call.params.id
    async with pool(request).acquire() as conn:
        events = await actions.retry_refused(conn, actor_of(request, call), tx)
    return Released(transaction_id=tx, action="retry", events=events,
                    message=f"session {tx}: {events} refused event(s) will be sent again on the next sync run")


def setup(app: web.Application) -> None:
    add_endpoints(app, get_sync_status, list_runs, pin_tier, trigger_sync, list_unbillable,
                  settle_anomaly, retry_refused)
