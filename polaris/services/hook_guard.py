"""Replay protection for the OCPP hooks: a fresh `ts`, and a signature never seen before.

A signed hook request (services/hooks.py checks the signature first) carries `ts`, the
epoch milliseconds it was sent; it is refused when more than `MAX_SKEW` off this
process's clock (400 `invalid_body`), or when a request with the same signature was
already answered within the window (409 `replayed`). Signatures are kept in Postgres,
so every web instance behind the balancer knows them; they are forgotten once older than
twice the window (a request can be up to `MAX_SKEW` early and `MAX_SKEW` late).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web

from polaris.db.repos import hook_signatures
from polaris.logs import get_logger

log = get_logger(__name__)

MAX_SKEW = timedelta(minutes=5)
PURGE_EVERY_S = 60.0

_LAST_PURGE = web.AppKey("hook_signatures_purged", dict)


def _refuse(status: int, code: str, message: str) -> web.HTTPException:
    exc_class = web.HTTPConflict if status == 409 else web.HTTPBadRequest
    return exc_class(text=json.dumps({"error": code, "message": message}), content_type="application/json")


def check_ts(doc: dict[str, Any]) -> None:
    """`ts` (epoch ms) is there and inside the window; raises a ready 400 otherwise."""
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise _refuse(400, "invalid_body", "ts must be the epoch milliseconds the request was sent")
    if abs(time.time() * 1000 - ts) > MAX_SKEW.total_seconds() * 1000:
        raise _refuse(400, "invalid_body", "ts (epoch milliseconds) is more than 5 minutes off")


async def check_new(request: web.Request, pool: asyncpg.Pool, signature: bytes) -> None:
    """Refuse (409) a signature answered before; remember this one."""
    async with pool.acquire() as conn:
        if not await hook_signatures.first_use(conn, signature):
            log.warning("hook replay refused", path=request.path)
            raise _refuse(409, "replayed", "this signed request was already received")
        state = request.config_dict.get(_LAST_PURGE)
        if state is not None and time.monotonic() - state.get("at", 0.0) > PURGE_EVERY_S:
            state["at"] = time.monotonic()
            await hook_signatures.forget_older_than(conn, 2 * MAX_SKEW)


def setup(app: web.Application) -> None:
    app[_LAST_PURGE] = {}
