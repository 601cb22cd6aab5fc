"""Commands to chargers (central-system-initiated OCPP 1.6 operations), journaled.

`send_command` validates the payload against the OCPP 1.6 schema before anything is sent,
journals the command, sends it through the charger's one-call-at-a-time queue, journals
the answer and keeps what the answer changes (reservations, charging profiles).
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, _validate_payload

from polaris.db.repos import charge_boxes, ocpp_journal
from polaris.logs import get_logger
from polaris.ocpp.charge_point import DB_UNAVAILABLE, CallErrorAnswer, ChargerGone
from polaris.ocpp.parsing import parse_timestamp
from polaris.wire import CS_OPERATIONS

if TYPE_CHECKING:
    from polaris.ocpp.server import OcppServer

log = get_logger(__name__)

OPERATIONS = CS_OPERATIONS


# How long a command waits behind others for the same charger. With the 30 s answer
# timeout this stays under the web's 40 s client timeout, so the caller sees our 504.
QUEUE_TIMEOUT_S = 5.0


class CommandError(Exception):
    """A command that did not get an answer; `status` is the HTTP status the API uses."""

    status = 500
    code = "error"


class InvalidCommand(CommandError):
    status, code = 400, "invalid_request"


class UnknownOperation(CommandError):
    status, code = 404, "unknown_operation"


class ChargerOffline(CommandError):
    status, code = 409, "charger_offline"


class CommandTimeout(CommandError):
    status, code = 504, "timeout"


class ChargerCallError(CommandError):
    """The charger answered with CALLERROR (its answer, reported as 502)."""

    status, code = 502, "call_error"

    def __init__(self, answer: CallErrorAnswer):
        super().__init__(f"the charger answered with CALLERROR {answer.code}: {answer.description}")
        self.answer = answer


def validate_command(operation: str, payload: dict) -> None:
    """Raise InvalidCommand (with the reason) unless `payload` is a valid 1.6 request."""
    if operation not in OPERATIONS:
        raise UnknownOperation(
            f"unknown operation {operation!r}; one of: {', '.join(OPERATIONS)}"
        )
    try:
        # The validator may rewrite floats as Decimal: check a copy, send the original.
        _validate_payload(Call("validate", operation, copy.deepcopy(payload)), "1.6")
    except OCPPError as exc:
        cause = exc.details.get("cause") if isinstance(exc.details, dict) else None
        raise InvalidCommand(f"{operation}: {cause or exc.description}") from None


async def send_command(
    server: OcppServer,
    charge_box_id: str,
    operation: str,
    payload: dict,
    *,
    requested_by: str | None = None,
    answer_timeout: float | None = None,
    route: bool = True,
) -> dict:
    """Send one operation to a connected charger and return its CALLRESULT payload.

    ReserveNow without a reservationId gets one allocated by the database. A charger held
    by another running instance gets the command through it (polaris/ocpp/routing.py);
    `route=False` is that instance's own call.
    """
    allocate = operation == "ReserveNow" and "reservationId" not in payload
    validate_command(operation, {**payload, "reservationId": 1} if allocate else payload)
    cp = server.connections.get(charge_box_id)
    timeout = answer_timeout or server.response_timeout
    if cp is None and route and server.router is not None:
        try:
            holder = await server.router.holder(charge_box_id)
        except DB_UNAVAILABLE:
            holder = None
        if holder is not None:
            return await server.router.forward(holder, charge_box_id, operation, payload,
                                               requested_by=requested_by, answer_timeout=timeout)
    if cp is None:
        raise ChargerOffline(await _offline_reason(server, charge_box_id))
    unique_id = str(uuid.uuid4())
    if operation == "ReserveNow":
        payload = await _reserve(server, cp.pk, payload)
    journal_id = await _journal(
        server, ocpp_journal.journal_sent, charge_box_id=charge_box_id, action=operation,
        unique_id=unique_id, request=payload, requested_by=requested_by,
    )
    try:
        answer = await cp.call_raw(operation, payload, unique_id=unique_id, answer_timeout=timeout,
                                   queue_timeout=QUEUE_TIMEOUT_S)
    except TimeoutError:
        await _answer(server, journal_id, status="timeout")
        raise CommandTimeout(
            f"charger {charge_box_id} did not answer {operation} within {timeout:g} s"
            + (" (commands ahead of it were still waiting)" if cp._call_lock and cp._call_lock.locked() else "")
        ) from None
    except ChargerGone:
        await _answer(server, journal_id, status="failed", error_description="connection lost")
        raise ChargerOffline(
            f"charger {charge_box_id} disconnected before answering {operation}"
        ) from None
    except CallErrorAnswer as exc:
        await _answer(server, journal_id, status="call_error", error_code=exc.code,
                      error_description=exc.description, response=exc.details)
        raise ChargerCallError(exc) from None
    await _answer(server, journal_id, status="answered", response=answer)
    await _after(server, cp.pk, operation, payload, answer)
    return answer


async def _offline_reason(server: OcppServer, charge_box_id: str) -> str:
    """Say where the charger is, when the database knows (another instance, never seen, ...)."""
    try:
        async with server.pool.acquire() as conn:
            row = await charge_boxes.get_connection_state(conn, charge_box_id)
    except DB_UNAVAILABLE:
        return f"charger {charge_box_id} is not connected to this server"
    if row is None:
        return f"no charger {charge_box_id} is registered"
    instance = row["connected_instance"]
    if row["connected"] and instance and instance != server.instance:
        # Only when routing is off or this is a routed command the holder no longer holds.
        return f"charger {charge_box_id} is connected to another OCPP server instance ({instance})"
    seen = row["last_seen_at"].isoformat() if row["last_seen_at"] else "never"
    return f"charger {charge_box_id} is offline (last seen {seen})"


async def _journal(server: OcppServer, fn: Any, **kw: Any) -> int | None:
    try:
        async with server.pool.acquire() as conn:
            return await fn(conn, **kw)
    except DB_UNAVAILABLE:
        log.warning("command not journaled: database unavailable", action=kw.get("action"))
        return None


async def _answer(server: OcppServer, journal_id: int | None, **kw: Any) -> None:
    if journal_id is None:
        return
    try:
        async with server.pool.acquire() as conn:
            await ocpp_journal.journal_answer(conn, journal_id, **kw)
    except DB_UNAVAILABLE:
        log.warning("command answer not journaled: database unavailable", journal_id=journal_id)


async def _reserve(server: OcppServer, charge_box_pk: int, payload: dict) -> dict:
    """The reservation exists (with its id) before the charger hears of it."""
    expiry: datetime = parse_timestamp(payload["expiryDate"])
    async with server.pool.acquire() as conn:
        reservation_id = await ocpp_journal.save_reservation(
            conn, charge_box_pk=charge_box_pk, connector_id=payload["connectorId"],
            id_tag=payload["idTag"], parent_id_tag=payload.get("parentIdTag"),
            expiry_date=expiry, reservation_id=payload.get("reservationId"),
        )
    if reservation_id is None:
        raise InvalidCommand(f"reservation {payload.get('reservationId')} belongs to another charger")
    return {**payload, "reservationId": reservation_id}


async def _after(server: OcppServer, charge_box_pk: int, operation: str, payload: dict,
                 answer: dict) -> None:
    status = answer.get("status") if isinstance(answer, dict) else None
    try:
        async with server.pool.acquire() as conn:
            if operation == "ReserveNow":
                await ocpp_journal.set_reservation_status(conn, charge_box_pk, payload["reservationId"],
                                                          str(status))
            elif operation == "CancelReservation" and status == "Accepted":
                await ocpp_journal.set_reservation_status(conn, charge_box_pk, payload["reservationId"],
                                                          "Cancelled")
            elif operation == "SetChargingProfile" and status == "Accepted":
                await ocpp_journal.save_charging_profile(
                    conn, charge_box_pk, payload["connectorId"], payload["csChargingProfiles"], status
                )
            elif operation == "ClearChargingProfile" and status == "Accepted":
                await ocpp_journal.clear_charging_profiles(
                    conn, charge_box_pk, profile_id=payload.get("id"),
                    connector_id=payload.get("connectorId"),
                    purpose=payload.get("chargingProfilePurpose"),
                    stack_level=payload.get("stackLevel"),
                )
    except DB_UNAVAILABLE:
        log.warning("command outcome not stored: database unavailable", action=operation)

