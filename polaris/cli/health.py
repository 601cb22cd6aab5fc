"""`polaris health`: is the running deployment healthy? (exit 0 ok, 1 warning, 2 critical)"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime

WATCH_DEFAULT = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="on-call checks of the running deployment (exit 0 ok, 1 warning, 2 critical)",
        description="Check the running deployment through the services' own settings: the database "
        "and its migrations, the web's /readyz, the OCPP server and its connected chargers, billing "
        "sync freshness, the email outbox and worker, Lago, the unbillable backlog, and open "
        "operator alerts. Prints one line per check with a fix for each problem; exits 0 ok, "
        "1 warning, 2 critical (the Nagios convention).",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the checklist")
    p.add_argument(
        "--watch",
        nargs="?",
        type=_seconds,
        const=WATCH_DEFAULT,
        metavar="SECONDS",
        help=f"check again every SECONDS (default {WATCH_DEFAULT:g}) until Ctrl-C; exits with the last "
        "result's code (with --json, one document per line)",
    )
    p.add_argument(
        "--timeout", type=_seconds, default=5.0, metavar="SECONDS",
        help="time limit for each service to answer (default 5)",
    )
    p.set_defaults(func=run, config_error_exit=3)  # Nagios UNKNOWN when the settings cannot be read


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _once(args: argparse.Namespace) -> int:
    # Imported here: httpx, asyncpg and the checks are not worth loading for every `polaris` command.
    from polaris.ops.health import HealthContext, as_json, exit_code, render_text, run_checks

    checked_at = datetime.now(UTC)
    results = asyncio.run(run_checks(HealthContext(settings=args.settings, timeout=args.timeout)))
    if args.json:
        # In watch mode one compact document per line (JSON Lines); otherwise one indented document.
        print(json.dumps(as_json(results, checked_at), indent=None if args.watch else 2), flush=True)
    else:
        sys.stdout.write(render_text(results, checked_at))
        sys.stdout.flush()
    return exit_code(results)


def run(args: argparse.Namespace) -> int:
    from polaris.cli.localmode import settings_for_local_deployment

    args.settings = settings_for_local_deployment(args.settings)
    if not args.watch:
        return _once(args)
    code = 3  # UNKNOWN until a run has finished
    try:
        while True:
            code = _once(args)
            if not args.json:
                print(flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return code
