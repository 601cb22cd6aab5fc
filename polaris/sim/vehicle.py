"""A plausible electric vehicle on the other end of the cable: battery, state of charge, taper.

The car draws what it can, capped by what the station offers (`Vehicle.power(limit_w)`): the
station's maximum lowered by the charging profiles in force (`smart_charging.py`), so a limit the
central system sends shows in the meter values of the very next interval.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# (battery capacity Wh, on-board AC charger W): typical cars seen at AC chargers.
CARS = [
    (40_000, 7_400),   # small hatchback, single phase
    (58_000, 11_000),  # compact, three phase 16 A
    (77_000, 11_000),  # mid-size SUV
    (82_000, 22_000),  # large car with 22 kW on-board charger
    (100_000, 11_000),
]
NOMINAL_VOLTAGE = 230.0
PHASES = 3


@dataclass
class Vehicle:
    capacity_wh: float
    max_power_w: float
    soc: float  # percent

    def power(self, limit_w: float) -> float:
        """Power drawn now: the car's own maximum capped at `limit_w` (what the station offers),
        tapering above 80 % like real batteries."""
        p = min(self.max_power_w, limit_w)
        if self.soc >= 100:
            return 0.0
        if self.soc > 80:
            p *= max(0.1, (100 - self.soc) / 20)
        return p

    def charge(self, power_w: float, seconds: float) -> float:
        """Advance the battery by `seconds` at `power_w`; return the energy delivered (Wh)."""
        energy = power_w * seconds / 3600.0
        room = (100 - self.soc) / 100 * self.capacity_wh
        energy = max(0.0, min(energy, room))
        self.soc = min(100.0, self.soc + energy / self.capacity_wh * 100)
        return energy


def random_vehicle(rng: random.Random) -> Vehicle:
    capacity, max_power = rng.choice(CARS)
    return Vehicle(capacity_wh=capacity, max_power_w=max_power, soc=rng.uniform(10, 60))


def current_for(power_w: float, phases: int = PHASES) -> float:
    """Per-phase current (A) for a power at the nominal voltage."""
    return power_w / (NOMINAL_VOLTAGE * phases)
