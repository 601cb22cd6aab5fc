"""What a transaction owes Lago: energy checks, in-progress increments and the final true-up.

Pure functions over plain data, so the rules are tested without a database. Energy is
integer Wh throughout; kWh with 3 decimals is Wh / 1000, exact, so the sum of a session's
events in Lago equals its energy to the Wh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

# Above this average power a session is implausible (the fastest DC chargers are ~400 kW).
MAX_POWER_W = 400_000
# Meter values may be rounded (kWh with 2 decimals is 10 Wh); readings this far outside
# [meterStart, meterStop] are a register problem, not rounding.
REGISTER_TOLERANCE_WH = 50

# Why a transaction is not billed (yet); operators see these codes with a sentence.
NO_CUSTOMER = "no_customer"
NO_SUBSCRIPTION = "no_subscription"
UNKNOWN_SUBSCRIPTION = "unknown_subscription"
INACTIVE_SUBSCRIPTION = "inactive_subscription"
ANOMALY = "anomaly"
INVALID_EVENT = "invalid_event"
TEST = "test"
UNBILLABLE_CODES = (
    NO_CUSTOMER,
    NO_SUBSCRIPTION,
    UNKNOWN_SUBSCRIPTION,
    INACTIVE_SUBSCRIPTION,
    ANOMALY,
    INVALID_EVENT,
    TEST,
)


@dataclass(frozen=True)
class Registers:
    """Energy.Active.Import.Register readings of one transaction, in Wh."""

    count: int = 0
    latest_wh: int | None = None
    latest_at: datetime | None = None
    min_wh: int | None = None
    max_wh: int | None = None
    # Readings lower than the one before (a register reset or a reboot mid-session).
    decreases: int = 0


@dataclass(frozen=True)
class TransactionView:
    """One transaction as the planner needs it (joined from ocpp, app and billing)."""

    id: int
    charge_box_id: str
    connector_id: int
    id_tag: str
    start: datetime
    meter_start: int
    stop: datetime | None
    meter_stop: int | None
    is_test: bool
    # The subscription its events go to: pinned by the first recorded event, else mapped.
    subscription_id: str | None
    # Set when the card -> customer -> subscription mapping fails: (code, reason).
    mapping_problem: tuple[str, str] | None
    recorded_wh: int = 0
    final_recorded: bool = False
    energy_override_wh: int | None = None
    registers: Registers = field(default_factory=Registers)


@dataclass(frozen=True)
class UsageEvent:
    transaction_id: str
    ocpp_transaction_id: int
    kind: str  # increment | final
    external_subscription_id: str
    code: str
    timestamp: datetime
    wh: int
    properties: dict[str, Any]
    # The transaction's recorded energy this event was computed against (see record_events).
    planned_against_wh: int = 0

    def to_lago(self) -> dict[str, Any]:
        """The event as Lago's POST /events/batch takes it."""
        return {
            "transaction_id": self.transaction_id,
            "external_subscription_id": self.external_subscription_id,
            "code": self.code,
            "timestamp": int(self.timestamp.timestamp()),
            "properties": self.properties,
        }


@dataclass(frozen=True)
class Plan:
    """What to do with one transaction in this run."""

    transaction_id: int
    events: tuple[UsageEvent, ...] = ()
    # (code, reason) when it is held; None clears an earlier hold.
    hold: tuple[str, str] | None = None
    # Nothing will ever be sent for it (a test session).
    done: bool = False


def kwh(wh: int) -> float:
    """Wh as kWh with 3 decimals (exact: a JSON number Lago sums without drift)."""
    return float(Decimal(wh) / 1000)


def _session(transaction_id: int, start: datetime | None, deployment: str) -> str:
    if not deployment:
        return f"steve_tx_{transaction_id}"  # no deployment id: the original stack's ids
    return f"pol_{deployment}_{int(start.timestamp()) if start else 0}_tx_{transaction_id}"


def increment_id(transaction_id: int, unix: int, *, start: datetime | None = None, deployment: str = "") -> str:
    """An in-progress increment's id: the deployment, the session's start and its OCPP id
    (unique after a restore reuses OCPP ids, and beside another deployment on one Lago)."""
    return f"{_session(transaction_id, start, deployment)}_{unix}"


def final_id(transaction_id: int, *, start: datetime | None = None, deployment: str = "") -> str:
    return f"{_session(transaction_id, start, deployment)}_final"


def short_id(event_transaction_id: str) -> str:
    """The id without deployment and start (`steve_tx_<id>_final`): how people name a session."""
    if event_transaction_id.startswith("pol_"):
        parts = event_transaction_id.split("_", 3)
        if len(parts) == 4 and parts[3].startswith("tx_"):
            return "steve_" + parts[3]
    return event_transaction_id


def session_energy(tx: TransactionView) -> tuple[int | None, str | None]:
    """Energy of a finished session in Wh, or (None, why it cannot be billed as is)."""
    if tx.energy_override_wh is not None:
        return tx.energy_override_wh, None
    assert tx.meter_stop is not None and tx.stop is not None
    energy = tx.meter_stop - tx.meter_start
    if energy < 0:
        return None, (
            f"meterStop {tx.meter_stop} Wh is below meterStart {tx.meter_start} Wh "
            "(negative energy: a register reset?)"
        )
    reg = tx.registers
    if reg.decreases:
        return None, (
            f"the energy register went down {reg.decreases} time(s) during the session "
            "(register reset or charger reboot); meterStop - meterStart cannot be trusted"
        )
    if reg.max_wh is not None and reg.max_wh > tx.meter_stop + REGISTER_TOLERANCE_WH:
        return None, (
            f"meter values reached {reg.max_wh} Wh, above meterStop {tx.meter_stop} Wh"
        )
    if reg.min_wh is not None and reg.min_wh < tx.meter_start - REGISTER_TOLERANCE_WH:
        return None, (
            f"meter values went down to {reg.min_wh} Wh, below meterStart {tx.meter_start} Wh"
        )
    seconds = (tx.stop - tx.start).total_seconds()
    if energy > 0 and (seconds <= 0 or energy * 3600 / seconds > MAX_POWER_W):
        power = "infinite" if seconds <= 0 else f"{energy * 3.6 / seconds:.0f} kW"
        return None, (
            f"{energy} Wh in {max(seconds, 0):.0f} s is an average power of {power}, "
            f"above the {MAX_POWER_W // 1000} kW any charger delivers"
        )
    return energy, None


def running_energy(tx: TransactionView) -> int | None:
    """Energy so far of a running session from its latest register reading, if plausible."""
    reg = tx.registers
    if reg.latest_wh is None or reg.latest_at is None or reg.decreases:
        return None
    energy = reg.latest_wh - tx.meter_start
    if energy <= 0:
        return None
    seconds = (reg.latest_at - tx.start).total_seconds()
    if seconds <= 0 or energy * 3600 / seconds > MAX_POWER_W:
        return None
    return energy


def _properties(tx: TransactionView, wh: int, *, at: datetime) -> dict[str, Any]:
    value = kwh(wh)
    props: dict[str, Any] = {
        "value": value,
        "kwh": value,
        "charger": tx.charge_box_id,
        "connector": tx.connector_id,
        "start": tx.start.isoformat(),
        "duration": int(max((at - tx.start).total_seconds(), 0)),
    }
    if tx.stop is not None:
        props["stop"] = tx.stop.isoformat()
    return props


def plan_transaction(tx: TransactionView, metric_code: str, *, deployment: str = "") -> Plan:
    """The events this transaction owes now, or why it is held."""
    if tx.is_test:
        return Plan(tx.id, hold=(TEST, "smoke-test session: never billed"), done=True)
    if tx.subscription_id is None:
        assert tx.mapping_problem is not None
        return Plan(tx.id, hold=tx.mapping_problem)
    if tx.mapping_problem is not None and tx.mapping_problem[0] in (
        UNKNOWN_SUBSCRIPTION,
        INACTIVE_SUBSCRIPTION,
    ):
        return Plan(tx.id, hold=tx.mapping_problem)

    if tx.stop is None:
        energy = running_energy(tx)
        if energy is None or energy <= tx.recorded_wh:
            return Plan(tx.id)
        assert tx.registers.latest_at is not None
        at = tx.registers.latest_at
        delta = energy - tx.recorded_wh
        event = UsageEvent(
            transaction_id=increment_id(tx.id, int(at.timestamp()), start=tx.start, deployment=deployment),
            ocpp_transaction_id=tx.id,
            kind="increment",
            external_subscription_id=tx.subscription_id,
            code=metric_code,
            timestamp=at,
            wh=delta,
            properties=_properties(tx, delta, at=at),
            planned_against_wh=tx.recorded_wh,
        )
        return Plan(tx.id, events=(event,))

    if tx.final_recorded:
        return Plan(tx.id)
    energy, problem = session_energy(tx)
    if energy is None:
        return Plan(tx.id, hold=(ANOMALY, problem or "energy cannot be determined"))
    if energy < tx.recorded_wh:
        return Plan(
            tx.id,
            hold=(
                ANOMALY,
                f"in-progress increments already billed {tx.recorded_wh} Wh, more than the "
                f"session's {energy} Wh; a negative true-up is not sent automatically",
            ),
        )
    delta = energy - tx.recorded_wh
    event = UsageEvent(
        transaction_id=final_id(tx.id, start=tx.start, deployment=deployment),
        ocpp_transaction_id=tx.id,
        kind="final",
        external_subscription_id=tx.subscription_id,
        code=metric_code,
        timestamp=tx.stop,
        wh=delta,
        properties=_properties(tx, delta, at=tx.stop),
        planned_against_wh=tx.recorded_wh,
    )
    return Plan(tx.id, events=(event,))
