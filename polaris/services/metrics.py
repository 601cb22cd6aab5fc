"""Prometheus metrics of the web process, on an internal listener only (WEB_METRICS_PORT).

The public port (WEB_PORT, behind Caddy on the customer and admin hostnames) has no
/metrics: `polaris web` opens a second listener (`--metrics-host`, 127.0.0.1 unless told
otherwise; 0.0.0.0 inside compose) that serves /metrics and nothing else. With
METRICS_TOKEN set it also wants `Authorization: Bearer <token>`.

Request counts and latency are counted per route by a middleware. Hook failures are
the OCPP hooks and the Lago webhook refusing or failing a call (a signature mismatch
or a database outage shows up here first). Gauges about the whole deployment —
connected chargers, outbox depth, sync lag, open alerts — are read from Postgres in one
query, at most once per FIGURES_TTL_S whatever the number of scrapers, so every web
instance reports the same figures and a scrape storm costs no database round trips.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from polaris.db.repos import ops_figures
from polaris.keys import bearer_ok
from polaris.logs import get_logger
from polaris.services import appkeys

log = get_logger(__name__)

HOOK_PREFIXES = ("/api/ocpp/", "/api/webhook/")
SCRAPE_DB_TIMEOUT_S = 2.0
# How long the deployment's figures read from Postgres are reused by later scrapes.
FIGURES_TTL_S = 3.0

REQUESTS = Counter(
    "polaris_http_requests_total", "HTTP requests answered by the web process", ["method", "route", "status"]
)
LATENCY = Histogram(
    "polaris_http_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
HOOK_FAILURES = Counter(
    "polaris_web_hook_failures_total",
    "OCPP hook and Lago webhook calls answered with an error, by route and status",
    ["route", "status"],
)

# name -> (gauge, key in ops_figures.figures())
_GAUGES: dict[str, tuple[Gauge, str]] = {
    key: (Gauge(name, doc), key)
    for name, doc, key in (
        ("polaris_chargers_connected", "chargers connected to any OCPP server instance (test chargers excluded)",
         "chargers_connected"),
        ("polaris_chargers_registered", "active chargers registered (test chargers excluded)", "chargers_registered"),
        ("polaris_email_outbox_depth", "mails waiting for the email worker", "email_outbox_depth"),
        ("polaris_email_outbox_oldest_seconds", "age of the oldest mail waiting (0 when none)",
         "email_outbox_oldest_s"),
        ("polaris_push_outbox_depth", "push notifications waiting for APNs", "push_outbox_depth"),
        ("polaris_sync_lag_seconds", "seconds since the last successful billing sync run (NaN before the first)",
         "sync_last_success_age_s"),
        ("polaris_usage_events_pending", "usage events recorded but not yet accepted by Lago",
         "usage_events_pending"),
        ("polaris_usage_events_oldest_pending_seconds", "age of the oldest usage event Lago has not accepted (0 when none)",
         "usage_events_oldest_s"),
        ("polaris_unbillable_sessions", "sessions the sync could not bill (no subscription, ...)", "unbillable_sessions"),
        ("polaris_operator_alerts_open", "operator alert incidents still open", "alerts_open"),
    )
}
SCRAPE_OK = Gauge("polaris_metrics_database_up", "1 when /metrics could read the deployment figures from Postgres")


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        info = request.match_info
        route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - start)
        if status >= 400 and request.path.startswith(HOOK_PREFIXES):
            HOOK_FAILURES.labels(route, str(status)).inc()


class Figures:
    """The deployment's figures, read from Postgres at most once per `ttl` (concurrent scrapes share a read)."""

    def __init__(self, ttl: float = FIGURES_TTL_S):
        self.ttl = ttl
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, app: web.Application) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():  # another scrape read them while this one waited
                return
            await _read_gauges(app)
            self._read_at = time.monotonic()

    def _fresh(self) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at < self.ttl


FIGURES = web.AppKey("metrics_figures", Figures)


async def _read_gauges(app: web.Application) -> None:
    try:
        async with asyncio.timeout(SCRAPE_DB_TIMEOUT_S):
            async with app[appkeys.PG_POOL].acquire() as conn:
                figures = await ops_figures.figures(conn)
    except Exception as exc:  # a scrape must answer even when the database does not
        log.warning("metrics: deployment figures unavailable", error=exc.__class__.__name__)
        SCRAPE_OK.set(0)
        for gauge, _key in _GAUGES.values():
            gauge.set(math.nan)
        return
    SCRAPE_OK.set(1)
    for gauge, key in _GAUGES.values():
        value = figures[key]
        if value is None:
            value = math.nan if key == "sync_last_success_age_s" else 0.0
        gauge.set(value)


def _metrics_view(main: web.Application) -> Callable:
    async def metrics(request: web.Request) -> web.Response:
        settings = main[appkeys.SETTINGS]
        token = settings.METRICS_TOKEN.get_secret_value() if settings.METRICS_TOKEN else None
        if not bearer_ok(token, request.headers.get("Authorization")):
            return web.Response(status=401, text="metrics need Authorization: Bearer <METRICS_TOKEN>\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        await main[FIGURES].refresh(main)
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def listener_ctx(host: str, port: int):
    """A cleanup_ctx of the main app: the internal listener serving /metrics (and only that)."""

    async def ctx(main: web.Application) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_get("/metrics", _metrics_view(main))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("metrics listener", host=host, port=port)
        yield
        await runner.cleanup()

    return ctx


def setup(app: web.Application, *, listen: tuple[str, int] | None) -> None:
    """Count requests (the middleware is wired by the app factory) and serve /metrics on `listen`."""
    app[FIGURES] = Figures()
    if listen is not None:
        app.cleanup_ctx.append(listener_ctx(*listen))
