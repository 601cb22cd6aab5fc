"""What the charger's meter reads, in version-neutral terms.

A `MeterSample` is one moment's readings (energy register, power, current per phase, voltage,
the car's state of charge) with their units and precision. How they go on the wire is the
protocol adapter's business: 1.6 sends `sampledValue` strings (or numbers, for some quirky
chargers), 2.0.1 numbers with a `unitOfMeasure`. The measurand and context names are the same
in both versions.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from polaris.sim.clock import now_iso
from polaris.sim.vehicle import NOMINAL_VOLTAGE, PHASES, current_for


class Measurand(StrEnum):
    ENERGY = "Energy.Active.Import.Register"
    POWER = "Power.Active.Import"
    CURRENT = "Current.Import"
    VOLTAGE = "Voltage"
    SOC = "SoC"


class Context(StrEnum):
    PERIODIC = "Sample.Periodic"
    BEGIN = "Transaction.Begin"
    END = "Transaction.End"
    TRIGGER = "Trigger"


@dataclass(frozen=True)
class Reading:
    """One measured value; `decimals` is the precision a charger reports it with."""

    measurand: str
    value: float
    unit: str
    context: str
    decimals: int = 0
    location: str | None = "Outlet"
    phase: str | None = None


@dataclass(frozen=True)
class MeterSample:
    """The readings of one moment (a 1.6 `MeterValue`, a 2.0.1 `MeterValueType`)."""

    timestamp: str
    readings: tuple[Reading, ...]


def energy_sample(meter_wh: float, context: str) -> MeterSample:
    """The energy register alone (a transaction's begin and end readings)."""
    return MeterSample(now_iso(), (Reading(Measurand.ENERGY, meter_wh, "Wh", context),))


def sample(
    measurands: Iterable[str],
    *,
    meter_wh: float,
    power_w: float,
    soc: float | None,
    context: str,
    rng: random.Random,
) -> MeterSample:
    """The readings of the `measurands` asked for, in that order; measurands the meter does not
    have are left out (as a real charger does), and SoC only while a car reports it."""
    readings: list[Reading] = []
    for m in measurands:
        if m == Measurand.ENERGY:
            readings.append(Reading(m, meter_wh, "Wh", context))
        elif m == Measurand.POWER:
            readings.append(Reading(m, power_w, "W", context, decimals=1))
        elif m == Measurand.CURRENT:
            amps = current_for(power_w)
            readings += [Reading(m, amps, "A", context, decimals=2, phase=p) for p in ("L1", "L2", "L3")[:PHASES]]
        elif m == Measurand.VOLTAGE:
            volts = NOMINAL_VOLTAGE + rng.uniform(-3, 3)
            readings.append(Reading(m, volts, "V", context, decimals=1))
        elif m == Measurand.SOC and soc is not None:
            readings.append(Reading(m, soc, "Percent", context, location="EV"))
    return MeterSample(now_iso(), tuple(readings))
