"""Chargers: add (one password for many), edit, change the key, send an OCPP operation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from polaris.config import Settings
from polaris.db.repos import charge_boxes, charger_admin, ocpp_journal
from polaris.keys import check_charger_key
from polaris.redaction import redact
from polaris.services.admin.actions import ocpp_versions
from polaris.services.admin.actions.base import Actor, changed, record, refuse_nulls
from polaris.services.admin.actions.permissions import check_operation
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
        before, after = await charger_admin.update_charge_box(conn, charge_box_id, changes)
        b, a = changed(before, after)
        if a:
            await record(conn, actor, "charger.edit", "charger", charge_box_id, before=b, after=a)


async def set_charger_password(
    conn: asyncpg.Connection, actor: Actor, charge_box_id: str, password: str, *, charger: str = "not contacted"
) -> None:
    """The stored AuthorizationKey only (the shell, or after the charger took it: `rotate_charger_key`).

    The audit entry says that it changed and what the charger was told, never the key.
    """
    async with conn.transaction():
        if not await charge_boxes.set_charger_key(conn, charge_box_id, password):
            raise ApiError(404, "not_found", f"no charger {charge_box_id}")
        await record(conn, actor, "charger.password", "charger", charge_box_id,
                     after={"password": "changed", "charger": charger})


@dataclass(frozen=True, slots=True)
class KeyChange:
    charger_updated: bool  # the charger took the new key (False: it was not connected)
    status: str | None  # the charger's answer (Accepted, RebootRequired); None when not connected


# The charger's answers that mean it uses the new key (RebootRequired: from its restart on).
KEY_TAKEN = ("Accepted", "RebootRequired")


def key_operation(protocol: str | None, password: str) -> tuple[str, dict[str, Any]]:
    """How a charger of this OCPP version is given a new key: the operation and its fields."""
    if protocol and protocol.lower().startswith("ocpp2"):
        return "SetVariables", {"setVariableData": [{
            "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
            "attributeValue": password,
        }]}
    return "ChangeConfiguration", {"key": "AuthorizationKey", "value": password}


def _key_status(answer: Any) -> str | None:
    response = answer.get("response", answer) if isinstance(answer, dict) else None
    if not isinstance(response, dict):
        return None
    if isinstance(response.get("status"), str):
        return response["status"]
    results = response.get("setVariableResult")
    if isinstance(results, list) and results and isinstance(results[0], dict):
        return results[0].get("attributeStatus")
    return None


async def rotate_charger_key(
    pool: asyncpg.Pool, commands: CommandClient, actor: Actor, charge_box_id: str, password: str
) -> KeyChange:
    """Change a charger's key on the charger and in the database together (admins).

    A connected charger is told first (1.6 ChangeConfiguration `AuthorizationKey`, 2.0.1
    SetVariables `SecurityCtrlr.BasicAuthPassword`); the stored key is replaced only once
    it accepts, so a refusal leaves both on the old key (409). A charger that is not
    connected keeps its key until someone sets the same one on it: only the stored key
    changes. No answer in time (504) changes nothing here: the charger may have taken the
    key, so send the same key again once it is back (offline, it is then simply stored).
    """
    problem = check_charger_key(password)
    if problem:
        raise ApiError(400, "invalid_input", problem)
    async with pool.acquire() as conn:
        charger = await charger_admin.get_charge_box_detail(conn, charge_box_id)
    if charger is None:
        raise ApiError(404, "not_found", f"no charger {charge_box_id}")
    operation, fields = key_operation(charger["ocpp_protocol"], password)
    try:
        answer = await commands.operation(operation, charge_box_id, fields, requested_by=actor.email)
    except ApiError as exc:
        if exc.code != "charger_offline":
            async with pool.acquire() as conn:
                await record(conn, actor, "charger.password", "charger", charge_box_id,
                             after={"password": "unchanged", "charger": exc.code})
            raise
        async with pool.acquire() as conn:
            await set_charger_password(conn, actor, charge_box_id, password, charger="not connected")
        return KeyChange(charger_updated=False, status=None)
    status = _key_status(answer)
    if status not in KEY_TAKEN:
        async with pool.acquire() as conn:
            await record(conn, actor, "charger.password", "charger", charge_box_id,
                         after={"password": "unchanged", "charger": status or "no status"})
        raise ApiError(409, "key_refused", f"charger {charge_box_id} answered {status or 'without a status'} "
                       "to the new key: it keeps its key, and so does the database")
    async with pool.acquire() as conn:
        await set_charger_password(conn, actor, charge_box_id, password, charger=status)
    return KeyChange(charger_updated=True, status=status)


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
    What the actor's role may send is checked first (permissions.py). The attempt is
    audited whatever happens (answer or error code); secrets in it are redacted, in the
    audit entry and in the answer returned. An accepted CancelReservation tells the
    card's owner by mail.
    """
    fields = {k: v for k, v in fields.items() if k != "chargeBoxId"}
    check_operation(actor.role, operation, fields)
    async with pool.acquire() as conn:
        charger = await charger_admin.get_charge_box_detail(conn, charge_box_id)
        if charger is None:
            raise ApiError(404, "not_found", f"no charger {charge_box_id}")
        # A 1.6-named action for a 2.0.1 charger is sent as its 2.0.1 message (ocpp_versions.py).
        translated = ocpp_versions.Translated(operation, fields, None)
        if ocpp_versions.speaks_201(charger["ocpp_version"], charger["ocpp_protocol"]):
            translated = await ocpp_versions.translate(conn, charger["id"], operation, fields)
    if translated.neutral is not None:
        check_operation(actor.role, translated.operation, translated.fields)
    outcome: dict[str, Any] = {"operation": operation, "fields": fields}
    if translated.neutral is not None:
        outcome["sent_as"] = {"operation": translated.operation, "fields": translated.fields}
    try:
        answer = await commands.operation(translated.operation, charge_box_id, translated.fields,
                                          requested_by=actor.email)
        answer = ocpp_versions.answer_back(translated, answer)
        outcome["answer"] = answer
    except ApiError as exc:
        outcome["error"] = exc.code
        raise
    finally:
        async with pool.acquire() as conn:
            await record(conn, actor, "charger.operation", "charger", charge_box_id, after=outcome)
    response = redact(answer.get("response", answer) if isinstance(answer, dict) else answer)
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
