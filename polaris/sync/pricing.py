"""The price of our metric's charge in a Lago plan, in words a customer reads.

Read from the subscription's own plan (Lago's `GET /subscriptions/{external_id}` embeds it,
with the subscription's overrides), else the plan by code. Lago's charge models: `standard`
(amount per unit), `package` (amount per `package_size` units, after `free_units`),
`graduated` (each range's units at its price, plus its flat fee), `volume` (every unit at the
price of the range the period's total falls in), `percentage` (rate % of the units, plus a
fixed amount per event). Anything else, or anything we cannot render exactly (charge
filters, free units per event, minimums), is "see your plan": never a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

SEE_YOUR_PLAN = "see your plan"


@dataclass(frozen=True)
class ChargePrice:
    # Price of one kWh when it is the same for every kWh (standard); else None.
    per_kwh: Decimal | None
    # The price in words ("0.35 EUR per kWh", or SEE_YOUR_PLAN).
    text: str
    model: str | None


def _d(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _n(value: Decimal) -> str:
    return f"{value.normalize():f}"


def find_charge(plan: dict[str, Any] | None, metric_code: str) -> dict[str, Any] | None:
    for c in (plan or {}).get("charges") or []:
        if c.get("billable_metric_code") == metric_code or (c.get("billable_metric") or {}).get("code") == metric_code:
            return c
    return None


def _ranges(ranges: Any, currency: str) -> list[str] | None:
    out = []
    for r in ranges or []:
        lo, hi = _d(r.get("from_value")), _d(r.get("to_value"))
        unit, flat = _d(r.get("per_unit_amount")), _d(r.get("flat_amount"))
        if lo is None or unit is None:
            return None
        span = f"{_n(lo)}–{_n(hi)} kWh" if hi is not None else f"above {_n(lo)} kWh"
        part = f"{span}: {_n(unit)} {currency} per kWh"
        if flat:
            part += f" + {_n(flat)} {currency}"
        out.append(part)
    return out or None


def render(charge: dict[str, Any] | None, currency: str | None) -> ChargePrice:
    """The charge's price, or SEE_YOUR_PLAN when it cannot be rendered exactly."""
    if not charge or not currency:
        return ChargePrice(None, SEE_YOUR_PLAN, (charge or {}).get("charge_model"))
    model = charge.get("charge_model")
    props = charge.get("properties") or {}
    unknown = ChargePrice(None, SEE_YOUR_PLAN, model)
    if charge.get("filters"):
        return unknown  # the price depends on event properties
    if model == "standard":
        amount = _d(props.get("amount"))
        if amount is None:
            return unknown
        return ChargePrice(amount, f"{_n(amount)} {currency} per kWh", model)
    if model == "package":
        amount, size = _d(props.get("amount")), _d(props.get("package_size"))
        if amount is None or not size:
            return unknown
        text = f"{_n(amount)} {currency} per {_n(size)} kWh" if size != 1 else f"{_n(amount)} {currency} per kWh"
        free = _d(props.get("free_units"))
        if free:
            text += f" (first {_n(free)} kWh free)"
        return ChargePrice(amount if size == 1 and not free else None, text, model)
    if model in ("graduated", "volume"):
        parts = _ranges(props.get(f"{model}_ranges"), currency)
        if parts is None:
            return unknown
        if model == "graduated":
            return ChargePrice(None, "each kWh of the month at its range's price: " + "; ".join(parts), model)
        return ChargePrice(None, "every kWh of the month at the price of the range its total falls in: "
                           + "; ".join(parts), model)
    if model == "percentage":
        rate = _d(props.get("rate"))
        if rate is None or any(
            props.get(k) not in (None, "", 0, "0")
            for k in ("free_units_per_events", "free_units_per_total_aggregation",
                      "per_transaction_min_amount", "per_transaction_max_amount")
        ):
            return unknown
        per_kwh = rate / 100
        text = f"{_n(per_kwh)} {currency} per kWh"
        fixed = _d(props.get("fixed_amount"))
        if fixed:
            return ChargePrice(None, text + f" + {_n(fixed)} {currency} per charging session", model)
        return ChargePrice(per_kwh, text, model)
    return unknown
