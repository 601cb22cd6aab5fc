"""Sync runs: one row per pass of the worker, its counts and its error."""

from __future__ import annotations

import asyncpg


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


async def changed_sync_runs(conn: asyncpg.Connection, *, minutes: int) -> list[asyncpg.Record]:
    """Sync runs started or finished in the last `minutes`, oldest first (for the admin stream)."""
    return await conn.fetch(
        """
        SELECT id, status, tier, trigger, started_at, finished_at, events_sent, kwh_sent, error
        FROM billing.sync_runs
        WHERE started_at > now() - make_interval(mins => $1)
           OR finished_at > now() - make_interval(mins => $1)
        ORDER BY id
        """,
        minutes,
    )
