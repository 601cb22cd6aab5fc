"""Checking a charger's CALL against its version's JSON schema, the same way in every version.

A compiled (Rust) check answers "valid or not" first: ~100x faster on valid payloads. Anything
it does not accept (including what it cannot convert, such as payloads nested too deeply) goes
through the library's Python validator, which names every error; errors are taken most
important first (a missing field before a wrong type), deviations real chargers make are
tolerated and returned for a log line, and the first real error is raised as the version's
own OCPP error (each version's `protocol.py` says which code an error gets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jsonschema_rs
from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, get_validator

_FAST: dict[tuple[str, str], Callable[[object], bool]] = {}
_ORDER = {"required": 0, "type": 1, "minItems": 2, "maxItems": 2}


def where(err: SchemaError) -> str:
    """The path of the field an error is about (`payload` for the whole)."""
    return "/".join(str(p) for p in err.absolute_path) or "payload"


def check_call(msg: Call, version: str, tolerated_enum_paths: Sequence[str],
               to_error: Callable[[SchemaError], OCPPError]) -> list[str]:
    """Raise `to_error(err)` for the first error that is not tolerated; the tolerated ones.

    Tolerated: extra properties, strings over their maxLength, dateTime formats, and unknown
    enum values under `tolerated_enum_paths` (sampled values, stop reasons).
    """
    validator = get_validator(MessageType.Call, msg.action, version)
    if _fast(version, msg.action, validator.schema)(msg.payload):
        return []
    tolerated: list[str] = []
    for err in sorted(validator.iter_errors(msg.payload), key=lambda e: _ORDER.get(str(e.validator), 3)):
        if _tolerated(err, tolerated_enum_paths):
            tolerated.append(f"{where(err)}: {err.validator}")
            continue
        raise to_error(err)
    return tolerated


def _fast(version: str, action: str, schema: dict) -> Callable[[object], bool]:
    check = _FAST.get((version, action))
    if check is None:
        compiled = jsonschema_rs.Draft4Validator(schema)  # as the library validates

        def check(payload: object) -> bool:
            try:
                return compiled.is_valid(payload)
            except (ValueError, RecursionError):
                return False

        _FAST[(version, action)] = check
    return check


def _tolerated(err: SchemaError, enum_paths: Sequence[str]) -> bool:
    if err.validator in ("additionalProperties", "maxLength", "format"):
        return True
    if err.validator == "enum":
        return any(p in enum_paths for p in err.absolute_path if isinstance(p, str))
    return False
