"""What every admin area shares: pagination, the audit helper, small conversions."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from polaris.db.repos import audit
from polaris.services import appkeys
from polaris.services.auth.views import client_ip
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model

T = TypeVar("T")

MAX_LIMIT = 500
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` as `cursor` for the next one (null: the end)."""

    items: list[T]
    next_cursor: str | None = None


class PageQuery(Model):
    limit: int = Field(50, ge=1, le=MAX_LIMIT, description="items per page")
    cursor: str | None = Field(None, max_length=500, description="next_cursor of the previous page")


class IdParams(Model):
    id: int = Field(ge=1, le=BIGINT_MAX)


def encode_cursor(*keys: Any) -> str:
    raw = json.dumps(keys, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> tuple | None:
    """The sort keys of a cursor, checked against `types`; 400 when it was tampered with."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        keys = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out") from None
    if not isinstance(keys, list) or len(keys) != len(types):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out")
    out = []
    for key, typ in zip(keys, types, strict=True):
        if typ is int and (not isinstance(key, int) or isinstance(key, bool) or abs(key) > BIGINT_MAX):
            raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out")
        if typ is str and not isinstance(key, str):
            raise ApiError(400, "invalid_cursor", "the cursor is not one this API handed out")
        out.append(key)
    return tuple(out)


def page_of(rows: list, limit: int, key) -> tuple[list, str | None]:
    """Split `limit + 1` fetched rows into the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key(rows[-1]))
    return rows, None


def pool(request: web.Request) -> asyncpg.Pool:
    return request.app[appkeys.PG_POOL]


async def record_audit(
    conn: asyncpg.Connection,
    request: web.Request,
    call: Call,
    action: str,
    target_type: str,
    target_id: Any,
    *,
    before: Any = None,
    after: Any = None,
) -> None:
    """One audit entry for the signed-in user's change (inside the change's transaction)."""
    await audit.record(
        conn,
        actor_user_id=call.user.id if call.user else None,
        actor_email=call.user.email if call.user else None,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
        ip=client_ip(request),
    )


def changed(before: Any, after: Any) -> tuple[dict, dict]:
    """Only the fields that differ, for a readable audit entry."""
    b, a = dict(before), dict(after)
    keys = [k for k in a if k in b and a[k] != b[k] and k not in ("updated_at", "last_seen_at")]
    return {k: b[k] for k in keys}, {k: a[k] for k in keys}
