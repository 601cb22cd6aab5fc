"""One sync pass: find new transactions by the cursor, write their events, deliver them,
record the run and move the cadence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from polaris.config import Settings
from polaris.db.repos import billing
from polaris.logs import get_logger
from polaris.sync import cadence, ledger, pricing
from polaris.sync.lago import LagoClient, LagoError

log = get_logger(__name__)

PLAN_CACHE_MAX_AGE_S = 6 * 3600


@dataclass
class RunResult:
    run_id: int
    status: str
    tier: str
    trigger: str
    discovered: int = 0
    transactions_seen: int = 0
    events_recorded: int = 0
    events_sent: int = 0
    wh_sent: int = 0
    duplicates: int = 0
    invalid: int = 0
    held: int = 0
    holds_by_code: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SyncEngine:
    """Runs sync passes against one database and one Lago; knows nothing about scheduling."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: LagoClient,
        settings: Settings,
        *,
        clock: cadence.Clock | None = None,
        deliver_concurrency: int = 6,
        chunk: int = 10_000,
    ):
        self.pool = pool
        self.client = client
        self.settings = settings
        self.clock = clock or cadence.SystemClock()
        self.deliver_concurrency = deliver_concurrency
        self.chunk = chunk
        self.metric_code = settings.LAGO_METRIC_CODE

    async def startup_check(self) -> dict:
        """The metric exists with a sum aggregation (raises LagoSetupError otherwise)."""
        metric = await self.client.check_metric(self.metric_code)
        async with self.pool.acquire() as conn:
            stale = await billing.fail_stale_runs(conn)
        if stale:
            log.warning("closed runs left by a stopped worker", runs=stale)
        return metric

    async def run(
        self,
        *,
        trigger: str = "schedule",
        requested_by: str | None = None,
        backfill_since: datetime | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> RunResult:
        """One pass. Lago outages end it as `partial`; pending events wait for the next pass."""
        now = self.clock.now()
        async with self.pool.acquire() as conn:
            state = await billing.get_cadence_state(conn)
            activity = await billing.activity_since(conn, state["last_run_at"])
            tier = state["effective_tier"]
            run_id = await billing.start_sync_run(
                conn,
                tier=tier if not self.settings.SYNC_CRON_SCHEDULE else "cron",
                trigger=trigger,
                requested_by=requested_by,
                worker=worker_name(),
            )
        result = RunResult(run_id=run_id, status="running", tier=tier, trigger=trigger)
        log.info("sync run started", run_id=run_id, tier=tier, trigger=trigger)
        try:
            await self._pass(result, now=now, backfill_since=backfill_since, progress=progress)
            result.status = "partial" if (result.error or result.invalid) else "succeeded"
        except LagoError as exc:
            result.status = "partial" if result.events_sent else "failed"
            result.error = str(exc)
        except Exception as exc:
            result.status = "failed"
            result.error = f"{exc.__class__.__name__}: {exc}"
            await self._finish(result)
            raise
        await self._finish(result)
        if backfill_since is None:
            # A session found or billed now counts too (a charger's offline queue arrives late).
            activity = activity or result.discovered > 0 or result.events_recorded > 0
            await self._move_cadence(activity=activity, now=now)
        log.info(
            "sync run finished",
            run_id=run_id,
            status=result.status,
            transactions=result.transactions_seen,
            events_sent=result.events_sent,
            kwh_sent=result.wh_sent / 1000,
            held=result.held,
            error=result.error,
        )
        return result

    async def _pass(
        self,
        result: RunResult,
        *,
        now: datetime,
        backfill_since: datetime | None,
        progress: Callable[[str, int, int], None] | None,
    ) -> None:
        async with self.pool.acquire() as conn:
            lookback = now - timedelta(minutes=self.settings.SYNC_LOOKBACK_MINUTES)
            floor = await billing.ensure_discovery_floor(conn, lookback)
            result.discovered = await billing.discover_transactions(conn, floor)
            # Every pass also looks SYNC_LOOKBACK_MINUTES back (the original's meaning).
            result.discovered += await billing.discover_recent(conn, lookback)
            if backfill_since is not None:
                result.discovered += await billing.discover_backfill(conn, backfill_since)
            open_count = await billing.count_open_transactions(conn) if progress else 0
        done = {"plan": 0, "send": 0}

        def step(phase: str, total: int) -> Callable[[int], None] | None:
            if progress is None:
                return None

            def advance(n: int) -> None:
                done[phase] += n
                progress(phase, done[phase], total)

            return advance

        # Delivery starts at once (events left pending by an earlier pass are the oldest
        # debt) and follows planning as it writes events, so Lago and Postgres work together.
        planning_done = asyncio.Event()

        async def plan_all() -> ledger.PlanStats:
            try:
                return await ledger.plan_and_record(
                    self.pool,
                    self.client,
                    metric_code=self.metric_code,
                    run_id=result.run_id,
                    chunk=self.chunk,
                    progress=step("plan", open_count),
                )
            finally:
                planning_done.set()

        async with self.pool.acquire() as conn:
            pending = await billing.count_pending_events(conn) if progress else 0
        plan_task = asyncio.create_task(plan_all())
        try:
            delivery = await ledger.deliver_pending(
                self.pool,
                self.client,
                run_id=result.run_id,
                concurrency=self.deliver_concurrency,
                progress=step("send", pending + open_count),
                planning_done=planning_done,
            )
        except BaseException:
            plan_task.cancel()
            with contextlib.suppress(BaseException):
                await plan_task
            raise
        result.events_sent = delivery.events_sent
        result.wh_sent = delivery.wh_sent
        result.duplicates = delivery.duplicates
        result.invalid = delivery.invalid
        result.error = delivery.error
        plan = await plan_task
        result.transactions_seen = plan.transactions_seen
        result.events_recorded = plan.events_recorded
        result.held = plan.held
        result.holds_by_code = plan.holds_by_code
        if delivery.error is None:
            await self._refresh_plans()

    async def _refresh_plans(self) -> None:
        """Cache each subscribed plan's price for our metric (for the portal); best effort."""
        try:
            async with self.pool.acquire() as conn:
                for code in await billing.plans_to_fetch(conn, max_age_s=PLAN_CACHE_MAX_AGE_S):
                    plan = await self.client.get_plan(code)
                    if plan is not None:
                        await billing.save_lago_plan(conn, plan, self.metric_code)
                await self._price_subscriptions(conn)
        except LagoError as exc:
            log.warning("could not refresh Lago plans", error=str(exc))

    async def _price_subscriptions(self, conn: asyncpg.Connection) -> None:
        """Render each subscription's price from its own plan (overrides included), else the
        plan by code; stored for the portal."""
        for row in await billing.subscriptions_to_price(conn):
            plan = row["subscription_plan"]
            if plan:
                charge, currency = pricing.find_charge(plan, self.metric_code), plan.get("amount_currency")
            elif row["charge_model"]:
                charge = {"charge_model": row["charge_model"], "properties": row["charge_properties"] or {}}
                currency = row["currency"]
            else:
                charge, currency = None, None
            price = pricing.render(charge, currency)
            await billing.save_subscription_price(
                conn, row["external_id"], per_kwh=price.per_kwh, text=price.text, model=price.model
            )

    async def _finish(self, result: RunResult) -> None:
        async with self.pool.acquire() as conn:
            await billing.finish_sync_run(
                conn,
                result.run_id,
                status=result.status,
                transactions_seen=result.transactions_seen,
                events_sent=result.events_sent,
                wh_sent=result.wh_sent,
                events_held=result.held,
                errors=result.invalid + (1 if result.error else 0),
                error=result.error,
            )

    async def _move_cadence(self, *, activity: bool, now: datetime) -> None:
        async with self.pool.acquire() as conn:
            row = await billing.get_cadence_state(conn)
            state = cadence.CadenceState(
                tier=row["tier"],
                idle_ticks=row["idle_ticks"],
                last_activity_at=row["last_activity_at"],
                last_run_at=row["last_run_at"],
                pinned_tier=row["pinned_tier"],
            )
            new = cadence.after_run(
                state,
                activity=activity,
                now=now,
                hysteresis_ticks=self.settings.SYNC_IDLE_HYSTERESIS_TICKS,
                dormant_after=timedelta(days=self.settings.SYNC_DORMANT_THRESHOLD_DAYS),
            )
            await billing.save_cadence_state(
                conn,
                tier=new.tier,
                idle_ticks=new.idle_ticks,
                last_activity_at=new.last_activity_at,
                last_run_at=new.last_run_at,
            )
        if new.tier != state.tier:
            log.info("sync cadence changed", old=state.tier, new=new.tier, pinned=state.pinned_tier)
