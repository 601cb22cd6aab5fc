"""The data `polaris smoke` creates for one run, and its removal.

Everything a run creates is named after one random suffix (the run's id): the charger
SMOKE-<suffix>, the card SMOKE<suffix>, people at smoke-<suffix>...@polaris-smoke.invalid
(a reserved domain: no mail can ever reach it) and a Lago subscription id that Lago does
not know. Removal looks rows up by those exact names and by the keys of rows found that
way, so it never touches anything a run did not create.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from polaris.db.errors import InvalidInput
from polaris.db.repos import charge_boxes, customers, id_tags, sessions, users
from polaris.keys import generate_password

SMOKE_PREFIX = "SMOKE-"
SMOKE_DOMAIN = "polaris-smoke.invalid"
_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class SmokeNames:
    """The identities of one run's rows, all derived from its suffix."""

    suffix: str

    @classmethod
    def new(cls) -> SmokeNames:
        return cls("".join(secrets.choice(_ALPHABET) for _ in range(8)))

    @classmethod
    def from_charge_box_id(cls, charge_box_id: str) -> SmokeNames:
        suffix = charge_box_id[len(SMOKE_PREFIX):] if charge_box_id.startswith(SMOKE_PREFIX) else ""
        if len(suffix) != 8 or any(c not in _ALPHABET for c in suffix):
            raise InvalidInput(f"{charge_box_id!r} is not a smoke-test charger id (SMOKE- and 8 letters or digits)")
        return cls(suffix)

    @property
    def charge_box_id(self) -> str:
        return SMOKE_PREFIX + self.suffix

    @property
    def id_tag(self) -> str:
        return "SMOKE" + self.suffix  # 13 characters: within OCPP's 20

    @property
    def operator_email(self) -> str:
        return f"smoke-{self.suffix.lower()}-operator@{SMOKE_DOMAIN}"

    @property
    def customer_email(self) -> str:
        return f"smoke-{self.suffix.lower()}-driver@{SMOKE_DOMAIN}"

    @property
    def subscription_id(self) -> str:
        return f"polaris-smoke-{self.suffix.lower()}"


@dataclass(frozen=True)
class SmokeData:
    """What `create_smoke_data` made: the names, the secrets (shown to nobody) and row ids."""

    names: SmokeNames
    charger_key: str
    api_token: str
    charge_box_pk: int


async def create_smoke_data(
    conn: asyncpg.Connection, names: SmokeNames, *, token_lifetime: timedelta
) -> SmokeData:
    """Register a test charger (is_test), a test customer with a card, and an operator with a
    short-lived API token, in one transaction: all or nothing."""
    charger_key = generate_password(24)  # 32 characters: a valid AuthorizationKey
    async with conn.transaction():
        (box,) = await charge_boxes.add_charge_boxes(
            conn,
            [names.charge_box_id],
            charger_key,
            description="polaris smoke: test charger, removed after the run",
        )
        await conn.execute("UPDATE ocpp.charge_boxes SET is_test = true WHERE id = $1", box["id"])
        # The pre-authorize hook refuses a card without an active customer and subscription.
        await customers.add_customer(
            conn, names.customer_email, name="Polaris smoke test", lago_subscription_id=names.subscription_id
        )
        await id_tags.add_id_tag(
            conn, names.id_tag, customer_email=names.customer_email, label="polaris smoke test card"
        )
        operator = await users.add_user(conn, names.operator_email, "operator", name="Polaris smoke test")
        token, _ = await sessions.create_api_token(
            conn,
            operator["id"],
            name=f"polaris smoke {names.charge_box_id}",
            method="smoke",
            expires_at=datetime.now(UTC) + token_lifetime,
        )
    return SmokeData(names=names, charger_key=charger_key, api_token=token, charge_box_pk=box["id"])


async def transaction_billing_facts(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    """is_test of a transaction and how many usage events the billing ledger holds for it."""
    return await conn.fetchrow(
        """
        SELECT t.is_test,
               (SELECT count(*) FROM billing.usage_events e WHERE e.ocpp_transaction_id = t.id) AS usage_events
        FROM ocpp.transactions t WHERE t.id = $1
        """,
        transaction_id,
    )


async def delete_smoke_data(conn: asyncpg.Connection, names: SmokeNames) -> dict[str, int]:
    """Remove every row a run created or caused; return the number of rows per table.

    The charger must be a test charger (is_test): a run's names can never be taken over to
    delete a real charger's history.
    """
    counts: dict[str, int] = {}

    async def run(table: str, sql: str, *args: object) -> None:
        status = await conn.execute(sql, *args)
        n = int(status.split()[-1])
        if n:
            counts[table] = counts.get(table, 0) + n

    async with conn.transaction():
        box = await conn.fetchrow(
            "SELECT id, is_test FROM ocpp.charge_boxes WHERE charge_box_id = $1 FOR UPDATE", names.charge_box_id
        )
        if box is not None and not box["is_test"]:
            raise InvalidInput(f"charger {names.charge_box_id} is not a test charger: not deleting it")
        pk = box["id"] if box is not None else None
        tx_ids: list[int] = []
        if pk is not None:
            tx_ids = [r["id"] for r in await conn.fetch("SELECT id FROM ocpp.transactions WHERE charge_box_pk = $1", pk)]
        await run("billing.usage_events", "DELETE FROM billing.usage_events WHERE ocpp_transaction_id = ANY($1::int[])", tx_ids)
        await run(
            "billing.transaction_sync_state",
            "DELETE FROM billing.transaction_sync_state WHERE transaction_id = ANY($1::int[])",
            tx_ids,
        )
        await run(
            "billing.lago_subscriptions", "DELETE FROM billing.lago_subscriptions WHERE external_id = $1",
            names.subscription_id,
        )
        if pk is not None:
            # Meter values and reservations point at transactions without ON DELETE CASCADE.
            await run("ocpp.meter_values", "DELETE FROM ocpp.meter_values WHERE charge_box_pk = $1", pk)
            await run("ocpp.reservations", "DELETE FROM ocpp.reservations WHERE charge_box_pk = $1", pk)
            await run("ocpp.transactions", "DELETE FROM ocpp.transactions WHERE charge_box_pk = $1", pk)
        await run("ocpp.message_journal", "DELETE FROM ocpp.message_journal WHERE charge_box_id = $1", names.charge_box_id)
        await run("app.operator_alerts", "DELETE FROM app.operator_alerts WHERE subject = $1", names.charge_box_id)
        customer = await conn.fetchrow(
            "SELECT c.id FROM app.customers c JOIN app.users u ON u.id = c.user_id WHERE u.email = $1",
            names.customer_email,
        )
        customer_topic = f"customer:{customer['id']}" if customer is not None else None
        # Live events about the charger or its sessions (SSE replay), and any for the test customer.
        await run(
            "app.events",
            "DELETE FROM app.events WHERE data->>'charge_box_id' = $1 OR ($2::text IS NOT NULL AND $2 = ANY(topics))",
            names.charge_box_id,
            customer_topic,
        )
        emails = [names.customer_email, names.operator_email]
        await run("app.email_outbox", "DELETE FROM app.email_outbox WHERE to_address = ANY($1::text[])", emails)
        await run(
            "app.audit_log",
            "DELETE FROM app.audit_log WHERE actor_user_id IN (SELECT id FROM app.users WHERE email = ANY($1::text[]))",
            emails,
        )
        if pk is not None:
            # Cascades to connectors, status history, failed stops, charging profiles, pairings.
            await run("ocpp.charge_boxes", "DELETE FROM ocpp.charge_boxes WHERE id = $1", pk)
        await run("app.id_tags", "DELETE FROM app.id_tags WHERE lower(id_tag) = lower($1)", names.id_tag)
        # Cascades to the customer, API tokens and sessions.
        await run("app.users", "DELETE FROM app.users WHERE email = ANY($1::text[])", emails)
    return counts



async def activity_count(conn: asyncpg.Connection, names: SmokeNames) -> int:
    """Live events stored about the run's charger so far (they arrive a moment after the fact)."""
    return await conn.fetchval(
        "SELECT count(*) FROM app.events WHERE data->>'charge_box_id' = $1", names.charge_box_id
    )


async def charger_connected(conn: asyncpg.Connection, names: SmokeNames) -> bool:
    """Whether the OCPP server still records the run's charger as connected."""
    return bool(
        await conn.fetchval(
            "SELECT connected FROM ocpp.charge_boxes WHERE charge_box_id = $1", names.charge_box_id
        )
    )
