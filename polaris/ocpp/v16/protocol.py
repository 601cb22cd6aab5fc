"""OCPP-J 1.6 framing and error codes, done right where the `ocpp` library is not.

The library answers an unknown action with NotSupported (1.6 Table 7 says NotImplemented),
spells FormationViolation as FormatViolation, sends nothing for a frame that is not JSON,
and rejects payloads real chargers send every day (vendor names over 20 characters,
extra properties, `value` as a JSON number). This module parses frames and classifies
schema errors ourselves, reusing the library's message classes and JSON schemas.

Error codes we answer with (OCPP-J 1.6 section 4.2.3, Table 7, with the errata's spelling):
  - frame not JSON, not an array, wrong element count or types -> FormationViolation
  - action not known to OCPP 1.6                     -> NotImplemented
  - a 1.6 action a central system does not accept     -> NotSupported
  - a required field missing                          -> ProtocolError ("payload incomplete")
  - an array with too few / too many items            -> OccurenceConstraintViolation (1.6 spelling)
  - a field of the wrong JSON type                    -> TypeConstraintViolation
  - a value outside its enumeration or range          -> PropertyConstraintViolation
Tolerated (stored as received, never an error): extra properties, strings over their
maxLength, unknown enum values in meter values and stop reasons, `value` as a number.
"""

from __future__ import annotations

import decimal
import json
import re

from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.exceptions import (
    FormationViolationError,
    NotSupportedError,
    OccurenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
)
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplementedError,
)
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator
from ocpp.v16.enums import Action

from polaris.ocpp.errors import FrameError
from polaris.ocpp.schema_check import check_call
from polaris.ocpp.schema_check import where as schema_where

KNOWN_ACTIONS = frozenset(a.value for a in Action)
MAX_UNIQUE_ID = 36  # OCPP-J: the message id is at most 36 characters
# A unique id we can still answer to when the rest of a frame is garbage.
_UNIQUE_ID_GUESS = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')

# Enum violations we accept (and store as received) because real chargers send them.
_TOLERATED_ENUM_PATHS = ("sampledValue", "reason")


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError:
    """Turn one WebSocket message into a library message object, or raise FrameError."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("-1", FormationViolationError(
                description="OCPP-J frames are UTF-8 text", details={})) from None
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        guess = _UNIQUE_ID_GUESS.match(raw)
        raise FrameError(
            guess.group(1) if guess else "-1",
            FormationViolationError(description="frame is not valid JSON", details={}),
        ) from None
    if not isinstance(msg, list) or not msg:
        raise FrameError("-1", FormationViolationError(
            description="an OCPP-J frame is a JSON array [MessageTypeId, UniqueId, ...]", details={}))
    type_id = msg[0]
    unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
    if type_id == MessageType.Call:
        if unique_id is None or not 0 < len(unique_id) <= MAX_UNIQUE_ID:
            raise FrameError("-1", FormationViolationError(
                description="UniqueId must be a string of 1 to 36 characters", details={}))
        if len(msg) != 4 or not isinstance(msg[2], str):
            raise FrameError(unique_id, FormationViolationError(
                description="a CALL is [2, UniqueId, Action, Payload]", details={}))
        if not isinstance(msg[3], dict):
            raise FrameError(unique_id, FormationViolationError(
                description="the payload of a CALL must be a JSON object", details={}))
        return Call(unique_id, msg[2], msg[3])
    if type_id == MessageType.CallResult:
        if unique_id is None or len(msg) != 3:
            raise FrameError(None, FormationViolationError(
                description="a CALLRESULT is [3, UniqueId, Payload]", details={}))
        return CallResult(unique_id, msg[2])
    if type_id == MessageType.CallError:
        if unique_id is None or len(msg) < 4:
            raise FrameError(None, FormationViolationError(
                description="a CALLERROR is [4, UniqueId, ErrorCode, ErrorDescription, Details]",
                details={}))
        details = msg[4] if len(msg) > 4 and isinstance(msg[4], dict) else {}
        return CallError(unique_id, str(msg[2]), str(msg[3]), details)
    raise FrameError(unique_id or "-1", FormationViolationError(
        description=f"unknown MessageTypeId {type_id!r} (2 CALL, 3 CALLRESULT, 4 CALLERROR)",
        details={}))


def unknown_action_error(action: str) -> OCPPError:
    if action in KNOWN_ACTIONS:
        return NotSupportedError(
            description=f"{action} is an OCPP 1.6 action a central system does not accept",
            details={})
    return OcppNotImplementedError(description=f"unknown action {action!r}", details={})


def normalize_payload(action: str, payload: dict) -> None:
    """Repair harmless deviations in place before validation (value as a JSON number)."""
    key = {"MeterValues": "meterValue", "StopTransaction": "transactionData"}.get(action)
    if key is not None:
        for mv in _items(payload.get(key)):
            _stringify_values(mv)


def _items(value: object) -> list:
    # Anything but a list is the schema's to refuse (TypeConstraintViolation), not ours to walk.
    return value if isinstance(value, list) else []


def _stringify_values(meter_value: object) -> None:
    if not isinstance(meter_value, dict):
        return
    for sv in _items(meter_value.get("sampledValue")):
        if isinstance(sv, dict) and isinstance(sv.get("value"), int | float) and not isinstance(
            sv.get("value"), bool
        ):
            sv["value"] = repr(sv["value"]) if isinstance(sv["value"], float) else str(sv["value"])


def validate_call(msg: Call) -> list[str]:
    """Check a charger's CALL against the 1.6 schema; raise the right OCPPError.

    Returns the tolerated deviations (for a log line), so nothing is silently swallowed.
    """
    normalize_payload(msg.action, msg.payload)
    return check_call(msg, "1.6", _TOLERATED_ENUM_PATHS, _to_ocpp_error)


def _to_ocpp_error(err: SchemaError) -> OCPPError:
    where = schema_where(err)
    details = {"field": where}
    if err.validator == "required":
        return ProtocolError(description=f"{where}: {err.message}", details=details)
    if err.validator == "type":
        return TypeConstraintViolationError(description=f"{where}: {err.message}", details=details)
    if err.validator in ("minItems", "maxItems"):
        return OccurenceConstraintViolationError(description=f"{where}: {err.message}", details=details)
    if err.validator in ("enum", "minimum", "maximum", "multipleOf", "pattern"):
        return PropertyConstraintViolationError(description=f"{where}: {err.message}", details=details)
    return FormationViolationError(description=f"{where}: {err.message}", details=details)


def warm_schemas() -> None:
    """Load every 1.6 schema once at start: the library reads them with a blocking open()."""
    for action in KNOWN_ACTIONS:
        for type_id in (MessageType.Call, MessageType.CallResult):
            # The library caches one validator per schema, and validates these three with
            # Decimal payloads: warming them with floats would break it (multipleOf).
            decimal_schema = (type_id, action) in _DECIMAL_SCHEMAS
            try:
                get_validator(type_id, action, "1.6",
                              parse_float=decimal.Decimal if decimal_schema else float)
            except OSError:
                pass


_DECIMAL_SCHEMAS = {
    (MessageType.Call, "SetChargingProfile"),
    (MessageType.Call, "RemoteStartTransaction"),
    (MessageType.CallResult, "GetCompositeSchedule"),
}
