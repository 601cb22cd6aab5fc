"""`polaris up`: the whole platform on one machine, for a first look and for development.

Embedded Postgres (or DATABASE_URL), migrations, demo data once, local secrets once, then
every service as a child process; Ctrl-C stops them all cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from polaris import demo
from polaris.cli.database import resolve_database_url
from polaris.cli.errors import CommandError
from polaris.cli.localmode import LOCAL_LAGO_KEY, local_lago, local_secrets
from polaris.config import Settings
from polaris.db.migrate import migrate
from polaris.db.pool import connect, describe_connect_error
from polaris.logs import get_logger

log = get_logger(__name__)

# A child that exits this soon after it was started failed at start-up, not in service.
STARTUP_S = 15.0
TAIL_LINES = 40


def opt(name: str, value: object) -> str:
    """`--name=VALUE`: a value that starts with `-` (a generated password) stays a value."""
    return f"{name}={value}"


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str | None = None
    module: str = "polaris"


@dataclass
class Child:
    """A running service: its process and the last lines it wrote to stderr."""

    svc: Service
    proc: subprocess.Popen
    started: float
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None


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
    """The processes `up` runs, servers before their clients."""
    out: list[Service] = []
    if local_lago:
        # Without a real Lago, bill into an in-memory stand-in speaking Lago's API, so the
        # sync worker runs and the portal shows prices.
        port = settings.POLARIS_LOCAL_LAGO_PORT
        out.append(
            Service(
                "lago",
                [opt("--port", port), opt("--api-key", LOCAL_LAGO_KEY),
                 *(opt("--subscription", c[2]) for c in demo.CUSTOMERS)],
                f"http://127.0.0.1:{port} (local Lago stand-in; set LAGO_API_KEY for a real one)",
                module="polaris.sim.lago",
            )
        )
    out.append(Service("ocpp", ["ocpp"], f"ws://127.0.0.1:{settings.OCPP_PORT}/ocpp/<chargeBoxId>"))
    out.append(Service("web", ["web"], f"{settings.ADMIN_BASE_URL} (admin), {settings.CUSTOMER_BASE_URL} (customers)"))
    out.append(Service("sync", ["sync"]))
    if sim:
        out.append(
            Service(
                "sim",
                [
                    "sim",
                    opt("--url", f"ws://127.0.0.1:{settings.OCPP_PORT}/ocpp"),
                    opt("--chargers", creds.charger_count),
                    opt("--id-prefix", creds.charger_prefix),
                    opt("--password", creds.charger_password),
                    opt("--tag", ",".join(c[3] for c in demo.CUSTOMERS)),
                    # A lively demo: the first cars arrive within a minute (the simulator's
                    # defaults, 5 min gaps and 1-minute meter values, suit load tests) and
                    # the kWh on the portal's live page move every 15 s.
                    opt("--idle-seconds", 40), opt("--session-seconds", 600), opt("--meter-interval", 15),
                    # The first demo charger speaks OCPP 2.0.1, the others 1.6: a mixed fleet.
                    opt("--ocpp", ",".join(["2.0.1"] + ["1.6"] * max(creds.charger_count - 1, 0))),
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
            else:
                creds = demo.DemoCredentials.load(creds_path)
            if await demo.ensure_site_limit(conn):
                print(f"demo site {demo.DEMO_SITE!r}: grid limit {demo.DEMO_SITE_LIMIT_AMPS:g} A per phase "
                      "(load management shares it between the cars)", file=sys.stderr)
            return creds
        finally:
            await conn.close()

    return asyncio.run(work())


def _in_dotenv(name: str) -> bool:
    if not os.path.exists(".env"):
        return False
    from dotenv import dotenv_values

    return name in dotenv_values(".env")


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
    # The demo bills at once, whatever the services' default (false, the original's).
    if "SYNC_ON_STARTUP" not in env and not _in_dotenv("SYNC_ON_STARTUP"):
        env["SYNC_ON_STARTUP"] = "true"
    if sys.stderr.isatty():
        # Their stderr is a pipe to us (so a failure's cause can be repeated last): keep
        # the terminal's readable format rather than JSON lines.
        env.setdefault("LOG_FORMAT", "console")

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

    children: list[Child] = []
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    failed: Child | None = None
    try:
        for svc in procs:
            children.append(_start(svc, env))
            time.sleep(0.3)  # let servers bind before their clients start
        while not stop["requested"] and failed is None:
            failed = next((c for c in children if c.proc.poll() is not None), None)
            time.sleep(0.2)
    finally:
        _stop_children([c for c in children if c is not failed])
    if failed is not None:
        # Last, after the others' shutdown lines: the cause, and what to do.
        print(_failure_report(failed, data_dir), file=sys.stderr)
        return 1
    print("polaris up: stopped", file=sys.stderr)
    return 0


def _start(svc: Service, env: dict[str, str]) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", svc.module, *svc.argv], env=env, start_new_session=True,
        stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
    )
    child = Child(svc, proc, time.monotonic())
    child.reader = threading.Thread(target=_relay, args=(child,), name=f"stderr-{svc.name}", daemon=True)
    child.reader.start()
    return child


def _relay(child: Child) -> None:
    """Pass the child's stderr through to ours, keeping its last lines."""
    assert child.proc.stderr is not None
    for line in child.proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        if line.strip():
            child.tail.append(line.rstrip())


_ERROR_LINE = re.compile(r"error|exception|traceback|fatal|critical|refused|denied|failed", re.IGNORECASE)
_HINTS = (
    (re.compile(r"address already in use|errno 98", re.IGNORECASE),
     "another process holds one of the ports: stop it (another `make up`?) or set WEB_PORT, "
     "WEB_METRICS_PORT, OCPP_PORT, OCPP_API_PORT or POLARIS_LOCAL_LAGO_PORT, then run `make up` again"),
    (re.compile(r"database|postgres|connection refused", re.IGNORECASE),
     "check the database (`polaris doctor`), then run `make up` again"),
)


def last_error_line(lines: list[str]) -> str | None:
    """The line that says what went wrong: the last one that reads like an error, else the last one."""
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else None


def _failure_report(child: Child, data_dir: Path) -> str:
    if child.reader is not None:
        child.reader.join(timeout=2)  # the rest of what it wrote
    code = child.proc.returncode
    when = "at start-up" if time.monotonic() - child.started < STARTUP_S else "while running"
    cause = last_error_line(list(child.tail))
    hint = next((h for pattern, h in _HINTS if cause and pattern.search(cause)), None)
    lines = [f"polaris up: {child.svc.name} exited {when} (exit code {code}); everything else was stopped."]
    if cause:
        lines.append(f"polaris up: {child.svc.name} said: {cause}")
    lines.append(
        "polaris up: next: "
        + (hint or f"fix that, then run `make up` again (it reuses {data_dir}/; delete it to start afresh)")
    )
    return "\n".join(lines)


def _stop_children(children: list[Child]) -> None:
    # Clients first (the simulator), servers last, so nothing reconnects into a closing server.
    for child in reversed(children):
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"polaris up: {child.svc.name} did not stop in 10 s; killing it", file=sys.stderr)
                child.proc.kill()
                child.proc.wait()
    for child in children:
        if child.reader is not None:
            child.reader.join(timeout=2)


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
        lines.append(f"  load management: site {demo.DEMO_SITE!r} limited to {demo.DEMO_SITE_LIMIT_AMPS:g} A per phase "
                     f"(`polaris admin site list`; console: Sites)")
    lines.append(
        f"  demo customers: {', '.join(c[0] for c in demo.CUSTOMERS)} "
        "(sign in by magic link: `polaris admin outbox` shows the links)"
    )
    if any(svc.name == "web" for svc in procs):
        lines.append(f"  operator console: .venv/bin/polaris tui --url http://127.0.0.1:{settings.WEB_PORT}")
    if not procs:
        lines.append("  (no services yet: only the database is up)")
    print("\n".join(lines) + "\n", flush=True)
