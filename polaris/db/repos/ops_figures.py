"""Figures on-call watches, read in one round trip: for the web process's /metrics gauges."""

from __future__ import annotations

import asyncpg

FIGURES_SQL = """
SELECT
    (SELECT count(*) FROM ocpp.charge_boxes
      WHERE connected AND active AND NOT is_test)                               AS chargers_connected,
    (SELECT count(*) FROM ocpp.charge_boxes WHERE active AND NOT is_test)        AS chargers_registered,
    (SELECT count(*) FROM app.email_outbox WHERE status IN ('pending', 'sending')) AS email_outbox_depth,
    (SELECT extract(epoch FROM now() - min(created_at)) FROM app.email_outbox
      WHERE status IN ('pending', 'sending'))                                    AS email_outbox_oldest_s,
    (SELECT count(*) FROM app.push_outbox WHERE status IN ('pending', 'sending')) AS push_outbox_depth,
    (SELECT extract(epoch FROM now() - max(finished_at)) FROM billing.sync_runs
      WHERE status IN ('succeeded', 'partial'))                                  AS sync_last_success_age_s,
    (SELECT count(*) FROM billing.usage_events WHERE status = 'pending')         AS usage_events_pending,
    (SELECT extract(epoch FROM now() - min(created_at)) FROM billing.usage_events
      WHERE status = 'pending')                                                  AS usage_events_oldest_s,
    (SELECT count(*) FROM billing.transaction_sync_state
      WHERE unbillable_reason IS NOT NULL)                                       AS unbillable_sessions,
    (SELECT count(*) FROM app.operator_alerts WHERE cleared_at IS NULL)          AS alerts_open
"""


async def figures(conn: asyncpg.Connection) -> dict[str, float | None]:
    """Each figure by name; an age is None when there is nothing to be late (no run, no mail)."""
    row = await conn.fetchrow(FIGURES_SQL)
    return {k: (float(v) if v is not None else None) for k, v in dict(row).items()}
