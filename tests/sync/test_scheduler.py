"""The long-running worker: one active of two, NOTIFY wake-ups, admin "sync now"."""

from __future__ import annotations

import asyncio
import contextlib
import json

from sync_helpers import add_charger, add_customer, add_session, make_client, short

from polaris.db import notify
from polaris.db.repos import billing
from polaris.sync.scheduler import SyncService
from polaris.sync.worker import SyncEngine


async def _until(predicate) -> None:
    """Poll what the worker did (it reports through the database and Lago, not events)."""
    async with asyncio.timeout(10):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(service: SyncService):
    stop = asyncio.Event()
    task = asyncio.create_task(service.run_forever(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _service(pool, fake_lago, settings, **kwargs) -> tuple[SyncService, object]:
    client = make_client(fake_lago)
    engine = SyncEngine(pool, client, settings)
    opts = {"standby_retry_s": 0.2, "lock_check_s": 0.2, "wake_debounce_s": 0.1}
    opts.update(kwargs)
    return SyncService(settings, engine, **opts), client


async def test_two_workers_one_active_then_failover(pool, fake_lago, sync_settings):
    a, ca = _service(pool, fake_lago, sync_settings)
    b, cb = _service(pool, fake_lago, sync_settings)
    try:
        async with running(a) as stop_a:
            await asyncio.wait_for(a.active.wait(), 10)
            async with running(b):
                await asyncio.sleep(1.0)
                assert a.active.is_set() and not b.active.is_set()
                stop_a.set()  # the active worker stops (SIGTERM)
                await asyncio.wait_for(b.active.wait(), 10)
                assert b.active.is_set()
    finally:
        await ca.aclose()
        await cb.aclose()


async def test_sync_now_and_transaction_event_wake_idle_worker(pool, conn, fake_lago, sync_settings):
    fake_lago.add_subscription("sub_w")
    charger = await add_charger(conn)
    await add_customer(conn, "w@example.com", subscription="sub_w", tag="WWW")
    settings = sync_settings.model_copy(update={"SYNC_ON_STARTUP": False})
    await conn.execute("UPDATE billing.cadence_state SET tier = 'idle'")
    service, client = _service(pool, fake_lago, settings)
    try:
        async with running(service):
            await asyncio.wait_for(service.active.wait(), 10)
            assert service.tier == "idle"
            nxt = service.next_run_time()
            assert nxt.minute == 0 and nxt.second == 0  # hourly

            # The OCPP server's NOTIFY for a stopped session wakes the idle worker.
            tx = await add_session(conn, charger, "WWW", energy_wh=4_200)
            await conn.execute(
                "SELECT pg_notify($1, $2)",
                notify.TRANSACTION_EVENTS,
                json.dumps({"event": "stopped", "transaction_id": tx}),
            )

            async def billed() -> bool:
                return f"steve_tx_{tx}_final" in short(fake_lago.events)

            await _until(billed)
            await _until(lambda: asyncio.sleep(0, service.tier == "active"))
            assert service.next_run_time().minute % 15 == 0

            # An admin's "sync now" runs at once, recorded with who asked.
            before = service.runs_completed
            await billing.request_sync_now(conn, "admin@example.com")

            async def ran() -> bool:
                return service.runs_completed > before

            await _until(ran)
            runs = await billing.list_sync_runs(conn, limit=1)
            assert runs[0]["trigger"] == "manual" and runs[0]["requested_by"] == "admin@example.com"

            # A pin reschedules without a run.
            await billing.set_cadence_pin(conn, "dormant", "admin@example.com")
            await _until(lambda: asyncio.sleep(0, service.tier == "dormant"))
            nxt = service.next_run_time()
            assert (nxt.weekday(), nxt.hour, nxt.minute) == (6, 3, 0)
    finally:
        await client.aclose()


async def test_cron_override_schedules_everything(pool, fake_lago, sync_settings):
    settings = sync_settings.model_copy(update={"SYNC_CRON_SCHEDULE": "7 */2 * * *", "SYNC_ON_STARTUP": False})
    service, client = _service(pool, fake_lago, settings)
    try:
        async with running(service):
            await asyncio.wait_for(service.active.wait(), 10)
            nxt = service.next_run_time()
            assert nxt.minute == 7 and nxt.hour % 2 == 0
    finally:
        await client.aclose()


async def test_missing_metric_stops_the_worker_with_a_clear_error(pool, fake_lago, sync_settings):
    import pytest

    from polaris.sync.lago import LagoSetupError

    fake_lago.metrics.clear()
    service, client = _service(pool, fake_lago, sync_settings)
    try:
        with pytest.raises(LagoSetupError, match="create it in Lago"):
            await asyncio.wait_for(service.run_forever(asyncio.Event()), 10)
    finally:
        await client.aclose()
