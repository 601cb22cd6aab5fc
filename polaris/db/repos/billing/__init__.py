"""Billing sync state: runs, cadence, per-transaction state, the usage-event ledger,
what Lago told us (subscriptions, plans, webhooks) and local invoices.

The ledger is an outbox: an event is written (pending) before it is sent and marked sent
after Lago accepted it, so a crash anywhere resumes without losing or doubling a kWh.
The admin API (web) and the sync worker both use these functions, as `billing.<name>`:

  cadence         tier, idle ticks, the admin's pin, sync-now requests, the discovery floor
  runs            one row per pass of the worker
  discovery       which transactions the sync follows, the events planned for them, holds
  delivery        pending events read in order, marked sent or invalid
  catalogue       Lago's subscriptions and plans, cached
  operators       unbillable sessions, holds, energy overrides, the overview
  reconciliation  ledger totals and events, compared with Lago's
  invoices        Lago webhooks as received, local invoices
"""

from __future__ import annotations

from polaris.db.repos.billing.cadence import (
    TIERS,
    activity_since,
    deployment_id,
    ensure_discovery_floor,
    get_cadence_state,
    request_sync_now,
    save_cadence_state,
    set_cadence_pin,
)
from polaris.db.repos.billing.catalogue import (
    get_lago_subscriptions,
    get_price_for_subscription,
    list_lago_plans,
    list_unknown_subscriptions,
    plans_to_fetch,
    save_lago_plan,
    save_lago_subscription,
    save_subscription_price,
    subscriptions_to_check,
    subscriptions_to_price,
)
from polaris.db.repos.billing.delivery import (
    count_moved_events,
    count_pending_events,
    fetch_pending_events,
    hold_reported_events,
    mark_events_invalid,
    mark_events_sent,
    move_into_open_period,
    note_send_failure,
)
from polaris.db.repos.billing.discovery import (
    ENERGY_REGISTER,
    clear_holds,
    count_open_transactions,
    discover_backfill,
    discover_recent,
    discover_transactions,
    fetch_open_transactions,
    hold_transactions,
    record_events,
)
from polaris.db.repos.billing.invoices import (
    claim_invoice_email,
    list_invoices,
    store_lago_webhook,
    upsert_invoice,
)
from polaris.db.repos.billing.operators import (
    billing_overview,
    get_hold,
    list_unbillable,
    retry_refused_events,
    set_energy_override,
    unbillable_summary,
)
from polaris.db.repos.billing.reconciliation import (
    ledger_events,
    ledger_sent_wh,
    ledger_totals,
)
from polaris.db.repos.billing.runs import (
    changed_sync_runs,
    fail_stale_runs,
    finish_sync_run,
    list_sync_runs,
    start_sync_run,
)

__all__ = [
    "ENERGY_REGISTER",
    "TIERS",
    "activity_since",
    "billing_overview",
    "changed_sync_runs",
    "claim_invoice_email",
    "clear_holds",
    "deployment_id",
    "count_moved_events",
    "count_open_transactions",
    "count_pending_events",
    "discover_backfill",
    "discover_recent",
    "discover_transactions",
    "ensure_discovery_floor",
    "fail_stale_runs",
    "fetch_open_transactions",
    "fetch_pending_events",
    "finish_sync_run",
    "get_cadence_state",
    "get_hold",
    "get_lago_subscriptions",
    "get_price_for_subscription",
    "hold_reported_events",
    "hold_transactions",
    "ledger_events",
    "ledger_sent_wh",
    "ledger_totals",
    "list_invoices",
    "list_lago_plans",
    "list_sync_runs",
    "list_unbillable",
    "list_unknown_subscriptions",
    "mark_events_invalid",
    "mark_events_sent",
    "move_into_open_period",
    "note_send_failure",
    "plans_to_fetch",
    "record_events",
    "request_sync_now",
    "retry_refused_events",
    "save_cadence_state",
    "save_lago_plan",
    "save_lago_subscription",
    "save_subscription_price",
    "set_cadence_pin",
    "set_energy_override",
    "start_sync_run",
    "store_lago_webhook",
    "subscriptions_to_check",
    "subscriptions_to_price",
    "unbillable_summary",
    "upsert_invoice",
]
