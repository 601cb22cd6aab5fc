"""`polaris ocpp`: the OCPP 1.6J central system and its command API."""

from __future__ import annotations

import argparse
import asyncio

from polaris.cli.errors import CommandError
from polaris.config import log_start_notes
from polaris.db.pool import describe_connect_error
from polaris.logs import get_logger


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ocpp",
        help="run the OCPP 1.6J server (chargers) and its command API",
        description="Serve chargers on ws(s)://HOST:PORT/ocpp/{chargeBoxId} (and SteVe's "
        "/steve/websocket/CentralSystemService/{chargeBoxId}) and the command API on "
        "API_PORT. Needs DATABASE_URL, STEVE_API_KEY and STEVE_PREAUTH_HMAC_KEY.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="WebSocket port (default OCPP_PORT, 8080)")
    p.add_argument("--api-host", default=None, help="address of the command API (default: --host)")
    p.add_argument("--api-port", type=int, default=None,
                   help="command API port (default OCPP_API_PORT, 8081)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from polaris.ocpp.main import run as run_server

    settings = args.settings.require("database", "ocpp")
    log_start_notes(settings, get_logger("polaris.cli.ocpp"))
    port = args.port if args.port is not None else settings.OCPP_PORT
    api_port = args.api_port if args.api_port is not None else settings.OCPP_API_PORT
    try:
        asyncio.run(run_server(settings, args.host, port, args.api_host or args.host, api_port))
    except OSError as exc:
        raise CommandError(describe_connect_error(exc)) from None
    return 0
