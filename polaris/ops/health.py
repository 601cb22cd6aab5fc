"""`polaris health`: on-call checks of a running deployment, found through the services' settings.

Each check returns a `CheckResult` (ok, warn, fail = critical, or skip when the database
it needs is down), run by polaris/ops/checks.py as doctor's are: concurrently, each within a
short time limit, so a hung service turns into one failed line instead of a hung command.
The database is opened once (a small pool) and shared; the checks that read it wait for
it, and are skipped with one clear line when it cannot be reached (`DatabaseDown`).

"Nothing run yet is not a failure": a fresh deployment without sync runs, mail or chargers
is healthy, and each line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from polaris.db.migrate import MigrationError, load_migrations, pending_migrations
from polaris.db.pool import create_pool, describe_connect_error
from polaris.db.repos import billing, health
from polaris.ops import checks
from polaris.ops.checks import CheckContext, CheckResult, Skip, checklist_lines, fix_shown
from polaris.ops.doctor import check_lago_metric, check_lago_reachable
from polaris.sync.cadence import CRON, next_run_at

DEFAULT_TIMEOUT = 5.0
# A run starts on its cron tick and takes a while; past the tick by more than this, it is overdue.
SYNC_GRACE = timedelta(minutes=10)
# Sessions held back from billing are normal one at a time; more than ALERT_UNBILLABLE_SESSIONS
# waiting for an operator is a backlog. Usage events are written and sent in the same run; one
# still pending after ALERT_UNSENT_USAGE_MINUTES means delivery to Lago keeps failing.

# Nagios plugin convention: the exit code of the worst status.
EXIT_CODES = {"ok": 0, "warning": 1, "critical": 2}
# doctor's statuses in the words of the health contract (JSON and the summary line).
WORDS = {"ok": "ok", "warn": "warning", "fail": "critical", "skip": "unknown"}
# One title per check, in the checklist's words (the JSON names are the keys).
TITLES = {
    "database": "Database", "web": "Web", "ocpp": "OCPP server", "sync": "Billing sync", "email": "Email",
    "lago": "Lago", "unbillable": "Unbillable backlog", "alerts": "Operator alerts",
}
MARKS = {"ok": "[ ok ]", "warn": "[WARN]", "fail": "[CRIT]", "skip": "[skip]"}


class DatabaseDown(Skip):
    """The database could not be opened; the message is one line for a person. A check that
    lets it through is skipped with one line saying so."""

    def skip_message(self) -> str:
        return f"not checked: the database is unreachable ({self})"


@dataclass
class HealthContext(CheckContext):
    timeout: float = DEFAULT_TIMEOUT
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # A process that has a pool already (the web's admin API) lends it; it is not closed here.
    shared_pool: asyncpg.Pool | None = field(default=None, repr=False)
    _pool: asyncio.Task[asyncpg.Pool] | None = field(default=None, repr=False)

    async def pool(self) -> asyncpg.Pool:
        """The shared pool (opened once, by whichever check asks first); DatabaseDown if it cannot be."""
        if self.shared_pool is not None:
            return self.shared_pool
        if self._pool is None:
            self._pool = asyncio.ensure_future(self._open_pool())
        try:
            return await asyncio.shield(self._pool)
        except DatabaseDown:
            raise
        except Exception as exc:  # any connect failure is one line for a person
            raise DatabaseDown(describe_connect_error(exc)) from exc

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the shared pool; DatabaseDown (the check is skipped) if there is none."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            yield conn

    async def _open_pool(self) -> asyncpg.Pool:
        url = self.settings.database_url
        if not url:
            raise DatabaseDown("DATABASE_URL is not set")
        return await asyncio.wait_for(
            create_pool(url, min_size=1, max_size=4, timeout=self.timeout, command_timeout=self.timeout),
            self.timeout,
        )

    async def close(self) -> None:
        if self._pool is not None:
            if not self._pool.done():
                self._pool.cancel()
            try:
                pool = await self._pool
            except (Exception, asyncio.CancelledError):
                pool = None
            if pool is not None:
                await pool.close()
            self._pool = None


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _at(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the checks ---------------------------------------------------------------------


async def check_database(ctx: HealthContext) -> CheckResult:
    """DATABASE_URL answers; the server's version; every migration this code knows is applied."""
    title = TITLES["database"]
    try:
        pool = await ctx.pool()
    except DatabaseDown as exc:
        if not ctx.settings.database_url:
            return CheckResult(
                "database",
                title,
                "fail",
                "DATABASE_URL is not set, so health cannot find the deployment's database",
                "run health where the services run (`docker compose exec web polaris health`), "
                "or set DATABASE_URL as in their .env",
            )
        return CheckResult(
            "database",
            title,
            "fail",
            f"unreachable: {exc}",
            "start Postgres (`docker compose up -d postgres`) and check DATABASE_URL; the services "
            "reconnect by themselves once it answers",
        )
    async with pool.acquire() as conn:
        version = await health.server_version(conn)
        migrations = load_migrations()
        try:
            pending = await pending_migrations(conn, migrations)
        except MigrationError as exc:
            return CheckResult(
                "database", title, "fail", f"PostgreSQL {version}; {exc}", "see docs/upgrades.md"
            )
    if pending:
        names = ", ".join(m.filename for m in pending[:3]) + (" ..." if len(pending) > 3 else "")
        return CheckResult(
            "database",
            title,
            "fail",
            f"PostgreSQL {version}; {len(pending)} migration(s) not applied: {names}",
            "run `polaris migrate` (with compose, `docker compose up -d` runs the migrate service); "
            "the web answers 503 until then",
        )
    return CheckResult("database", title, "ok", f"PostgreSQL {version}; all {len(migrations)} migrations applied")


async def check_web(ctx: HealthContext) -> CheckResult:
    """The web process's /readyz answers 200 ready (its database reachable, its schema current)."""
    title = TITLES["web"]
    url = ctx.settings.WEB_INTERNAL_URL.rstrip("/") + "/readyz"
    fix = ("start the web service (`docker compose up -d web`) and read `docker compose logs web`; "
           "WEB_INTERNAL_URL must reach it from where health runs")
    r = await checks.get(ctx, url, name="web", title=title, say="{url}: down ({error})", fix=fix)
    if isinstance(r, CheckResult):
        return r
    body = _json(r)
    if r.status_code == 200 and body.get("status") == "ready":
        return CheckResult("web", title, "ok", f"{url}: ready")
    error = body.get("error") or f"HTTP {r.status_code}"
    message = body.get("message") or r.reason_phrase
    fixes = {
        "database_unavailable": "the web process cannot reach Postgres: see the database line",
        "migrations_pending": "run `polaris migrate` (with compose, `docker compose up -d`)",
    }
    return CheckResult(
        "web",
        title,
        "fail",
        f"{url}: not ready ({error}: {message})",
        fixes.get(error, "read `docker compose logs web`; WEB_INTERNAL_URL must point at the web process"),
    )


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def check_ocpp(ctx: HealthContext) -> CheckResult:
    """The OCPP server's command API answers; chargers connected, compared with those registered."""
    s = ctx.settings
    title = TITLES["ocpp"]
    url = s.STEVE_BASE_URL.rstrip("/") + "/api/v1/status"
    key = s.STEVE_API_KEY.get_secret_value() if s.STEVE_API_KEY else ""
    fix = ("start the OCPP server (`docker compose up -d ocpp`) and read `docker compose logs ocpp`; "
           "STEVE_BASE_URL must reach its command API from where health runs")
    r = await checks.get(ctx, url, name="ocpp", title=title, say="{url}: down ({error}); chargers cannot connect",
                         fix=fix, auth=(s.STEVE_API_USERNAME, key))
    if isinstance(r, CheckResult):
        return r
    if r.status_code == 401:
        why = "STEVE_API_KEY is not set here" if not key else "it refused STEVE_API_USERNAME / STEVE_API_KEY"
        return CheckResult(
            "ocpp",
            title,
            "warn",
            f"{url} answers, but {why}: without them the web cannot send commands (remote start, "
            "reset) either",
            "give web and ocpp the same STEVE_API_USERNAME and STEVE_API_KEY (one .env for all services)",
        )
    status = _json(r)
    if r.status_code != 200 or "connected" not in status:
        return CheckResult(
            "ocpp", title, "fail", f"{url} answered HTTP {r.status_code}", "read `docker compose logs ocpp`"
        )
    here = f"instance {status.get('instance', '?')}: {status['connected']} connected"
    dropped = status.get("meterValueHookDropped") or 0
    if dropped:
        here += f", {dropped} meter-value hook post(s) dropped"
    try:
        pool = await ctx.pool()
    except DatabaseDown:
        return CheckResult("ocpp", title, "ok", f"up ({here}); registered chargers not compared: database unreachable")
    async with pool.acquire() as conn:
        counts = await health.charger_counts(conn)
    registered, connected = counts["registered"], counts["connected"]
    if registered == 0:
        return CheckResult("ocpp", title, "ok", f"up ({here}); no chargers registered yet")
    if connected == 0 and not status["connected"]:
        return CheckResult(
            "ocpp",
            title,
            "warn",
            f"up ({here}), but none of the {registered} registered charger(s) is connected",
            "check the chargers' network and their OCPP URL and key (docs/chargers.md); "
            "`polaris admin charger list` shows when each was last seen",
        )
    return CheckResult(
        "ocpp", title, "ok", f"up ({here}); {connected} of {registered} registered charger(s) connected"
    )


async def check_sync(ctx: HealthContext) -> CheckResult:
    """The last succeeded billing sync is within its cadence; runs are not failing in a row."""
    s = ctx.settings
    title = TITLES["sync"]
    async with ctx.connection() as conn:
        row = await health.sync_freshness(conn)
        failed = await health.consecutive_failed_runs(conn)
    if row["first_run_at"] is None:
        if not s.LAGO_API_KEY:
            return CheckResult("sync", title, "ok", "not configured (LAGO_API_KEY unset); no run yet")
        return CheckResult("sync", title, "ok", "no sync run yet (a fresh deployment has nothing to bill)")
    now = ctx.now()
    tier = row["effective_tier"]
    cadence = f"SYNC_CRON_SCHEDULE {s.SYNC_CRON_SCHEDULE}" if s.SYNC_CRON_SCHEDULE else f"{tier} cadence {CRON[tier]}"
    last = row["last_success_at"]
    due = next_run_at(tier, last or row["first_run_at"], s.SYNC_CRON_SCHEDULE) + SYNC_GRACE
    problems = []
    fixes = []
    if now > due:
        since = f"last succeeded {_at(last)} ({_ago(now, last)})" if last else "no run has succeeded yet"
        problems.append(f"overdue: {since}; the {cadence} expected one by {_at(due - SYNC_GRACE)}")
        fixes.append("check that the sync worker runs (`docker compose ps sync`, `docker compose logs sync`)")
    if failed >= s.ALERT_SYNC_FAILURES:
        problems.append(f"the last {failed} runs failed: {row['last_error'] or 'no error recorded'}")
        fixes.append("see the Lago line and `docker compose logs sync`; `polaris sync --once` runs one pass now")
    if problems:
        return CheckResult("sync", title, "warn", "; ".join(problems), "; ".join(fixes))
    detail = f"last succeeded {_at(last)} ({_ago(now, last)})" if last else "first run not finished yet"
    if failed:
        detail += f"; {failed} failed run(s) since"
    return CheckResult("sync", title, "ok", f"{detail}; {cadence}")


async def check_email(ctx: HealthContext) -> CheckResult:
    """Mail leaves the outbox: nothing undelivered for too long, and the email worker answers."""
    s = ctx.settings
    title = TITLES["email"]
    worker_problem: str | None = None
    worker_task = asyncio.ensure_future(_probe_email_worker(ctx)) if s.CF_EMAIL_WORKER_URL else None
    try:
        async with ctx.connection() as conn:
            backlog = await health.outbox_backlog(conn)
        if worker_task is not None:
            worker_problem = await worker_task
    finally:
        if worker_task is not None and not worker_task.done():
            worker_task.cancel()
    waiting = backlog["undelivered"]
    if worker_task is None:
        shown = f" ({waiting} waiting; `polaris admin outbox` shows them)" if waiting else ""
        return CheckResult("email", title, "ok", f"not configured; mail stays in the outbox{shown}")
    now = ctx.now()
    stuck_after = timedelta(minutes=s.ALERT_OUTBOX_STUCK_MINUTES)
    problems, fixes = [], []
    if s.email_sender_problem():
        problems.append(s.email_sender_problem() or "")
        fixes.append("set EMAIL_FROM and EMAIL_FROM_ADMIN to senders the worker allows, then restart web")
    if worker_problem:
        problems.append(worker_problem)
        fixes.append("check CF_EMAIL_WORKER_URL and the worker's logs in Cloudflare (`wrangler tail`); "
                     "mail waits in the outbox meanwhile, nothing is lost")
    oldest = backlog["oldest_at"]
    if oldest is not None and now - oldest > stuck_after:
        held = f", {backlog['held']} held after the worker refused them" if backlog["held"] else ""
        problems.append(
            f"{waiting} mail(s) undelivered{held}; the oldest waits since {_at(oldest)} ({_ago(now, oldest)}, "
            f"more than ALERT_OUTBOX_STUCK_MINUTES={s.ALERT_OUTBOX_STUCK_MINUTES})"
        )
        fixes.append("`polaris admin outbox --pending` shows each mail and its last error; after fixing the "
                     "cause, `polaris admin outbox --release-held` sends held mail again")
    if problems:
        return CheckResult("email", title, "warn", "; ".join(problems), "; ".join(fixes))
    if waiting:
        return CheckResult("email", title, "ok", f"worker answers; {waiting} mail(s) on their way")
    if not backlog["sent"]:
        return CheckResult("email", title, "ok", "worker answers; no mail sent yet")
    return CheckResult("email", title, "ok", f"worker answers; outbox empty ({backlog['sent']} sent)")


async def _probe_email_worker(ctx: HealthContext) -> str | None:
    """None when GET {CF_EMAIL_WORKER_URL}/health answers 200, else why not."""
    url = (ctx.settings.CF_EMAIL_WORKER_URL or "").rstrip("/") + "/health"
    say = "email worker {url} unreachable ({error})"
    r = await checks.get(ctx, url, name="email", title=TITLES["email"], say=say, fix="")
    if isinstance(r, CheckResult):
        return r.message
    if r.status_code != 200:
        return f"email worker {url} answered HTTP {r.status_code}"
    return None


async def check_lago(ctx: HealthContext) -> CheckResult:
    """Lago answers and accepts the key (doctor's probes); a Lago outage delays billing, no more."""
    title = TITLES["lago"]
    if not ctx.settings.LAGO_API_KEY:
        return CheckResult("lago", title, "ok", "not configured (LAGO_API_KEY unset)")
    for probe in (check_lago_reachable, check_lago_metric):
        r = await probe(ctx)
        if r.status != "ok":
            # Billing catches up once Lago is back: never more than a warning here.
            return CheckResult("lago", title, "warn", r.message, r.fix)
    return CheckResult("lago", title, "ok", r.message)


async def check_unbillable(ctx: HealthContext) -> CheckResult:
    """Sessions held back from billing and usage events Lago does not have yet."""
    title = TITLES["unbillable"]
    unsent_after = timedelta(minutes=ctx.settings.ALERT_UNSENT_USAGE_MINUTES)
    async with ctx.connection() as conn:
        held = await billing.unbillable_summary(conn)
        events = await health.undelivered_usage_events(conn, older_than=unsent_after)
    sessions = sum(r["transactions"] for r in held)
    by_code = ", ".join(f"{r['code']} {r['transactions']}" for r in held)
    parts = [f"{sessions} session(s) held back ({by_code})" if sessions else "no session held back"]
    if events["pending"]:
        parts.append(f"{events['pending']} usage event(s) waiting for delivery")
    if events["invalid"]:
        parts.append(f"{events['invalid']} refused by Lago")
    detail = "; ".join(parts)
    fixes = []
    if sessions > ctx.settings.ALERT_UNBILLABLE_SESSIONS:
        fixes.append("`polaris sync status` lists held sessions and why (give the card a customer, the "
                     "customer a subscription, or settle an anomaly in the console's Sync screen)")
    if events["invalid"]:
        fixes.append("the console's Sync screen shows Lago's reason for each refused event; fix it in Lago, "
                     "then retry there (t)")
    if events["pending_old"]:
        minutes = ctx.settings.ALERT_UNSENT_USAGE_MINUTES
        detail += f" ({events['pending_old']} for more than ALERT_UNSENT_USAGE_MINUTES={minutes})"
        fixes.append("delivery to Lago keeps failing: see the Lago and sync lines")
    if fixes:
        return CheckResult("unbillable", title, "warn", detail, "; ".join(fixes))
    return CheckResult("unbillable", title, "ok", detail)


async def check_alerts(ctx: HealthContext) -> CheckResult:
    """Operator alerts still open (chargers offline or faulted, sync failing, outbox stuck)."""
    title = TITLES["alerts"]
    async with ctx.connection() as conn:
        rows = await health.open_operator_alerts(conn)
    if not rows:
        return CheckResult("alerts", title, "ok", "none open")
    lines = [
        f"{r['kind']} {r['subject']} since {_at(r['opened_at'])}" + (f": {r['detail']}" if r["detail"] else "")
        for r in rows
    ]
    return CheckResult(
        "alerts",
        title,
        "warn",
        f"{len(rows)} open\n" + "\n".join(lines),
        "each alert clears by itself once its condition ends; the console's dashboard (`polaris tui`) shows the details",
    )


CHECKS: tuple[Callable[[HealthContext], Awaitable[CheckResult]], ...] = (
    check_database,
    check_web,
    check_ocpp,
    check_sync,
    check_email,
    check_lago,
    check_unbillable,
    check_alerts,
)


# --- running them -------------------------------------------------------------------


async def run_checks(ctx: HealthContext, *, exclude: frozenset[str] = frozenset()) -> list[CheckResult]:
    """Every check (but those named in `exclude`), concurrently, in the checklist's order."""
    chosen = [c for c in CHECKS if checks.check_name(c) not in exclude]
    # trust_env=False: the services' internal URLs are never reached through a proxy.
    return await checks.run_checks(chosen, ctx, titles=TITLES, trust_env=False)


def overall(results: list[CheckResult]) -> str:
    """ok, warning or critical: the worst line (a skipped line does not count)."""
    if any(r.status == "fail" for r in results):
        return "critical"
    if any(r.status == "warn" for r in results):
        return "warning"
    return "ok"


def exit_code(results: list[CheckResult]) -> int:
    return EXIT_CODES[overall(results)]


def as_json(results: list[CheckResult], checked_at: datetime) -> dict[str, Any]:
    checks = []
    for r in results:
        item = {"name": r.name, "status": WORDS[r.status], "detail": r.message}
        if fix_shown(r):
            item["fix"] = r.fix
        checks.append(item)
    return {"status": overall(results), "checks": checks, "checked_at": checked_at.isoformat()}


def summary_line(results: list[CheckResult]) -> str:
    """Nagios style: the state first, then what is wrong (a monitor shows this line)."""
    state = overall(results)
    bad = [r.name for r in results if r.status in ("fail", "warn")]
    counts = {w: sum(WORDS[r.status] == w for r in results) for w in ("critical", "warning", "ok", "unknown")}
    figures = ", ".join(f"{n} {w}" for w, n in counts.items() if n)
    return f"POLARIS {state.upper()}" + (f": {', '.join(bad)}" if bad else "") + f" ({figures})"


def render_text(results: list[CheckResult], checked_at: datetime) -> str:
    lines = [summary_line(results), f"checked {_at(checked_at)}", ""]
    lines += checklist_lines(results, MARKS)
    return "\n".join(lines) + "\n"
