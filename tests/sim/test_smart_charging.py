"""How the simulated charger composes its profiles (OCPP 1.6 section 3.13) and what the car draws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from polaris.sim.smart_charging import ChargingProfile, ChargingProfiles, Period
from polaris.sim.vehicle import Vehicle

AMPS_TO_W = 230 * 3


def profile(pid: int, purpose: str, amps: float, *, stack: int = 0, periods=None) -> ChargingProfile:
    return ChargingProfile(pid, purpose, stack, "A", periods or (Period(0, amps),))


def test_a_tx_profile_overrides_the_default_and_the_station_maximum_caps_both():
    p = ChargingProfiles(max_power_w=22_000)
    p.install(0, profile(1, "TxDefaultProfile", 0))
    assert p.limit_w(1) == 0  # a new session waits for its share
    p.install(1, profile(2, "TxProfile", 16))
    assert p.limit_w(1) == 16 * AMPS_TO_W  # its own TxProfile wins over the charger's default
    p.install(0, profile(3, "ChargePointMaxProfile", 10))
    assert p.limit_w(1) == 10 * AMPS_TO_W
    p.end_transaction(1)  # the TxProfile goes with its transaction
    assert p.limit_w(1) == 0 and (1, 2) not in p.installed


def test_the_highest_stack_level_of_a_purpose_is_in_force():
    p = ChargingProfiles(max_power_w=22_000)
    p.install(1, profile(1, "TxProfile", 8, stack=1))
    p.install(1, profile(2, "TxProfile", 20, stack=5))
    assert p.limit_w(1) == 20 * AMPS_TO_W


def test_a_station_maximum_lease_falls_back_to_the_safe_share_when_not_renewed():
    p = ChargingProfiles(max_power_w=22_000)
    lease = profile(1, "ChargePointMaxProfile", 0, periods=(Period(0, 32), Period(900, 6)))
    p.install(0, lease)
    assert p.limit_w(1) == 22_000
    lease.set_at = datetime.now(UTC) - timedelta(seconds=901)
    assert p.limit_w(1) == 6 * AMPS_TO_W


def test_the_car_draws_at_most_the_limit_its_own_maximum_and_tapers_near_full():
    car = Vehicle(capacity_wh=60_000, max_power_w=11_000, soc=50)
    assert car.power(4_000) == 4_000 and car.power(22_000) == 11_000 and car.power(0) == 0
    car.soc = 95
    assert car.power(22_000) < 11_000 * 0.3
