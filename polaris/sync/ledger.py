"""The ledger as an outbox: decide events and write them first, then deliver what is pending.

Planning writes each event (pending) together with the transaction's recorded energy in
one statement; delivery sends pending events and marks those Lago accepted. A crash
between the two leaves pending events that the next run sends again under the same
transaction_id, which Lago answers `value_already_exist` for when it had them: no kWh is
lost and none is counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from polaris.db.repos import billing
from polaris.logs import get_logger
from polaris.sync import rating
from polaris.sync.lago import (
    BATCH_MAX,
    SUBSCRIPTION_PREFERENCE,
    LagoClient,
    LagoError,
    preferred_subscriptions,
)

log = get_logger(__name__)

# Subscriptions Lago knows are re-checked this often; unknown ones on every run.
SUBSCRIPTION_RECHECK_S = 6 * 3600
# Lago bills only an active subscription: events for a pending one are never invoiced.
ACTIVE_SUBSCRIPTION_STATUSES = ("active",)


@dataclass
class PlanStats:
    transactions_seen: int = 0
    events_recorded: int = 0
    held: int = 0
    holds_by_code: dict[str, int] = field(default_factory=dict)


@dataclass
class DeliveryStats:
    events_sent: int = 0
    wh_sent: int = 0
    duplicates: int = 0
    invalid: int = 0
    error: str | None = None


# Above this many subscriptions to check, one listing of Lago's subscriptions is cheaper.
LIST_SUBSCRIPTIONS_ABOVE = 20
SUBSCRIPTION_STATUSES = SUBSCRIPTION_PREFERENCE


async def refresh_subscriptions(
    conn: asyncpg.Connection, client: LagoClient, external_ids: list[str], *, concurrency: int = 8
) -> None:
    """Ask Lago about subscriptions we have not checked lately; cache the answers."""
    todo = await billing.subscriptions_to_check(conn, external_ids, max_age_s=SUBSCRIPTION_RECHECK_S)
    if not todo:
        return
    if len(todo) > LIST_SUBSCRIPTIONS_ABOVE:
        listed = preferred_subscriptions(
            await client.list_subscriptions(**{"status[]": list(SUBSCRIPTION_STATUSES)})
        )
        for external_id in [x for x in todo if x in listed]:
            await billing.save_lago_subscription(conn, external_id, listed[external_id])
        todo = [x for x in todo if x not in listed]
    sem = asyncio.Semaphore(concurrency)

    async def one(external_id: str) -> tuple[str, dict[str, Any] | None]:
        async with sem:
            return external_id, await client.get_subscription(external_id)

    for external_id, sub in await asyncio.gather(*(one(x) for x in todo)):
        if sub is None:
            log.warning("lago subscription not found", external_subscription_id=external_id)
        await billing.save_lago_subscription(conn, external_id, sub)


def _inactive_reason(subscription: str, known: asyncpg.Record) -> str:
    status = known["status"]
    if status == "pending":
        return (
            f"Lago subscription {subscription} is pending (not started): Lago never bills events "
            "for a pending subscription; they are sent once it is active"
        )
    return (
        f"Lago subscription {subscription} is {status}: Lago does not bill it; give the customer "
        "an active subscription in Lago (a plan change keeps the external id: it is picked up by itself)"
    )


def to_view(row: asyncpg.Record, subs: dict[str, asyncpg.Record]) -> rating.TransactionView:
    """A planner's view of a fetched row: resolve card -> customer -> subscription."""
    subscription: str | None = row["pinned_subscription"]
    problem: tuple[str, str] | None = None
    tag = row["id_tag"]
    if subscription is None:
        if row["tag_pk"] is None:
            problem = (
                rating.NO_CUSTOMER,
                f"card {tag} is not registered: add it with `polaris admin tag add {tag} --customer EMAIL`",
            )
        elif row["customer_id"] is None:
            problem = (rating.NO_CUSTOMER, f"card {tag} belongs to no customer")
        elif row["lago_subscription_id"] is None:
            problem = (
                rating.NO_SUBSCRIPTION,
                f"customer {row['customer_email']} (card {tag}) has no Lago subscription",
            )
        else:
            subscription = row["lago_subscription_id"]
            known = subs.get(subscription)
            if known is None or not known["found"]:
                problem = (
                    rating.UNKNOWN_SUBSCRIPTION,
                    f"Lago has no subscription {subscription} (customer {row['customer_email']}): "
                    "create it in Lago or correct the customer's subscription id",
                )
            elif known["status"] not in ACTIVE_SUBSCRIPTION_STATUSES:
                problem = (rating.INACTIVE_SUBSCRIPTION, _inactive_reason(subscription, known))
    registers = rating.Registers(
        count=row["register_count"] or 0,
        latest_wh=row["latest_wh"],
        latest_at=row["latest_at"],
        min_wh=row["min_wh"],
        max_wh=row["max_wh"],
        decreases=row["decreases"] or 0,
    )
    return rating.TransactionView(
        id=row["id"],
        charge_box_id=row["charge_box_id"],
        connector_id=row["connector_id"],
        id_tag=tag,
        start=row["start_timestamp"],
        meter_start=row["meter_start"],
        stop=row["stop_timestamp"],
        meter_stop=row["meter_stop"],
        is_test=row["is_test"],
        subscription_id=subscription,
        mapping_problem=problem,
        recorded_wh=row["recorded_wh"],
        final_recorded=row["final_recorded"],
        energy_override_wh=row["energy_override_wh"],
        registers=registers,
    )


async def plan_and_record(
    pool: asyncpg.Pool,
    client: LagoClient,
    *,
    metric_code: str,
    run_id: int | None,
    chunk: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> PlanStats:
    """Walk every transaction with work left; write its events or its hold."""
    stats = PlanStats()
    after = 0
    async with pool.acquire() as conn:
        deployment = await billing.deployment_id(conn)
    while True:
        async with pool.acquire() as conn:
            rows = await billing.fetch_open_transactions(conn, after_id=after, limit=chunk)
            if not rows:
                return stats
            after = rows[-1]["id"]
            wanted = [
                r["lago_subscription_id"]
                for r in rows
                if r["pinned_subscription"] is None and r["lago_subscription_id"] and not r["is_test"]
            ]
            # Pinned ones too: their open billing period decides the timestamps sent.
            pinned = [r["pinned_subscription"] for r in rows if r["pinned_subscription"] and not r["is_test"]]
            await refresh_subscriptions(conn, client, wanted + pinned)
            subs = await billing.get_lago_subscriptions(conn, wanted)
            events: list[rating.UsageEvent] = []
            holds: list[tuple[int, str, str, bool]] = []
            clears: list[int] = []
            for row in rows:
                plan = rating.plan_transaction(to_view(row, subs), metric_code, deployment=deployment)
                events += plan.events
                if plan.hold is not None:
                    holds.append((plan.transaction_id, plan.hold[0], plan.hold[1], plan.done))
                    if plan.hold[0] != rating.TEST:
                        stats.holds_by_code[plan.hold[0]] = stats.holds_by_code.get(plan.hold[0], 0) + 1
                elif row["unbillable_code"] is not None and not plan.events:
                    clears.append(plan.transaction_id)
            async with conn.transaction():
                stats.events_recorded += await billing.record_events(conn, events, run_id=run_id)
                stats.held += await billing.hold_transactions(conn, holds)
                await billing.clear_holds(conn, clears)
        stats.transactions_seen += len(rows)
        if progress:
            progress(len(rows))


def _lago_event(row: asyncpg.Record, moved: dict[str, tuple[Any, dict]] | None = None) -> dict[str, Any]:
    ts, props = (moved or {}).get(row["transaction_id"], (row["event_timestamp"], row["properties"]))
    return {
        "transaction_id": row["transaction_id"],
        "external_subscription_id": row["external_subscription_id"],
        "code": row["code"],
        "timestamp": int(ts.timestamp()),
        "properties": props,
    }


def late_moves(rows: list[asyncpg.Record]) -> dict[str, tuple[Any, dict]]:
    """Events timed before their subscription's open billing period (an offline queue, a
    backfill, a settled anomaly, a released hold): Lago bills an event in the period its
    timestamp falls in and never bills one in an invoiced period, so each is sent at the
    open period's start, its real time kept in `occurred_at` (and start/stop)."""
    out: dict[str, tuple[Any, dict]] = {}
    for r in rows:
        open_from = r["open_from"]
        if open_from is None or r["event_timestamp"] >= open_from:
            continue
        props = dict(r["properties"])
        props.setdefault("occurred_at", r["event_timestamp"].isoformat())
        props["billed_in_period_from"] = open_from.isoformat()
        out[r["transaction_id"]] = (open_from, props)
    return out


async def deliver_pending(
    pool: asyncpg.Pool,
    client: LagoClient,
    *,
    run_id: int | None,
    concurrency: int = 4,
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
    planning_done: asyncio.Event | None = None,
) -> DeliveryStats:
    """Send every pending event in batches of at most 100; stop at the first Lago outage.

    A reader walks the pending events in order and feeds a queue; `concurrency` senders
    each post a batch and mark it, so Lago always has batches in flight. With
    `planning_done`, delivery runs while planning still writes events, until it is set.
    """
    stats = DeliveryStats()
    queue: asyncio.Queue[list[asyncpg.Record] | None] = asyncio.Queue(maxsize=concurrency * 2)
    failed = asyncio.Event()

    async def reader() -> None:
        after = 0
        try:
            while not failed.is_set():
                final = planning_done is None or planning_done.is_set()
                async with pool.acquire() as conn:
                    rows = await billing.fetch_pending_events(conn, limit=chunk, after_seq=after)
                if not rows:
                    if final:
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(planning_done.wait(), 0.05)  # type: ignore[union-attr]
                    continue
                after = rows[-1]["seq"]
                for i in range(0, len(rows), BATCH_MAX):
                    if failed.is_set():
                        return
                    await queue.put(rows[i : i + BATCH_MAX])
        finally:
            for _ in range(concurrency):
                await queue.put(None)

    async def sender() -> None:
        while (batch := await queue.get()) is not None:
            if failed.is_set():
                continue  # drain: Lago is down, these stay pending for the next run
            tids = [r["transaction_id"] for r in batch]
            moved = late_moves(batch)
            if moved:
                async with pool.acquire() as conn:
                    await billing.move_into_open_period(conn, [(t, ts, p) for t, (ts, p) in moved.items()])
                log.info("late usage sent into the open billing period", events=len(moved))
            try:
                result = await client.send_events([_lago_event(r, moved) for r in batch])
            except LagoError as exc:
                if stats.error is None:
                    stats.error = str(exc)
                failed.set()
                async with pool.acquire() as conn:
                    await billing.note_send_failure(conn, tids, str(exc))
                continue
            async with pool.acquire() as conn, conn.transaction():
                n, wh = await billing.mark_events_sent(
                    conn, result.delivered + result.duplicates, duplicates=result.duplicates, run_id=run_id
                )
                invalid = await billing.mark_events_invalid(conn, result.invalid, run_id=run_id)
            stats.events_sent += n
            stats.wh_sent += wh
            stats.duplicates += len(result.duplicates)
            stats.invalid += invalid
            for tid, reason in result.invalid.items():
                log.warning("lago refused usage event", transaction_id=tid, reason=reason)
            if progress:
                progress(len(batch))

    tasks = [asyncio.create_task(reader())] + [asyncio.create_task(sender()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats
