"""A car's charging session, from plug-in to the acknowledged end of its transaction.

Version-neutral: the card is authorized through `LocalAuthorization`, the transaction's
messages are said by the protocol adapter (queued, so an outage delays them but loses nothing),
and the car draws what the station offers it now: its maximum lowered by the charging profiles
in force (`ChargingProfiles.limit_w`), which is where load management reaches the simulation.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from structlog.stdlib import BoundLogger

from polaris.sim.adapter import OcppAdapter, TransactionEnd
from polaris.sim.authorization import ACCEPTED, LocalAuthorization
from polaris.sim.clock import now_iso
from polaris.sim.connectors import CompletedTransaction, Connector, Session, Status, StopReason
from polaris.sim.metering import Context
from polaris.sim.smart_charging import ChargingProfiles
from polaris.sim.vehicle import random_vehicle


def spread(mean: float, rng: random.Random) -> float:
    """A random duration around `mean` (half to one and a half times it)."""
    return max(0.0, rng.uniform(0.5 * mean, 1.5 * mean))


class SessionRunner:
    """Runs sessions on the station's connectors; keeps the transactions it completed."""

    def __init__(
        self,
        *,
        protocol: OcppAdapter,
        authorization: LocalAuthorization,
        smart_charging: ChargingProfiles,
        set_status: Callable[[Connector, str], Awaitable[None]],
        ended: Callable[[], Awaitable[None]],
        rng: random.Random,
        id_tag: str,
        session_seconds: float,
        idle_seconds: float,
        step_delay: float,
        log: BoundLogger,
    ):
        self._protocol = protocol
        self._authorization = authorization
        self._smart_charging = smart_charging
        self._set_status = set_status
        self._ended = ended
        self._rng = rng
        self.id_tag = id_tag
        self.session_seconds = session_seconds
        self.idle_seconds = idle_seconds
        self.step_delay = step_delay
        self._log = log
        self.completed: list[CompletedTransaction] = []

    def start(self, c: Connector, id_tag: str, *, remote: bool = False) -> bool:
        """A car plugs in at `c` and `id_tag` is presented; False if the connector does not take it."""
        if not c.takes(id_tag):
            return False
        reservation_id = c.reservation["reservation_id"] if c.reservation is not None else None
        c.session = Session(c.connector_id, id_tag, remote, random_vehicle(self._rng), reservation_id)
        c.session_task = asyncio.create_task(self.run(c, c.session))
        return True

    async def arrivals(self, c: Connector, online: Callable[[], bool]) -> None:
        """Cars arrive at `c` at random, with the station's own card: idle gap, session, idle gap..."""
        while True:
            await asyncio.sleep(spread(self.idle_seconds, self._rng))
            if not online() or c.session is not None:
                continue
            if self.start(c, self.id_tag) and c.session_task is not None:
                await asyncio.wait({c.session_task})

    async def run(self, c: Connector, s: Session) -> None:
        """The whole session; afterwards the connector is free (whatever went wrong)."""
        try:
            await self._run(c, s)
        finally:
            c.session = None
            c.session_task = None
            await self._ended()

    async def _run(self, c: Connector, s: Session) -> None:
        settings = self._protocol.settings
        self._log.info("car plugged in", connector=c.connector_id, id_tag=s.id_tag, remote=s.remote)
        await self._set_status(c, Status.PREPARING)
        if not s.remote or settings.authorize_remote_starts:
            status = await self._authorization.authorize(s.id_tag, self._protocol.authorize, settings)
            if status != ACCEPTED:
                self._log.info("card not accepted", connector=c.connector_id, status=status)
                await asyncio.sleep(min(2.0, self.step_delay))
                await self._set_status(c, c.idle_status())
                return
        if s.reservation_id is not None:
            c.reservation = None
        s.meter_start = int(c.meter_wh)
        s.start_time = now_iso()
        s.begin_sample = c.energy_sample(Context.BEGIN)
        s.duration = spread(self.session_seconds, self._rng)

        def started(transaction_id: int, id_tag_status: str) -> None:
            s.transaction_id, s.id_tag_status = transaction_id, id_tag_status
            self._log.info("transaction started", connector=c.connector_id, transaction_id=transaction_id)
            if id_tag_status != ACCEPTED and self._protocol.settings.stop_on_invalid_id:
                s.request_stop(StopReason.DE_AUTHORIZED)

        self._protocol.transaction_started(c, s, started)
        await self._set_status(c, Status.CHARGING)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.duration
        last = loop.time()
        while not s.stop_requested.is_set():
            interval = settings.meter_interval
            wait = min(interval if interval > 0 else 3600, max(0.0, deadline - loop.time()))
            try:
                await asyncio.wait_for(s.stop_requested.wait(), wait)
            except TimeoutError:
                pass
            now = loop.time()
            self._advance(c, s, now - last)
            last = now
            if s.stop_requested.is_set():
                break
            if now >= deadline or s.vehicle.soc >= 100:
                s.request_stop(StopReason.EV_DISCONNECTED if s.vehicle.soc < 100 else StopReason.LOCAL)
                break
            if interval > 0:
                sample = c.sample(settings.sampled_measurands, Context.PERIODIC, self._rng)
                self._protocol.transaction_updated(c, s, sample)
        await self._finish(c, s)

    def _advance(self, c: Connector, s: Session, seconds: float) -> None:
        """`seconds` of charging: the car draws what it can within the connector's limit now."""
        s.power_w = s.vehicle.power(self._smart_charging.limit_w(c.connector_id)) * self._rng.uniform(0.97, 1.0)
        c.meter_wh += s.vehicle.charge(s.power_w, seconds)

    async def _finish(self, c: Connector, s: Session) -> None:
        self._smart_charging.end_transaction(c.connector_id)
        meter_stop = int(c.meter_wh)
        end_sample = c.energy_sample(Context.END)
        reason = s.stop_reason or StopReason.LOCAL
        begin = s.begin_sample
        samples = [begin, end_sample] if begin is not None and self._protocol.settings.ended_measurands else []
        end = TransactionEnd(meter_stop, now_iso(), reason, samples)

        def ended() -> None:
            self._log.info(
                "transaction stopped",
                connector=c.connector_id,
                transaction_id=s.transaction_id,
                energy_wh=meter_stop - s.meter_start,
                reason=reason,
            )
            self.completed.append(
                CompletedTransaction(c.connector_id, s.transaction_id, s.id_tag, s.meter_start, meter_stop, reason)
            )

        self._protocol.transaction_ended(c, s, end, ended)
        if reason in (StopReason.HARD_RESET, StopReason.POWER_LOSS):
            return  # the charger is rebooting: its statuses go out with the next boot
        await self._set_status(c, Status.FINISHING)
        await asyncio.sleep(min(2.0, self.step_delay))
        if c.scheduled_operative is not None:
            c.operative, c.scheduled_operative = c.scheduled_operative, None
        await self._set_status(c, c.idle_status())
