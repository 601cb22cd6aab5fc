"""Billing sync state: runs, cadence, per-transaction state, the usage-event ledger,
what Lago told us (subscriptions, plans, webhooks) and local invoices.

The ledger is an outbox: an event is written (pending) before it is sent and marked sent
after Lago accepted it, so a crash anywhere resumes without losing or doubling a kWh.
The admin API (web) and the sync worker both use these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from polaris.db import notify
from polaris.db.errors import InvalidInput, NotFound

TIERS = ("active", "idle", "dormant")
ENERGY_REGISTER = "Energy.Active.Import.Register"

# ------------------------------------------------------------------ cadence


async def get_cadence_state(conn: asyncpg.Connection) -> asyncpg.Record:
    """The cadence row: tier, idle ticks, last activity and run, the admin pin, the cursor floor."""
    return await conn.fetchrow(
        """
        SELECT tier, idle_ticks, last_activity_at, last_run_at, pinned_tier, pinned_by,
               pinned_at, discovery_floor_id, updated_at,
               COALESCE(pinned_tier, tier) AS effective_tier
        FROM billing.cadence_state WHERE id = 1
        """
    )


async def save_cadence_state(
    conn: asyncpg.Connection,
    *,
    tier: str,
    idle_ticks: int,
    last_activity_at: datetime | None,
    last_run_at: datetime | None,
) -> None:
    await conn.execute(
        """
        UPDATE billing.cadence_state
        SET tier = $1, idle_ticks = $2, last_activity_at = $3, last_run_at = $4, updated_at = now()
        WHERE id = 1
        """,
        tier,
        idle_ticks,
        last_activity_at,
        last_run_at,
    )


async def set_cadence_pin(conn: asyncpg.Connection, tier: str | None, by: str) -> asyncpg.Record:
    """Pin the sync cadence to a tier (active, idle, dormant), or unpin with None.

    The worker is told through SYNC_TRIGGER so it reschedules at once.
    """
    if tier is not None:
        tier = tier.strip().lower()
        if tier not in TIERS:
            raise InvalidInput(f"cadence tier must be one of {', '.join(TIERS)} (or none to unpin), not {tier!r}")
    async with conn.transaction():
        await conn.execute(
            """
            UPDATE billing.cadence_state
            SET pinned_tier = $1, pinned_by = CASE WHEN $1::text IS NULL THEN NULL ELSE $2 END,
                pinned_at = CASE WHEN $1::text IS NULL THEN NULL ELSE now() END, updated_at = now()
            WHERE id = 1
            """,
            tier,
            by,
        )
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            notify.SYNC_TRIGGER,
            json.dumps({"requested_by": by, "reason": "pin", "run": False}),
        )
        return await get_cadence_state(conn)


async def request_sync_now(conn: asyncpg.Connection, requested_by: str | None) -> None:
    """Ask the active sync worker to run now (NOTIFY sync_trigger)."""
    await conn.execute(
        "SELECT pg_notify($1, $2)",
        notify.SYNC_TRIGGER,
        json.dumps({"requested_by": requested_by or ""}),
    )


async def ensure_discovery_floor(conn: asyncpg.Connection, lookback_start: datetime) -> int:
    """Set the cursor floor on a fresh deployment's first run; return it.

    Transactions that started before `lookback_start` (SYNC_LOOKBACK_MINUTES ago) and exist
    already are left to `polaris sync backfill`; everything after is found by the cursor.
    """
    return await conn.fetchval(
        """
        UPDATE billing.cadence_state
        SET discovery_floor_id = COALESCE(discovery_floor_id, (
                SELECT COALESCE(max(id), 0) FROM ocpp.transactions WHERE start_timestamp < $1
            )), updated_at = now()
        WHERE id = 1
        RETURNING discovery_floor_id
        """,
        lookback_start,
    )


async def activity_since(conn: asyncpg.Connection, since: datetime | None) -> bool:
    """True when a session runs now or started or ended since `since` (Active cadence).

    A session flagged stuck (no StopTransaction in time) does not keep the cadence Active.
    """
    return await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM ocpp.transactions
                       WHERE stop_timestamp IS NULL AND NOT is_test AND stuck_since IS NULL)
            OR EXISTS (SELECT 1 FROM ocpp.transactions
                       WHERE $1::timestamptz IS NOT NULL
                         AND (start_timestamp >= $1 OR stop_timestamp >= $1))
        """,
        since,
    )


# ------------------------------------------------------------------ runs


async def start_sync_run(
    conn: asyncpg.Connection,
    *,
    tier: str | None,
    trigger: str,
    requested_by: str | None = None,
    worker: str | None = None,
) -> int:
    return await conn.fetchval(
        """
        INSERT INTO billing.sync_runs (tier, trigger, requested_by, worker)
        VALUES ($1, $2, $3, $4) RETURNING id
        """,
        tier,
        trigger,
        requested_by,
        worker,
    )


async def finish_sync_run(
    conn: asyncpg.Connection,
    run_id: int,
    *,
    status: str,
    transactions_seen: int,
    events_sent: int,
    wh_sent: int,
    events_held: int,
    errors: int,
    error: str | None,
) -> None:
    await conn.execute(
        """
        UPDATE billing.sync_runs
        SET finished_at = now(), status = $2, transactions_seen = $3, events_sent = $4,
            kwh_sent = $5::numeric / 1000, events_held = $6, errors = $7, error = $8
        WHERE id = $1
        """,
        run_id,
        status,
        transactions_seen,
        events_sent,
        wh_sent,
        events_held,
        errors,
        error,
    )


async def fail_stale_runs(conn: asyncpg.Connection) -> int:
    """Runs left 'running' by a worker that died are closed as failed (on worker start)."""
    status = await conn.execute(
        """
        UPDATE billing.sync_runs SET status = 'failed', finished_at = now(),
               error = COALESCE(error, 'the worker stopped during the run')
        WHERE status = 'running'
        """
    )
    return int(status.split()[-1])


async def list_sync_runs(
    conn: asyncpg.Connection, *, limit: int = 50, before_id: int | None = None
) -> list[asyncpg.Record]:
    """Most recent runs first (tier, trigger, started, finished, counts, error)."""
    return await conn.fetch(
        """
        SELECT id, started_at, finished_at, status, tier, trigger, requested_by, worker,
               transactions_seen, events_sent, kwh_sent, events_held, errors, error
        FROM billing.sync_runs
        WHERE $2::bigint IS NULL OR id < $2
        ORDER BY id DESC LIMIT $1
        """,
        max(1, min(limit, 1000)),
        before_id,
    )


# ------------------------------------------------------------------ discovery


async def discover_transactions(conn: asyncpg.Connection, floor_id: int) -> int:
    """Give every transaction above the floor without sync state one (the cursor).

    An anti-join rather than "id > last seen": ids commit out of order, and a transaction
    whose StartTransaction committed late is still found.
    """
    status = await conn.execute(
        """
        INSERT INTO billing.transaction_sync_state (transaction_id)
        SELECT t.id FROM ocpp.transactions t
        WHERE t.id > $1
          AND NOT EXISTS (SELECT 1 FROM billing.transaction_sync_state s WHERE s.transaction_id = t.id)
        ORDER BY t.id
        ON CONFLICT (transaction_id) DO NOTHING
        """,
        floor_id,
    )
    return int(status.split()[-1])


async def discover_backfill(conn: asyncpg.Connection, since: datetime) -> int:
    """Bring transactions that started at or after `since` into the sync (polaris sync backfill)."""
    status = await conn.execute(
        """
        INSERT INTO billing.transaction_sync_state (transaction_id, discovered_by)
        SELECT t.id, 'backfill' FROM ocpp.transactions t
        WHERE t.start_timestamp >= $1
          AND NOT EXISTS (SELECT 1 FROM billing.transaction_sync_state s WHERE s.transaction_id = t.id)
        ORDER BY t.id
        ON CONFLICT (transaction_id) DO NOTHING
        """,
        since,
    )
    return int(status.split()[-1])


async def count_open_transactions(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM billing.transaction_sync_state WHERE NOT done")


async def fetch_open_transactions(
    conn: asyncpg.Connection, *, after_id: int, limit: int
) -> list[asyncpg.Record]:
    """Transactions with work left, with their card mapping and energy-register summary."""
    return await conn.fetch(
        """
        SELECT t.id, cb.charge_box_id, t.connector_id, t.id_tag, t.start_timestamp, t.meter_start,
               t.stop_timestamp, t.meter_stop, t.is_test,
               s.external_subscription_id AS pinned_subscription, s.recorded_wh, s.final_recorded,
               s.energy_override_wh, s.unbillable_code,
               tag.id AS tag_pk, tag.customer_id, c.lago_subscription_id, u.email AS customer_email,
               r.n AS register_count, r.latest_wh, r.latest_at, r.min_wh, r.max_wh, r.decreases
        FROM (
            -- The page first, then the joins: each page costs its own size, not the table's.
            SELECT transaction_id, external_subscription_id, recorded_wh, final_recorded,
                   energy_override_wh, unbillable_code
            FROM billing.transaction_sync_state
            WHERE NOT done AND transaction_id > $1
            ORDER BY transaction_id
            LIMIT $2
        ) s
        JOIN ocpp.transactions t ON t.id = s.transaction_id
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        LEFT JOIN app.id_tags tag ON lower(tag.id_tag) = lower(t.id_tag)
        LEFT JOIN app.customers c ON c.id = tag.customer_id
        LEFT JOIN app.users u ON u.id = c.user_id
        LEFT JOIN LATERAL (
            SELECT count(*) AS n,
                   round(max(x.wh))::bigint AS max_wh,
                   round(min(x.wh))::bigint AS min_wh,
                   round((array_agg(x.wh ORDER BY x.sampled_at DESC, x.id DESC))[1])::bigint AS latest_wh,
                   max(x.sampled_at) AS latest_at,
                   count(*) FILTER (WHERE x.wh < x.prev - 0.5) AS decreases
            FROM (
                SELECT a.id, a.sampled_at, a.wh, lag(a.wh) OVER (ORDER BY a.sampled_at, a.id) AS prev
                FROM (
                    SELECT mv.id, mv.sampled_at,
                           CASE WHEN lower(mv.unit) = 'kwh' THEN mv.value_num * 1000 ELSE mv.value_num END AS wh
                    FROM ocpp.meter_values mv
                    WHERE mv.transaction_id = t.id
                      AND COALESCE(mv.measurand, $3) = $3
                      AND mv.phase IS NULL
                      AND mv.value_num IS NOT NULL
                ) a
            ) x
        ) r ON true
        ORDER BY s.transaction_id
        """,
        after_id,
        limit,
        ENERGY_REGISTER,
    )


async def record_events(
    conn: asyncpg.Connection, events: Sequence[Any], *, run_id: int | None
) -> int:
    """Write planned events (pending) and advance each transaction's recorded energy.

    One statement: an event and the state saying it exists commit together. Each event
    carries the recorded energy it was planned against (`planned_against_wh`); it is
    written only if the state still says so, under a row lock, so two planners (a worker
    that lost its lock and its successor) can never both bill the same energy. An id that
    exists already is skipped and its energy not counted twice.
    """
    if not events:
        return 0
    return await conn.fetchval(
        """
        WITH ev AS (
            SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],
                                 $6::timestamptz[], $7::bigint[], $8::text[], $10::bigint[])
                AS e(tid, otid, kind, sub, code, ts, wh, props, planned_against)
        ), current AS (
            SELECT s.transaction_id FROM billing.transaction_sync_state s
            JOIN ev ON ev.otid = s.transaction_id
            WHERE s.recorded_wh = ev.planned_against AND NOT s.final_recorded
            FOR UPDATE OF s
        ), ins AS (
            INSERT INTO billing.usage_events
                (transaction_id, ocpp_transaction_id, kind, external_subscription_id, code,
                 event_timestamp, wh, properties, recorded_run_id)
            SELECT ev.tid, ev.otid, ev.kind, ev.sub, ev.code, ev.ts, ev.wh, ev.props::jsonb, $9
            FROM ev JOIN current c ON c.transaction_id = ev.otid
            ON CONFLICT (transaction_id) DO NOTHING
            RETURNING ocpp_transaction_id, wh, kind, external_subscription_id
        ), agg AS (
            SELECT ocpp_transaction_id, sum(wh)::bigint AS wh, bool_or(kind = 'final') AS fin,
                   min(external_subscription_id) AS sub, count(*) AS n
            FROM ins GROUP BY ocpp_transaction_id
        ), upd AS (
            UPDATE billing.transaction_sync_state s
            SET recorded_wh = s.recorded_wh + agg.wh,
                final_recorded = s.final_recorded OR agg.fin,
                done = s.done OR agg.fin,
                external_subscription_id = COALESCE(s.external_subscription_id, agg.sub),
                unbillable_code = NULL, unbillable_reason = NULL, held_since = NULL,
                updated_at = now()
            FROM agg WHERE s.transaction_id = agg.ocpp_transaction_id
            RETURNING 1
        )
        SELECT COALESCE(sum(n), 0)::int FROM agg
        """,
        [e.transaction_id for e in events],
        [e.ocpp_transaction_id for e in events],
        [e.kind for e in events],
        [e.external_subscription_id for e in events],
        [e.code for e in events],
        [e.timestamp for e in events],
        [e.wh for e in events],
        [json.dumps(e.properties, separators=(",", ":")) for e in events],
        run_id,
        [e.planned_against_wh for e in events],
    )


async def hold_transactions(
    conn: asyncpg.Connection, holds: Sequence[tuple[int, str, str, bool]]
) -> int:
    """Mark transactions unbillable: (transaction_id, code, reason, done). Returns newly held."""
    if not holds:
        return 0
    return await conn.fetchval(
        """
        WITH h AS (
            SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::bool[]) AS h(id, code, reason, done)
        ), upd AS (
            UPDATE billing.transaction_sync_state s
            SET unbillable_code = h.code, unbillable_reason = h.reason,
                held_since = CASE WHEN s.unbillable_code IS NOT DISTINCT FROM h.code
                                  THEN COALESCE(s.held_since, now()) ELSE now() END,
                done = s.done OR h.done, updated_at = now()
            FROM h
            WHERE s.transaction_id = h.id
              AND (s.unbillable_code IS DISTINCT FROM h.code
                   OR s.unbillable_reason IS DISTINCT FROM h.reason OR (h.done AND NOT s.done))
            RETURNING (s.unbillable_code IS NULL) AS was_clear
        )
        SELECT count(*)::int FROM upd
        """,
        [h[0] for h in holds],
        [h[1] for h in holds],
        [h[2] for h in holds],
        [h[3] for h in holds],
    )


async def clear_holds(conn: asyncpg.Connection, transaction_ids: Sequence[int]) -> None:
    """A transaction is billable again (mapped since); an invalid-event hold stays until retried."""
    if not transaction_ids:
        return
    await conn.execute(
        """
        UPDATE billing.transaction_sync_state
        SET unbillable_code = NULL, unbillable_reason = NULL, held_since = NULL, updated_at = now()
        WHERE transaction_id = ANY($1::int[]) AND unbillable_code IS NOT NULL
          AND unbillable_code <> 'invalid_event'
        """,
        list(transaction_ids),
    )


# ------------------------------------------------------------------ delivery


async def fetch_pending_events(
    conn: asyncpg.Connection, *, limit: int, after_seq: int = 0
) -> list[asyncpg.Record]:
    """Events written but not yet accepted by Lago, in the order they were written."""
    return await conn.fetch(
        """
        SELECT seq, transaction_id, ocpp_transaction_id, kind, external_subscription_id, code,
               event_timestamp, wh, properties
        FROM billing.usage_events
        WHERE status = 'pending' AND seq > $2
        ORDER BY seq
        LIMIT $1
        """,
        limit,
        after_seq,
    )


async def count_pending_events(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM billing.usage_events WHERE status = 'pending'")


async def mark_events_sent(
    conn: asyncpg.Connection,
    transaction_ids: Sequence[str],
    *,
    duplicates: Iterable[str] = (),
    run_id: int | None,
) -> tuple[int, int]:
    """Lago has these events: mark them sent and add their energy to billed_wh. (count, Wh).

    Run inside a transaction. Its commit skips the WAL flush (synchronous_commit off):
    losing this mark in a Postgres crash only makes the next run resend events that Lago
    answers value_already_exist. Recording events never does this: a lost record could be
    planned again under another increment id and bill twice.
    """
    if not transaction_ids:
        return 0, 0
    await conn.execute("SET LOCAL synchronous_commit TO off")
    row = await conn.fetchrow(
        """
        WITH upd AS (
            UPDATE billing.usage_events e
            SET status = 'sent', sent_at = now(), sent_run_id = $3, attempts = e.attempts + 1,
                duplicate = (e.transaction_id = ANY($2::text[])), last_error = NULL
            WHERE e.transaction_id = ANY($1::text[]) AND e.status <> 'sent'
            RETURNING e.ocpp_transaction_id, e.wh, e.kind, e.status
        ), agg AS (
            SELECT ocpp_transaction_id, sum(wh)::bigint AS wh, bool_or(kind = 'final') AS fin
            FROM upd GROUP BY ocpp_transaction_id
        ), st AS (
            UPDATE billing.transaction_sync_state s
            SET billed_wh = s.billed_wh + agg.wh, final_sent = s.final_sent OR agg.fin,
                last_synced_at = now(), updated_at = now(),
                unbillable_code = CASE WHEN s.unbillable_code = 'invalid_event' AND NOT EXISTS (
                        SELECT 1 FROM billing.usage_events i
                        WHERE i.ocpp_transaction_id = s.transaction_id AND i.status = 'invalid')
                    THEN NULL ELSE s.unbillable_code END
            FROM agg WHERE s.transaction_id = agg.ocpp_transaction_id
            RETURNING 1
        )
        SELECT count(*)::int AS n, COALESCE(sum(wh), 0)::bigint AS wh FROM upd
        """,
        list(transaction_ids),
        list(duplicates),
        run_id,
    )
    return row["n"], row["wh"]


async def mark_events_invalid(
    conn: asyncpg.Connection, invalid: dict[str, str], *, run_id: int | None
) -> int:
    """Lago refused these events as invalid: keep them with the reason and hold the transaction."""
    if not invalid:
        return 0
    return await conn.fetchval(
        """
        WITH x AS (SELECT * FROM unnest($1::text[], $2::text[]) AS x(tid, reason)),
        upd AS (
            UPDATE billing.usage_events e
            SET status = 'invalid', last_error = x.reason, attempts = e.attempts + 1, sent_run_id = $3
            FROM x WHERE e.transaction_id = x.tid AND e.status = 'pending'
            RETURNING e.ocpp_transaction_id, e.transaction_id, x.reason
        ), st AS (
            UPDATE billing.transaction_sync_state s
            SET unbillable_code = 'invalid_event',
                unbillable_reason = 'Lago refused event ' || upd.transaction_id || ': ' || upd.reason,
                held_since = now(), updated_at = now()
            FROM upd WHERE s.transaction_id = upd.ocpp_transaction_id
            RETURNING 1
        )
        SELECT count(*)::int FROM upd
        """,
        list(invalid),
        list(invalid.values()),
        run_id,
    )


async def note_send_failure(conn: asyncpg.Connection, transaction_ids: Sequence[str], error: str) -> None:
    """Delivery failed for now (Lago down): count the attempt; the events stay pending."""
    await conn.execute(
        """
        UPDATE billing.usage_events SET attempts = attempts + 1, last_error = $2
        WHERE transaction_id = ANY($1::text[]) AND status = 'pending'
        """,
        list(transaction_ids),
        error[:500],
    )


# ------------------------------------------------------------------ Lago catalogue cache


async def subscriptions_to_check(
    conn: asyncpg.Connection, external_ids: Sequence[str], *, max_age_s: float
) -> list[str]:
    """Of these subscriptions, those never checked, not found, or checked too long ago."""
    rows = await conn.fetch(
        """
        SELECT x.id FROM unnest($1::text[]) AS x(id)
        LEFT JOIN billing.lago_subscriptions s ON s.external_id = x.id
        WHERE s.external_id IS NULL OR NOT s.found
           OR s.checked_at < now() - make_interval(secs => $2)
        """,
        list(set(external_ids)),
        max_age_s,
    )
    return [r["id"] for r in rows]


async def save_lago_subscription(
    conn: asyncpg.Connection, external_id: str, subscription: dict[str, Any] | None
) -> None:
    """Cache what Lago said about a subscription (None: Lago answered 404)."""
    sub = subscription or {}
    await conn.execute(
        """
        INSERT INTO billing.lago_subscriptions
            (external_id, found, status, plan_code, external_customer_id, lago_id, checked_at)
        VALUES ($1, $2, $3, $4, $5, $6, now())
        ON CONFLICT (external_id) DO UPDATE SET
            found = EXCLUDED.found, status = EXCLUDED.status, plan_code = EXCLUDED.plan_code,
            external_customer_id = EXCLUDED.external_customer_id, lago_id = EXCLUDED.lago_id,
            checked_at = now()
        """,
        external_id,
        subscription is not None,
        sub.get("status"),
        sub.get("plan_code"),
        sub.get("external_customer_id"),
        sub.get("lago_id"),
    )


async def get_lago_subscriptions(
    conn: asyncpg.Connection, external_ids: Sequence[str]
) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT external_id, found, status, plan_code, external_customer_id, checked_at "
        "FROM billing.lago_subscriptions WHERE external_id = ANY($1::text[])",
        list(set(external_ids)),
    )
    return {r["external_id"]: r for r in rows}


async def list_unknown_subscriptions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Customers whose mapped subscription Lago does not know (for operators)."""
    return await conn.fetch(
        """
        SELECT c.id AS customer_id, u.email, c.lago_subscription_id, s.checked_at
        FROM app.customers c JOIN app.users u ON u.id = c.user_id
        JOIN billing.lago_subscriptions s ON s.external_id = c.lago_subscription_id
        WHERE NOT s.found ORDER BY u.email
        """
    )


async def plans_to_fetch(conn: asyncpg.Connection, *, max_age_s: float) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT DISTINCT s.plan_code FROM billing.lago_subscriptions s
        LEFT JOIN billing.lago_plans p ON p.code = s.plan_code
        WHERE s.found AND s.plan_code IS NOT NULL
          AND (p.code IS NULL OR p.fetched_at < now() - make_interval(secs => $1))
        """,
        max_age_s,
    )
    return [r["plan_code"] for r in rows]


async def save_lago_plan(conn: asyncpg.Connection, plan: dict[str, Any], metric_code: str) -> None:
    """Cache a plan and the price of its charge for our metric (for the portal)."""
    charge = next(
        (
            c
            for c in plan.get("charges") or []
            if c.get("billable_metric_code") == metric_code
            or (c.get("billable_metric") or {}).get("code") == metric_code
        ),
        None,
    )
    props = (charge or {}).get("properties") or {}
    await conn.execute(
        """
        INSERT INTO billing.lago_plans
            (code, name, currency, amount_cents, interval, charge_model, unit_amount,
             charge_properties, fetched_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
        ON CONFLICT (code) DO UPDATE SET
            name = EXCLUDED.name, currency = EXCLUDED.currency, amount_cents = EXCLUDED.amount_cents,
            interval = EXCLUDED.interval, charge_model = EXCLUDED.charge_model,
            unit_amount = EXCLUDED.unit_amount, charge_properties = EXCLUDED.charge_properties,
            fetched_at = now()
        """,
        plan["code"],
        plan.get("name"),
        plan.get("amount_currency"),
        plan.get("amount_cents"),
        plan.get("interval"),
        (charge or {}).get("charge_model"),
        props.get("amount"),
        props or None,
    )


async def list_lago_plans(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT code, name, currency, amount_cents, interval, charge_model, unit_amount, "
        "charge_properties, fetched_at FROM billing.lago_plans ORDER BY code"
    )


async def get_price_for_subscription(
    conn: asyncpg.Connection, external_subscription_id: str
) -> asyncpg.Record | None:
    """The cached plan and per-kWh price of a subscription (portal)."""
    return await conn.fetchrow(
        """
        SELECT p.code, p.name, p.currency, p.charge_model, p.unit_amount, p.fetched_at
        FROM billing.lago_subscriptions s JOIN billing.lago_plans p ON p.code = s.plan_code
        WHERE s.external_id = $1
        """,
        external_subscription_id,
    )


# ------------------------------------------------------------------ operators


async def list_unbillable(
    conn: asyncpg.Connection,
    *,
    code: str | None = None,
    include_tests: bool = False,
    limit: int = 100,
    after_id: int | None = None,
) -> list[asyncpg.Record]:
    """Transactions held back from billing, with the reason, oldest transaction first."""
    return await conn.fetch(
        """
        SELECT s.transaction_id, s.unbillable_code, s.unbillable_reason, s.held_since,
               s.recorded_wh, s.billed_wh, t.id_tag, cb.charge_box_id, t.connector_id,
               t.start_timestamp, t.stop_timestamp, t.meter_start, t.meter_stop,
               (t.meter_stop - t.meter_start) AS energy_wh
        FROM billing.transaction_sync_state s
        JOIN ocpp.transactions t ON t.id = s.transaction_id
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        WHERE s.unbillable_code IS NOT NULL
          AND ($1::text IS NULL OR s.unbillable_code = $1)
          AND ($2 OR s.unbillable_code <> 'test')
          AND ($4::int IS NULL OR s.transaction_id > $4)
        ORDER BY s.transaction_id
        LIMIT $3
        """,
        code,
        include_tests,
        max(1, min(limit, 1000)),
        after_id,
    )


async def unbillable_summary(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Held transactions per reason code with their energy (dashboards, health)."""
    return await conn.fetch(
        """
        SELECT s.unbillable_code AS code, count(*) AS transactions,
               COALESCE(sum(t.meter_stop - t.meter_start) FILTER (WHERE t.meter_stop IS NOT NULL), 0)
                   AS energy_wh
        FROM billing.transaction_sync_state s JOIN ocpp.transactions t ON t.id = s.transaction_id
        WHERE s.unbillable_code IS NOT NULL AND s.unbillable_code <> 'test'
        GROUP BY s.unbillable_code ORDER BY s.unbillable_code
        """
    )


async def get_hold(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    """One session's billing state: why it is held (if it is) and what was recorded so far."""
    return await conn.fetchrow(
        """
        SELECT s.transaction_id, s.unbillable_code, s.unbillable_reason, s.recorded_wh, s.billed_wh,
               s.final_recorded, s.energy_override_wh, t.meter_start, t.meter_stop, t.stop_timestamp
        FROM billing.transaction_sync_state s JOIN ocpp.transactions t ON t.id = s.transaction_id
        WHERE s.transaction_id = $1
        """,
        transaction_id,
    )


async def retry_refused_events(conn: asyncpg.Connection, transaction_id: int) -> int:
    """After fixing the cause in Lago: send this session's refused events again on the next run.

    The hold stays until they are delivered (then `mark_events_sent` clears it); if Lago
    refuses them again, they are held again with its new reason.
    """
    status = await conn.execute(
        "UPDATE billing.usage_events SET status = 'pending', last_error = NULL "
        "WHERE ocpp_transaction_id = $1 AND status = 'invalid'",
        transaction_id,
    )
    return int(status.split()[-1])


async def set_energy_override(
    conn: asyncpg.Connection, transaction_id: int, energy_wh: int, by: str
) -> None:
    """An operator settles an anomaly: bill this energy (Wh) for the session."""
    if energy_wh < 0:
        raise InvalidInput("the energy to bill cannot be negative")
    status = await conn.execute(
        """
        UPDATE billing.transaction_sync_state
        SET energy_override_wh = $2, energy_override_by = $3, updated_at = now()
        WHERE transaction_id = $1 AND NOT final_recorded
        """,
        transaction_id,
        energy_wh,
        by,
    )
    if status == "UPDATE 0":
        raise NotFound(f"transaction {transaction_id} is not waiting for billing")


async def billing_overview(conn: asyncpg.Connection) -> asyncpg.Record:
    """Counts for an at-a-glance view: pending and refused events, held transactions, last run."""
    return await conn.fetchrow(
        """
        SELECT
            (SELECT count(*) FROM billing.usage_events WHERE status = 'pending') AS pending_events,
            (SELECT count(*) FROM billing.usage_events WHERE status = 'invalid') AS invalid_events,
            (SELECT COALESCE(sum(wh), 0) FROM billing.usage_events WHERE status = 'sent') AS billed_wh,
            (SELECT count(*) FROM billing.transaction_sync_state
             WHERE unbillable_code IS NOT NULL AND unbillable_code <> 'test') AS held_transactions,
            (SELECT max(finished_at) FROM billing.sync_runs WHERE status = 'succeeded') AS last_success_at
        """
    )


# ------------------------------------------------------------------ reconciliation


async def ledger_totals(
    conn: asyncpg.Connection, *, start: datetime, end: datetime, code: str
) -> dict[str, int]:
    """Wh the ledger says Lago accepted, per subscription, for events in [start, end)."""
    rows = await conn.fetch(
        """
        SELECT external_subscription_id, sum(wh)::bigint AS wh
        FROM billing.usage_events
        WHERE status = 'sent' AND code = $3 AND event_timestamp >= $1 AND event_timestamp < $2
        GROUP BY external_subscription_id
        """,
        start,
        end,
        code,
    )
    return {r["external_subscription_id"]: r["wh"] for r in rows}


async def ledger_events(
    conn: asyncpg.Connection, *, subscription: str, start: datetime, end: datetime, code: str
) -> dict[str, tuple[int, str]]:
    """transaction_id -> (Wh, status) of a subscription's events in [start, end)."""
    rows = await conn.fetch(
        """
        SELECT transaction_id, wh, status FROM billing.usage_events
        WHERE external_subscription_id = $1 AND code = $4
          AND event_timestamp >= $2 AND event_timestamp < $3
        """,
        subscription,
        start,
        end,
        code,
    )
    return {r["transaction_id"]: (r["wh"], r["status"]) for r in rows}


# ------------------------------------------------------------------ webhooks and invoices


async def store_lago_webhook(
    conn: asyncpg.Connection,
    *,
    unique_key: str,
    webhook_type: str,
    object_type: str | None,
    payload: dict[str, Any],
) -> bool:
    """Keep a received webhook; False when it was received before (Lago retried)."""
    inserted = await conn.fetchval(
        """
        INSERT INTO billing.lago_webhooks (unique_key, webhook_type, object_type, payload)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (unique_key) DO UPDATE SET deliveries = billing.lago_webhooks.deliveries + 1
        RETURNING (xmax = 0)
        """,
        unique_key,
        webhook_type,
        object_type,
        payload,
    )
    return bool(inserted)


async def upsert_invoice(conn: asyncpg.Connection, invoice: dict[str, Any]) -> asyncpg.Record:
    """Keep Lago's invoice locally, linked to our customer by external ids."""
    customer = invoice.get("customer") or {}
    subscription_ids = [
        s.get("external_id") for s in invoice.get("subscriptions") or [] if s.get("external_id")
    ]
    issuing = invoice.get("issuing_date")
    issuing_date = datetime.fromisoformat(issuing).date() if isinstance(issuing, str) and issuing else None
    return await conn.fetchrow(
        """
        INSERT INTO app.invoices
            (lago_id, customer_id, lago_customer_external_id, subscription_ids, number,
             invoice_type, status, payment_status, currency, total_amount_cents, issuing_date,
             file_url, payload)
        VALUES ($1,
                (SELECT c.id FROM app.customers c
                 WHERE ($2::text IS NOT NULL AND c.lago_external_customer_id = $2)
                    OR c.lago_subscription_id = ANY($3::text[])
                 ORDER BY (c.lago_external_customer_id = $2) DESC NULLS LAST LIMIT 1),
                $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (lago_id) DO UPDATE SET
            customer_id = COALESCE(EXCLUDED.customer_id, app.invoices.customer_id),
            subscription_ids = EXCLUDED.subscription_ids, number = EXCLUDED.number,
            invoice_type = EXCLUDED.invoice_type, status = EXCLUDED.status,
            payment_status = EXCLUDED.payment_status, currency = EXCLUDED.currency,
            total_amount_cents = EXCLUDED.total_amount_cents, issuing_date = EXCLUDED.issuing_date,
            file_url = COALESCE(EXCLUDED.file_url, app.invoices.file_url),
            payload = EXCLUDED.payload, updated_at = now()
        RETURNING id, lago_id, customer_id, number, status, payment_status, currency,
                  total_amount_cents, issuing_date, file_url, email_queued_at
        """,
        invoice["lago_id"],
        customer.get("external_id"),
        subscription_ids,
        invoice.get("number"),
        invoice.get("invoice_type"),
        invoice.get("status"),
        invoice.get("payment_status"),
        invoice.get("currency"),
        invoice.get("total_amount_cents"),
        issuing_date,
        invoice.get("file_url"),
        invoice,
    )


async def claim_invoice_email(conn: asyncpg.Connection, invoice_id: int) -> asyncpg.Record | None:
    """Mark the invoice-available mail as queued; None if it was queued before.

    Returns the customer's email and name for the mail.
    """
    return await conn.fetchrow(
        """
        WITH upd AS (
            UPDATE app.invoices SET email_queued_at = now()
            WHERE id = $1 AND email_queued_at IS NULL AND customer_id IS NOT NULL
            RETURNING customer_id
        )
        SELECT u.email, c.name, c.receipts_enabled
        FROM upd JOIN app.customers c ON c.id = upd.customer_id JOIN app.users u ON u.id = c.user_id
        """,
        invoice_id,
    )


async def list_invoices(
    conn: asyncpg.Connection, *, customer_id: int | None = None, limit: int = 100
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT i.id, i.lago_id, i.customer_id, u.email AS customer_email, i.number, i.status,
               i.payment_status, i.currency, i.total_amount_cents, i.issuing_date, i.file_url,
               i.created_at, i.updated_at
        FROM app.invoices i
        LEFT JOIN app.customers c ON c.id = i.customer_id
        LEFT JOIN app.users u ON u.id = c.user_id
        WHERE $1::bigint IS NULL OR i.customer_id = $1
        ORDER BY i.issuing_date DESC NULLS LAST, i.id DESC
        LIMIT $2
        """,
        customer_id,
        max(1, min(limit, 1000)),
    )
