"""The long-running sync worker: one active per deployment, runs on the adaptive cadence.

The worker holds a Postgres advisory lock on a dedicated connection; a second worker
waits in standby and takes over when the first stops or its connection dies. On the
same connection it LISTENs to `sync_trigger` (an admin's "sync now" or a new pin) and
to `transaction_events` (the OCPP server's start/stop), which wakes an Idle or Dormant
worker so new sessions are not left waiting for the next hourly or weekly run.
APScheduler fires the runs: the tier's cron in UTC, or SYNC_CRON_SCHEDULE for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from polaris.config import Settings
from polaris.db import notify
from polaris.db.pool import connect
from polaris.db.repos import billing
from polaris.logs import get_logger
from polaris.sync import cadence
from polaris.sync.lago import LagoUnavailable
from polaris.sync.worker import SyncEngine

log = get_logger(__name__)

# Arbitrary constant shared by every sync worker: "pol_sync".
SYNC_LOCK_KEY = 0x706F6C5F73796E63
JOB_ID = "sync"


async def try_sync_lock(conn: asyncpg.Connection) -> bool:
    """Take the one-active-worker lock on this connection if it is free."""
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", SYNC_LOCK_KEY)


class SyncService:
    """Schedules sync passes while it holds the lock; standby otherwise."""

    def __init__(
        self,
        settings: Settings,
        engine: SyncEngine,
        *,
        standby_retry_s: float = 10.0,
        lock_check_s: float = 5.0,
        wake_debounce_s: float = 2.0,
    ):
        self.settings = settings
        self.engine = engine
        self.standby_retry_s = standby_retry_s
        self.lock_check_s = lock_check_s
        self.wake_debounce_s = wake_debounce_s
        self.active = asyncio.Event()
        self.runs_completed = 0
        self._lock_conn: asyncpg.Connection | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._rerun: tuple[str, str | None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tier: str | None = None
        self._pinned = False
        self._wake_pending = False

    # ------------------------------------------------------------------ lifecycle

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: wait for the lock, then schedule runs while holding it."""
        dsn = self.settings.database_url
        assert dsn, "settings.require('database') first"
        while not stop.is_set():
            try:
                conn = await connect(dsn, timeout=10)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("sync worker cannot reach the database", error=str(exc))
                await _wait(stop, self.standby_retry_s)
                continue
            try:
                if not await try_sync_lock(conn):
                    log.info("sync worker on standby: another worker holds the sync lock")
                    await _wait(stop, self.standby_retry_s)
                    continue
                self._lock_conn = conn
                log.info("sync worker active")
                await self._active(stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("sync worker lost the database; back to standby", error=str(exc))
            except LagoUnavailable as exc:
                # Lago down at start: release the lock and try again, rather than crash-loop.
                log.warning("Lago unavailable at start; retrying", error=str(exc))
                await _wait(stop, self.standby_retry_s)
            finally:
                self.active.clear()
                self._lock_conn = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)  # closing releases the lock

    async def _active(self, stop: asyncio.Event) -> None:
        assert self._lock_conn is not None
        await self.engine.startup_check()
        await self._load_tier()
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(
            self._scheduled,
            trigger=self._trigger(),
            id=JOB_ID,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=600,
        )
        self._scheduler = scheduler
        scheduler.start()
        await self._lock_conn.add_listener(notify.SYNC_TRIGGER, self._on_notify)
        await self._lock_conn.add_listener(notify.TRANSACTION_EVENTS, self._on_notify)
        self.active.set()
        if self.settings.SYNC_ON_STARTUP:
            self.trigger_run("startup")
        lost = False
        try:
            while not stop.is_set():
                await _wait(stop, self.lock_check_s)
                # A dead lock connection means another worker may already hold the lock.
                await asyncio.wait_for(self._lock_conn.fetchval("SELECT 1"), 10)
        except BaseException:
            lost = True
            raise
        finally:
            scheduler.shutdown(wait=False)
            self._scheduler = None
            if self._run_task is not None:
                self._rerun = None
                if lost:
                    # Another worker may be active now: stop here (the ledger makes a
                    # half-done pass safe to abandon), rather than run beside it.
                    self._run_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._run_task  # on SIGTERM: finish the run in flight
            for task in list(self._tasks):
                task.cancel()

    # ------------------------------------------------------------------ runs

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _scheduled(self) -> None:
        self.trigger_run("schedule")

    def trigger_run(self, trigger: str, requested_by: str | None = None) -> None:
        """Start a run now, or once more after the one in flight (requests coalesce)."""
        if self._run_task is not None and not self._run_task.done():
            self._rerun = (trigger, requested_by)
            return
        self._run_task = self._spawn(self._run(trigger, requested_by))

    async def _run(self, trigger: str, requested_by: str | None) -> None:
        while True:
            try:
                await self.engine.run(trigger=trigger, requested_by=requested_by)
            except Exception:
                log.exception("sync run crashed", trigger=trigger)
            self.runs_completed += 1
            try:
                await self._reschedule()
            except Exception:
                log.exception("could not reschedule the sync")
            if self._rerun is None or self._scheduler is None:
                return
            trigger, requested_by = self._rerun
            self._rerun = None

    # ------------------------------------------------------------------ cadence

    def _trigger(self) -> Any:
        return cadence.trigger_for(self._tier or cadence.ACTIVE, self.settings.SYNC_CRON_SCHEDULE)

    async def _load_tier(self) -> bool:
        async with self.engine.pool.acquire() as conn:
            state = await billing.get_cadence_state(conn)
        changed = state["effective_tier"] != self._tier
        self._tier = state["effective_tier"]
        self._pinned = state["pinned_tier"] is not None
        return changed

    async def _reschedule(self) -> None:
        if await self._load_tier() and self._scheduler is not None:
            self._scheduler.reschedule_job(JOB_ID, trigger=self._trigger())
            job = self._scheduler.get_job(JOB_ID)
            log.info(
                "sync rescheduled",
                tier=self._tier,
                pinned=self._pinned,
                next_run_at=job.next_run_time.isoformat() if job and job.next_run_time else None,
            )

    @property
    def tier(self) -> str | None:
        return self._tier

    def next_run_time(self) -> Any:
        job = self._scheduler.get_job(JOB_ID) if self._scheduler else None
        return job.next_run_time if job else None

    # ------------------------------------------------------------------ notifications

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            data = json.loads(payload) if payload else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if channel == notify.SYNC_TRIGGER:
            if data.get("run", True):
                log.info("sync requested", requested_by=data.get("requested_by") or None)
                self.trigger_run("manual", data.get("requested_by") or None)
            else:
                self._spawn(self._reschedule())
        elif channel == notify.TRANSACTION_EVENTS:
            self._maybe_wake()

    def _maybe_wake(self) -> None:
        """A session started or stopped: an Idle or Dormant worker runs soon (once)."""
        if self.settings.SYNC_CRON_SCHEDULE or self._pinned:
            return  # the operator chose the schedule
        if self._tier == cadence.ACTIVE or self._wake_pending:
            return
        self._wake_pending = True

        async def wake() -> None:
            try:
                await asyncio.sleep(self.wake_debounce_s)
                log.info("sync woken by a transaction event", tier=self._tier)
                self.trigger_run("transaction_event")
            finally:
                self._wake_pending = False

        self._spawn(wake())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
