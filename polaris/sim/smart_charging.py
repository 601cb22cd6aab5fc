"""Charging profiles a charger holds, and the power limit they put on a connector now.

Version-neutral: a protocol adapter turns its version's SetChargingProfile (1.6) or
SetChargingProfileRequest (2.0.1) into a `ChargingProfile` and installs it; the session
simulation caps each car's draw at `ChargingProfiles.limit_w(connector)` (see `vehicle.py`), and
GetCompositeSchedule answers from the same number. Stack levels and recurring schedules are not
modelled: the lowest limit in force wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from polaris.sim.vehicle import NOMINAL_VOLTAGE, PHASES


class ProfilePurpose(StrEnum):
    STATION_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


@dataclass(frozen=True)
class Period:
    """From `start_s` seconds into the schedule on: at most `limit` (W or A per phase)."""

    start_s: int
    limit: float
    phases: int | None = None


@dataclass
class ChargingProfile:
    profile_id: int
    purpose: str
    stack_level: int
    rate_unit: str  # "W" or "A"
    periods: tuple[Period, ...]
    set_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def limit_w(self) -> float:
        """The limit (W) of the period in force now; unlimited without periods."""
        periods = sorted(self.periods, key=lambda p: p.start_s)
        if not periods:
            return float("inf")
        elapsed = (datetime.now(UTC) - self.set_at).total_seconds()
        current = periods[0]
        for p in periods:
            if p.start_s <= elapsed:
                current = p
        limit = float(current.limit)
        if self.rate_unit == "A":
            limit *= NOMINAL_VOLTAGE * int(current.phases or PHASES)
        return limit


class ChargingProfiles:
    """The profiles installed, by (connector id, profile id); connector 0 is the whole charger."""

    def __init__(self, max_power_w: float):
        self.max_power_w = max_power_w
        self.installed: dict[tuple[int, int], ChargingProfile] = {}

    def install(self, connector_id: int, profile: ChargingProfile) -> None:
        """Add a profile, or replace the one with the same id on that connector."""
        self.installed[(connector_id, profile.profile_id)] = profile

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> int:
        """Remove the profiles matching every criterion given; how many went."""
        doomed = [
            key for key, p in self.installed.items()
            if (profile_id is None or key[1] == profile_id)
            and (connector_id is None or key[0] == connector_id)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]
        for key in doomed:
            del self.installed[key]
        return len(doomed)

    def limit_w(self, connector_id: int) -> float:
        """What a connector may draw now (W), as OCPP 1.6 section 3.13 composes it: the connector's
        TxProfile when it has one, else its TxDefaultProfile (its own, or connector 0's), capped by
        the charger's maximum and every ChargePointMaxProfile. For connector 0, every profile counts."""
        limit = self.max_power_w
        if connector_id == 0:
            for profile in self.installed.values():
                limit = min(limit, profile.limit_w())
            return limit
        for profile in self.installed.values():
            if profile.purpose == ProfilePurpose.STATION_MAX:
                limit = min(limit, profile.limit_w())
        for purpose, cid_wanted in ((ProfilePurpose.TX, connector_id), (ProfilePurpose.TX_DEFAULT, connector_id),
                                    (ProfilePurpose.TX_DEFAULT, 0)):
            found = [p for (cid, _pid), p in self.installed.items() if p.purpose == purpose and cid == cid_wanted]
            if found:  # the highest stack level of the first purpose found is the one in force
                return min(limit, max(found, key=lambda p: p.stack_level).limit_w())
        return limit

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives as long as its transaction (1.6: deleted when it ends)."""
        self.clear(connector_id=connector_id, purpose=ProfilePurpose.TX)

    def limit(self, connector_id: int, unit: str) -> float:
        """`limit_w` in `unit`: W, or A per phase at the nominal voltage."""
        limit_w = self.limit_w(connector_id)
        return limit_w if unit == "W" else limit_w / (NOMINAL_VOLTAGE * PHASES)
