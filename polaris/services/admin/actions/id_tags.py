"""Cards (id tags): register, edit, block or unblock; a blocked card's chargers forget it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from polaris.db.repos import charger_admin, customers, id_tags
from polaris.logs import get_logger
from polaris.services.admin.actions.base import Actor, changed, record, refuse_nulls
from polaris.services.command_client import CommandClient
from polaris.services.errors import ApiError

log = get_logger(__name__)


async def add_card(
    conn: asyncpg.Connection,
    actor: Actor,
    id_tag: str,
    *,
    customer_id: int | None = None,
    customer_email: str | None = None,
    label: str | None = None,
    expiry_date: datetime | None = None,
) -> asyncpg.Record:
    """Register a card, optionally for a customer (by id or email); returns its detail row."""
    if customer_id is not None and customer_email is not None:
        raise ApiError(400, "invalid_input", "give customer_id or customer_email, not both")
    async with conn.transaction():
        email = customer_email
        if customer_id is not None:
            customer = await customers.get_customer(conn, customer_id)
            if customer is None:
                raise ApiError(404, "not_found", f"no customer {customer_id}")
            email = customer["email"]
        created = await id_tags.add_id_tag(conn, id_tag, customer_email=email, label=label)
        if expiry_date is not None:
            await id_tags.update_id_tag(conn, created["id_tag"], {"expiry_date": expiry_date})
        row = await id_tags.get_id_tag_detail(conn, created["id_tag"])
        await record(
            conn, actor, "id_tag.create", "id_tag", row["id_tag"],
            after={"customer_email": row["customer_email"], "label": row["label"], "expiry_date": row["expiry_date"]},
        )
    return row


@dataclass(frozen=True, slots=True)
class CardEdit:
    card: asyncpg.Record  # the card after the change
    to_clear: list[str]  # newly blocked: the chargers that saw it last (give them to `clear_caches`)


async def edit_card(conn: asyncpg.Connection, actor: Actor, id_tag: str, changes: dict) -> CardEdit:
    """Block / unblock, link to a customer (None unlinks), label, expiry; audited when anything changed."""
    refuse_nulls(changes, "blocked")
    async with conn.transaction():
        before, after = await id_tags.update_id_tag(conn, id_tag, changes)
        b, a = changed(before, after)
        if a:
            action = "id_tag.block" if a.get("blocked") is True else "id_tag.edit"
            await record(conn, actor, action, "id_tag", after["id_tag"], before=b, after=a)
        newly_blocked = after["blocked"] and not before["blocked"]
        chargers = await charger_admin.charge_boxes_seen_with_tag(conn, after["id_tag"]) if newly_blocked else []
    return CardEdit(card=after, to_clear=list(chargers))


@dataclass(frozen=True, slots=True)
class CacheCleared:
    charge_box_id: str
    status: str | None = None  # the charger's answer (Accepted / Rejected)
    error: str | None = None  # why it could not be asked (charger_offline, charger_timeout, ...)


async def clear_caches(commands: CommandClient, chargers: list[str], actor: Actor) -> list[CacheCleared]:
    """ClearCache on each charger, concurrently: a lost card must stop working at once.

    Run after `edit_card` committed the block (no connection is held meanwhile); a charger
    that is offline clears nothing now, but its next Authorize asks us (and the
    pre-authorize hook answers BLOCKED). `polaris admin tag block` needs only the database
    and skips this step.
    """

    async def one(cid: str) -> CacheCleared:
        try:
            answer: Any = await commands.operation("ClearCache", cid, {}, requested_by=actor.email)
        except ApiError as exc:
            return CacheCleared(charge_box_id=cid, error=exc.code)
        response = answer.get("response", answer) if isinstance(answer, dict) else {}
        return CacheCleared(charge_box_id=cid, status=response.get("status") if isinstance(response, dict) else None)

    results = list(await asyncio.gather(*(one(c) for c in chargers)))
    log.info("clear cache after block", chargers=len(chargers), failed=sum(1 for r in results if r.error))
    return results
