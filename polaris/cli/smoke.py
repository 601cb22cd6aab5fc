"""`polaris smoke`: a test charger runs one short session against the running deployment."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from polaris.cli.database import resolve_database_url
from polaris.cli.errors import CommandError
from polaris.config import Settings, ocpp_public_host


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "smoke",
        help="smoke-test a running deployment with a test charger (never billed, removed afterwards)",
        description="Registers a test charger (is_test: never billed, mailed or pushed), connects it over "
        "the real OCPP URL, boots, authorizes a test card, runs a short session with meter values and "
        "stops it, then checks the session through the admin API and that it is not billable. Every "
        "step prints a line with its time; a failed step says what to check and the rest are skipped. "
        "Everything the run created is removed at the end, also after a failure or Ctrl-C (not with "
        "--keep). Exits 0 when every step passed, 1 otherwise. Needs DATABASE_URL, as the services do.",
    )
    p.add_argument(
        "--ocpp-url",
        metavar="WS_URL",
        help="the chargers' URL without the id (default: wss://$OCPP_HOST/ocpp when OCPP_HOST is set in "
        "the environment or .env, else ws://127.0.0.1:$OCPP_PORT/ocpp)",
    )
    p.add_argument(
        "--admin-url",
        metavar="URL",
        help="where the web process answers (default: WEB_INTERNAL_URL); requests carry the admin "
        "host as Host, since the web process routes admin paths by host",
    )
    p.add_argument(
        "--admin-host",
        metavar="HOST",
        help="the Host header sent to --admin-url (default: the host of ADMIN_BASE_URL)",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="time limit of the whole run (default 60)"
    )
    p.add_argument(
        "--keep", action="store_true",
        help="leave the test charger, card, people and session in place for debugging; "
        "remove them later with --cleanup",
    )
    p.add_argument(
        "--cleanup", metavar="CHARGE_BOX_ID",
        help="only remove what a --keep run left (its SMOKE-XXXXXXXX charger id), then exit",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the checklist")
    p.set_defaults(func=run)


def default_ocpp_url(settings: Settings) -> str:
    """wss://OCPP_HOST/ocpp (the public URL, through Caddy) when OCPP_HOST is known, else local."""
    host = ocpp_public_host()
    if host:
        return f"wss://{host}/ocpp"
    return f"ws://127.0.0.1:{settings.OCPP_PORT}/ocpp"


def run(args: argparse.Namespace) -> int:
    # Imported here: the simulator and httpx are not worth loading for every `polaris` command.
    from polaris.db.errors import RepoError
    from polaris.ops.smoke import SmokeOptions, cleanup_kept, render_step, render_summary, run_smoke

    settings: Settings = args.settings
    if settings.LOG_LEVEL != "DEBUG":
        # The checklist tells the story; the simulated charger's info lines would drown it.
        logging.getLogger("polaris.sim").setLevel(logging.WARNING)
    database_url = resolve_database_url(settings)
    if args.cleanup:
        try:
            counts = asyncio.run(cleanup_kept(database_url, args.cleanup))
        except RepoError as exc:
            raise CommandError(str(exc)) from None
        if args.json:
            print(json.dumps({"ok": True, "chargeBoxId": args.cleanup, "removed": counts}, indent=2))
        else:
            print(f"removed {sum(counts.values())} row(s) of smoke run {args.cleanup}")
        return 0

    opts = SmokeOptions(
        database_url=database_url,
        ocpp_url=args.ocpp_url or default_ocpp_url(settings),
        admin_url=args.admin_url or settings.WEB_INTERNAL_URL,
        admin_host=args.admin_host or settings.admin_host,
        timeout=args.timeout,
        keep=args.keep,
    )

    def show(step) -> None:
        if not args.json:
            sys.stdout.write(render_step(step))
            sys.stdout.flush()

    if not args.json:
        print(f"Polaris Express smoke test: {opts.ocpp_url} and {opts.admin_url} (Host: {opts.admin_host})\n")
    report = asyncio.run(run_smoke(opts, on_step=show))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        sys.stdout.write(render_summary(report))
    return 0 if report.ok else 1
