"""Billing sync benchmark: N finished transactions (default 100,000) synced to a fake Lago.

    .venv/bin/python bench/bench_sync.py                  # 100,000 transactions
    .venv/bin/python bench/bench_sync.py --transactions 20000 --customers 50

The fake Lago (polaris/sim/lago.py, Lago's real HTTP API) runs in its own process,
as Lago would. Postgres: DATABASE_URL if set, else the embedded one under .polaris/bench; a
fresh database is created, migrated, filled with chargers, customers, cards and finished
transactions (one INSERT ... SELECT), synced with one `SyncEngine.run()` (the same pass
`polaris sync --once` runs) and dropped. Prints the time per phase, events/s and checks that
the fake holds exactly the database's kWh per subscription.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "sync"))
from benchdb import create_database, drop_database  # noqa: E402


def serve_fake(queue: multiprocessing.Queue, n_subscriptions: int) -> None:
    """The fake Lago's process: report the URL, serve until killed."""
    from polaris.sim.lago import FakeLago

    async def main() -> None:
        fake = FakeLago()
        for i in range(n_subscriptions):
            fake.add_subscription(f"bench_sub_{i:04d}")
        queue.put(await fake.start())
        await asyncio.Event().wait()

    asyncio.run(main())


async def prepare_database(n_tx: int, n_customers: int) -> tuple[str, str]:
    from polaris.db.pool import connect

    server_dsn, db_dsn = await create_database("sync")
    conn = await connect(db_dsn)
    try:
        await conn.execute(
            """
            INSERT INTO ocpp.charge_boxes (charge_box_id, public_id)
            SELECT 'BENCH-' || lpad(i::text, 4, '0'), 'benchpub' || i FROM generate_series(1, 100) i;
            INSERT INTO app.users (email, role)
            SELECT 'bench' || i || '@example.com', 'customer' FROM generate_series(0, $1 - 1) i;
            """.replace("$1", str(int(n_customers)))
        )
        await conn.execute(
            """
            INSERT INTO app.customers (user_id, lago_subscription_id)
            SELECT u.id, 'bench_sub_' || lpad(substring(u.email from 'bench(\\d+)@'), 4, '0')
            FROM app.users u WHERE u.role = 'customer';
            INSERT INTO app.id_tags (id_tag, customer_id)
            SELECT 'BT' || lpad((row_number() OVER (ORDER BY c.id) - 1)::text, 6, '0'), c.id
            FROM app.customers c;
            """
        )
        await conn.execute(
            """
            INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp,
                                           meter_start, stop_timestamp, meter_stop, stopped_by)
            SELECT 1 + i % 100, 1, 'BT' || lpad((i % $2)::text, 6, '0'),
                   now() - interval '20 hours' + i * interval '100 ms', i * 100,
                   now() - interval '19 hours' + i * interval '100 ms', i * 100 + 1 + (i * 7919) % 40000,
                   'charger'
            FROM generate_series(1, $1) i
            """,
            n_tx,
            n_customers,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return server_dsn, db_dsn


async def run(args: argparse.Namespace, lago_url: str) -> int:
    import httpx
    from pydantic import SecretStr

    from polaris.config import Settings
    from polaris.db.pool import create_pool
    from polaris.logs import configure_logging
    from polaris.sync.lago import LagoClient
    from polaris.sync.worker import SyncEngine

    configure_logging("WARNING", "console")
    t0 = time.perf_counter()
    server_dsn, db_dsn = await prepare_database(args.transactions, args.customers)
    t_prepare = time.perf_counter() - t0
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DATABASE_URL=db_dsn,
        LAGO_API_URL=lago_url,
        LAGO_API_KEY=SecretStr("lago-test-key"),
    )
    pool = await create_pool(db_dsn, min_size=2, max_size=args.concurrency + 4)
    client = LagoClient(lago_url, "lago-test-key")
    phases: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        phases.setdefault(phase + "_start", time.perf_counter())
        phases[phase + "_end"] = time.perf_counter()

    try:
        engine = SyncEngine(
            pool, client, settings, deliver_concurrency=args.concurrency, chunk=args.chunk
        )
        await engine.startup_check()
        t1 = time.perf_counter()
        cpu0 = time.process_time()
        result = await engine.run(trigger="bench", progress=progress)
        elapsed = time.perf_counter() - t1
        cpu = time.process_time() - cpu0
        async with pool.acquire() as conn:
            db_wh = dict(
                await conn.fetch(
                    """
                    SELECT c.lago_subscription_id, sum(t.meter_stop - t.meter_start)::bigint
                    FROM ocpp.transactions t
                    JOIN app.id_tags g ON lower(g.id_tag) = lower(t.id_tag)
                    JOIN app.customers c ON c.id = g.customer_id
                    GROUP BY 1
                    """
                )
            )
        async with httpx.AsyncClient() as http:
            stats = (await http.get(lago_url + "/_fake/stats")).json()
    finally:
        await client.aclose()
        await pool.close()
        if not args.keep:
            await drop_database(server_dsn, db_dsn)

    plan_s = phases.get("plan_end", t1) - t1
    ok = result.status == "succeeded" and stats["wh_by_subscription"] == {k: v for k, v in db_wh.items() if v}
    print(f"transactions:        {args.transactions:,} finished, {args.customers} subscriptions")
    print(f"database prepared:   {t_prepare:.1f} s (not counted)")
    print(f"sync pass:           {elapsed:.1f} s total (status {result.status})")
    print(f"  plan + record:     done after {plan_s:.1f} s (delivery runs alongside)")
    print(f"  deliver:           done after {elapsed:.1f} s, {stats['batches']:,} batches of <= 100")
    print(f"CPU used:            sync {cpu:.1f} s, fake Lago {stats['cpu_s']:.1f} s (2 cores shared with Postgres)")
    print(f"events sent:         {result.events_sent:,} ({result.wh_sent / 1000:,.3f} kWh)")
    print(f"throughput:          {result.events_sent / elapsed:,.0f} events/s")
    print(f"fake Lago holds:     {stats['events']:,} events; per-subscription kWh equal to the database: {ok}")
    print(f"target < 60 s:       {'met' if elapsed < 60 else 'MISSED'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=6, help="batches in flight at once (the worker's default)")
    parser.add_argument("--chunk", type=int, default=10_000, help="transactions planned per statement (the worker's default)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = ctx.Queue()
    fake = ctx.Process(target=serve_fake, args=(queue, args.customers), daemon=True)
    fake.start()
    try:
        lago_url = queue.get(timeout=30)
        return asyncio.run(run(args, lago_url))
    finally:
        fake.terminate()
        fake.join(5)


if __name__ == "__main__":
    sys.exit(main())
