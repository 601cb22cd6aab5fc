"""A sync pass end to end: real Postgres, the real client, a fake Lago over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sync_helpers import (
    T0,
    add_charger,
    add_customer,
    add_register,
    add_session,
    set_subscription,
    short,
    start_tx,
    stop_tx,
)

from polaris.db.repos import billing
from polaris.sync.lago import LagoSetupError


async def test_finished_session_billed_once_with_properties(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_alice")
    cb = await add_charger(conn, "CB-1")
    await add_customer(conn, "alice@example.com", subscription="sub_alice", tag="AABBCC")
    tx = await add_session(conn, cb, "aabbcc", energy_wh=12_345, minutes=90)

    result = await engine.run()
    assert result.status == "succeeded", result.error
    assert result.events_sent == 1
    event = short(fake_lago.events)[f"steve_tx_{tx}_final"]
    assert event["external_subscription_id"] == "sub_alice"
    assert event["code"] == "ev_charging_kwh"
    assert event["properties"]["value"] == 12.345
    assert event["properties"]["kwh"] == 12.345
    assert event["properties"]["charger"] == "CB-1"
    assert event["properties"]["connector"] == 1
    assert event["properties"]["duration"] == 5400
    assert event["timestamp"] == (T0 + timedelta(minutes=90)).timestamp()

    again = await engine.run()
    assert again.events_sent == 0
    assert fake_lago.batches_received == 1
    state = await conn.fetchrow("SELECT * FROM billing.transaction_sync_state WHERE transaction_id = $1", tx)
    assert state["billed_wh"] == 12_345 and state["final_sent"] and state["done"]
    runs = await billing.list_sync_runs(conn)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[1]["events_sent"] == 1 and runs[1]["transactions_seen"] == 1
    assert float(runs[1]["kwh_sent"]) == 12.345


async def test_running_session_increments_then_true_up_to_the_wh(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_bob")
    cb = await add_charger(conn)
    await add_customer(conn, "bob@example.com", subscription="sub_bob", tag="B0B")
    tx = await start_tx(conn, cb, "B0B", meter_start=50_000)
    await add_register(conn, cb, tx, at=T0 + timedelta(minutes=10), value="50.8", unit="kWh")
    await engine.run()
    inc1 = f"steve_tx_{tx}_{int((T0 + timedelta(minutes=10)).timestamp())}"
    assert short(fake_lago.events)[inc1]["properties"]["value"] == 0.8

    await add_register(conn, cb, tx, at=T0 + timedelta(minutes=20), value=52_001.4)
    await engine.run()
    inc2 = f"steve_tx_{tx}_{int((T0 + timedelta(minutes=20)).timestamp())}"
    assert short(fake_lago.events)[inc2]["properties"]["value"] == 1.201

    await stop_tx(conn, tx, stop=T0 + timedelta(minutes=30), meter_stop=53_500)
    await engine.run()
    assert short(fake_lago.events)[f"steve_tx_{tx}_final"]["properties"]["value"] == 1.499
    assert fake_lago.wh_by_subscription() == {"sub_bob": 3_500}


async def test_test_sessions_are_never_billed(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_c")
    cb = await add_charger(conn)
    await add_customer(conn, "c@example.com", subscription="sub_c", tag="SMOKE")
    await add_session(conn, cb, "SMOKE", energy_wh=5_000, is_test=True)
    result = await engine.run()
    assert result.events_sent == 0 and fake_lago.events == {}
    assert await billing.list_unbillable(conn) == []
    assert len(await billing.list_unbillable(conn, include_tests=True)) == 1


async def test_unbillable_held_with_reason_then_billed_once_mapped(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_d")
    cb = await add_charger(conn)
    unknown = await add_session(conn, cb, "NOBODY", energy_wh=1_000)
    await add_customer(conn, "d@example.com", subscription=None, tag="DDD")
    no_sub = await add_session(conn, cb, "ddd", energy_wh=2_000)
    await add_customer(conn, "e@example.com", subscription="sub_missing_in_lago", tag="EEE")
    missing = await add_session(conn, cb, "EEE", energy_wh=3_000)

    await engine.run()
    assert fake_lago.events == {}
    held = {r["transaction_id"]: r for r in await billing.list_unbillable(conn)}
    assert held[unknown]["unbillable_code"] == "no_customer"
    assert "NOBODY is not registered" in held[unknown]["unbillable_reason"]
    assert held[no_sub]["unbillable_code"] == "no_subscription"
    assert "d@example.com" in held[no_sub]["unbillable_reason"]
    assert held[missing]["unbillable_code"] == "unknown_subscription"
    assert "sub_missing_in_lago" in held[missing]["unbillable_reason"]
    unknown_subs = await billing.list_unknown_subscriptions(conn)
    assert [r["lago_subscription_id"] for r in unknown_subs] == ["sub_missing_in_lago"]

    # The operator fixes each: a card, a subscription, and the subscription in Lago.
    await add_customer(conn, "n@example.com", subscription="sub_d", tag="NOBODY")
    await set_subscription(conn, "d@example.com", "sub_d2")
    fake_lago.add_subscription("sub_d2")
    fake_lago.add_subscription("sub_missing_in_lago")
    await engine.run()
    assert await billing.list_unbillable(conn) == []
    assert fake_lago.wh_by_subscription() == {"sub_d": 1_000, "sub_d2": 2_000, "sub_missing_in_lago": 3_000}
    await engine.run()
    assert len(fake_lago.events) == 3


async def test_anomalies_flagged_not_billed(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_f")
    cb = await add_charger(conn)
    await add_customer(conn, "f@example.com", subscription="sub_f", tag="FFF")
    negative = await add_session(conn, cb, "FFF", energy_wh=-500, meter_start=10_000)
    absurd = await add_session(conn, cb, "FFF", energy_wh=900_000, minutes=1)
    reset = await start_tx(conn, cb, "FFF", meter_start=20_000)
    await add_register(conn, cb, reset, at=T0 + timedelta(minutes=5), value=21_000)
    await engine.run()  # bills the 1 kWh increment while it runs
    await add_register(conn, cb, reset, at=T0 + timedelta(minutes=10), value=300)
    await stop_tx(conn, reset, stop=T0 + timedelta(minutes=30), meter_stop=22_000)
    good = await add_session(conn, cb, "FFF", energy_wh=7_000)

    await engine.run()
    held = {r["transaction_id"]: r for r in await billing.list_unbillable(conn, code="anomaly")}
    assert set(held) == {negative, absurd, reset}
    assert "negative energy" in held[negative]["unbillable_reason"]
    assert "average power" in held[absurd]["unbillable_reason"]
    assert "register went down" in held[reset]["unbillable_reason"]
    # Only the increment before the reset and the good session reached Lago.
    assert set(short(fake_lago.events)) == {f"steve_tx_{good}_final", f"steve_tx_{reset}_{int((T0 + timedelta(minutes=5)).timestamp())}"}

    # An operator settles the reset session at 2 kWh: the true-up bills the remaining 1 kWh.
    await billing.set_energy_override(conn, reset, 2_000, "ops@example.com")
    await engine.run()
    assert short(fake_lago.events)[f"steve_tx_{reset}_final"]["properties"]["value"] == 1.0
    assert fake_lago.wh_by_subscription() == {"sub_f": 9_000}


async def test_startup_check_names_what_to_create(engine, fake_lago):
    assert (await engine.startup_check())["code"] == "ev_charging_kwh"
    fake_lago.metrics["ev_charging_kwh"]["aggregation_type"] = "max_agg"
    with pytest.raises(LagoSetupError, match="aggregation 'sum'"):
        await engine.startup_check()
    fake_lago.metrics.clear()
    with pytest.raises(LagoSetupError, match="has no billable metric 'ev_charging_kwh'.*create it in Lago"):
        await engine.startup_check()


async def test_cursor_finds_late_commits_and_lookback_bounds_first_run(conn, engine, fake_lago, clock):
    fake_lago.add_subscription("sub_g")
    cb = await add_charger(conn)
    await add_customer(conn, "g@example.com", subscription="sub_g", tag="GGG")
    engine.settings = engine.settings.model_copy(update={"SYNC_LOOKBACK_MINUTES": 60})
    clock.current = T0 + timedelta(days=10)
    old = await add_session(conn, cb, "GGG", energy_wh=1_111, start=T0)
    recent = await add_session(conn, cb, "GGG", energy_wh=2_222, start=clock.current - timedelta(minutes=30))
    await engine.run()
    assert set(short(fake_lago.events)) == {f"steve_tx_{recent}_final"}

    # A session from long ago arriving now (offline charger) is found by the cursor: it is new.
    late = await add_session(conn, cb, "GGG", energy_wh=3_333, start=T0 - timedelta(days=30))
    clock.advance(days=40)
    await engine.run()
    assert f"steve_tx_{late}_final" in short(fake_lago.events)
    assert f"steve_tx_{old}_final" not in short(fake_lago.events)

    # Backfill brings the old one in, exactly once.
    result = await engine.run(trigger="backfill", backfill_since=T0 - timedelta(days=1))
    assert result.events_sent == 1
    again = await engine.run(trigger="backfill", backfill_since=T0 - timedelta(days=1))
    assert again.events_sent == 0
    assert fake_lago.wh_by_subscription() == {"sub_g": 6_666}


async def test_stale_plan_is_not_recorded(conn, engine, fake_lago):
    """A planner working from an old view of a transaction (a worker that lost its lock)
    cannot write an event over energy someone else already recorded."""
    from polaris.sync.rating import UsageEvent

    fake_lago.add_subscription("sub_s")
    cb = await add_charger(conn)
    await add_customer(conn, "s@example.com", subscription="sub_s", tag="SSS")
    tx = await start_tx(conn, cb, "SSS", meter_start=0)
    await add_register(conn, cb, tx, at=T0 + timedelta(minutes=10), value=2_000)
    await engine.run()  # records and sends 2 kWh
    stale = UsageEvent(
        transaction_id=f"steve_tx_{tx}_999", ocpp_transaction_id=tx, kind="increment",
        external_subscription_id="sub_s", code="ev_charging_kwh", timestamp=T0 + timedelta(minutes=20),
        wh=3_000, properties={"value": 3.0, "kwh": 3.0}, planned_against_wh=0,
    )
    assert await billing.record_events(conn, [stale], run_id=None) == 0
    fresh = UsageEvent(**{**stale.__dict__, "wh": 1_000, "planned_against_wh": 2_000})
    assert await billing.record_events(conn, [fresh], run_id=None) == 1


async def test_two_engines_at_once_never_double_bill(conn, pool, sync_settings, fake_lago, clock):
    """Split brain (two workers running passes side by side) still bills each Wh once."""
    import asyncio

    from sync_helpers import make_client

    from polaris.sync.worker import SyncEngine

    fake_lago.add_subscription("sub_sb")
    cb = await add_charger(conn)
    await add_customer(conn, "sb@example.com", subscription="sub_sb", tag="SB")
    txs = [await start_tx(conn, cb, "SB", meter_start=0, connector_id=c) for c in range(1, 6)]
    clients = [make_client(fake_lago), make_client(fake_lago)]
    engines = [SyncEngine(pool, c, sync_settings, clock=clock) for c in clients]
    try:
        for step in range(1, 5):
            for tx in txs:
                await add_register(conn, cb, tx, at=T0 + timedelta(minutes=10 * step), value=1_000 * step + tx)
            await asyncio.gather(*(e.run() for e in engines))
        for tx in txs:
            await stop_tx(conn, tx, stop=T0 + timedelta(minutes=60), meter_stop=5_000 + tx)
        await asyncio.gather(*(e.run() for e in engines))
        await engines[0].run()
    finally:
        for c in clients:
            await c.aclose()
    assert fake_lago.wh_by_subscription() == {"sub_sb": sum(5_000 + tx for tx in txs)}
    assert await billing.list_unbillable(conn) == []


async def test_a_plan_made_on_stale_rows_is_not_recorded(conn, pool, sync_settings, fake_lago, clock):
    """Worker A reads a session, stalls; worker B bills newer energy; A's stale plan is dropped.

    The events differ (other meter readings, so other ids): only the recorded-energy guard
    in `record_events` stands between this and a doubled kWh.
    """
    import asyncio

    from sync_helpers import make_client

    from polaris.sync.worker import SyncEngine

    fake_lago.add_subscription("sub_stale")
    cb = await add_charger(conn)
    await add_customer(conn, "stale@example.com", subscription="sub_stale", tag="STALE")
    tx = await start_tx(conn, cb, "STALE", meter_start=0)
    await add_register(conn, cb, tx, at=T0 + timedelta(minutes=10), value=1_000)
    clients = [make_client(fake_lago), make_client(fake_lago)]
    a, b = (SyncEngine(pool, c, sync_settings, clock=clock) for c in clients)
    try:
        # A has read the session (1,000 Wh to bill, nothing recorded) and asks Lago about
        # the subscription: Lago is slow to answer.
        hold = fake_lago.hold_next("GET", "/api/v1/subscriptions/sub_stale")
        run_a = asyncio.create_task(a.run())
        await asyncio.wait_for(hold.arrived.wait(), 10)
        # Meanwhile the session goes on and B bills all of it.
        await add_register(conn, cb, tx, at=T0 + timedelta(minutes=20), value=2_500)
        result_b = await b.run()
        assert (result_b.events_sent, result_b.wh_sent) == (1, 2_500)
        hold.release.set()
        result_a = await asyncio.wait_for(run_a, 10)
        assert result_a.events_recorded == 0
        assert fake_lago.wh_by_subscription() == {"sub_stale": 2_500}

        await stop_tx(conn, tx, stop=T0 + timedelta(minutes=30), meter_stop=3_000)
        await a.run()
    finally:
        for c in clients:
            await c.aclose()
    assert fake_lago.wh_by_subscription() == {"sub_stale": 3_000}
    assert len(fake_lago.events) == 2
