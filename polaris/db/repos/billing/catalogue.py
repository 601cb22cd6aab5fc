"""What Lago told us about subscriptions and plans, cached for pricing and for operators."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg


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
           -- pending or terminated: asked again soon (it starts, or the customer moves on)
           OR (s.status IS DISTINCT FROM 'active' AND s.checked_at < now() - interval '5 minutes')
        """,
        list(set(external_ids)),
        max_age_s,
    )
    return [r["id"] for r in rows]


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


async def save_lago_subscription(
    conn: asyncpg.Connection, external_id: str, subscription: dict[str, Any] | None
) -> None:
    """Cache what Lago said about a subscription (None: Lago answered 404 for every status)."""
    sub = subscription or {}
    plan = sub.get("plan") if isinstance(sub.get("plan"), dict) else None
    await conn.execute(
        """
        INSERT INTO billing.lago_subscriptions
            (external_id, found, status, plan_code, external_customer_id, lago_id, checked_at,
             current_period_started_at, started_at, plan, current_period_ending_at)
        VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, $9, $10)
        ON CONFLICT (external_id) DO UPDATE SET
            found = EXCLUDED.found, status = EXCLUDED.status, plan_code = EXCLUDED.plan_code,
            external_customer_id = EXCLUDED.external_customer_id, lago_id = EXCLUDED.lago_id,
            checked_at = now(), current_period_started_at = EXCLUDED.current_period_started_at,
            current_period_ending_at = EXCLUDED.current_period_ending_at,
            started_at = EXCLUDED.started_at,
            -- a listing carries no plan: keep the one a look-up brought
            plan = COALESCE(EXCLUDED.plan, CASE WHEN billing.lago_subscriptions.plan_code
                                                     IS NOT DISTINCT FROM EXCLUDED.plan_code
                                                THEN billing.lago_subscriptions.plan END)
        """,
        external_id,
        subscription is not None,
        sub.get("status"),
        sub.get("plan_code"),
        sub.get("external_customer_id"),
        sub.get("lago_id"),
        _ts(sub.get("current_billing_period_started_at")),
        _ts(sub.get("started_at")),
        plan,
        _ts(sub.get("current_billing_period_ending_at")),
    )


async def get_lago_subscriptions(
    conn: asyncpg.Connection, external_ids: Sequence[str]
) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT external_id, found, status, plan_code, external_customer_id, checked_at, "
        "current_period_started_at, started_at, plan "
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
    """The cached plan and price of a subscription (portal): render it with polaris.sync.pricing."""
    return await conn.fetchrow(
        """
        SELECT s.plan_code AS code, COALESCE(s.plan->>'name', p.name) AS name,
               COALESCE(s.plan->>'amount_currency', p.currency) AS currency,
               p.charge_model, p.unit_amount, p.charge_properties, p.fetched_at,
               -- the subscription's own plan (with its overrides), when a look-up brought it
               s.plan AS subscription_plan, p.code IS NOT NULL AS plan_cached,
               s.price_per_kwh, s.price_text, s.price_model
        FROM billing.lago_subscriptions s LEFT JOIN billing.lago_plans p ON p.code = s.plan_code
        WHERE s.external_id = $1 AND (s.plan IS NOT NULL OR p.code IS NOT NULL)
        """,
        external_subscription_id,
    )


async def subscriptions_to_price(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every found subscription with its own plan and the cached plan by code, to price."""
    return await conn.fetch(
        """
        SELECT s.external_id, s.plan AS subscription_plan, p.currency, p.charge_model, p.charge_properties
        FROM billing.lago_subscriptions s LEFT JOIN billing.lago_plans p ON p.code = s.plan_code
        WHERE s.found
        """
    )


async def save_subscription_price(
    conn: asyncpg.Connection, external_id: str, *, per_kwh: Any, text: str, model: str | None
) -> None:
    await conn.execute(
        "UPDATE billing.lago_subscriptions SET price_per_kwh = $2, price_text = $3, price_model = $4 "
        "WHERE external_id = $1",
        external_id,
        per_kwh,
        text,
        model,
    )
