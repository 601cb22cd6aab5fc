"""`polaris sync`: the Lago billing sync worker, one pass, backfill and reconciliation."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from polaris.cli.errors import CommandError
from polaris.config import Settings, log_start_notes
from polaris.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="run the Lago billing sync worker (or one pass, a backfill, a reconciliation)",
        description="Meter every finished and running session into Lago exactly once, on an "
        "adaptive cadence (Active every 15 min, Idle hourly, Dormant weekly; SYNC_CRON_SCHEDULE "
        "overrides). One worker is active per deployment; others wait on standby. "
        "Needs DATABASE_URL and LAGO_API_KEY.",
    )
    p.add_argument("--once", action="store_true", help="run one pass and exit (for cron and tests)")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="sync_action", metavar="ACTION")

    b = actions.add_parser(
        "backfill",
        help="bill historical sessions (a new deployment, a subscription mapped late), exactly once",
        description="Bring every session that started at or after --since into the sync and send "
        "what it owes. Sessions already billed are not sent again.",
    )
    b.add_argument("--since", required=True, type=_date, metavar="DATE",
                   help="UTC date or time, e.g. 2026-01-01 or 2026-01-01T08:00")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    b.set_defaults(func=backfill)

    st = actions.add_parser(
        "status",
        help="what is billed and what is not: cadence, last runs, backlog, held sessions",
        description="Needs only the database (it does not call Lago).",
    )
    st.add_argument("--held", type=int, default=20, metavar="N", help="list up to N held sessions (default 20)")
    st.add_argument("--json", action="store_true", help="print one JSON document")
    st.set_defaults(func=status)

    r = actions.add_parser(
        "reconcile",
        help="compare what the ledger sent with what Lago holds, per subscription",
        description="List, per subscription, the kWh the ledger says Lago accepted and the kWh "
        "Lago holds for events in [--from, --to), and the transaction ids that differ. "
        "Exit code 1 when there is a difference.",
    )
    r.add_argument("--from", dest="start", required=True, type=_date, metavar="DATE")
    r.add_argument("--to", dest="end", required=True, type=_date, metavar="DATE")
    r.add_argument("--subscription", action="append", help="only this subscription (repeatable)")
    r.add_argument("--json", action="store_true", help="print one JSON document")
    r.set_defaults(func=reconcile)


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------ plumbing


def _with_engine(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    """Validate settings, open the pool and the Lago client, run `work(engine)`."""
    settings.require("database", "sync")
    log_start_notes(settings, log)
    if settings.SYNC_CRON_SCHEDULE:
        from polaris.sync.cadence import trigger_for

        try:
            trigger_for("active", settings.SYNC_CRON_SCHEDULE)
        except ValueError as exc:
            raise CommandError(f"SYNC_CRON_SCHEDULE {settings.SYNC_CRON_SCHEDULE!r} is not a valid cron expression: {exc}") from None
    from polaris.db.pool import create_pool, describe_connect_error
    from polaris.sync.lago import LagoClient, LagoError
    from polaris.sync.worker import SyncEngine

    async def main() -> T:
        assert settings.database_url and settings.LAGO_API_KEY
        try:
            pool = await create_pool(settings.database_url, min_size=1, max_size=8, timeout=10)
        except Exception as exc:
            raise CommandError(describe_connect_error(exc)) from None
        client = LagoClient(settings.LAGO_API_URL, settings.LAGO_API_KEY.get_secret_value())
        try:
            return await work(SyncEngine(pool, client, settings))
        except LagoError as exc:
            raise CommandError(str(exc)) from None
        finally:
            await client.aclose()
            await pool.close()

    return asyncio.run(main())


async def _holding_lock(engine, work: Callable[[], Awaitable[T]], *, wait: bool) -> T:
    """Run `work` while holding the sync lock, so a pass never overlaps the worker's."""
    from polaris.db.pool import connect
    from polaris.sync.scheduler import try_sync_lock

    conn = await connect(engine.settings.database_url, timeout=10)
    try:
        while not await try_sync_lock(conn):
            if not wait:
                raise CommandError(
                    "another sync worker is active (it holds the sync lock): nothing done; "
                    "ask it to run with the admin console's 'sync now' instead"
                )
            print("waiting for the active sync worker to finish its pass...", file=sys.stderr)
            await asyncio.sleep(5)
        return await work()
    finally:
        await conn.close()


def _print_result(result, *, as_json: bool = False) -> None:
    held = ", ".join(f"{code}: {n}" for code, n in sorted(result.holds_by_code.items())) or "none"
    print(
        f"sync run {result.run_id} {result.status}: {result.transactions_seen} transaction(s) "
        f"checked, {result.events_sent} event(s) sent ({result.wh_sent / 1000:.3f} kWh), "
        f"{result.duplicates} already in Lago, {result.invalid} refused; held back: {held}"
    )
    if result.error:
        print(f"  error: {result.error}")


# ------------------------------------------------------------------ commands


def run(args: argparse.Namespace) -> int:
    if args.once:
        return once(args)
    return worker(args)


def once(args: argparse.Namespace) -> int:
    async def work(engine):
        async def checked_run():
            # Under the lock: the startup check closes runs left by a dead worker.
            await engine.startup_check()
            return await engine.run(trigger="once")

        return await _holding_lock(engine, checked_run, wait=False)

    result = _with_engine(args.settings, work)
    _print_result(result)
    return 0 if result.status == "succeeded" else 1


def worker(args: argparse.Namespace) -> int:
    from polaris.sync.scheduler import SyncService

    settings: Settings = args.settings

    async def work(engine):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "sync worker starting",
            lago=settings.LAGO_API_URL,
            metric=settings.LAGO_METRIC_CODE,
            cron_override=settings.SYNC_CRON_SCHEDULE,
        )
        await SyncService(settings, engine).run_forever(stop)
        log.info("sync worker stopped")

    _with_engine(settings, work)
    return 0


def backfill(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    async def work(engine):
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), disable=args.no_progress, transient=False,
        )
        tasks: dict[str, int] = {}

        def advance(phase: str, done: int, total: int) -> None:
            label = "checking sessions" if phase == "plan" else "sending to Lago"
            if phase not in tasks:
                tasks[phase] = progress.add_task(label, total=total or None)
            progress.update(tasks[phase], completed=done, total=max(total, done) or None)

        async def checked_run():
            await engine.startup_check()
            return await engine.run(trigger="backfill", backfill_since=args.since, progress=advance)

        with progress:
            return await _holding_lock(engine, checked_run, wait=True)

    result = _with_engine(args.settings, work)
    print(f"backfill since {args.since.isoformat()}: {result.discovered} older session(s) brought in")
    _print_result(result)
    return 0 if result.status == "succeeded" else 1


def reconcile(args: argparse.Namespace) -> int:
    from polaris.sync.reconcile import reconcile as compare

    if args.end <= args.start:
        raise CommandError("--to must be after --from")

    async def work(engine):
        return await compare(
            engine.pool,
            engine.client,
            code=engine.metric_code,
            start=args.start,
            end=args.end,
            subscriptions=args.subscription,
        )

    reports = _with_engine(args.settings, work)
    differences = [r for r in reports if not r.ok]
    if args.json:
        json.dump(
            {
                "from": args.start.isoformat(),
                "to": args.end.isoformat(),
                "ok": not differences,
                "subscriptions": [r.as_dict() for r in reports],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return 1 if differences else 0
    print(f"{'SUBSCRIPTION':<32} {'LEDGER KWH':>12} {'LAGO KWH':>12} {'DIFF':>10}  STATUS")
    for r in reports:
        d = r.as_dict()
        print(
            f"{r.subscription:<32} {d['ledger_kwh']:>12.3f} {d['lago_kwh']:>12.3f} "
            f"{d['difference_kwh']:>10.3f}  {'ok' if r.ok else 'DIFFERENT'}"
        )
        for label, ids in (
            ("sent but missing in Lago", r.missing_in_lago),
            ("in Lago, not sent by the ledger", r.unknown_to_ledger),
            ("different kWh", r.value_mismatch),
        ):
            if ids:
                print(f"    {label}: {', '.join(ids[:20])}" + (f" (+{len(ids) - 20} more)" if len(ids) > 20 else ""))
        if r.usage_problem:
            print(f"    Lago's usage: {r.usage_problem}")
        if r.unbilled_wh:
            print(f"    stored by Lago but not billed: {r.unbilled_wh / 1000:,.3f} kWh")
        for p in r.periods:
            if p["ledger_kwh"] != p["billed_kwh"]:
                kind = "invoiced" if p["invoiced"] else "open"
                print(f"    {kind} period from {p['from']}: ledger {p['ledger_kwh']:.3f} kWh, "
                      f"Lago bills {p['billed_kwh']:.3f} kWh")
    print(
        f"{len(reports)} subscription(s), {len(differences)} with differences "
        f"({args.start.isoformat()} to {args.end.isoformat()})"
    )
    return 1 if differences else 0


def status(args: argparse.Namespace) -> int:
    from polaris.cli.database import run_with_connection
    from polaris.db.repos import billing

    async def work(conn):
        return (
            await billing.get_cadence_state(conn),
            await billing.billing_overview(conn),
            await billing.list_sync_runs(conn, limit=5),
            await billing.unbillable_summary(conn),
            await billing.list_unbillable(conn, limit=max(args.held, 1)),
            await billing.list_unknown_subscriptions(conn),
        )

    cadence, overview, runs, summary, held, unknown = run_with_connection(args.settings, work)
    held = held[: args.held]
    if args.json:
        def row(r):
            return {k: (v.isoformat() if isinstance(v, datetime) else float(v) if k == "kwh_sent" else v)
                    for k, v in dict(r).items()}

        json.dump(
            {
                "cadence": row(cadence),
                "overview": row(overview),
                "runs": [row(r) for r in runs],
                "held_by_reason": [row(r) for r in summary],
                "held": [row(r) for r in held],
                "unknown_subscriptions": [row(r) for r in unknown],
            },
            sys.stdout,
            indent=2,
            default=str,
        )
        sys.stdout.write("\n")
        return 0
    pin = f" (pinned by {cadence['pinned_by']})" if cadence["pinned_tier"] else ""
    print(f"cadence: {cadence['effective_tier']}{pin}; last activity {_when(cadence['last_activity_at'])}")
    print(
        f"billed: {overview['billed_wh'] / 1000:,.3f} kWh; waiting to send: {overview['pending_events']} "
        f"event(s); refused by Lago: {overview['invalid_events']}; last success {_when(overview['last_success_at'])}"
    )
    if overview["late_events"]:
        print(
            f"late usage: {overview['late_events']} event(s), {overview['late_wh'] / 1000:,.3f} kWh arrived after "
            "their session's billing period was invoiced; sent into the open period (real times kept in "
            "the event's occurred_at/start/stop)"
        )
    print("runs:")
    for r in runs:
        print(
            f"  #{r['id']} {_when(r['started_at'])} {r['status']:<9} {r['tier'] or '-':<8} {r['trigger']:<17} "
            f"{r['events_sent']} sent, {float(r['kwh_sent']):.3f} kWh, {r['events_held']} held"
            + (f" - {r['error']}" if r["error"] else "")
        )
    if not runs:
        print("  (none yet)")
    print("held back from billing:")
    for r in summary:
        print(f"  {r['code']:<22} {r['transactions']} session(s), {r['energy_wh'] / 1000:,.3f} kWh")
    if not summary:
        print("  nothing")
    for r in held:
        print(f"    tx {r['transaction_id']} card {r['id_tag']} on {r['charge_box_id']}: {r['unbillable_reason']}")
    codes = {r["code"] for r in summary}
    if "anomaly" in codes:
        print("  anomaly: decide the energy to bill in the console's Sync screen (polaris tui, key e)")
    if "invalid_event" in codes:
        print("  invalid_event: fix the cause in Lago, then retry in the console's Sync screen (polaris tui, key t)")
    for r in unknown:
        print(f"Lago has no subscription {r['lago_subscription_id']} (customer {r['email']})")
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"
