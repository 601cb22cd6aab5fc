"""Typed keys for what the web app shares between handlers (no `app["pg"]` strings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import httpx
from aiohttp import web

from polaris.config import Settings
from polaris.db.migrate import Migration

if TYPE_CHECKING:
    from polaris.services.auth.oidc import OidcClient
    from polaris.services.command_client import CommandClient

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
# One shared outbound HTTP client (command API, email worker, Lago public key, OIDC).
HTTP_CLIENT = web.AppKey("http_client", httpx.AsyncClient)
# The migrations this code knows, read once at start (for /readyz).
MIGRATIONS = web.AppKey("migrations", list[Migration])
# Client of our OCPP server's command API (sends operations to chargers).
COMMAND_CLIENT: web.AppKey[CommandClient] = web.AppKey("command_client")
# Admin OIDC sign-on; None when ADMIN_OIDC_ISSUER is unset.
OIDC: web.AppKey[OidcClient | None] = web.AppKey("oidc")
# Every documented endpoint of this app, in registration order (for the OpenAPI document).
ENDPOINTS: web.AppKey[list] = web.AppKey("endpoints")
