"""Operator alert incidents, read-only (the engine is polaris.services.alerts)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import Field

from polaris.db.repos import operator_alerts
from polaris.services.admin.common import MAX_LIMIT, pool
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "alerts"


class AlertOut(Out):
    id: int
    kind: str = Field(description="charger_offline, charger_faulted, sync_failing or outbox_stuck")
    subject: str = Field(description="a charge box id, 'sync' or 'email_outbox'")
    detail: str
    opened_at: datetime = Field(description="when the condition began")
    cleared_at: datetime | None = None
    open_notified_at: datetime | None = Field(None, description="when the opening mail was queued")
    clear_notified_at: datetime | None = Field(None, description="when the clearing mail was queued")


class AlertQuery(Model):
    all: bool = Field(False, description="also the most recently cleared incidents")
    limit: int = Field(100, ge=1, le=MAX_LIMIT)


class AlertList(Out):
    items: list[AlertOut]


@endpoint(
    "GET",
    "/api/admin/v1/alerts",
    summary="Operator alert incidents: open ones, and with all=true recently cleared ones",
    tag=TAG,
    query=AlertQuery,
    response=AlertList,
)
async def list_alerts(request: web.Request, call: Call) -> AlertList:
    async with pool(request).acquire() as conn:
        rows = await operator_alerts.list_incidents(conn, include_cleared=call.query.all, limit=call.query.limit)
    return AlertList(items=[AlertOut.model_validate(dict(r)) for r in rows])


def setup(app: web.Application) -> None:
    add_endpoints(app, list_alerts)
