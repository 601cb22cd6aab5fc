"""What decides, from local data only, whether a card may start charging.

Two policies (CHARGING_POLICY): `subscription` (ours) also refuses a card with no active
customer or no billable Lago subscription; `open` (the original product's) refuses only
what the card itself says (blocked, expired), so a moved deployment's cards keep working.
Unset, a deployment whose cards were imported from the original runs `open`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

# Lago subscription statuses under which kWh cannot be billed (active and pending can).
ENDED_SUBSCRIPTION = ("terminated", "canceled")


async def card_facts(conn: asyncpg.Connection, id_tag: str) -> asyncpg.Record | None:
    """The card with its customer's and user's state; None for a card nobody registered."""
    return await conn.fetchrow(
        """
        SELECT t.id_tag, t.blocked, t.expiry_date, t.unknown, t.customer_id,
               c.active AS customer_active, c.lago_subscription_id, u.active AS user_active,
               ls.found AS subscription_found, ls.status AS subscription_status
        FROM app.id_tags t
        LEFT JOIN app.customers c ON c.id = t.customer_id
        LEFT JOIN app.users u ON u.id = c.user_id
        -- What the sync worker last learned from Lago (API or webhooks); no row: not checked yet.
        LEFT JOIN billing.lago_subscriptions ls ON ls.external_id = c.lago_subscription_id
        WHERE lower(t.id_tag) = lower($1)
        """,
        id_tag,
    )


POLICIES = ("open", "subscription")


async def effective_policy(conn: asyncpg.Connection, setting: str | None) -> str:
    """CHARGING_POLICY, or when unset: `open` once cards came from the original (SteVe), else `subscription`."""
    if setting is not None:
        return setting
    imported = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ocpp.steve_imports WHERE steve_table = 'ocpp_tag')")
    return "open" if imported else "subscription"


def refusal(card: asyncpg.Record | None, *, now: datetime | None = None, policy: str = "subscription") -> str | None:
    """Why this card may not charge under `policy` (a reason for the log and the console), or
    None when it may.

    An unregistered card is not refused here: the OCPP server already answers Invalid
    for it, and keeps the energy of an offline session started with it.
    """
    if card is None:
        return None
    now = now or datetime.now(UTC)
    if card["blocked"]:
        return "card blocked"
    if card["expiry_date"] is not None and card["expiry_date"] <= now:
        return "card expired"
    if policy == "open":
        return None
    if card["customer_id"] is None:
        return "card not linked to a customer"
    if not card["customer_active"] or not card["user_active"]:
        return "customer deactivated"
    if not card["lago_subscription_id"]:
        return "customer has no subscription"
    if card["subscription_found"] is False:
        return "subscription unknown to Lago"
    if card["subscription_status"] in ENDED_SUBSCRIPTION:
        return "subscription ended"
    return None
