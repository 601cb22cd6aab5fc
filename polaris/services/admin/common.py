"""What every admin area's views share: pagination, the pool, who is acting."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from polaris.services import appkeys
from polaris.services.admin.actions import Actor
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


def actor_of(request: web.Request, call: Call) -> Actor:
    """The signed-in person making a change through the API, for the actions' audit entries."""
    return Actor(user_id=call.user.id, email=call.user.email, ip=client_ip(request), role=call.user.role)
