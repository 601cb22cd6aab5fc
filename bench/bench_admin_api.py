"""Admin API list endpoints with 10,000 chargers and 1,000,000 meter values (target: p99 < 50 ms).

    .venv/bin/python bench/bench_admin_api.py [--chargers 10000] [--meter-values 1000000] [--requests 200]

Builds a fresh database (DATABASE_URL if set, else the embedded Postgres under
.polaris/bench): 10,000 chargers with two connectors each, 1,000 customers with two cards,
50,000 transactions (1,000 still open) and 1,000,000 meter values, all inserted with
set-based SQL. Then the real app (`app_factory`) serves on a free port and each endpoint
is requested sequentially by an HTTP client in the same process (so the figures include
the client's own share of the one event loop: conservative). Prints one JSON line per
endpoint with p50/p95/p99/max in ms; exits 1 if any p99 is over 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import with_database  # noqa: E402

TARGET_P99_MS = 50.0


SEED = """
INSERT INTO ocpp.sites (name, address) SELECT 'Site ' || g, 'Street ' || g FROM generate_series(1, 100) g;
INSERT INTO ocpp.charge_boxes (charge_box_id, public_id, site_id, description, connected, vendor, model,
                               last_seen_at, last_heartbeat_at)
SELECT 'CB-' || lpad(g::text, 6, '0'), 'pub' || g, 1 + g % 100, 'charger ' || g, g % 10 <> 0, 'Vendor', 'Model X',
       now() - (g % 600) * interval '1 second', now() - (g % 600) * interval '1 second'
FROM generate_series(1, $1::int) g;
INSERT INTO ocpp.connectors (charge_box_pk, connector_id, status, error_code, status_at)
SELECT cb.id, c, CASE WHEN cb.id % 97 = 0 THEN 'Faulted' WHEN cb.id % 10 = 1 AND c = 1 THEN 'Charging'
                      ELSE 'Available' END,
       CASE WHEN cb.id % 97 = 0 THEN 'GroundFailure' ELSE 'NoError' END, now()
FROM ocpp.charge_boxes cb, generate_series(1, 2) c;
INSERT INTO app.users (email, role) SELECT 'customer' || g || '@example.com', 'customer' FROM generate_series(1, 1000) g;
INSERT INTO app.customers (user_id, name, lago_subscription_id)
SELECT id, 'Customer ' || id, 'sub_' || id FROM app.users WHERE role = 'customer';
INSERT INTO app.id_tags (id_tag, customer_id, label)
SELECT 'TAG' || lpad((c.id * 2 + k)::text, 8, '0'), c.id, 'card ' || k FROM app.customers c, generate_series(0, 1) k;
-- 50,000 sessions, 5 per charger; the newest 1,000 are still open.
-- Rows carry the times they were written (history, not "just now"), so the web process's
-- catch-up work (receipts for sessions that just ended) sees what a live system would.
INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start,
                               stop_timestamp, meter_stop, stop_reason, stopped_by, created_at, updated_at)
SELECT 1 + (g % $1::int), 1, 'TAG' || lpad((2 + g % 2000)::text, 8, '0'),
       now() - (50000 - g) * interval '10 minutes', g * 10,
       CASE WHEN g <= 49000 THEN now() - (50000 - g) * interval '10 minutes' + interval '1 hour' END,
       CASE WHEN g <= 49000 THEN g * 10 + 7000 END,
       CASE WHEN g <= 49000 THEN 'Local' END,
       CASE WHEN g <= 49000 THEN 'charger' END,
       now() - (50000 - g) * interval '10 minutes',
       CASE WHEN g <= 49000 THEN now() - (50000 - g) * interval '10 minutes' + interval '1 hour'
            ELSE now() - (50000 - g) * interval '10 minutes' END
FROM generate_series(1, 50000) g;
-- 1,000,000 meter values: 20 per session (energy register and power, alternating).
INSERT INTO ocpp.meter_values (charge_box_pk, connector_id, transaction_id, sampled_at, value, value_num,
                               measurand, unit)
SELECT t.charge_box_pk, 1, t.id, t.start_timestamp + s * interval '3 minutes',
       (t.meter_start + s * 350)::text, t.meter_start + s * 350,
       CASE WHEN s % 2 = 0 THEN 'Energy.Active.Import.Register' ELSE 'Power.Active.Import' END,
       CASE WHEN s % 2 = 0 THEN 'Wh' ELSE 'W' END
FROM ocpp.transactions t, generate_series(1, $2::int / 50000) s;
INSERT INTO billing.sync_runs (started_at, finished_at, status, tier, trigger, events_sent, kwh_sent)
SELECT now() - g * interval '15 minutes', now() - g * interval '15 minutes' + interval '3 seconds',
       'succeeded', 'active', 'schedule', 40, 280.5 FROM generate_series(1, 5000) g;
INSERT INTO app.audit_log (actor_email, action, target_type, target_id, after)
SELECT 'admin@example.com', 'charger.edit', 'charger', 'CB-' || lpad((g % 10000)::text, 6, '0'),
       '{"description": "x"}'::jsonb FROM generate_series(1, 20000) g;
"""


async def seed(dsn: str, chargers: int, meter_values: int) -> float:
    from polaris.db.pool import connect

    start = time.perf_counter()
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            for statement in SEED.split(";\n"):
                if "INSERT" not in statement:
                    continue
                # Both are ints from argparse: inlined, so each statement stands alone.
                sql = statement.replace("$1::int", str(int(chargers))).replace("$2::int", str(int(meter_values)))
                await conn.execute(sql)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - start


async def measure(dsn: str, n: int) -> list[dict]:
    import aiohttp
    from aiohttp import web

    from polaris.config import Settings
    from polaris.db.pool import connect
    from polaris.db.repos import users
    from polaris.gctune import tune_gc
    from polaris.keys import hash_password
    from polaris.services.app import app_factory, freeze_when_started

    conn = await connect(dsn)
    await users.add_user(conn, "bench@example.com", "admin", password_hash=hash_password("bench password 123"))
    some_tx = await conn.fetchval("SELECT id FROM ocpp.transactions WHERE stop_timestamp IS NOT NULL ORDER BY id DESC LIMIT 1")
    await conn.close()

    secrets = {k: "b" * 40 for k in ("AUTH_SECRET", "STEVE_PREAUTH_HMAC_KEY", "STEVE_API_KEY")}
    settings = Settings(_env_file=None, DATABASE_URL=dsn, SSE_TRANSPORT="memory", LOG_LEVEL="WARNING", **secrets)  # type: ignore[call-arg]
    # As `polaris web` runs it (polaris/cli/web.py): tuned collector, start-up objects frozen.
    tune_gc()
    runner = web.AppRunner(freeze_when_started(app_factory(settings)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    results = []
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(base + "/api/admin/v1/auth/token",
                                   json={"email": "bench@example.com", "password": "bench password 123"})
            token = (await resp.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            page = await (await http.get(base + "/api/admin/v1/chargers", params={"limit": 50}, headers=headers)).json()
            # Walk up to 100 pages in (the middle of a 10k fleet); a small fleet stops at its last page.
            deep = None
            for _ in range(100):
                if page["next_cursor"] is None:
                    break
                deep = page["next_cursor"]
                page = await (await http.get(base + "/api/admin/v1/chargers",
                                             params={"limit": 50, "cursor": deep}, headers=headers)).json()
            cases = [
                ("chargers first page", "/api/admin/v1/chargers", {"limit": "50"}),
                ("chargers deep page", "/api/admin/v1/chargers", {"limit": "50", **({"cursor": deep} if deep else {})}),
                ("chargers 500 per page", "/api/admin/v1/chargers", {"limit": "500"}),
                ("chargers faulted", "/api/admin/v1/chargers", {"state": "faulted"}),
                ("chargers charging", "/api/admin/v1/chargers", {"state": "charging"}),
                ("chargers search", "/api/admin/v1/chargers", {"q": "CB-0042"}),
                ("transactions", "/api/admin/v1/transactions", {"limit": "50"}),
                ("transactions active", "/api/admin/v1/transactions", {"active": "true"}),
                ("transactions by charger", "/api/admin/v1/transactions", {"charge_box_id": "CB-004242"}),
                ("transactions by customer", "/api/admin/v1/transactions", {"customer_id": "17"}),
                ("transaction detail (20 samples)", f"/api/admin/v1/transactions/{some_tx}", {}),
                ("customers", "/api/admin/v1/customers", {"limit": "50"}),
                ("id tags", "/api/admin/v1/id-tags", {"limit": "50"}),
                ("audit log", "/api/admin/v1/audit", {"limit": "50"}),
                ("sync runs", "/api/admin/v1/sync/runs", {"limit": "50"}),
                ("dashboard", "/api/admin/v1/dashboard", {}),
            ]
            for name, path, params in cases:
                for _ in range(10):  # warm caches and the pool
                    await http.get(base + path, params=params, headers=headers)
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    resp = await http.get(base + path, params=params, headers=headers)
                    await resp.read()
                    times.append((time.perf_counter() - t0) * 1000)
                    if resp.status != 200:
                        raise SystemExit(f"{name}: HTTP {resp.status} {await resp.text()}")
                times.sort()
                results.append({
                    "endpoint": name,
                    "requests": n,
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(times[int(0.95 * (n - 1))], 2),
                    "p99_ms": round(times[int(0.99 * (n - 1))], 2),
                    "max_ms": round(times[-1], 2),
                })
    finally:
        await runner.cleanup()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--meter-values", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    from polaris.logs import configure_logging

    configure_logging("WARNING", "console")
    out: dict = {}

    async def go(dsn: str) -> None:
        out["seed_s"] = await seed(dsn, args.chargers, args.meter_values)
        out["results"] = await measure(dsn, args.requests)

    asyncio.run(with_database("admin", go))
    print(json.dumps({"chargers": args.chargers, "meter_values": args.meter_values,
                      "seed_seconds": round(out["seed_s"], 1), "load_average_1min": os.getloadavg()[0]}))
    worst = 0.0
    for r in out["results"]:
        print(json.dumps(r))
        worst = max(worst, r["p99_ms"])
    verdict = "ok" if worst < TARGET_P99_MS else "over target"
    print(f"slowest p99: {worst:.1f} ms (target < {TARGET_P99_MS:.0f} ms): {verdict}")
    return 0 if worst < TARGET_P99_MS else 1


if __name__ == "__main__":
    sys.exit(main())
