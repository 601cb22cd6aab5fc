"""`polaris up`: the whole platform on one machine, for a first look and for development.

Embedded Postgres (or DATABASE_URL), migrations, demo data once, local secrets once, then
every service as a child process; Ctrl-C stops them all cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from polaris import demo
from polaris.cli.database import resolve_database_url
from polaris.cli.errors import CommandError
from polaris.cli.localmode import LOCAL_LAGO_KEY, LOCAL_LAGO_PORT, local_lago, local_secrets
from polaris.config import Settings
from polaris.db.migrate import migrate
from polaris.db.pool import connect, describe_connect_error
from polaris.logs import get_logger

log = get_logger(__name__)

@dataclass
class Service:
    name: str
    argv: list[str]
    url: str | None = None
    module: str = "polaris"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "up",
        help="run the whole platform locally (embedded Postgres, demo data, simulated chargers)",
        description="Start Postgres (embedded unless DATABASE_URL is set), migrate, seed demo data once, "
        "and run every service with simulated chargers. Ctrl-C stops everything.",
    )
    p.add_argument("--no-sim", action="store_true", help="do not start simulated chargers")
    p.set_defaults(func=run)


def services(
    settings: Settings, creds: demo.DemoCredentials, *, sim: bool, local_lago: bool
) -> list[Service]:
    """The processes `up` runs: every service that exists so far."""
    from polaris.cli.main import available_commands

    have = set(available_commands())
    out: list[Service] = []
    if local_lago:
        # Without a real Lago, bill into an in-memory stand-in speaking Lago's API, so the
        # sync worker runs and the portal shows prices.
        out.append(
            Service(
                "lago",
                ["--port", str(LOCAL_LAGO_PORT), "--api-key", LOCAL_LAGO_KEY,
                 *(arg for c in demo.CUSTOMERS for arg in ("--subscription", c[2]))],
                f"http://127.0.0.1:{LOCAL_LAGO_PORT} (local Lago stand-in; set LAGO_API_KEY for a real one)",
                module="polaris.sim.lago",
            )
        )
    if "ocpp" in have:
        out.append(Service("ocpp", ["ocpp"], f"ws://127.0.0.1:{settings.OCPP_PORT}/ocpp/<chargeBoxId>"))
    if "web" in have:
        out.append(Service("web", ["web"], f"{settings.ADMIN_BASE_URL} (admin), {settings.CUSTOMER_BASE_URL} (customers)"))
    if "sync" in have:
        out.append(Service("sync", ["sync"]))
    if sim and "sim" in have and "ocpp" in have:
        out.append(
            Service(
                "sim",
                [
                    "sim",
                    "--url", f"ws://127.0.0.1:{settings.OCPP_PORT}/ocpp",
                    "--chargers", str(creds.charger_count),
                    "--id-prefix", creds.charger_prefix,
                    "--password", creds.charger_password,
                    "--tag", ",".join(c[3] for c in demo.CUSTOMERS),
                    # A lively demo: the first cars arrive within a minute (the simulator's
                    # defaults, 5 min gaps and 1-minute meter values, suit load tests) and
                    # the kWh on the portal's live page move every 15 s.
                    "--idle-seconds", "40", "--session-seconds", "600", "--meter-interval", "15",
                ],
            )
        )
    return out


def prepare_database(url: str, data_dir: Path) -> demo.DemoCredentials | None:
    """Migrate and seed once; return the demo credentials if known."""

    async def work() -> demo.DemoCredentials | None:
        try:
            conn = await connect(url, timeout=10)
        except Exception as exc:
            raise CommandError(describe_connect_error(exc)) from None
        try:
            await migrate(conn)  # logs each migration it applies
            creds_path = data_dir / "demo-credentials.json"
            if not await demo.is_seeded(conn):
                creds = await demo.seed(conn)
                creds.save(creds_path)
                print(f"seeded demo data (credentials saved in {creds_path})", file=sys.stderr)
                return creds
            return demo.DemoCredentials.load(creds_path)
        finally:
            await conn.close()

    return asyncio.run(work())


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    data_dir = settings.POLARIS_DATA_DIR
    url = resolve_database_url(settings, start_embedded_if_missing=True)
    creds = prepare_database(url, data_dir)

    env = dict(os.environ)
    for k, v in local_secrets(data_dir).items():
        env.setdefault(k, v)
    env["DATABASE_URL"] = url
    lago_stand_in = local_lago(settings)
    env.update(lago_stand_in)
    env.setdefault("PYTHONUNBUFFERED", "1")

    if creds is None:
        print(
            "The demo data exists but its credentials file is gone: reset the admin password with\n"
            f"  polaris admin user set-password {demo.ADMIN_EMAIL} --password NEW_PASSWORD",
            file=sys.stderr,
        )
    procs = services(settings, creds or demo.DemoCredentials("", "", ""), sim=not args.no_sim and creds is not None,
        local_lago=bool(lago_stand_in),
    )
    _print_banner(settings, url, creds, procs)

    children: list[tuple[Service, subprocess.Popen]] = []
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    try:
        for svc in procs:
            child = subprocess.Popen(
                [sys.executable, "-m", svc.module, *svc.argv], env=env, start_new_session=True
            )
            children.append((svc, child))
            time.sleep(0.3)  # let servers bind before their clients start
        while not stop["requested"]:
            for svc, child in children:
                if child.poll() is not None:
                    print(f"polaris up: {svc.name} exited with code {child.returncode}; stopping", file=sys.stderr)
                    stop["requested"] = True
                    exit_code = 1
            time.sleep(0.2)
    finally:
        _stop_children(children)
    print("polaris up: stopped", file=sys.stderr)
    return exit_code


def _stop_children(children: list[tuple[Service, subprocess.Popen]]) -> None:
    # Clients first (the simulator), servers last, so nothing reconnects into a closing server.
    for svc, child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"polaris up: {svc.name} did not stop in 10 s; killing it", file=sys.stderr)
                child.kill()
                child.wait()


def _print_banner(settings: Settings, url: str, creds: demo.DemoCredentials | None, procs: list[Service]) -> None:
    where = "embedded Postgres" if not settings.database_url else "DATABASE_URL"
    lines = ["", "Polaris Express is running locally. Ctrl-C stops everything.", f"  database: {where}"]
    for svc in procs:
        if svc.url:
            lines.append(f"  {svc.name}: {svc.url}")
    if creds and creds.admin_email:
        lines.append(f"  admin sign-in: {creds.admin_email} / {creds.admin_password}")
        lines.append(
            f"  demo chargers: {', '.join(demo.charger_ids(creds.charger_prefix, creds.charger_count))} "
            f"(password {creds.charger_password})"
        )
    lines.append(
        f"  demo customers: {', '.join(c[0] for c in demo.CUSTOMERS)} "
        "(sign in by magic link: `polaris admin outbox` shows the links)"
    )
    if any(svc.name == "web" for svc in procs):
        lines.append(f"  operator console: .venv/bin/polaris tui --url http://127.0.0.1:{settings.WEB_PORT}")
    if not procs:
        lines.append("  (no services yet: only the database is up)")
    print("\n".join(lines) + "\n", flush=True)
