"""Billing sync: status and cadence, runs, pin a tier, sync now, unbillable sessions, and
the two ways an operator releases a held session: settle an anomaly with the energy to
bill, or send events Lago refused again once the cause is fixed.

Uses the sync worker's repository (polaris.db.repos.billing) so the rules live in one
place; when that module is absent (an older build) only the run list is served, read
straight from billing.sync_runs.
"""

from __future__ import annotations

import importlib
import importlib.util
from datetime import datetime
from decimal import Decimal
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import Field

from polaris.services.admin.common import (
    INT_MAX,
    Page,
    PageQuery,
    decode_cursor,
    page_of,
    pool,
    record_audit,
)
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "billing"
BASE = "/api/admin/v1/sync"


def billing_repo():
    """The sync worker's repository module, or None before it exists."""
    name = "polaris.db.repos.billing"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _need_repo():
    repo = billing_repo()
    if repo is None:
        raise ApiError(503, "unavailable", "the billing sync is not part of this build")
    return repo


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


async def _runs(conn: asyncpg.Connection, limit: int, before_id: int | None) -> list[asyncpg.Record]:
    repo = billing_repo()
    if repo is not None and hasattr(repo, "list_sync_runs"):
        return await repo.list_sync_runs(conn, limit=limit, before_id=before_id)
    return await conn.fetch(
        "SELECT * FROM billing.sync_runs WHERE $2::bigint IS NULL OR id < $2 ORDER BY id DESC LIMIT $1",
        limit,
        before_id,
    )


async def sync_status(conn: asyncpg.Connection) -> SyncStatusOut:
    """Everything the console's sync panel and the dashboard show."""
    runs = await _runs(conn, 1, None)
    out = SyncStatusOut(last_run=run_out(runs[0]) if runs else None)
    repo = billing_repo()
    if repo is None:
        return out
    cadence = await repo.get_cadence_state(conn)
    if cadence is not None:
        out.tier = cadence["effective_tier"]
        out.adaptive_tier = cadence["tier"]
        out.pinned_tier = cadence["pinned_tier"]
        out.pinned_by = cadence["pinned_by"]
        out.last_activity_at = cadence["last_activity_at"]
    overview = await repo.billing_overview(conn)
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
        rows = await _runs(conn, q.limit + 1, before[0] if before else None)
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    return SyncRunPage(items=[run_out(r) for r in rows], next_cursor=cursor)


@endpoint(
    "PUT", BASE + "/pin", summary="Pin the sync cadence to a tier, or unpin with null", tag=TAG,
    body=PinBody, response=SyncStatusOut,
)
async def pin_tier(request: web.Request, call: Call) -> SyncStatusOut:
    repo = _need_repo()
    async with pool(request).acquire() as conn, conn.transaction():
        before = await repo.get_cadence_state(conn)
        await repo.set_cadence_pin(conn, call.body.tier, call.user.email)
        await record_audit(
            conn, request, call, "sync.pin", "sync_cadence", "1",
            before={"pinned_tier": before["pinned_tier"] if before else None},
            after={"pinned_tier": call.body.tier},
        )
        return await sync_status(conn)


@endpoint(
    "POST", BASE + "/trigger", summary="Run a sync now (NOTIFY sync_trigger)", tag=TAG,
    response=Triggered, status=202,
)
async def trigger_sync(request: web.Request, call: Call) -> Triggered:
    repo = _need_repo()
    async with pool(request).acquire() as conn, conn.transaction():
        await repo.request_sync_now(conn, call.user.email)
        await record_audit(conn, request, call, "sync.trigger", "sync_run", None, after={"requested_by": call.user.email})
    return Triggered(requested_by=call.user.email)


@endpoint(
    "GET", BASE + "/unbillable", summary="Sessions held back from billing, with the reason", tag=TAG,
    query=UnbillableQuery, response=UnbillablePage,
)
async def list_unbillable(request: web.Request, call: Call) -> UnbillablePage:
    repo = _need_repo()
    q = call.query
    after = decode_cursor(q.cursor, int)
    if after is not None and not 0 <= after[0] <= INT_MAX:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out")
    async with pool(request).acquire() as conn:
        rows = await repo.list_unbillable(conn, code=q.code, limit=q.limit + 1, after_id=after[0] if after else None)
    rows, cursor = page_of(rows, q.limit, lambda r: (r["transaction_id"],))
    items = [
        UnbillableOut.model_validate({**dict(r), "code": r["unbillable_code"], "reason": r["unbillable_reason"]})
        for r in rows
    ]
    return UnbillablePage(items=items, next_cursor=cursor)


async def _held(conn: asyncpg.Connection, repo, transaction_id: int, code: str, what: str) -> asyncpg.Record:
    hold = await repo.get_hold(conn, transaction_id)
    if hold is None:
        raise ApiError(404, "not_found", f"session {transaction_id} is not known to the billing sync (yet)")
    if hold["unbillable_code"] != code:
        now = f"held: {hold['unbillable_code']}" if hold["unbillable_code"] else "not held"
        raise ApiError(409, "not_held", f"session {transaction_id} is {now}; only a session held as {code} can {what}")
    return hold


@endpoint(
    "POST", BASE + "/unbillable/{id}/settle",
    summary="Settle an anomaly: bill this energy for the session", tag=TAG,
    params=HoldParams, body=SettleBody, response=Released, errors=(404, 409),
    description="For a finished session held as `anomaly` (negative energy, a register reset, "
    "absurd power): the operator decides how many Wh to bill. The next sync run sends it "
    "(less what in-progress increments already billed) and the hold clears.",
)
async def settle_anomaly(request: web.Request, call: Call) -> Released:
    repo = _need_repo()
    tx, energy = call.params.id, call.body.energy_wh
    async with pool(request).acquire() as conn, conn.transaction():
        hold = await _held(conn, repo, tx, "anomaly", "be settled with an energy")
        if energy < hold["recorded_wh"]:
            raise ApiError(
                400, "invalid_input",
                f"{hold['recorded_wh']} Wh were already billed while session {tx} ran; "
                f"settle at {hold['recorded_wh']} Wh or more (Lago takes no negative usage)",
            )
        await repo.set_energy_override(conn, tx, energy, call.user.email)
        await record_audit(
            conn, request, call, "sync.settle", "transaction", tx,
            before={"code": hold["unbillable_code"], "reason": hold["unbillable_reason"],
                    "energy_override_wh": hold["energy_override_wh"]},
            after={"energy_override_wh": energy},
        )
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
    repo = _need_repo()
    tx = call.params.id
    async with pool(request).acquire() as conn, conn.transaction():
        hold = await _held(conn, repo, tx, "invalid_event", "be retried")
        events = await repo.retry_refused_events(conn, tx)
        await record_audit(
            conn, request, call, "sync.retry", "transaction", tx,
            before={"code": hold["unbillable_code"], "reason": hold["unbillable_reason"]},
            after={"events_queued": events},
        )
    return Released(transaction_id=tx, action="retry", events=events,
                    message=f"session {tx}: {events} refused event(s) will be sent again on the next sync run")


def setup(app: web.Application) -> None:
    add_endpoints(app, get_sync_status, list_runs, pin_tier, trigger_sync, list_unbillable,
                  settle_anomaly, retry_refused)
