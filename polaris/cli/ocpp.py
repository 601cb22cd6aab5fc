"""`polaris ocpp`: the OCPP 1.6J / 2.0.1 central system and its command API; `--workers N` runs N
processes sharing the ports (SO_REUSEPORT), each under its own open-file limit."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys

from polaris.cli.errors import CommandError
from polaris.config import log_start_notes
from polaris.db.pool import describe_connect_error
from polaris.logs import get_logger


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ocpp",
        help="run the OCPP 1.6J / 2.0.1 server (chargers) and its command API",
        description="Serve chargers on ws(s)://HOST:PORT/ocpp/{chargeBoxId} (and SteVe's "
        "/steve/websocket/CentralSystemService/{chargeBoxId}) and the command API on "
        "API_PORT. Needs DATABASE_URL, STEVE_API_KEY and STEVE_PREAUTH_HMAC_KEY.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="WebSocket port (default OCPP_PORT, 8080)")
    p.add_argument("--api-host", default=None, help="address of the command API (default: --host)")
    p.add_argument("--api-port", type=int, default=None,
                   help="command API port (default OCPP_API_PORT, 8081)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes sharing the ports (SO_REUSEPORT, Linux); commands are routed between "
                        "them through Postgres (default 1)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # set for each child
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from polaris.ocpp.main import run as run_server

    settings = args.settings.require("database", "ocpp")
    log_start_notes(settings, get_logger("polaris.cli.ocpp"))
    port = args.port if args.port is not None else settings.OCPP_PORT
    api_port = args.api_port if args.api_port is not None else settings.OCPP_API_PORT
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.workers > 1:
        if port == 0 or api_port == 0:
            raise CommandError("--workers needs fixed ports (the workers share them)")
        return _supervise(args, port, api_port)
    try:
        asyncio.run(run_server(settings, args.host, port, args.api_host or args.host, api_port,
                               worker=args.worker))
    except OSError as exc:
        raise CommandError(describe_connect_error(exc)) from None
    return 0


def _supervise(args: argparse.Namespace, port: int, api_port: int) -> int:
    """Start the workers, pass SIGTERM / SIGINT on to them, exit when all have (1 if any failed)."""
    base = [sys.executable, "-m", "polaris", "ocpp", "--host", args.host, "--port", str(port),
            "--api-port", str(api_port), *(["--api-host", args.api_host] if args.api_host else [])]
    children = [subprocess.Popen([*base, "--worker", str(k)]) for k in range(1, args.workers + 1)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    return 0 if all(code == 0 for code in codes) else 1
