"""Lago's webhooks as received, and the local copy of invoices (with their email claim)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


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


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def merge_invoice(stored: dict[str, Any] | None, incoming: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """What we know of an invoice after a webhook: (merged payload, whether it was stale).

    A partial payload (`invoice.payment_status_updated` may carry only a few fields) changes
    only the fields it carries; a delivery whose `updated_at` is older than the stored one
    (Lago's retries and parallel jobs arrive out of order) only fills fields we lack.
    """
    if not stored:
        return dict(incoming), False
    old, new = _ts(stored.get("updated_at")), _ts(incoming.get("updated_at"))
    if old is not None and new is not None and new < old:
        return {**incoming, **stored}, True
    return {**stored, **incoming}, False


async def upsert_invoice(conn: asyncpg.Connection, invoice: dict[str, Any]) -> asyncpg.Record:
    """Keep Lago's invoice locally, linked to our customer by external ids.

    The returned row has `stale`: the delivery was older than what we had (nothing changed).
    """
    stored = await conn.fetchval(
        "SELECT payload FROM app.invoices WHERE lago_id = $1 FOR UPDATE", invoice["lago_id"]
    )
    invoice, stale = merge_invoice(stored, invoice)
    customer = invoice.get("customer") or {}
    subscription_ids = [
        s.get("external_id") for s in invoice.get("subscriptions") or [] if s.get("external_id")
    ]
    issuing = invoice.get("issuing_date")
    try:
        issuing_date = datetime.fromisoformat(issuing).date() if isinstance(issuing, str) and issuing else None
    except ValueError:
        issuing_date = None
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
            lago_customer_external_id = COALESCE(EXCLUDED.lago_customer_external_id,
                                                 app.invoices.lago_customer_external_id),
            subscription_ids = EXCLUDED.subscription_ids, number = EXCLUDED.number,
            invoice_type = EXCLUDED.invoice_type, status = EXCLUDED.status,
            payment_status = EXCLUDED.payment_status, currency = EXCLUDED.currency,
            total_amount_cents = EXCLUDED.total_amount_cents, issuing_date = EXCLUDED.issuing_date,
            file_url = COALESCE(EXCLUDED.file_url, app.invoices.file_url),
            payload = EXCLUDED.payload, updated_at = now()
        RETURNING id, lago_id, customer_id, number, status, payment_status, currency,
                  total_amount_cents, issuing_date, file_url, email_queued_at, $13::boolean AS stale
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
        stale,
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
