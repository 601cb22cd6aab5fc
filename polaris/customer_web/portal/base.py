"""Shared by every area: the refusal error, the pool, "is this a customer?"."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from polaris.customer_web.strings import text
from polaris.services import appkeys
from polaris.services.auth import AuthUser
from polaris.services.errors import ApiError


class PortalError(ApiError):
    """A refusal with a message for the person (shown on the page, or as the API's message)."""

    def __init__(self, status: int, code: str, key: str, **values: Any):
        super().__init__(status, code, text(key, **values))
        self.key = key


def pool_of(app: web.Application) -> asyncpg.Pool:
    return app[appkeys.PG_POOL]


def require_customer(user: AuthUser | None) -> AuthUser:
    if user is None:
        raise ApiError(401, "unauthorized", "sign in first", headers={"WWW-Authenticate": 'Bearer realm="polaris"'})
    if user.customer_id is None:
        raise ApiError(403, "forbidden", "this is for customers; staff use the admin console")
    return user
