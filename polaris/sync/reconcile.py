"""`polaris sync reconcile`: what the ledger says Lago accepted vs what Lago holds.

Per subscription, for events whose timestamp is in [start, end): the energy on each side
and the transaction ids present on one side only or with a different value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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

    @property
    def ok(self) -> bool:
        return not (self.missing_in_lago or self.unknown_to_ledger or self.value_mismatch) and (
            self.ledger_wh == self.lago_wh
        )

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
        reports.append(report)
    return reports
