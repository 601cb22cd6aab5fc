"""The OCPP 1.6 central-system operations: checked against the 1.6 schemas, and their effects.

`OPERATIONS` is the table the command code works from: for each operation, how a request
is validated (the library's JSON schema for the request), what `prepare` must write before
the charger hears of it, and what the charger's answer changes (`after`, applied only for
the answer statuses in `after_on`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime

import asyncpg
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, _validate_payload

from polaris.db.repos import ocpp_journal
from polaris.ocpp.errors import InvalidCommand
from polaris.ocpp.operations import After, Operation, Prepare
from polaris.ocpp.parsing import parse_timestamp
from polaris.wire import CS_OPERATIONS

ACCEPTED = frozenset({"Accepted"})


def _schema_check(operation: str, defaults: dict | None = None) -> Callable[[dict], None]:
    def validate(payload: dict) -> None:
        """Raise InvalidCommand (with the reason) unless `payload` is a valid 1.6 request."""
        # The validator may rewrite floats as Decimal: check a copy, send the original.
        checked = copy.deepcopy({**defaults, **payload} if defaults else payload)
        try:
            _validate_payload(Call("validate", operation, checked), "1.6")
        except OCPPError as exc:
            cause = exc.details.get("cause") if isinstance(exc.details, dict) else None
            raise InvalidCommand(f"{operation}: {cause or exc.description}") from None

    return validate


# --- ReserveNow / CancelReservation ---------------------------------------------------------


async def _reserve(conn: asyncpg.Connection, charge_box_pk: int, payload: dict) -> dict:
    """The reservation exists (with its id) before the charger hears of it."""
    expiry: datetime = parse_timestamp(payload["expiryDate"])
    reservation_id = await ocpp_journal.save_reservation(
        conn, charge_box_pk=charge_box_pk, connector_id=payload["connectorId"],
        id_tag=payload["idTag"], parent_id_tag=payload.get("parentIdTag"),
        expiry_date=expiry, reservation_id=payload.get("reservationId"),
    )
    if reservation_id is None:
        raise InvalidCommand(f"reservation {payload.get('reservationId')} belongs to another charger")
    return {**payload, "reservationId": reservation_id}


async def _reservation_answered(conn: asyncpg.Connection, charge_box_pk: int, payload: dict,
                                answer: dict) -> None:
    await ocpp_journal.set_reservation_status(conn, charge_box_pk, payload["reservationId"],
                                              str(answer.get("status")))


async def _reservation_cancelled(conn: asyncpg.Connection, charge_box_pk: int, payload: dict,
                                 answer: dict) -> None:
    await ocpp_journal.set_reservation_status(conn, charge_box_pk, payload["reservationId"], "Cancelled")


# --- charging profiles ----------------------------------------------------------------------


async def _profile_set(conn: asyncpg.Connection, charge_box_pk: int, payload: dict, answer: dict) -> None:
    await ocpp_journal.save_charging_profile(
        conn, charge_box_pk, payload["connectorId"], payload["csChargingProfiles"], str(answer["status"])
    )


async def _profiles_cleared(conn: asyncpg.Connection, charge_box_pk: int, payload: dict,
                            answer: dict) -> None:
    await ocpp_journal.clear_charging_profiles(
        conn, charge_box_pk, profile_id=payload.get("id"), connector_id=payload.get("connectorId"),
        purpose=payload.get("chargingProfilePurpose"), stack_level=payload.get("stackLevel"),
    )


# operation -> (prepare, after, the answer statuses `after` applies to)
_EFFECTS: dict[str, tuple[Prepare | None, After, frozenset[str] | None]] = {
    "ReserveNow": (_reserve, _reservation_answered, None),  # whatever the charger answered
    "CancelReservation": (None, _reservation_cancelled, ACCEPTED),
    "SetChargingProfile": (None, _profile_set, ACCEPTED),
    "ClearChargingProfile": (None, _profiles_cleared, ACCEPTED),
}
# Fields `prepare` fills in, so validation does not ask the caller for them.
_FILLED = {"ReserveNow": {"reservationId": 1}}


def _operation(name: str) -> Operation:
    prepare, after, after_on = _EFFECTS.get(name, (None, None, None))
    return Operation(name, _schema_check(name, _FILLED.get(name)), prepare=prepare, after=after,
                     after_on=after_on)


OPERATIONS: dict[str, Operation] = {name: _operation(name) for name in CS_OPERATIONS}
