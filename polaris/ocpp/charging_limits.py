"""Telling one charger a current limit: the one place that knows charging-profile shapes.

`send_limit(host, charger, protocol, limit)` sends a `Limit` (A per phase, for a transaction,
for new sessions, or the charger's fail-safe) as its charger's OCPP version says it, through
`send_command` (so it is journaled like any command, `requested_by` naming the sender, and
the profile stored when accepted), and returns the charger's answer in one word. The load
controller and anyone else who limits a charger use it.

`limit_command` builds the message: in OCPP 1.6 SetChargingProfile with TxProfile /
TxDefaultProfile on a connector or ChargePointMaxProfile on connector 0; in 2.0.1
SetChargingProfile with TxProfile (the charger's own transaction id) / TxDefaultProfile on
an EVSE, or ChargingStationMaxProfile on EVSE 0.

`read_back` asks GetCompositeSchedule what the charger will actually do on a connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polaris.ocpp.commands import CommandHost, connected, send_command, stored_version
from polaris.ocpp.errors import (
    DB_UNAVAILABLE,
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


def speaks_201(protocol: str | None) -> bool:
    """`protocol` is the charger's subprotocol (`ocpp2.0.1`, `ocpp1.6J`) or version (`2.0.1`)."""
    return bool(protocol) and protocol.lower().removeprefix("ocpp").startswith("2")


def _profile_id(limit: Limit) -> int:
    return TX_PROFILE_ID_BASE + limit.connector_id if limit.purpose == TX else PROFILE_IDS[limit.purpose]


def limit_command(protocol: str | None, limit: Limit, *, charger_tx_id: str | None = None,
                  start: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """The operation and its payload for a charger speaking `protocol` (1.6 when unknown).

    A 2.0.1 TxProfile names the charger's own transaction id (`charger_tx_id`); without one,
    the session's limit goes out as the EVSE's TxDefaultProfile one stack level higher, which
    a 2.0.1 station applies to the transaction running there as well (no TxProfile beats it).
    """
    start_at = (start or datetime.now(UTC)).isoformat()
    schedule: dict[str, Any] = {"startSchedule": start_at, "chargingRateUnit": "A",
                                "chargingSchedulePeriod": _periods(limit)}
    if speaks_201(protocol):
        purpose = {STATION_MAX: "ChargingStationMaxProfile", TX_DEFAULT: "TxDefaultProfile", TX: "TxProfile"}[
            limit.purpose]
        stack = STACK_LEVEL
        if limit.purpose == TX and not charger_tx_id:
            purpose, stack = "TxDefaultProfile", STACK_LEVEL + 1
        profile_201: dict[str, Any] = {
            "id": _profile_id(limit), "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute", "chargingSchedule": [{"id": _profile_id(limit), **schedule}],
        }
        if purpose == "TxProfile":
            profile_201["transactionId"] = charger_tx_id
        evse = 0 if limit.purpose == STATION_MAX else limit.connector_id
        return "SetChargingProfile", {"evseId": evse, "chargingProfile": profile_201}
    profile: dict[str, Any] = {
        "chargingProfileId": _profile_id(limit),
        "stackLevel": STACK_LEVEL,
        "chargingProfilePurpose": limit.purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    if limit.purpose == TX:
        profile["transactionId"] = limit.transaction_id
    return "SetChargingProfile", {"connectorId": limit.connector_id, "csChargingProfiles": profile}


async def _version(host: CommandHost, charge_box_id: str) -> str:
    """The charger's version: the one connected here, else the one it last booted with."""
    cp = connected(host.connections, charge_box_id)
    held = type(cp) if cp is not None else await stored_version(host, charge_box_id)
    return (held or host.versions.default).OCPP_VERSION


async def _charger_tx_id(host: CommandHost, transaction_id: int | None) -> str | None:
    """A 2.0.1 charger's own id of our session (None: none known, or the database is away)."""
    if transaction_id is None:
        return None
    try:
        async with host.ctx.pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT charger_tx_id FROM ocpp.transaction_ids WHERE transaction_id = $1", transaction_id)
    except DB_UNAVAILABLE:
        return None


async def send_limit(host: CommandHost, charge_box_id: str, protocol: str | None, limit: Limit,
                     *, requested_by: str, answer_timeout: float | None = None) -> Answer:
    """Send one limit to one charger; its answer in one word (never raises for the charger's sake).
    `protocol` None: the charger's version as connected here or last booted."""
    try:
        protocol = protocol or await _version(host, charge_box_id)
        tx_ref = await _charger_tx_id(host, limit.transaction_id) if speaks_201(protocol) else None
        operation, payload = limit_command(protocol, limit, charger_tx_id=tx_ref)
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
    # 2.0.1 asks by EVSE and answers in `schedule`; 1.6 by connector, in `chargingSchedule`.
    new = speaks_201(protocol)
    ask = {"evseId" if new else "connectorId": connector_id, "duration": 60, "chargingRateUnit": "A"}
    try:
        answer = await send_command(host, charge_box_id, "GetCompositeSchedule", ask,
                                    requested_by=requested_by, answer_timeout=answer_timeout)
    except ChargerCallError:
        return "unsupported"
    except (ChargerOffline, CommandTimeout, InvalidCommand, UnknownOperation):
        return None
    if not isinstance(answer, dict) or answer.get("status") != "Accepted":
        return "unsupported"
    schedule = answer.get("schedule" if new else "chargingSchedule") or {}
    periods = schedule.get("chargingSchedulePeriod") or []
    if not periods or schedule.get("chargingRateUnit") != "A":
        return None
    try:
        return float(periods[0]["limit"])
    except (KeyError, TypeError, ValueError):
        return None
