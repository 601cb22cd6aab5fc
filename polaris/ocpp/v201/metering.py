"""OCPP 2.0.1 meter values as our samples: `value` is a number, the unit and its power of ten
ride in `unitOfMeasure` (`multiplier`), the measurand defaults to the energy register."""

from __future__ import annotations

from datetime import datetime

from polaris.db.repos.meter_values import Sample
from polaris.ocpp.parsing import parse_number, parse_timestamp

ENERGY_REGISTER = "Energy.Active.Import.Register"

SampleGroups = list[tuple[datetime, list[Sample]]]


def samples_from(meter_values: list | None, *, received: datetime) -> SampleGroups:
    """Flatten meterValue elements (snake_case keys, as handlers get them): rows per timestamp.

    `value` is kept as received; `value_num` has the multiplier applied (unit as given: Wh, kWh).
    """
    out: SampleGroups = []
    for mv in meter_values or ():
        if not isinstance(mv, dict):
            continue
        at = parse_timestamp(mv.get("timestamp"), received=received)
        rows = []
        for sv in mv.get("sampled_value") or ():
            if not isinstance(sv, dict) or sv.get("value") is None:
                continue
            raw = sv["value"]
            unit_of_measure = sv.get("unit_of_measure") if isinstance(sv.get("unit_of_measure"), dict) else {}
            number = parse_number(raw)
            multiplier = unit_of_measure.get("multiplier") or 0
            if number is not None and isinstance(multiplier, int) and multiplier:
                number *= 10.0 ** multiplier
            measurand = sv.get("measurand") or ENERGY_REGISTER
            rows.append(Sample(
                sampled_at=at, value=raw if isinstance(raw, str) else repr(raw) if isinstance(raw, float) else str(raw),
                value_num=number, measurand=measurand,
                unit=unit_of_measure.get("unit") or ("Wh" if measurand.startswith("Energy") else None),
                phase=sv.get("phase"), context=sv.get("context"), location=sv.get("location"),
                format="SignedData" if sv.get("signed_meter_value") else None,
            ))
        out.append((at, rows))
    return out


def register_wh(samples: SampleGroups, *, lowest: bool = False) -> float | None:
    """The highest (or lowest) whole-meter energy register reading in Wh, None if there is none."""
    found = [
        s.value_num * (1000.0 if (s.unit or "").lower() == "kwh" else 1.0)
        for _, group in samples for s in group
        if s.measurand == ENERGY_REGISTER and s.phase is None and s.value_num is not None
    ]
    if not found:
        return None
    return min(found) if lowest else max(found)
