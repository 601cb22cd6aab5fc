"""A charger's connectors and the sessions on them: plain state, in version-neutral words.

Statuses, stop reasons and the answers to availability and reservation requests are spelled as
in OCPP 1.6; 2.0.1 shares the answers word for word, and its adapter maps the rest (Preparing,
Charging and Finishing are its Occupied; HardReset is its ImmediateReset). Nothing here does
I/O: each rule (who may start where, what Inoperative does during a session, when a reservation
blocks a card) is decided once, and every version's handlers ask it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from enum import StrEnum

from polaris.sim.clock import parse_time
from polaris.sim.metering import MeterSample, energy_sample, sample
from polaris.sim.vehicle import Vehicle

NO_ERROR = "NoError"


class Status(StrEnum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(StrEnum):
    LOCAL = "Local"
    REMOTE = "Remote"
    EV_DISCONNECTED = "EVDisconnected"
    DE_AUTHORIZED = "DeAuthorized"
    UNLOCK_COMMAND = "UnlockCommand"
    SOFT_RESET = "SoftReset"
    HARD_RESET = "HardReset"
    POWER_LOSS = "PowerLoss"
    OTHER = "Other"


class Availability(StrEnum):
    ACCEPTED = "Accepted"
    SCHEDULED = "Scheduled"
    REJECTED = "Rejected"


class ReservationAnswer(StrEnum):
    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


@dataclass
class Session:
    """A charging session on one connector, from plug-in to the end of its transaction."""

    connector_id: int
    id_tag: str
    remote: bool
    vehicle: Vehicle
    reservation_id: int | None = None
    transaction_id: int | None = None
    meter_start: int = 0
    start_time: str = ""
    id_tag_status: str | None = None
    stop_reason: str | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    begin_sample: MeterSample | None = None
    power_w: float = 0.0
    duration: float = 0.0

    def request_stop(self, reason: str) -> None:
        """End the session (the first reason given is the one reported)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_requested.set()


@dataclass
class CompletedTransaction:
    """A transaction whose end the central system acknowledged."""

    connector_id: int
    transaction_id: int | None
    id_tag: str
    meter_start: int
    meter_stop: int
    reason: str


@dataclass
class Connector:
    """One connector: its energy register, status, availability, reservation and session."""

    connector_id: int
    meter_wh: float
    status: str = Status.AVAILABLE
    error_code: str = NO_ERROR
    operative: bool = True
    # ChangeAvailability(Inoperative) during a session is applied when it ends.
    scheduled_operative: bool | None = None
    reservation: dict | None = None
    session: Session | None = None
    session_task: asyncio.Task | None = None

    def idle_status(self) -> Status:
        """The status with no car plugged in."""
        if not self.operative:
            return Status.UNAVAILABLE
        if self.reservation is not None:
            return Status.RESERVED
        return Status.AVAILABLE

    def takes(self, id_tag: str) -> bool:
        """Whether a session for `id_tag` may start here now (free, operative, not reserved for
        another card; id tags compare case-insensitively)."""
        return (
            self.session is None
            and self.operative
            and (self.reservation is None or self.reservation["id_tag"].lower() == id_tag.lower())
        )

    def energy_sample(self, context: str) -> MeterSample:
        """The energy register alone, now."""
        return energy_sample(self.meter_wh, context)

    def sample(self, measurands: list[str], context: str, rng: random.Random) -> MeterSample:
        """The meter's readings now, with the session's power and the car's state of charge."""
        s = self.session
        return sample(
            measurands,
            meter_wh=self.meter_wh,
            power_w=s.power_w if s else 0.0,
            soc=s.vehicle.soc if s else None,
            context=context,
            rng=rng,
        )


class Connectors(dict[int, Connector]):
    """The connectors by id (1..n), and connector 0's own status (the charger as a whole)."""

    def __init__(self, count: int, rng: random.Random):
        super().__init__({i: Connector(i, meter_wh=rng.uniform(100_000, 5_000_000)) for i in range(1, count + 1)})
        self.connector0_status: str = Status.AVAILABLE

    def for_remote_start(self, id_tag: str, connector_id: int | None = None) -> Connector | None:
        """Where a remote start for `id_tag` would go: the connector asked for, or the first that
        takes the card; None when there is none."""
        if connector_id is None:
            return next((c for c in self.values() if c.takes(id_tag)), None)
        c = self.get(connector_id)
        return c if c is not None and c.takes(id_tag) else None

    def by_transaction(self, transaction_id: int) -> Connector | None:
        """The connector whose running session has this transaction id."""
        return next(
            (c for c in self.values() if c.session is not None and c.session.transaction_id == transaction_id), None
        )

    def set_availability(self, connector_id: int, operative: bool) -> tuple[Availability, list[int]]:
        """Make a connector (0: all of them) operative or not; with the connector ids whose status
        changed (to report). Inoperative during a session is Scheduled: applied when it ends."""
        if connector_id == 0:
            targets = list(self.values())
        elif connector_id in self:
            targets = [self[connector_id]]
        else:
            return Availability.REJECTED, []
        scheduled = False
        changed: list[int] = []
        for c in targets:
            if c.session is not None and not operative:
                c.scheduled_operative = False
                scheduled = True
            elif c.operative != operative:
                c.operative = operative
                c.scheduled_operative = None
                if c.session is None:
                    c.status = c.idle_status()
                    changed.append(c.connector_id)
        if connector_id == 0 and not scheduled:
            self.connector0_status = Status.AVAILABLE if operative else Status.UNAVAILABLE
            changed.insert(0, 0)
        return (Availability.SCHEDULED if scheduled else Availability.ACCEPTED), changed

    def reserve(self, connector_id: int, reservation_id: int, id_tag: str, expiry: str) -> ReservationAnswer:
        """Hold a connector for one card until `expiry` (ISO 8601); on Accepted it shows Reserved."""
        c = self.get(connector_id)
        if c is None:
            return ReservationAnswer.REJECTED
        if c.status == Status.FAULTED:
            return ReservationAnswer.FAULTED
        if not c.operative:
            return ReservationAnswer.UNAVAILABLE
        if c.session is not None or (c.reservation and c.reservation["reservation_id"] != reservation_id):
            return ReservationAnswer.OCCUPIED
        try:
            until = parse_time(expiry)
        except ValueError:
            return ReservationAnswer.REJECTED
        c.reservation = {"reservation_id": reservation_id, "id_tag": id_tag, "expiry": until}
        c.status = Status.RESERVED
        return ReservationAnswer.ACCEPTED

    def end_reservation(self, reservation_id: int, connector_id: int | None = None) -> Connector | None:
        """Drop a reservation (cancelled, or expired on `connector_id`); the connector it held, None
        if there is no such reservation. Without a car plugged in, the connector is back to its
        idle status."""
        for c in self.values():
            if connector_id not in (None, c.connector_id):
                continue
            if c.reservation and c.reservation["reservation_id"] == reservation_id:
                c.reservation = None
                if c.session is None:
                    c.status = c.idle_status()
                return c
        return None

    def unlock(self, connector_id: int) -> bool:
        """Release the cable (ending a session on it); False for an unknown connector."""
        c = self.get(connector_id)
        if c is None:
            return False
        if c.session is not None:
            c.session.request_stop(StopReason.UNLOCK_COMMAND)
        return True
