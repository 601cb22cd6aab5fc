"""Prometheus metrics of the web process, served at /metrics on any host (no auth).

Request counts and latency are counted per route by a middleware. Hook failures are
the OCPP hooks and the Lago webhook refusing or failing a call (a signature mismatch
or a database outage shows up here first). Gauges about the whole deployment —
connected chargers, outbox depth, sync lag, open alerts — are read from Postgres at
scrape time, so every web instance reports the same figures and none goes stale.
"""

from __future__ import annotations

import asyncio
import math
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from polaris.db.repos import ops_figures
from polaris.logs import get_logger
from polaris.services import appkeys

log = get_logger(__name__)

HOOK_PREFIXES = ("/api/ocpp/", "/api/webhook/")
SCRAPE_DB_TIMEOUT_S = 2.0

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


async def _refresh_gauges(app: web.Application) -> None:
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


async def metrics(request: web.Request) -> web.Response:
    await _refresh_gauges(request.app)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
