"""Telling one charger a current limit: the one place that knows charging-profile shapes.

`send_limit(host, charger, limit)` sends a `Limit` (A per phase, for a transaction, for new
sessions, or the charger's fail-safe) as its charger's OCPP version says it, through
`send_command` (so it is journaled like any command, `requested_by` naming the sender),
and returns the charger's answer in one word. OCPP 1.6 is here (SetChargingProfile with
TxProfile / TxDefaultProfile / ChargePointMaxProfile); a 2.0.1 shape goes into
`_payload` (SetChargingProfileRequest with `evseId` and `chargingProfile`).

`read_back` asks GetCompositeSchedule what the charger will actually do on a connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polaris.ocpp.commands import CommandHost, send_command
from polaris.ocpp.errors import (
    ChargerCallError,
    ChargerOffline,
    CommandTimeout,
    InvalidCommand,
    UnknownOperation,
)

TX = "TxProfile"
TX_DEFAULT = "TxDefaultProfile"
STATION_MAX = "ChargePointMaxProfile"
# Our profiles' ids, so each new one replaces the last (a charger keeps other parties' own).
PROFILE_IDS = {STATION_MAX: 7600, TX_DEFAULT: 7601}
TX_PROFILE_ID_BASE = 7610  # + connector id
STACK_LEVEL = 5


@dataclass(frozen=True, slots=True)
class Limit:
    purpose: str  # TX, TX_DEFAULT or STATION_MAX
    connector_id: int  # 0: the whole charger
    amps: float  # per phase; 0 pauses
    phases: int = 3
    transaction_id: int | None = None  # TX only
    # STATION_MAX as a lease: `amps` for `lease_s` seconds, then `fallback_amps` unless renewed.
    lease_s: int | None = None
    fallback_amps: float | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # Accepted, Rejected, NotSupported, offline, timeout, call_error, invalid
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"


def _periods(limit: Limit) -> list[dict[str, Any]]:
    first = {"startPeriod": 0, "limit": round(limit.amps, 1), "numberPhases": limit.phases}
    if limit.lease_s and limit.fallback_amps is not None:
        return [first, {"startPeriod": int(limit.lease_s), "limit": round(limit.fallback_amps, 1),
                        "numberPhases": limit.phases}]
    return [first]


def _payload(protocol: str | None, limit: Limit) -> tuple[str, dict[str, Any]]:
    """The operation and its payload for this charger's OCPP version."""
    if protocol and protocol.lower().startswith("ocpp2"):
        raise UnknownOperation("charging limits for OCPP 2.0.1 chargers are not written yet")
    profile: dict[str, Any] = {
        "chargingProfileId": (TX_PROFILE_ID_BASE + limit.connector_id if limit.purpose == TX
                              else PROFILE_IDS[limit.purpose]),
        "stackLevel": STACK_LEVEL,
        "chargingProfilePurpose": limit.purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": datetime.now(UTC).isoformat(),
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": _periods(limit),
        },
    }
    if limit.purpose == TX:
        profile["transactionId"] = limit.transaction_id
    return "SetChargingProfile", {"connectorId": limit.connector_id, "csChargingProfiles": profile}


async def send_limit(host: CommandHost, charge_box_id: str, protocol: str | None, limit: Limit,
                     *, requested_by: str, answer_timeout: float | None = None) -> Answer:
    """Send one limit to one charger; its answer in one word (never raises for the charger's sake)."""
    try:
        operation, payload = _payload(protocol, limit)
        answer = await send_command(host, charge_box_id, operation, payload, requested_by=requested_by,
                                    answer_timeout=answer_timeout)
    except UnknownOperation as exc:
        return Answer("NotSupported", str(exc))
    except ChargerOffline as exc:
        return Answer("offline", str(exc))
    except CommandTimeout as exc:
        return Answer("timeout", str(exc))
    except ChargerCallError as exc:
        return Answer("call_error", str(exc))
    except InvalidCommand as exc:
        return Answer("invalid", str(exc))
    status = answer.get("status") if isinstance(answer, dict) else None
    return Answer(str(status or "no status"))


async def read_back(host: CommandHost, charge_box_id: str, protocol: str | None, connector_id: int,
                    *, requested_by: str, answer_timeout: float | None = None) -> float | None | str:
    """The limit (A) the charger's composite schedule has on the connector now; None when it
    does not say; "unsupported" when it does not do GetCompositeSchedule."""
    if protocol and protocol.lower().startswith("ocpp2"):
        return "unsupported"
    try:
        answer = await send_command(host, charge_box_id, "GetCompositeSchedule",
                                    {"connectorId": connector_id, "duration": 60, "chargingRateUnit": "A"},
                                    requested_by=requested_by, answer_timeout=answer_timeout)
    except ChargerCallError:
        return "unsupported"
    except (ChargerOffline, CommandTimeout, InvalidCommand, UnknownOperation):
        return None
    if not isinstance(answer, dict) or answer.get("status") != "Accepted":
        return "unsupported"
    schedule = answer.get("chargingSchedule") or {}
    periods = schedule.get("chargingSchedulePeriod") or []
    if not periods or schedule.get("chargingRateUnit") != "A":
        return None
    try:
        return float(periods[0]["limit"])
    except (KeyError, TypeError, ValueError):
        return None
