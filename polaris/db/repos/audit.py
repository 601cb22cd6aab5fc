"""The audit log: who changed what, when, with the values before and after."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from polaris.redaction import redact


def _plain(value: Any) -> Any:
    """Record values as JSON-friendly data (timestamps as ISO text, bytes dropped)."""
    if isinstance(value, dict | asyncpg.Record):
        return {k: _plain(v) for k, v in dict(value).items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


async def record(
    conn: asyncpg.Connection,
    *,
    actor_user_id: int | None,
    actor_email: str | None,
    action: str,
    target_type: str,
    target_id: str | int | None,
    before: Any = None,
    after: Any = None,
    ip: str | None = None,
) -> None:
    """Add one entry; call inside the transaction that made the change. Secrets are redacted."""
    await conn.execute(
        """
        INSERT INTO app.audit_log
            (actor_user_id, actor_email, action, target_type, target_id, before, after, ip)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        actor_user_id,
        actor_email,
        action,
        target_type,
        None if target_id is None else str(target_id),
        None if before is None else redact(json.loads(json.dumps(_plain(before)))),
        None if after is None else redact(json.loads(json.dumps(_plain(after)))),
        ip,
    )


async def list_entries(
    conn: asyncpg.Connection,
    *,
    limit: int,
    before_id: int | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    actor_user_id: int | None = None,
    action: str | None = None,
) -> list[asyncpg.Record]:
    """Newest first; `before_id` continues a previous page."""
    return await conn.fetch(
        """
        SELECT id, at, actor_user_id, actor_email, action, target_type, target_id, before, after, ip
        FROM app.audit_log
        WHERE ($2::bigint IS NULL OR id < $2)
          AND ($3::text IS NULL OR target_type = $3)
          AND ($4::text IS NULL OR target_id = $4)
          AND ($5::bigint IS NULL OR actor_user_id = $5)
          AND ($6::text IS NULL OR action = $6)
        ORDER BY id DESC
        LIMIT $1
        """,
        limit,
        before_id,
        target_type,
        target_id,
        actor_user_id,
        action,
    )
