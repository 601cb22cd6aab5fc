"""`polaris sync` as operators run it: a real subprocess against the test database and fake Lago."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import timedelta

from sync_helpers import T0, add_charger, add_customer, add_session, short

from polaris.config import Settings
from polaris.sync.rating import short_id
from polaris.sync.scheduler import SYNC_LOCK_KEY


def _env(db_dsn: str, fake_lago, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.update(
        DATABASE_URL=db_dsn,
        LAGO_API_URL=fake_lago.url,
        LAGO_API_KEY=fake_lago.api_key,
        SYNC_LOOKBACK_MINUTES="10000000",
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


async def polaris(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd="/",
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_once_bills_and_refuses_to_overlap_the_active_worker(conn, db_dsn, fake_lago):
    fake_lago.add_subscription("sub_cli")
    cb = await add_charger(conn)
    await add_customer(conn, "cli@example.com", subscription="sub_cli", tag="CLI1")
    tx = await add_session(conn, cb, "CLI1", energy_wh=2_500)
    env = _env(db_dsn, fake_lago)

    code, out, err = await polaris("sync", "--once", env=env)
    assert code == 0, err
    assert "1 event(s) sent (2.500 kWh)" in out
    assert f"steve_tx_{tx}_final" in short(fake_lago.events)
    assert fake_lago.api_key not in err  # logged requests never carry the key

    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", SYNC_LOCK_KEY)
    code, out, err = await polaris("sync", "--once", env=env)
    assert code == 1 and "another sync worker is active" in err
    await conn.execute("SELECT pg_advisory_unlock($1)", SYNC_LOCK_KEY)


async def test_settings_and_metric_problems_are_one_clear_line(db_dsn, fake_lago):
    env = _env(db_dsn, fake_lago)
    del env["LAGO_API_KEY"]
    code, _, err = await polaris("sync", "--once", env=env)
    assert code == 1 and "LAGO_API_KEY is not set" in err

    fake_lago.metrics.clear()
    code, _, err = await polaris("sync", "--once", env=_env(db_dsn, fake_lago))
    assert code == 1
    assert "Lago has no billable metric 'ev_charging_kwh'" in err and "aggregation 'sum'" in err
    assert "Traceback" not in err


async def test_backfill_bills_history_exactly_once(conn, db_dsn, fake_lago):
    fake_lago.add_subscription("sub_old")
    cb = await add_charger(conn)
    await add_customer(conn, "old@example.com", subscription="sub_old", tag="OLD1")
    old = [await add_session(conn, cb, "OLD1", energy_wh=1_000 + i, start=T0 + timedelta(hours=i)) for i in range(3)]
    await add_customer(conn, "nosub@example.com", subscription=None, tag="NOSUB")
    await add_session(conn, cb, "NOSUB", energy_wh=999, start=T0)
    env = _env(db_dsn, fake_lago, SYNC_LOOKBACK_MINUTES="60")

    code, out, err = await polaris("sync", "--once", env=env)
    assert code == 0, err
    assert fake_lago.events == {}  # older than the lookback of a fresh deployment

    code, out, err = await polaris("sync", "backfill", "--since", "2026-01-01", "--no-progress", env=env)
    assert code == 0, err
    assert "4 older session(s) brought in" in out
    assert "3 event(s) sent (3.003 kWh)" in out and "no_subscription: 1" in out
    assert set(short(fake_lago.events)) == {f"steve_tx_{t}_final" for t in old}

    code, out, err = await polaris("sync", "backfill", "--since", "2026-01-01", "--no-progress", env=env)
    assert code == 0 and "0 older session(s) brought in" in out and "0 event(s) sent" in out
    assert fake_lago.batches_received == 1


async def test_reconcile_lists_differences(conn, db_dsn, fake_lago):
    fake_lago.add_subscription("sub_r1")
    fake_lago.add_subscription("sub_r2")
    cb = await add_charger(conn)
    await add_customer(conn, "r1@example.com", subscription="sub_r1", tag="R1")
    await add_customer(conn, "r2@example.com", subscription="sub_r2", tag="R2")
    a = await add_session(conn, cb, "R1", energy_wh=1_500)
    await add_session(conn, cb, "R2", energy_wh=2_000)
    env = _env(db_dsn, fake_lago)
    assert (await polaris("sync", "--once", env=env))[0] == 0

    window = ("--from", "2026-01-01", "--to", "2026-02-01")
    code, out, err = await polaris("sync", "reconcile", *window, env=env)
    assert code == 0, err + out
    assert "2 subscription(s), 0 with differences" in out

    # Lago lost one event and holds one the ledger never sent.
    (lost,) = [k for k in fake_lago.event_rows if short_id(k[1]) == f"steve_tx_{a}_final"]
    fake_lago.event_rows.pop(lost)
    fake_lago.event_rows[("sub_r2", "stray")] = {
        "transaction_id": "stray", "external_subscription_id": "sub_r2", "code": "ev_charging_kwh",
        "timestamp": (T0 + timedelta(hours=1)).timestamp(), "properties": {"value": 0.25},
    }
    code, out, _ = await polaris("sync", "reconcile", *window, "--json", env=env)
    assert code == 1
    doc = json.loads(out)
    by_sub = {s["subscription"]: s for s in doc["subscriptions"]}
    assert by_sub["sub_r1"]["missing_in_lago"] == [lost[1]]
    assert by_sub["sub_r1"]["ledger_kwh"] == 1.5 and by_sub["sub_r1"]["lago_kwh"] == 0
    assert by_sub["sub_r2"]["unknown_to_ledger"] == ["stray"]
    assert by_sub["sub_r2"]["difference_kwh"] == 0.25
    assert doc["ok"] is False


async def test_worker_runs_on_start_and_stops_on_sigterm(conn, db_dsn, fake_lago):
    fake_lago.add_subscription("sub_wk")
    cb = await add_charger(conn)
    await add_customer(conn, "wk@example.com", subscription="sub_wk", tag="WK1")
    tx = await add_session(conn, cb, "WK1", energy_wh=3_000)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "sync",  # SYNC_ON_STARTUP is off by default, as in the original
        env={**_env(db_dsn, fake_lago), "SYNC_ON_STARTUP": "true"}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd="/",
    )
    try:
        async with asyncio.timeout(30):
            while f"steve_tx_{tx}_final" not in short(fake_lago.events):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(line["event"] == "sync worker active" for line in lines)
    assert any(line["event"] == "sync worker stopped" for line in lines)


async def test_sigkill_mid_run_then_rerun_bills_everything_once(conn, db_dsn, fake_lago):
    fake_lago.add_subscription("sub_kill")
    cb = await add_charger(conn)
    await add_customer(conn, "kill@example.com", subscription="sub_kill", tag="KILL")
    energies = [100 + 7 * i for i in range(1500)]
    for e in energies:
        await add_session(conn, cb, "KILL", energy_wh=e)
    fake_lago.batch_delay = 0.3
    env = _env(db_dsn, fake_lago)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "sync", "--once",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd="/",
    )
    try:
        async with asyncio.timeout(60):
            while len(fake_lago.events) < 600:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no cleanup, batches in flight, ledger half marked
        await proc.communicate()
    assert 0 < len(fake_lago.events) < len(energies)
    fake_lago.batch_delay = 0.0

    code, out, err = await polaris("sync", "--once", env=env)
    assert code == 0, err
    assert fake_lago.wh_by_subscription() == {"sub_kill": sum(energies)}
    assert len(fake_lago.events) == len(energies)
    statuses = [r["status"] for r in await conn.fetch("SELECT status FROM billing.sync_runs ORDER BY id")]
    assert statuses == ["failed", "succeeded"]  # the killed run is closed as failed on restart
    assert fake_lago.duplicates_refused > 0  # stored before the kill, answered 422 after it


async def test_status_shows_billed_and_held_at_a_glance(conn, db_dsn, fake_lago):
    fake_lago.add_subscription("sub_st")
    cb = await add_charger(conn, "CB-ST")
    await add_customer(conn, "st@example.com", subscription="sub_st", tag="ST1")
    await add_session(conn, cb, "ST1", energy_wh=1_234)
    held = await add_session(conn, cb, "STRANGER", energy_wh=4_321)
    odd = await add_session(conn, cb, "ST1", energy_wh=-700)  # a register reset
    env = _env(db_dsn, fake_lago)
    assert (await polaris("sync", "--once", env=env))[0] == 0

    code, out, err = await polaris("sync", "status", env=env)
    assert code == 0, err
    assert "billed: 1.234 kWh; waiting to send: 0 event(s)" in out
    assert "no_customer" in out and "1 session(s), 4.321 kWh" in out
    assert f"tx {held} card STRANGER on CB-ST: card STRANGER is not registered" in out
    assert f"tx {odd} card ST1 on CB-ST: meterStop" in out
    assert "anomaly: decide the energy to bill in the console's Sync screen (polaris tui, key e)" in out
    assert "invalid_event:" not in out

    code, out, _ = await polaris("sync", "status", "--json", env=env)
    doc = json.loads(out)
    assert doc["overview"]["pending_events"] == 0 and doc["runs"][0]["status"] == "succeeded"
    assert [h["transaction_id"] for h in doc["held"]] == [held, odd]
