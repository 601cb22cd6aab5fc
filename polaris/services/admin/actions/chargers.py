"""Chargers: add (one password for many), edit, set the password, send an OCPP operation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from polaris.config import Settings
from polaris.db.repos import charge_boxes, ocpp_journal
from polaris.services.admin.actions.base import Actor, changed, record, refuse_nulls
from polaris.services.command_client import CommandClient
from polaris.services.email import send_mail
from polaris.services.errors import ApiError


async def add_chargers(
    conn: asyncpg.Connection,
    actor: Actor,
    charge_box_ids: list[str],
    password: str | None,
    *,
    description: str | None = None,
    site_name: str | None = None,
    site_address: str | None = None,
    security_profile: int = 1,
    public_id: str | None = None,
) -> list[asyncpg.Record]:
    """Register chargers sharing one password (none for security profile 0), all or none; one
    audit entry each (never the password)."""
    async with conn.transaction():
        rows = await charge_boxes.add_charge_boxes(
            conn, charge_box_ids, password, description=description, site_name=site_name, site_address=site_address,
            security_profile=security_profile, public_id=public_id,
        )
        for r in rows:
            await record(conn, actor, "charger.add", "charger", r["charge_box_id"],
                         after={"description": description, "site_name": site_name,
                                "security_profile": security_profile, "public_id": r["public_id"]})
    return rows


async def edit_charger(conn: asyncpg.Connection, actor: Actor, charge_box_id: str, changes: dict) -> None:
    """Description, site, active (deactivate), registration status, security profile; audited when
    anything changed."""
    refuse_nulls(changes, "active", "registration_status", "security_profile")
    async with conn.transaction():
        before, after = await charge_boxes.update_charge_box(conn, charge_box_id, changes)
        b, a = changed(before, after)
        if a:
            await record(conn, actor, "charger.edit", "charger", charge_box_id, before=b, after=a)


async def set_charger_password(conn: asyncpg.Connection, actor: Actor, charge_box_id: str, password: str) -> None:
    """A charger's AuthorizationKey; the audit entry says that it changed, never what to."""
    async with conn.transaction():
        if not await charge_boxes.set_charger_key(conn, charge_box_id, password):
            raise ApiError(404, "not_found", f"no charger {charge_box_id}")
        await record(conn, actor, "charger.password", "charger", charge_box_id, after={"password": "changed"})


@dataclass(frozen=True, slots=True)
class OperationOutcome:
    status: str | None  # the charger's status field, when its answer has one
    response: Any  # the charger's answer as the OCPP server relayed it


async def run_operation(
    pool: asyncpg.Pool,
    commands: CommandClient,
    settings: Settings,
    actor: Actor,
    charge_box_id: str,
    operation: str,
    fields: dict[str, Any],
) -> OperationOutcome:
    """Send one OCPP operation through the OCPP server and return the charger's answer.

    Takes the pool, not a connection: none is held while the charger thinks (up to 30 s).
    The attempt is audited whatever happens (answer or error code); an accepted
    CancelReservation tells the card's owner by mail.
    """
    fields = {k: v for k, v in fields.items() if k != "chargeBoxId"}
    async with pool.acquire() as conn:
        if await charge_boxes.get_charge_box(conn, charge_box_id) is None:
            raise ApiError(404, "not_found", f"no charger {charge_box_id}")
    outcome: dict[str, Any] = {"operation": operation, "fields": fields}
    try:
        answer = await commands.operation(operation, charge_box_id, fields, requested_by=actor.email)
        outcome["answer"] = answer
    except ApiError as exc:
        outcome["error"] = exc.code
        raise
    finally:
        async with pool.acquire() as conn:
            await record(conn, actor, "charger.operation", "charger", charge_box_id, after=outcome)
    response = answer.get("response", answer) if isinstance(answer, dict) else answer
    status = response.get("status") if isinstance(response, dict) else None
    if operation == "CancelReservation" and status == "Accepted":
        async with pool.acquire() as conn:
            await _tell_reservation_holder(conn, settings, charge_box_id, fields.get("reservationId"))
    return OperationOutcome(status=status, response=response)


async def _tell_reservation_holder(
    conn: asyncpg.Connection, settings: Settings, charge_box_id: str, reservation_id: Any
) -> None:
    """The customer whose card held the reservation gets the reservation-cancelled mail."""
    if not isinstance(reservation_id, int):
        return
    holder = await ocpp_journal.reservation_holder(conn, charge_box_id, reservation_id)
    if holder is None:  # a reservation made outside Polaris, or a card with no customer
        return
    await send_mail(
        conn, "reservation-cancelled", to=holder["email"], dedupe_key=f"reservation-cancelled:{holder['id']}",
        name=holder["name"], charger=holder["charger"],
        reserved_until=holder["expiry_date"].strftime("%Y-%m-%d %H:%M UTC"),
        reason="the operator cancelled it", portal_url=settings.CUSTOMER_BASE_URL,
    )
