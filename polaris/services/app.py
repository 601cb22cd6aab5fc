"""The web process: `app_factory(settings)` wires middlewares, resources and every area.

Host routing: the admin API (`/api/admin/...`) answers on ADMIN_BASE_URL's host, the
customer side (everything else) on CUSTOMER_BASE_URL's host; health, the OCPP hooks and
the Lago webhook answer on any host so internal callers can use WEB_INTERNAL_URL.
Metrics are not on this port at all: an internal listener serves them (services/metrics.py). In local mode (http:// base URLs) a host that is neither — 127.0.0.1,
a LAN address — serves both sides, so `curl http://127.0.0.1:8000/...` and tests work;
in production such a host gets only the any-host paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from aiohttp import web

from polaris import __version__, customer_web
from polaris.config import Settings
from polaris.db.migrate import is_current, load_migrations
from polaris.db.pool import create_pool
from polaris.gctune import freeze_startup_objects
from polaris.logs import get_logger
from polaris.services import (
    alerts,
    appkeys,
    apple,
    email,
    expresscan,
    hooks,
    lago_webhooks,
    live,
    metrics,
    push,
)
from polaris.services.admin import api as admin_api
from polaris.services.auth import device, oidc, password_reset
from polaris.services.auth import views as auth_views
from polaris.services.auth.middleware import auth_middleware
from polaris.services.command_client import CommandClient
from polaris.services.errors import error_middleware, json_error
from polaris.services.metrics import metrics_middleware

log = get_logger(__name__)

ANY_HOST_PREFIXES = ("/healthz", "/readyz", "/api/ocpp/", "/api/webhook/lago", "/.well-known/apple-app-site-association",
                     # The original iOS app talks to the admin host (staff register it).
                     "/api/devices/", "/expresscan/")
ADMIN_PREFIX = "/api/admin/"

_warned_local_mode = False


def request_hostname(request: web.Request) -> str:
    """The Host header's name without port, lower case ([::1] stays bracketed)."""
    host = (request.host or "").strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def site_of(request: web.Request) -> str:
    """Which side a request may reach: 'admin', 'customer', 'both' (local unknown host) or 'none'."""
    settings = request.app[appkeys.SETTINGS]
    host = request_hostname(request)
    admin = host == settings.admin_host
    customer = host == settings.customer_host
    if admin and customer:
        return "both"
    if admin:
        return "admin"
    if customer:
        return "customer"
    return "both" if settings.local_mode else "none"


@web.middleware
async def host_middleware(request: web.Request, handler):
    path = request.path
    if not path.startswith(ANY_HOST_PREFIXES):
        site = site_of(request)
        wants = "admin" if path.startswith(ADMIN_PREFIX) else "customer"
        if site not in (wants, "both"):
            return json_error(404, "not_found", f"{path} is not served on this host")
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers (no dependencies checked)."""
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the database answers and every migration this code knows is applied."""
    pool = request.app[appkeys.PG_POOL]
    try:
        async with asyncio.timeout(3):
            async with pool.acquire() as conn:
                current = await is_current(conn, request.app[appkeys.MIGRATIONS])
    except Exception as exc:  # any failure (timeout, refused, auth) means "not ready"
        log.warning("readiness check failed", error=exc.__class__.__name__)
        return json_error(503, "database_unavailable", "the database is unreachable")
    if not current:
        return json_error(503, "migrations_pending", "the database needs `polaris migrate`")
    return web.json_response({"status": "ready"})


def _pool_ctx(settings: Settings, pool_size: int):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, min_size=1, max_size=pool_size)
        app[appkeys.PG_POOL] = pool
        yield
        await pool.close()

    return ctx


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), headers={"User-Agent": f"polaris-web/{__version__}"}
    )
    app[appkeys.HTTP_CLIENT] = client
    app[appkeys.COMMAND_CLIENT] = CommandClient(app[appkeys.SETTINGS], client)
    yield
    await client.aclose()


def warn_local_mode(settings: Settings) -> None:
    global _warned_local_mode
    if settings.local_mode and not _warned_local_mode:
        _warned_local_mode = True
        log.warning(
            "local mode: session cookies are not Secure because ADMIN_BASE_URL/CUSTOMER_BASE_URL use http://"
        )


def app_factory(
    settings: Settings, *, pool_size: int = 10, metrics_host: str | None = None
) -> web.Application:
    """Build the web application (resources open on startup, close on cleanup).

    With `metrics_host`, /metrics is served on that address at WEB_METRICS_PORT (`polaris
    web` always opens it); without, nowhere (tests, embedding).
    """
    warn_local_mode(settings)
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, host_middleware, auth_middleware],
        client_max_size=1024**2,
        # Lago's JWT webhook signature carries the whole payload in one header (15 KB+).
        handler_args=lago_webhooks.HANDLER_ARGS,
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.MIGRATIONS] = load_migrations()
    app.cleanup_ctx.append(_pool_ctx(settings, pool_size))
    app.cleanup_ctx.append(_http_ctx)

    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    metrics.setup(app, listen=(metrics_host, settings.WEB_METRICS_PORT) if metrics_host else None)

    # Every area of the process, each adding its routes and resources (`cleanup_ctx`s open
    # in this order and close in reverse). This order also orders the OpenAPI document.
    auth_views.setup(app)
    device.setup(app)
    oidc.setup(app)
    password_reset.setup(app)
    admin_api.setup(app)
    hooks.setup(app)
    live.setup(app)
    email.setup(app)
    push.setup(app)
    lago_webhooks.setup(app)
    customer_web.setup(app)
    alerts.setup(app)
    apple.setup(app)
    expresscan.setup(app)
    return app


def freeze_when_started(app: web.Application) -> web.Application:
    """`polaris web` only (not tests): once every resource is open, exempt the process's
    long-lived objects from garbage collection (see polaris/gctune.py)."""

    async def freeze(_app: web.Application) -> None:
        freeze_startup_objects()

    # After cleanup_ctx's startup (aiohttp runs that first), so the pool is included.
    app.on_startup.append(freeze)
    return app

