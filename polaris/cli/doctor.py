"""`polaris doctor`: is this host and configuration ready to run Polaris Express?"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from polaris.config import ocpp_public_host


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check that this host and .env are ready to deploy (the install guide's checklist)",
        description="Check every required setting and its strength, hostnames and the cookie domain, "
        "DNS, outbound HTTPS to Lago, the Lago API key and billable metric, the email worker's "
        "/health, Postgres, RAM, and Docker. Prints a fix for every failed line; exits 1 when "
        "anything blocks the deployment (warnings do not).",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the checklist")
    p.add_argument(
        "--ocpp-host",
        metavar="HOST",
        help="hostname chargers connect to (default: OCPP_HOST from the environment or .env)",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="time limit per network check (default 10)"
    )
    p.add_argument(
        "--env",
        metavar="FILE",
        help="only review FILE (e.g. the original product's .env): what to keep, rename, remove or change, "
        "line by line, and what to add; no network checks. Exits 1 when something must change",
    )
    p.set_defaults(func=run)


def review_env(path: str) -> int:
    from pathlib import Path

    from polaris.ops.envreview import render, review, settings_problems

    file = Path(path)
    if not file.is_file():
        print(f"polaris doctor: {path} is not a readable file", file=sys.stderr)
        return 1
    advice = review(file)
    problems = settings_problems(file)
    sys.stdout.write(render(file, advice, problems))
    return 1 if problems or any(a.action != "keep" for a in advice) else 0


def _ocpp_host(args: argparse.Namespace) -> str | None:
    return args.ocpp_host.strip().lower() or None if args.ocpp_host else ocpp_public_host()


def run(args: argparse.Namespace) -> int:
    # Imported here: httpx and the checks are not worth loading for every `polaris` command.
    from polaris.ops.doctor import DoctorContext, as_json, blocking, render_text, run_checks

    if args.env:
        return review_env(args.env)
    ctx = DoctorContext(settings=args.settings, ocpp_host=_ocpp_host(args), timeout=args.timeout)
    results = asyncio.run(run_checks(ctx))
    if args.json:
        print(json.dumps(as_json(results), indent=2))
    else:
        sys.stdout.write(render_text(results))
    return 1 if blocking(results) else 0
