"""Prices rendered from the subscription's own plan, for every Lago charge model."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sync_helpers import add_charger, add_customer, add_session

from polaris.customer_web.portal.charging import price_for
from polaris.sync import pricing


def _charge(model: str, **props) -> dict:
    return {"billable_metric_code": "ev_charging_kwh", "charge_model": model, "properties": props}


@pytest.mark.parametrize(
    ("charge", "per_kwh", "text"),
    [
        (_charge("standard", amount="0.35"), "0.35", "0.35 EUR per kWh"),
        (_charge("package", amount="5", package_size=10, free_units=0), None, "5 EUR per 10 kWh"),
        (_charge("package", amount="5", package_size=10, free_units=20), None, "5 EUR per 10 kWh (first 20 kWh free)"),
        (_charge("graduated", graduated_ranges=[
            {"from_value": 0, "to_value": 100, "per_unit_amount": "0.40", "flat_amount": "0"},
            {"from_value": 101, "to_value": None, "per_unit_amount": "0.30", "flat_amount": "2"}]),
         None, "each kWh of the month at its range's price: 0–100 kWh: 0.4 EUR per kWh; above 101 kWh: 0.3 EUR per kWh + 2 EUR"),
        (_charge("volume", volume_ranges=[
            {"from_value": 0, "to_value": 50, "per_unit_amount": "0.45", "flat_amount": "0"},
            {"from_value": 51, "to_value": None, "per_unit_amount": "0.32", "flat_amount": "0"}]),
         None, "every kWh of the month at the price of the range its total falls in: 0–50 kWh: 0.45 EUR per kWh; above 51 kWh: 0.32 EUR per kWh"),
        (_charge("percentage", rate="30"), "0.3", "0.3 EUR per kWh"),
        (_charge("percentage", rate="30", fixed_amount="0.5"), None, "0.3 EUR per kWh + 0.5 EUR per charging session"),
        (_charge("percentage", rate="30", free_units_per_events=2), None, "see your plan"),
        (_charge("dynamic"), None, "see your plan"),
        ({**_charge("standard", amount="0.35"), "filters": [{"values": {"speed": ["dc"]}}]}, None, "see your plan"),
        (None, None, "see your plan"),
    ],
)
def test_every_charge_model_renders_or_says_see_your_plan(charge, per_kwh, text):
    price = pricing.render(charge, "EUR")
    assert price.text == text
    assert price.per_kwh == (Decimal(per_kwh) if per_kwh else None)


async def test_the_portal_prices_from_the_subscriptions_own_plan(conn, engine, fake_lago):
    """An override on the subscription (graduated here) wins over the plan by code."""
    fake_lago.add_subscription("sub_g", plan_code="ev_plan")
    fake_lago.plans["ev_plan_g"] = {**fake_lago.plans["ev_plan"], "code": "ev_plan_g", "charges": [
        _charge("graduated", graduated_ranges=[
            {"from_value": 0, "to_value": 100, "per_unit_amount": "0.40", "flat_amount": "0"},
            {"from_value": 101, "to_value": None, "per_unit_amount": "0.30", "flat_amount": "0"}])]}
    # Lago embeds the subscription's plan (overrides applied) in GET /subscriptions/{id}.
    fake_lago.subscriptions["sub_g"]["plan_code"] = "ev_plan_g"
    fake_lago.add_subscription("sub_s")
    cb = await add_charger(conn)
    await add_customer(conn, "g@example.com", subscription="sub_g", tag="GGG")
    await add_customer(conn, "s@example.com", subscription="sub_s", tag="SSS")
    await add_session(conn, cb, "GGG", energy_wh=1)
    await add_session(conn, cb, "SSS", energy_wh=1)
    await engine.run()
    price = await price_for(conn, "sub_g")
    assert price.per_kwh is None and price.cost(10.0) is None, "no single price: no computed cost"
    assert price.text.startswith("each kWh of the month at its range's price: 0–100 kWh: 0.4 EUR")
    price = await price_for(conn, "sub_s")
    assert price.per_kwh == Decimal("0.35") and price.label == "0.35 EUR" and price.text is None
