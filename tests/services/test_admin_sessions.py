"""Admin API: transactions (filters, detail, force-close), billing sync, dashboard, health."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from polaris.db import notify
from polaris.db.repos import charge_boxes, customers, id_tags

API = "/api/admin/v1"


async def seed(pool):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1", "CB-2"], "charger-key-0123456789")
        ann = await customers.add_customer(conn, "ann@example.com", lago_subscription_id="sub_ann")
        await id_tags.add_id_tag(conn, "ANN1", customer_email="ann@example.com")
        pk1 = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-1'")
        pk2 = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-2'")
        done = await conn.fetchval(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, "
            "stop_timestamp, meter_stop, stop_reason, stopped_by) VALUES ($1, 1, 'ann1', '2026-01-01T10:00Z', 1000, "
            "'2026-01-01T11:00Z', 8500, 'Local', 'charger') RETURNING id",
            pk1,
        )
        stuck = await conn.fetchval(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, stuck_since) "
            "VALUES ($1, 2, 'OTHER', now() - interval '2 days', 20000, now() - interval '1 day') RETURNING id",
            pk2,
        )
        await conn.execute(
            "INSERT INTO ocpp.meter_values (charge_box_pk, connector_id, transaction_id, sampled_at, value, value_num, measurand, unit) VALUES "
            "($1, 2, $2, now() - interval '47 hours', '20.5', 20.5, 'Energy.Active.Import.Register', 'kWh'),"
            "($1, 2, $2, now() - interval '46 hours', '21.75', 21.75, 'Energy.Active.Import.Register', 'kWh'),"
            "($1, 2, $2, now() - interval '46 hours', '7200', 7200, 'Power.Active.Import', 'W')",
            pk2,
            stuck,
        )
    return {"done": done, "stuck": stuck, "customer": ann}


async def test_transaction_filters_and_detail(api, pool, operator):
    ids = await seed(pool)
    h = operator.headers

    async def listed(**params):
        resp = await api.get(f"{API}/transactions", params=params, headers=h)
        assert resp.status == 200, await resp.text()
        return [t["id"] for t in (await resp.json())["items"]]

    assert await listed() == [ids["stuck"], ids["done"]]
    assert await listed(active="true") == [ids["stuck"]]
    assert await listed(state="stopped") == [ids["done"]]
    assert await listed(state="stuck") == [ids["stuck"]]
    assert await listed(charge_box_id="CB-1") == [ids["done"]]
    assert await listed(customer="ann@") == [ids["done"]]
    assert await listed(customer_id=str(ids["customer"]["id"])) == [ids["done"]]
    assert await listed(id_tag="ANN1") == [ids["done"]]
    assert await listed(since="2026-01-01T10:30:00+00:00") == [ids["stuck"]]
    assert await listed(until="2026-01-02T00:00:00Z") == [ids["done"]]
    assert await listed(limit="1") == [ids["stuck"]]
    resp = await api.get(f"{API}/transactions", params={"since": "yesterday"}, headers=h)
    assert resp.status == 400
    resp = await api.get(f"{API}/transactions", params={"active": "true", "state": "stopped"}, headers=h)
    assert resp.status == 400

    page = await (await api.get(f"{API}/transactions", headers=h)).json()
    by_id = {t["id"]: t for t in page["items"]}
    assert by_id[ids["done"]]["energy_wh"] == 7500
    assert by_id[ids["done"]]["customer_email"] == "ann@example.com"
    assert by_id[ids["done"]]["billing_state"] == "pending"
    assert by_id[ids["stuck"]]["energy_wh"] == 1750, "open session: last register reading (kWh) minus start"
    assert by_id[ids["stuck"]]["billing_state"] == "open"

    detail = await (await api.get(f"{API}/transactions/{ids['stuck']}", headers=h)).json()
    assert [m["value"] for m in detail["meter_values"]] == [20.5, 21.75, 7200] or len(detail["meter_values"]) == 3
    assert detail["meter_values"][0]["value_raw"] == "20.5"
    assert (await api.get(f"{API}/transactions/99999", headers=h)).status == 404
    assert (await api.get(f"{API}/transactions/99999999999", headers=h)).status == 404


async def test_force_close_a_stuck_session(api, pool, operator, admin):
    ids = await seed(pool)
    resp = await api.post(f"{API}/transactions/{ids['stuck']}/force-close", json={}, headers=operator.headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["meter_stop"] == 21750 and body["stopped_by"] == "operator"
    assert body["energy_wh"] == 1750
    resp = await api.post(f"{API}/transactions/{ids['stuck']}/force-close", json={}, headers=operator.headers)
    assert resp.status == 400
    assert "already stopped" in (await resp.json())["message"]
    resp = await api.post(f"{API}/transactions/424242/force-close", json={}, headers=operator.headers)
    assert resp.status == 404
    audit = await (await api.get(f"{API}/audit", params={"action": "transaction.force_close"}, headers=admin.headers)).json()
    assert audit["items"][0]["target_id"] == str(ids["stuck"])
    assert audit["items"][0]["actor_email"] == operator.email


async def test_sync_status_pin_and_trigger(api, pool, db_dsn, operator):
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO billing.sync_runs (status, tier, trigger, events_sent, kwh_sent, finished_at) "
            "VALUES ('succeeded', 'active', 'schedule', 3, 12.5, now()), ('failed', 'active', 'manual', 0, 0, now())"
        )
    h = operator.headers
    status = await (await api.get(f"{API}/sync", headers=h)).json()
    assert status["last_run"]["status"] == "failed"
    assert status["tier"] == "active" and status["pinned_tier"] is None
    runs = await (await api.get(f"{API}/sync/runs", params={"limit": 1}, headers=h)).json()
    assert runs["items"][0]["status"] == "failed" and runs["next_cursor"]
    runs = await (await api.get(f"{API}/sync/runs", params={"cursor": runs["next_cursor"]}, headers=h)).json()
    assert runs["items"][0]["kwh_sent"] == 12.5

    listener = await asyncpg.connect(db_dsn)
    got: asyncio.Queue = asyncio.Queue()
    await listener.add_listener(notify.SYNC_TRIGGER, lambda *a: got.put_nowait(json.loads(a[3])))
    try:
        resp = await api.put(f"{API}/sync/pin", json={"tier": "dormant"}, headers=h)
        assert resp.status == 200
        assert (await resp.json())["tier"] == "dormant"
        resp = await api.put(f"{API}/sync/pin", json={"tier": "sometimes"}, headers=h)
        assert resp.status == 400
        resp = await api.post(f"{API}/sync/trigger", headers=h)
        assert resp.status == 202
        payloads = [await asyncio.wait_for(got.get(), 5) for _ in range(2)]
        assert payloads[-1]["requested_by"] == operator.email
    finally:
        await listener.close()
    assert (await (await api.get(f"{API}/sync/unbillable", headers=h)).json())["items"] == []


async def test_energy_today_counts_sessions_still_charging(api, pool, operator):
    # Two cars charging since this morning: before this, the tile said 0.0 kWh until they left.
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-9"], "charger-key-0123456789")
        pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-9'")
        for connector, start, reading in ((1, 1000, "13.5"), (2, 500, "4500")):
            tx = await conn.fetchval(
                "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start) "
                "VALUES ($1, $2, 'ANN1', now() - interval '5 minutes', $3) RETURNING id", pk, connector, start)
            unit = "kWh" if "." in reading else "Wh"
            await conn.execute(
                "INSERT INTO ocpp.meter_values (charge_box_pk, connector_id, transaction_id, sampled_at, value, "
                "value_num, measurand, unit) VALUES ($1, $2, $3, now() - interval '1 minute', $4, $5, "
                "'Energy.Active.Import.Register', $6)", pk, connector, tx, reading, float(reading), unit)
        # A session that ended today still counts once, from its meter readings.
        await conn.execute(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, "
            "stop_timestamp, meter_stop) VALUES ($1, 3, 'ANN1', now() - interval '3 minutes', 0, "
            "now(), 2000)", pk)
    d = await (await api.get(f"{API}/dashboard", headers=operator.headers)).json()
    assert d["active_sessions"] == 2
    assert d["energy_today_kwh"] == 12.5 + 4.0 + 2.0


async def test_dashboard_and_health(api, pool, operator):
    await seed(pool)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE ocpp.charge_boxes SET connected = true WHERE charge_box_id = 'CB-1'")
        await conn.execute("UPDATE ocpp.charge_boxes SET last_seen_at = now() - interval '1 hour' WHERE charge_box_id = 'CB-2'")
        # A smoke test's charger is not part of the fleet.
        await conn.execute("INSERT INTO ocpp.charge_boxes (charge_box_id, public_id, is_test, last_seen_at) "
                           "VALUES ('SMOKE-1', 'smk1', true, now() - interval '1 hour')")
    resp = await api.get(f"{API}/dashboard", headers=operator.headers)
    assert resp.status == 200, await resp.text()
    d = await resp.json()
    assert (d["chargers_online"], d["chargers_offline"], d["active_sessions"], d["stuck_sessions"]) == (1, 1, 1, 1)
    assert {a["kind"] for a in d["alerts"]} >= {"chargers_offline", "stuck_sessions"}
    (offline,) = [a for a in d["alerts"] if a["kind"] == "chargers_offline"]
    assert offline["message"] == "1 charger(s) offline for more than 15 minutes"  # ALERT_CHARGER_OFFLINE_MINUTES
    health = await (await api.get(f"{API}/health", headers=operator.headers)).json()
    # The same checks as `polaris health`, but the web's own (this request is its answer).
    checks = {c["name"]: c for c in health["items"]}
    assert list(checks) == ["database", "ocpp", "sync", "email", "lago", "unbillable", "alerts"]
    assert checks["database"]["ok"] and "migrations applied" in checks["database"]["detail"]
    assert checks["ocpp"]["status"] == "critical", "nothing listens at STEVE_BASE_URL in this test"
    assert checks["ocpp"]["fix"]
    assert health["status"] == "critical" and health["ok"] is False
