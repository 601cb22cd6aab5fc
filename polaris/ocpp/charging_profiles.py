"""A charging limit said in each OCPP version's SetChargingProfile, for whoever sets limits
(an operator, the load controller).

`limit_command` builds the operation and payload for a charger's version: in 1.6 a
`TxDefaultProfile` on a connector, or `ChargePointMaxProfile` on connector 0; in 2.0.1 a
`TxDefaultProfile` on an EVSE, or `ChargingStationMaxProfile` on EVSE 0. `send_limit` sends
it to a connected charger (its negotiated version) through the journaled command path, so
the profile is stored when the charger accepts it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from polaris.ocpp.commands import connected, send_command, stored_version

if TYPE_CHECKING:
    from polaris.ocpp.commands import CommandHost


def limit_command(ocpp_version: str, *, connector_id: int, limit: float, unit: str = "A",
                  profile_id: int = 1, stack_level: int = 0, start: datetime | None = None) -> tuple[str, dict]:
    """(operation, payload) limiting a connector/EVSE (or, with 0, the whole charger) to `limit` A or W."""
    start_at = (start or datetime.now(UTC)).isoformat()
    period = [{"startPeriod": 0, "limit": float(limit)}]
    if ocpp_version.startswith("2"):
        purpose = "ChargingStationMaxProfile" if connector_id == 0 else "TxDefaultProfile"
        return "SetChargingProfile", {"evseId": connector_id, "chargingProfile": {
            "id": profile_id, "stackLevel": stack_level, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": profile_id, "startSchedule": start_at, "chargingRateUnit": unit,
                                  "chargingSchedulePeriod": period}]}}
    purpose = "ChargePointMaxProfile" if connector_id == 0 else "TxDefaultProfile"
    return "SetChargingProfile", {"connectorId": connector_id, "csChargingProfiles": {
        "chargingProfileId": profile_id, "stackLevel": stack_level, "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"startSchedule": start_at, "chargingRateUnit": unit, "chargingSchedulePeriod": period}}}


async def send_limit(host: CommandHost, charge_box_id: str, *, connector_id: int, limit: float, unit: str = "A",
                     profile_id: int = 1, stack_level: int = 0, requested_by: str | None = None) -> dict:
    """Send the limit in the charger's version: the one connected here, else the one it last
    booted with (routed to the instance holding it), else the default (1.6)."""
    cp = connected(host.connections, charge_box_id)
    held = type(cp) if cp is not None else await stored_version(host, charge_box_id)
    version = (held or host.versions.default).OCPP_VERSION
    operation, payload = limit_command(version, connector_id=connector_id, limit=limit, unit=unit,
                                       profile_id=profile_id, stack_level=stack_level)
    return await send_command(host, charge_box_id, operation, payload, requested_by=requested_by)
