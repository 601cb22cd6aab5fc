"""`polaris sync reconcile`: what the ledger says Lago accepted vs what Lago holds and bills.

Per subscription, for events whose timestamp is in [start, end): the energy on each side
and the transaction ids present on one side only or with a different value. Lago accepts
(200) and stores events it will never bill (an unknown subscription or metric code, a
period already invoiced), so reconcile also compares what Lago *bills*: the units of our
metric in `current_usage` (the open period) and `past_usage` (the last invoiced periods)
against the Wh the ledger sent timed in each period. Stored but not billed is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from polaris.db.repos import billing
from polaris.sync.lago import LagoClient


@dataclass
class SubscriptionReport:
    subscription: str
    ledger_wh: int = 0
    lago_wh: int = 0
    # Sent according to the ledger, absent from Lago.
    missing_in_lago: list[str] = field(default_factory=list)
    # In Lago under our metric, unknown to the ledger or not marked sent in it.
    unknown_to_ledger: list[str] = field(default_factory=list)
    # Same transaction_id, different kWh.
    value_mismatch: list[str] = field(default_factory=list)
    # What Lago bills, per billing period: {"from", "to", "invoiced", "ledger_kwh", "billed_kwh"}.
    periods: list[dict[str, Any]] = field(default_factory=list)
    # Sent (and stored by Lago) but in no period's billed usage: never invoiced.
    unbilled_wh: int = 0
    # Why Lago's usage could not be read (unknown subscription or customer), if so.
    usage_problem: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing_in_lago or self.unknown_to_ledger or self.value_mismatch) and (
            self.ledger_wh == self.lago_wh
        ) and not self.unbilled_wh and self.usage_problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "ledger_kwh": float(Decimal(self.ledger_wh) / 1000),
            "lago_kwh": float(Decimal(self.lago_wh) / 1000),
            "difference_kwh": float(Decimal(self.lago_wh - self.ledger_wh) / 1000),
            "ok": self.ok,
            "missing_in_lago": self.missing_in_lago,
            "unknown_to_ledger": self.unknown_to_ledger,
            "value_mismatch": self.value_mismatch,
            "periods": self.periods,
            "unbilled_kwh": float(Decimal(self.unbilled_wh) / 1000),
            "usage_problem": self.usage_problem,
        }


def _wh(value: Any) -> int:
    return int((Decimal(str(value)) * 1000).to_integral_value())


async def reconcile(
    pool: asyncpg.Pool,
    client: LagoClient,
    *,
    code: str,
    start: datetime,
    end: datetime,
    subscriptions: list[str] | None = None,
) -> list[SubscriptionReport]:
    """Compare ledger and Lago for every subscription with events (or mapped) in the window."""
    async with pool.acquire() as conn:
        totals = await billing.ledger_totals(conn, start=start, end=end, code=code)
        if subscriptions is None:
            mapped = await conn.fetch(
                "SELECT lago_subscription_id FROM app.customers WHERE lago_subscription_id IS NOT NULL"
            )
            subscriptions = sorted(set(totals) | {r["lago_subscription_id"] for r in mapped})
    reports = []
    for sub in subscriptions:
        async with pool.acquire() as conn:
            ledger = await billing.ledger_events(conn, subscription=sub, start=start, end=end, code=code)
        lago_events = await client.list_events(
            external_subscription_id=sub, code=code, timestamp_from=start, timestamp_to=end
        )
        report = SubscriptionReport(sub)
        lago: dict[str, int] = {}
        for e in lago_events:
            ts = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00"))
            if not (start <= ts < end):
                continue  # Lago's timestamp_to is inclusive
            lago[e["transaction_id"]] = _wh((e.get("properties") or {}).get("value", 0))
        sent = {tid: wh for tid, (wh, status) in ledger.items() if status == "sent"}
        report.ledger_wh = sum(sent.values())
        report.lago_wh = sum(lago.values())
        report.missing_in_lago = sorted(set(sent) - set(lago))
        report.unknown_to_ledger = sorted(set(lago) - set(sent))
        report.value_mismatch = sorted(t for t in set(sent) & set(lago) if sent[t] != lago[t])
        await _compare_usage(pool, client, report, code=code)
        reports.append(report)
    return reports


def _billed_wh(usage: dict[str, Any], code: str) -> int:
    return sum(
        _wh(c.get("units") or 0)
        for c in usage.get("charges_usage") or []
        if (c.get("billable_metric") or {}).get("code") == code
    )


def _at(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


async def _compare_usage(pool: asyncpg.Pool, client: LagoClient, report: SubscriptionReport, *, code: str) -> None:
    """Ledger Wh per billing period vs the units Lago bills in it."""
    sub = report.subscription
    async with pool.acquire() as conn:
        known = (await billing.get_lago_subscriptions(conn, [sub])).get(sub)
        everything = await billing.ledger_sent_wh(
            conn, subscription=sub, code=code, start=datetime.fromtimestamp(0, UTC), end=None
        )
    if known is None or not known["found"] or not known["external_customer_id"]:
        report.usage_problem = "Lago has no such subscription: whatever it stored for it is never billed"
        report.unbilled_wh = everything
        return
    if known["status"] != "active":
        report.usage_problem = f"the subscription is {known['status']} in Lago: it bills nothing new"
    customer = known["external_customer_id"]
    current = await client.current_usage(customer, sub)
    if current is None:
        report.usage_problem = f"Lago has no current usage for customer {customer} / {sub}"
        report.unbilled_wh = everything
        return
    periods = [(current, False)] + [(p, True) for p in await client.past_usage(customer, sub, code=code)]
    for usage, invoiced in periods:
        start, end = _at(usage.get("from_datetime")), _at(usage.get("to_datetime"))
        if start is None:
            continue
        async with pool.acquire() as conn:
            # Lago's to_datetime is the period's last second, inclusive.
            ledger = await billing.ledger_sent_wh(
                conn, subscription=sub, code=code, start=start,
                end=None if end is None or not invoiced else end + timedelta(seconds=1),
            )
        billed = _billed_wh(usage, code)
        report.periods.append({
            "from": start.isoformat(), "to": end.isoformat() if end else None, "invoiced": invoiced,
            "ledger_kwh": float(Decimal(ledger) / 1000), "billed_kwh": float(Decimal(billed) / 1000),
        })
        report.unbilled_wh += max(ledger - billed, 0)
