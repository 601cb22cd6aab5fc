"""Property: whatever the sessions, Lago's faults and the worker's crashes, once the faults stop
Lago holds exactly the database's kWh per subscription, each session's events once.

And as Lago really bills: with billing periods invoiced in between (usage arriving after its
period closed), plan upgrades (a terminated row beside the new active one) and an event of
another deployment under the id the original stack would give the next session, every kWh
is billed exactly once: on an invoice made before it arrived, or in an open period.

Each example runs in its own event loop (hypothesis drives a sync test), against one
database for the whole test and a fresh fake Lago per example; subscriptions are unique
per example so examples do not see each other's sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sync_helpers import (
    T0,
    add_charger,
    add_customer,
    add_register,
    make_client,
    short,
    start_tx,
    stop_tx,
)

from polaris.config import Settings
from polaris.db.pool import create_pool
from polaris.sim.lago import FakeLago
from polaris.sync.worker import SyncEngine

_examples = itertools.count(1)


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@pytest.fixture(scope="module")
def property_db(pg_server_dsn: str, template_db: str) -> Iterator[str]:
    name = f"polaris_t_{os.getpid()}_exactly_once"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_server_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield _with_database(pg_server_dsn, name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


session_st = st.tuples(
    st.integers(0, 3),  # customer index (3 = a card nobody owns: held, never billed)
    st.integers(0, 60_000),  # energy in Wh
    st.lists(st.floats(0.05, 1.0), max_size=4),  # register readings as fractions of the energy
)
step_st = st.one_of(
    st.tuples(st.just("start"), session_st),
    st.tuples(st.just("stop"), st.integers(0, 20)),
    st.tuples(st.just("close"), st.integers(0, 2)),  # Lago invoices a subscription's period
    st.tuples(st.just("upgrade"), st.integers(0, 2)),  # plan change: terminated + new active row
    st.just(("reuse",)),  # another deployment's event under the next session's old-style id
    st.tuples(
        st.just("run"),
        st.sampled_from([0.0, 0.3, 0.7]),  # fault rate of every Lago request
        st.one_of(st.none(), st.tuples(st.integers(1, 12), st.sampled_from(["before", "after"]))),
    ),
)


@settings(
    max_examples=int(os.environ.get("POLARIS_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step_st, min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_lago_equals_database_after_faults_and_crashes(property_db, steps, seed):
    asyncio.run(_scenario(property_db, steps, seed, next(_examples)))


async def _scenario(dsn: str, steps: list, seed: int, example: int) -> None:
    fake = FakeLago()
    fake.timeout_delay = 0.7  # just past the client's 0.5 s timeout
    await fake.start()
    pool = await create_pool(dsn, min_size=1, max_size=6)
    settings_ = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DATABASE_URL=dsn,
        LAGO_API_URL=fake.url,
        LAGO_API_KEY=SecretStr(fake.api_key),
        SYNC_LOOKBACK_MINUTES=10_000_000,
    )
    try:
        async with pool.acquire() as conn:
            charger = await add_charger(conn, f"PROP-{example}")
            subs = [f"sub_{example}_{i}" for i in range(3)]
            tags = [f"P{example}T{i}" for i in range(4)]
            for i, sub in enumerate(subs):
                fake.add_subscription(sub)
                await add_customer(conn, f"c{i}.{example}@example.com", subscription=sub, tag=tags[i])
        running: list[tuple[int, int, int]] = []  # (tx, meter_start, energy)
        expected = dict.fromkeys(subs, 0)
        all_tx: list[int] = []
        clock = itertools.count(1)
        for step in steps:
            if step[0] == "start":
                cust, energy, fractions = step[1]
                start = T0 + timedelta(hours=next(clock))
                meter_start = 1_000_000 * example + next(clock)
                async with pool.acquire() as conn:
                    tx = await start_tx(conn, charger, tags[cust], start=start, meter_start=meter_start)
                    for k, f in enumerate(sorted(fractions)):
                        await add_register(
                            conn, charger, tx, at=start + timedelta(minutes=5 * (k + 1)),
                            value=meter_start + int(energy * f),
                        )
                running.append((tx, meter_start, energy))
                all_tx.append(tx)
                if cust < 3:
                    expected[subs[cust]] += energy
            elif step[0] == "stop" and running:
                tx, meter_start, energy = running.pop(step[1] % len(running))
                async with pool.acquire() as conn:
                    await _stop(conn, tx, meter_start, energy)
            elif step[0] in ("close", "upgrade"):
                sub = subs[step[1]]
                at = T0 + timedelta(hours=next(clock))
                if step[0] == "close":
                    fake.close_period(sub, at)
                else:
                    fake.upgrade(sub, f"plan_{next(clock)}", period_started_at=at)
                async with pool.acquire() as conn:  # hours pass: the worker asks Lago again
                    await conn.execute(
                        "UPDATE billing.lago_subscriptions SET checked_at = checked_at - interval '7 hours' "
                        "WHERE external_id = $1", sub)
            elif step[0] == "reuse":
                async with pool.acquire() as conn:
                    upcoming = await conn.fetchval("SELECT COALESCE(max(id), 0) + 1 FROM ocpp.transactions")
                tid = f"steve_tx_{upcoming}_final"
                fake.event_rows[(subs[0], tid)] = {
                    "lago_id": "foreign", "transaction_id": tid, "external_subscription_id": subs[0],
                    "code": "ev_charging_kwh", "timestamp": T0.timestamp(),
                    "properties": {"value": 0.001, "charger": "OTHER-DEPLOYMENT"},
                }
            elif step[0] == "run":
                _, rate, crash = step
                fake.random_faults(rate, seed=seed)
                fake.crash_at = None if crash is None else (len(fake.requests) + crash[0], crash[1])
                fake.crashed.clear()
                await _run_maybe_crashing(pool, fake, settings_)
        # Faults stop; every session ends; the worker (restarted) catches up.
        fake.clear_faults()
        fake.crash_at = None
        async with pool.acquire() as conn:
            for tx, meter_start, energy in running:
                await _stop(conn, tx, meter_start, energy)
        for _ in range(3):
            client = make_client(fake)
            try:
                engine = SyncEngine(pool, client, settings_)
                await engine.startup_check()
                result = await engine.run()
            finally:
                await client.aclose()
            if result.status == "succeeded":
                break
        assert result.status == "succeeded", result.error

        ours = [e for e in fake.event_rows.values() if e["properties"].get("charger") == f"PROP-{example}"]
        got = dict.fromkeys(subs, 0)
        stored = dict.fromkeys(subs, 0)
        for e in ours:
            got[e["external_subscription_id"]] += fake.billed_wh(e)
            stored[e["external_subscription_id"]] += int(round(e["properties"]["value"] * 1000))
        assert stored == expected  # Lago holds every kWh once...
        assert got == expected  # ...and bills every one: invoiced before it arrived, or in an open period
        assert not any(e["external_subscription_id"] not in subs for e in ours)
        async with pool.acquire() as conn:
            ledger = await conn.fetch(
                "SELECT transaction_id, status, wh FROM billing.usage_events "
                "WHERE ocpp_transaction_id = ANY($1::int[])",
                all_tx,
            )
            held = await conn.fetchval(
                "SELECT count(*) FROM billing.transaction_sync_state "
                "WHERE transaction_id = ANY($1::int[]) AND unbillable_code = 'no_customer'",
                all_tx,
            )
        mine = {e["transaction_id"] for e in ours}
        assert {r["transaction_id"] for r in ledger} == mine  # Lago holds exactly the ledger
        assert all(r["status"] == "sent" for r in ledger)
        billed_tx = [tx for tx in all_tx if f"steve_tx_{tx}_final" in short({e["transaction_id"]: e for e in ours})]
        assert held == len(all_tx) - len(billed_tx)
    finally:
        await pool.close()
        await fake.stop()


async def _stop(conn: asyncpg.Connection, tx: int, meter_start: int, energy: int) -> None:
    start = await conn.fetchval("SELECT start_timestamp FROM ocpp.transactions WHERE id = $1", tx)
    await stop_tx(conn, tx, stop=start + timedelta(minutes=45), meter_stop=meter_start + energy)


async def _run_maybe_crashing(pool: asyncpg.Pool, fake: FakeLago, settings_: Settings) -> None:
    """One worker process: runs once, killed where the fake Lago says (if it does)."""
    client = make_client(fake)
    engine = SyncEngine(pool, client, settings_)
    try:
        with contextlib.suppress(Exception):
            await engine.startup_check()
        task = asyncio.create_task(engine.run())
        crash = asyncio.create_task(fake.crashed.wait())
        await asyncio.wait({task, crash}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()  # the kill: wherever the worker is, it stops there
        crash.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    finally:
        await client.aclose()
