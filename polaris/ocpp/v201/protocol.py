"""OCPP-J 2.0.1 framing and error codes, with the library's 2.0.1 JSON schemas.

Error codes we answer with (OCPP-J 2.0.1 section 4.3):
  - not JSON, not an array, no readable MessageId, wrong element count -> RpcFrameworkError
  - a MessageTypeId other than 2, 3, 4                               -> MessageTypeNotSupported
  - a CALL payload that is not a JSON object                         -> FormatViolation
  - an action not known to OCPP 2.0.1                                -> NotImplemented
  - a 2.0.1 action a CSMS does not accept (sent by a station)        -> NotSupported
  - a required field missing, too few / too many array items         -> OccurrenceConstraintViolation
  - a field of the wrong JSON type                                   -> TypeConstraintViolation
  - a value outside its enumeration or range                         -> PropertyConstraintViolation
  - anything else the schema refuses                                 -> FormatViolation
Tolerated (stored as received, never an error), as for 1.6: extra properties, strings over
their maxLength, dateTime formats, unknown enum values in sampled values and stop reasons.
"""

from __future__ import annotations

import json
import re

from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.exceptions import (
    FormatViolationError,
    NotSupportedError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator
from ocpp.v201.enums import Action

from polaris.ocpp.errors import FrameError, MessageTypeNotSupportedError, RpcFrameworkError
from polaris.ocpp.schema_check import check_call
from polaris.ocpp.schema_check import where as schema_where

VERSION = "2.0.1"
KNOWN_ACTIONS = frozenset(a.value for a in Action)
MAX_UNIQUE_ID = 36
_UNIQUE_ID_GUESS = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')
_TOLERATED_ENUM_PATHS = ("sampledValue", "stoppedReason")


def _rpc(description: str) -> RpcFrameworkError:
    return RpcFrameworkError(description=description, details={})


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError:
    """One WebSocket message as a library message object, or raise FrameError."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("-1", _rpc("OCPP-J frames are UTF-8 text")) from None
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        guess = _UNIQUE_ID_GUESS.match(raw)
        raise FrameError(guess.group(1) if guess else "-1", _rpc("frame is not valid JSON")) from None
    if not isinstance(msg, list) or not msg:
        raise FrameError("-1", _rpc("an OCPP-J frame is a JSON array [MessageTypeId, MessageId, ...]"))
    type_id = msg[0]
    unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
    if type_id == MessageType.Call:
        if unique_id is None or not 0 < len(unique_id) <= MAX_UNIQUE_ID:
            raise FrameError("-1", _rpc("MessageId must be a string of 1 to 36 characters"))
        if len(msg) != 4 or not isinstance(msg[2], str):
            raise FrameError(unique_id, _rpc("a CALL is [2, MessageId, Action, Payload]"))
        if not isinstance(msg[3], dict):
            raise FrameError(unique_id, FormatViolationError(
                description="the payload of a CALL must be a JSON object", details={}))
        return Call(unique_id, msg[2], msg[3])
    if type_id == MessageType.CallResult:
        if unique_id is None or len(msg) != 3:
            raise FrameError(None, _rpc("a CALLRESULT is [3, MessageId, Payload]"))
        return CallResult(unique_id, msg[2])
    if type_id == MessageType.CallError:
        if unique_id is None or len(msg) < 4:
            raise FrameError(None, _rpc("a CALLERROR is [4, MessageId, ErrorCode, ErrorDescription, Details]"))
        details = msg[4] if len(msg) > 4 and isinstance(msg[4], dict) else {}
        return CallError(unique_id, str(msg[2]), str(msg[3]), details)
    raise FrameError(unique_id or "-1", MessageTypeNotSupportedError(
        description=f"unknown MessageTypeId {type_id!r} (2 CALL, 3 CALLRESULT, 4 CALLERROR)", details={}))


def unknown_action_error(action: str) -> OCPPError:
    if action in KNOWN_ACTIONS:
        return NotSupportedError(
            description=f"{action} is an OCPP 2.0.1 action a CSMS does not accept", details={})
    return OcppNotImplementedError(description=f"unknown action {action!r}", details={})


def format_violation(description: str) -> OCPPError:
    return FormatViolationError(description=description, details={})


def validate_call(msg: Call) -> list[str]:
    """Check a station's CALL against the 2.0.1 schema; raise the right OCPPError.

    Returns the tolerated deviations (for a log line).
    """
    return check_call(msg, VERSION, _TOLERATED_ENUM_PATHS, _to_ocpp_error)


def _to_ocpp_error(err: SchemaError) -> OCPPError:
    where = schema_where(err)
    details = {"field": where}
    text = f"{where}: {err.message}"
    if err.validator in ("required", "minItems", "maxItems"):
        return OccurrenceConstraintViolationError(description=text, details=details)
    if err.validator == "type":
        return TypeConstraintViolationError(description=text, details=details)
    if err.validator in ("enum", "minimum", "maximum", "multipleOf", "pattern"):
        return PropertyConstraintViolationError(description=text, details=details)
    return FormatViolationError(description=text, details=details)


def warm_schemas() -> None:
    """Load every 2.0.1 schema once at start: the library reads them with a blocking open()."""
    for action in KNOWN_ACTIONS:
        for type_id in (MessageType.Call, MessageType.CallResult):
            try:
                get_validator(type_id, action, VERSION)  # 2.0.1 is validated with floats throughout
            except OSError:
                pass
