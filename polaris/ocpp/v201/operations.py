"""The OCPP 2.0.1 CSMS operations: checked against the 2.0.1 schemas, and their effects.

The same shape as v16/operations.py: per operation, how a request is validated (the
library's 2.0.1 JSON schema), what `prepare` writes or fills in before the station hears of
it (ReserveNow's reservation, RequestStartTransaction's remoteStartId), and what the answer
changes (`after`): reservations, charging profiles, and the device model (GetVariables,
SetVariables).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable

import asyncpg
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, _validate_payload

from polaris.db.repos import device_model, ocpp_journal
from polaris.ocpp.errors import InvalidCommand
from polaris.ocpp.operations import After, Operation, Prepare
from polaris.ocpp.parsing import parse_timestamp
from polaris.wire import CS_OPERATIONS_201

ACCEPTED = frozenset({"Accepted"})
VERSION = "2.0.1"
_remote_start_ids = itertools.count(int(time.time()) % 1_000_000 * 1000)


def _schema_check(operation: str, defaults: dict | None = None) -> Callable[[dict], None]:
    def validate(payload: dict) -> None:
        """Raise InvalidCommand (with the reason) unless `payload` is a valid 2.0.1 request."""
        checked = copy.deepcopy({**defaults, **payload} if defaults else payload)
        try:
            _validate_payload(Call("validate", operation, checked), VERSION)
        except OCPPError as exc:
            cause = exc.details.get("cause") if isinstance(exc.details, dict) else None
            raise InvalidCommand(f"{operation}: {cause or exc.description}") from None

    return validate


# --- reservations ---------------------------------------------------------------------------


async def _reserve(conn: asyncpg.Connection, charge_box_pk: int, payload: dict) -> dict:
    """The reservation exists (with its id) before the station hears of it."""
    group = payload.get("groupIdToken") or {}
    reservation_id = await ocpp_journal.save_reservation(
        conn, charge_box_pk=charge_box_pk, connector_id=payload.get("evseId") or 0,
        id_tag=payload["idToken"]["idToken"], parent_id_tag=group.get("idToken"),
        expiry_date=parse_timestamp(payload["expiryDateTime"]), reservation_id=payload.get("id"),
    )
    if reservation_id is None:
        raise InvalidCommand(f"reservation {payload.get('id')} belongs to another charger")
    return {**payload, "id": reservation_id}


async def _reservation_answered(conn: asyncpg.Connection, charge_box_pk: int, payload: dict,
                                answer: dict) -> None:
    await ocpp_journal.set_reservation_status(conn, charge_box_pk, payload["id"], str(answer.get("status")))


async def _reservation_cancelled(conn: asyncpg.Connection, charge_box_pk: int, payload: dict,
                                 answer: dict) -> None:
    await ocpp_journal.set_reservation_status(conn, charge_box_pk, payload["reservationId"], "Cancelled")


async def _remote_start_id(conn: asyncpg.Connection, charge_box_pk: int, payload: dict) -> dict:
    """RequestStartTransaction needs a remoteStartId: ours unless the caller chose one."""
    return payload if "remoteStartId" in payload else {**payload, "remoteStartId": next(_remote_start_ids)}


# --- charging profiles ----------------------------------------------------------------------


async def _profile_set(conn: asyncpg.Connection, charge_box_pk: int, payload: dict, answer: dict) -> None:
    profile = payload["chargingProfile"]
    await ocpp_journal.save_charging_profile(
        conn, charge_box_pk, payload["evseId"],
        {**profile, "chargingProfileId": profile.get("id")}, str(answer["status"]))


async def _profiles_cleared(conn: asyncpg.Connection, charge_box_pk: int, payload: dict,
                            answer: dict) -> None:
    criteria = payload.get("chargingProfileCriteria") or {}
    await ocpp_journal.clear_charging_profiles(
        conn, charge_box_pk, profile_id=payload.get("chargingProfileId"), connector_id=criteria.get("evseId"),
        purpose=criteria.get("chargingProfilePurpose"), stack_level=criteria.get("stackLevel"),
    )


# --- the device model -----------------------------------------------------------------------


async def _variables_read(conn: asyncpg.Connection, charge_box_pk: int, payload: dict, answer: dict) -> None:
    await device_model.store_values(conn, charge_box_pk, list(answer.get("getVariableResult") or []))


async def _variables_set(conn: asyncpg.Connection, charge_box_pk: int, payload: dict, answer: dict) -> None:
    asked = list(payload.get("setVariableData") or [])
    results = []
    for i, result in enumerate(answer.get("setVariableResult") or []):
        # The answer names what it is about; the value is the one we asked for.
        match = next((a for a in asked if a.get("component") == result.get("component")
                      and a.get("variable") == result.get("variable")),
                     asked[i] if i < len(asked) else None)
        if match is not None:
            results.append({**result, "attributeValue": match.get("attributeValue")})
    await device_model.store_values(conn, charge_box_pk, results)


# operation -> (prepare, after, the answer statuses `after` applies to)
_EFFECTS: dict[str, tuple[Prepare | None, After | None, frozenset[str] | None]] = {
    "ReserveNow": (_reserve, _reservation_answered, None),
    "CancelReservation": (None, _reservation_cancelled, ACCEPTED),
    "SetChargingProfile": (None, _profile_set, ACCEPTED),
    "ClearChargingProfile": (None, _profiles_cleared, ACCEPTED),
    "RequestStartTransaction": (_remote_start_id, None, None),
    "GetVariables": (None, _variables_read, None),
    "SetVariables": (None, _variables_set, None),
}
# Fields `prepare` fills in, so validation does not ask the caller for them.
_FILLED = {"ReserveNow": {"id": 1}, "RequestStartTransaction": {"remoteStartId": 1}}


def _operation(name: str) -> Operation:
    prepare, after, after_on = _EFFECTS.get(name, (None, None, None))
    return Operation(name, _schema_check(name, _FILLED.get(name)), prepare=prepare, after=after,
                     after_on=after_on)


OPERATIONS: dict[str, Operation] = {name: _operation(name) for name in CS_OPERATIONS_201}
