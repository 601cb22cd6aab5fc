"""Cadence tiers, hysteresis, dormancy, pin and cron override, driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync_helpers import add_charger, add_customer, add_session, start_tx, stop_tx

from polaris.db.repos import billing
from polaris.sync import cadence
from polaris.sync.cadence import ACTIVE, DORMANT, IDLE, CadenceState, after_run, next_run_at

MON = datetime(2026, 1, 5, 10, 7, tzinfo=UTC)  # a Monday


def test_next_run_times_per_tier():
    assert next_run_at(ACTIVE, MON) == MON.replace(minute=15)
    assert next_run_at(IDLE, MON) == MON.replace(hour=11, minute=0)
    assert next_run_at(DORMANT, MON) == datetime(2026, 1, 11, 3, 0, tzinfo=UTC)  # Sunday 03:00 UTC
    assert next_run_at(ACTIVE, MON.replace(minute=15, second=0)) == MON.replace(minute=30, second=0)
    assert next_run_at(DORMANT, MON, cron_override="*/5 * * * *") == MON.replace(minute=10)


def test_hysteresis_then_dormant_then_back_to_active():
    state = CadenceState()
    now = MON
    rules = {"hysteresis_ticks": 2, "dormant_after": timedelta(days=30)}
    state = after_run(state, activity=True, now=now, **rules)
    assert state.tier == ACTIVE and state.last_activity_at == now
    # One quiet tick is not enough to demote (hysteresis).
    now += timedelta(minutes=15)
    state = after_run(state, activity=False, now=now, **rules)
    assert state.tier == ACTIVE and state.idle_ticks == 1
    now += timedelta(minutes=15)
    state = after_run(state, activity=False, now=now, **rules)
    assert state.tier == IDLE
    # Idle runs hourly until 30 days have passed without activity.
    while state.tier == IDLE:
        now = next_run_at(state.tier, now)
        state = after_run(state, activity=False, now=now, **rules)
    assert state.tier == DORMANT
    assert now - MON >= timedelta(days=30) and now - MON < timedelta(days=30, hours=2)
    # Any activity promotes straight back to Active.
    now = next_run_at(DORMANT, now)
    assert now.weekday() == 6 and now.hour == 3
    state = after_run(state, activity=True, now=now, **rules)
    assert state.tier == ACTIVE and state.idle_ticks == 0


def test_pin_overrides_the_tier_but_state_keeps_moving():
    state = CadenceState(tier=ACTIVE, pinned_tier=DORMANT)
    assert state.effective_tier == DORMANT
    state = after_run(state, activity=True, now=MON, hysteresis_ticks=2, dormant_after=timedelta(days=30))
    assert state.tier == ACTIVE and state.effective_tier == DORMANT


async def test_engine_moves_cadence_with_the_clock(conn, engine, fake_lago, clock):
    fake_lago.add_subscription("sub_k")
    cb = await add_charger(conn)
    await add_customer(conn, "k@example.com", subscription="sub_k", tag="KKK")
    engine.settings = engine.settings.model_copy(
        update={"SYNC_IDLE_HYSTERESIS_TICKS": 2, "SYNC_DORMANT_THRESHOLD_DAYS": 3}
    )
    clock.current = MON
    tx = await start_tx(conn, cb, "KKK", start=MON - timedelta(minutes=5))
    await engine.run()
    assert (await billing.get_cadence_state(conn))["tier"] == "active"  # a session runs

    await stop_tx(conn, tx, stop=MON + timedelta(minutes=10), meter_stop=5000)
    clock.advance(minutes=15)
    await engine.run()  # it ended since the last run: still active
    for expected in ("active", "idle"):
        clock.advance(minutes=15)
        await engine.run()
        assert (await billing.get_cadence_state(conn))["tier"] == expected
    clock.advance(days=3)
    await engine.run()
    state = await billing.get_cadence_state(conn)
    assert state["tier"] == "dormant"
    assert state["last_activity_at"] == MON + timedelta(minutes=15)

    # A new session wakes it up.
    await add_session(conn, cb, "KKK", energy_wh=100, start=clock.current)
    clock.advance(hours=1)
    await engine.run()
    assert (await billing.get_cadence_state(conn))["tier"] == "active"

    pinned = await billing.set_cadence_pin(conn, "idle", "admin@example.com")
    assert pinned["effective_tier"] == "idle" and pinned["pinned_by"] == "admin@example.com"
    unpinned = await billing.set_cadence_pin(conn, None, "admin@example.com")
    assert unpinned["effective_tier"] == "active" and unpinned["pinned_by"] is None


async def test_pin_rejects_unknown_tiers(conn):
    import pytest

    from polaris.db.errors import InvalidInput

    with pytest.raises(InvalidInput, match="active, idle, dormant"):
        await billing.set_cadence_pin(conn, "turbo", "a@example.com")


def test_cron_override_trigger():
    trigger = cadence.trigger_for(DORMANT, "0 */6 * * *")
    assert trigger.get_next_fire_time(None, MON) == MON.replace(hour=12, minute=0)
