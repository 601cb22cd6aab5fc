"""`polaris web`: the aiohttp process (admin API, customer side, hooks, live events)."""

from __future__ import annotations

import argparse

from polaris.config import Settings, log_start_notes
from polaris.logs import get_logger

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web",
        help="run the web process (admin API, customer portal and API, hooks, live events)",
        description="Serve the admin API on ADMIN_BASE_URL's host and the customer side on "
        "CUSTOMER_BASE_URL's host; /healthz, /readyz and the OCPP hooks on any host; /metrics "
        "only on the internal listener (--metrics-host, WEB_METRICS_PORT).",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default WEB_PORT, 8000)")
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address of the internal /metrics listener on WEB_METRICS_PORT (default 127.0.0.1; "
        "0.0.0.0 in a container so Prometheus on the compose network reaches it)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from polaris.gctune import tune_gc
    from polaris.services.app import app_factory, freeze_when_started

    settings: Settings = args.settings
    settings.require("database", "web")
    log_start_notes(settings, log)
    for line in settings.disabled_features():
        log.info("optional feature off", detail=line)
    port = args.port or settings.WEB_PORT
    log.info(
        "web starting",
        host=args.host,
        port=port,
        admin=settings.ADMIN_BASE_URL,
        customer=settings.CUSTOMER_BASE_URL,
        metrics=f"{args.metrics_host}:{settings.WEB_METRICS_PORT}",
    )
    tune_gc()
    app = freeze_when_started(app_factory(settings, metrics_host=args.metrics_host))
    # run_app handles SIGTERM/SIGINT: it stops accepting, finishes in-flight requests
    # (shutdown_timeout) and runs every cleanup_ctx before exiting 0.
    web.run_app(
        app,
        host=args.host,
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
        handle_signals=True,
    )
    return 0
