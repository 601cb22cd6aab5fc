"""The audit log: every admin change, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from polaris.db.repos import audit
from polaris.services.admin.common import BIGINT_MAX, Page, PageQuery, decode_cursor, page_of, pool
from polaris.services.openapi import Call, Out, add_endpoints, endpoint

TAG = "audit"


class AuditEntryOut(Out):
    id: int
    at: datetime
    actor_user_id: int | None
    actor_email: str | None
    actor: str | None = Field(None, description="who: the actor's email")
    action: str
    target_type: str
    target_id: str | None
    target: str | None = Field(None, description="what: type:id")
    before: Any = None
    after: Any = None
    ip: str | None = None


class AuditQuery(PageQuery):
    target_type: str | None = Field(None, max_length=50)
    target_id: str | None = Field(None, max_length=200)
    actor_user_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    action: str | None = Field(None, max_length=100)


AuditPage = Page[AuditEntryOut]


@endpoint("GET", "/api/admin/v1/audit", summary="The audit log, newest first", tag=TAG, query=AuditQuery, response=AuditPage)
async def list_audit(request: web.Request, call: Call) -> AuditPage:
    q = call.query
    before = decode_cursor(q.cursor, int)
    async with pool(request).acquire() as conn:
        rows = await audit.list_entries(
            conn,
            limit=q.limit + 1,
            before_id=before[0] if before else None,
            target_type=q.target_type,
            target_id=q.target_id,
            actor_user_id=q.actor_user_id,
            action=q.action,
        )
    rows, cursor = page_of(rows, q.limit, lambda r: (r["id"],))
    items = [
        AuditEntryOut.model_validate(
            {**dict(r), "actor": r["actor_email"], "target": f"{r['target_type']}:{r['target_id'] or ''}"}
        )
        for r in rows
    ]
    return AuditPage(items=items, next_cursor=cursor)


def setup(app: web.Application) -> None:
    add_endpoints(app, list_audit)
