"""A simulated charging station, whatever OCPP version it speaks: its parts, composed.

The parts: the `Link` to the central system, the `TransactionQueue` of messages that must get
there, the `Connectors` with their sessions (`SessionRunner`), the `LocalAuthorization`, the
`ChargingProfiles`, and an `OcppAdapter` that says all of it in its version's messages and
answers the central system's requests through the public API below. A station boots (honouring
Pending and Rejected, and the interval the server gave), heartbeats, charges cars, and changes
state on remote operations. `SimulatedCharger` (`charger.py`) is a station with its version.

Public API (used by the OCPP server's tests, `polaris smoke` and the protocol adapters)::

    charger = SimulatedCharger(url, "CP-1", "password-16-chars", id_tag="TAG1", connectors=2)
    await charger.start()          # returns once the boot is Accepted
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    await charger.stop()
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from ocpp.exceptions import OCPPError
from websockets.asyncio.client import ClientConnection

from polaris.logs import get_logger
from polaris.sim.adapter import Defaults, OcppAdapter
from polaris.sim.authorization import LocalAuthorization
from polaris.sim.connectors import (
    NO_ERROR,
    Connector,
    Connectors,
    ReservationAnswer,
    StopReason,
)
from polaris.sim.errors import ChargerRefused, Offline, SimError
from polaris.sim.link import Link
from polaris.sim.metering import Context
from polaris.sim.quirks import check_quirks
from polaris.sim.sessions import SessionRunner
from polaris.sim.smart_charging import ChargingProfiles
from polaris.sim.txqueue import TransactionQueue

log = get_logger(__name__)

AdapterFactory = Callable[["Station", Defaults], OcppAdapter]


def _forward(part: str, name: str, doc: str) -> property:
    """A read-write attribute kept by one of the station's parts."""
    return property(
        lambda self: getattr(getattr(self, part), name),
        lambda self, value: setattr(getattr(self, part), name, value),
        doc=doc,
    )


class Station:
    """A simulated charger at `url`/<charge_box_id>, speaking the version `protocol` builds."""

    url = _forward("link", "url", "The central system's URL, without the charge box id.")
    password = _forward("link", "password", "The HTTP Basic password; a new one is used from the next connection.")
    connect_count = _forward("link", "connect_count", "WebSocket connections opened so far.")
    last_error = _forward("link", "last_error", "Why the last connection or boot failed, in words.")
    sent = _forward("link", "sent", "CALLs the central system answered, by action.")
    reconnect_max_delay = _forward("link", "reconnect_max_delay", "Longest wait (s) between connection attempts.")
    max_power_w = _forward("smart_charging", "max_power_w", "The charger's own maximum power (W).")
    id_tag = _forward("sessions", "id_tag", "The card the station's own sessions present.")
    session_seconds = _forward("sessions", "session_seconds", "Mean session length (s).")
    idle_seconds = _forward("sessions", "idle_seconds", "Mean gap (s) between a connector's own sessions.")
    step_delay = _forward("sessions", "step_delay", "Pause (s) between a session's steps (Finishing...).")
    completed_transactions = _forward("sessions", "completed", "Transactions whose end was acknowledged.")
    connector0_status = _forward("connectors", "connector0_status", "The charger's own status (connector 0).")
    local_list = _forward("authorization", "entries", "The local authorization list: id tag -> id tag info.")
    local_list_version = _forward("authorization", "list_version", "The local list's version.")
    auth_cache = _forward("authorization", "cache", "Remembered answers about cards: id tag -> status.")
    charging_profiles = _forward("smart_charging", "installed", "Installed profiles by (connector, profile id).")

    def __init__(
        self,
        url: str,
        charge_box_id: str,
        password: str | None,
        *,
        protocol: AdapterFactory,
        id_tag: str,
        connectors: int = 1,
        auto_sessions: bool = True,
        vendor: str = "Polaris",
        model: str = "SimCharger 22",
        firmware_version: str = "1.0.0",
        serial_number: str | None = None,
        max_power_w: float = 22_000,
        session_seconds: float = 900,
        idle_seconds: float = 300,
        meter_interval: int = 60,
        heartbeat_interval: int | None = None,
        reconnect_max_delay: float = 60,
        step_delay: float = 2.0,
        response_timeout: float = 30,
        quirks: frozenset[str] | set[str] = frozenset(),
        configuration: dict[str, str] | None = None,
        seed: int | None = None,
    ):
        if connectors < 1:
            raise SimError("a charger needs at least one connector")
        self.quirks = check_quirks(quirks)
        self.charge_box_id = charge_box_id
        self.auto_sessions = auto_sessions
        self.vendor, self.model = vendor, model
        self.firmware_version = firmware_version
        self.serial_number = serial_number or f"SN-{charge_box_id}"
        self.response_timeout = response_timeout
        # Per-charger randomness, repeatable across runs (str hashes are salted per process).
        self.rng = random.Random(seed if seed is not None else zlib.crc32(charge_box_id.encode()))
        self._log = log.bind(charge_box_id=charge_box_id)
        # A server-given interval wins unless the caller pinned one (demos, tests).
        self._pinned_heartbeat = heartbeat_interval

        self.connectors = Connectors(connectors, self.rng)
        self.authorization = LocalAuthorization()
        self.smart_charging = ChargingProfiles(max_power_w)
        self.link = Link(
            url,
            charge_box_id,
            password,
            quirks=self.quirks,
            reconnect_max_delay=reconnect_max_delay,
            response_timeout=response_timeout,
            user_agent=f"polaris-sim {model}",
            rng=self.rng,
            log=self._log,
        )
        self.queue = TransactionQueue(self.link, notify=self.notify, log=self._log)
        self.protocol = protocol(
            self, Defaults(connectors, heartbeat_interval or 300, meter_interval, configuration or {})
        )
        self.sessions = SessionRunner(
            protocol=self.protocol,
            authorization=self.authorization,
            smart_charging=self.smart_charging,
            set_status=self._set_status,
            ended=self._session_ended,
            rng=self.rng,
            id_tag=id_tag,
            session_seconds=session_seconds,
            idle_seconds=idle_seconds,
            step_delay=step_delay,
            log=self._log,
        )

        # State useful to tests and operators.
        self.registration_status: str | None = None
        self.heartbeat_interval: int = self.protocol.settings.heartbeat_interval
        self.boot_count = 0
        self.last_request: dict[str, dict] = {}
        self.requests: Counter[str] = Counter()
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"

        self._changed = asyncio.Condition()
        self._boot_now = asyncio.Event()
        self._run_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._started: asyncio.Future | None = None
        self._require_accepted = True

    # ------------------------------------------------------------------ state

    @property
    def configuration(self) -> Any:
        """The version's settings store (1.6: `ConfigurationStore`)."""
        return self.protocol.configuration

    @property
    def connected(self) -> bool:
        """True while booted (Accepted) on an open connection."""
        return self.link.online.is_set()

    @property
    def transaction_ids(self) -> dict[int, int | None]:
        """Current transaction id per connector (None: no session, or its start not answered yet)."""
        return {i: (c.session.transaction_id if c.session else None) for i, c in self.connectors.items()}

    @property
    def statuses(self) -> dict[int, str]:
        """Current status per connector, connector 0 included."""
        return {0: self.connector0_status, **{i: c.status for i, c in self.connectors.items()}}

    @property
    def queued_messages(self) -> int:
        """Transaction messages not yet acknowledged by the central system."""
        return len(self.queue)

    # ------------------------------------------------------------------ life

    def launch(self) -> None:
        """Start connecting in the background (retrying forever); see `start` to wait for the boot."""
        if self._run_task is None:
            self.link.stopping = False
            self._run_task = asyncio.create_task(
                self.link.run(self.protocol.subprotocol, self._connection, self._fail_start),
                name=f"sim-{self.charge_box_id}",
            )
            self.spawn(self.queue.run(self.protocol.settings))

    async def start(self, *, timeout: float = 15.0, require_accepted: bool = True) -> None:  # noqa: ASYNC109
        """Connect and boot; return once the boot is Accepted.

        With `require_accepted=False`, return after the first boot answer, whatever its status.
        Raises `ChargerRefused` on an HTTP refusal (401, 404...) or a Rejected boot, and
        `SimError` when nothing happened within `timeout` seconds.
        """
        self._started = asyncio.get_running_loop().create_future()
        self._require_accepted = require_accepted
        self.launch()
        try:
            await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            await self.stop()
            raise SimError(
                f"{self.charge_box_id}: not booted within {timeout:g} s "
                f"(registration status {self.registration_status}, last error: {self.last_error})"
            ) from None
        except ChargerRefused:
            await self.stop()
            raise

    async def stop(self, *, end_sessions: bool = False, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Disconnect and stop every task. With `end_sessions`, first stop running sessions and
        wait (up to `timeout`) for the end of their transactions to be acknowledged."""
        if end_sessions and self._run_task is not None:
            for c in self.connectors.values():
                if c.session:
                    c.session.request_stop(StopReason.OTHER)
            try:
                await asyncio.wait_for(self.queue.drain(self._busy), timeout)
            except TimeoutError:
                self._log.warning("stopping with unsent transaction messages", queued=len(self.queue))
        self.link.stopping = True
        self.link.online.clear()
        tasks = [t for t in (self._run_task, *self._tasks) if t is not None]
        tasks += [c.session_task for c in self.connectors.values() if c.session_task]
        for t in tasks:
            t.cancel()
        await self.link.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._run_task = None
        self._tasks.clear()
        for c in self.connectors.values():
            c.session_task = None
            c.session = None

    async def wait_for(self, predicate: Callable[[Station], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until `predicate(self)` holds (checked on every state change); SimError on timeout."""
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        try:
            await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            raise SimError(f"{self.charge_box_id}: condition not met within {timeout:g} s") from None

    async def notify(self) -> None:
        """Wake `wait_for` callers: the state changed."""
        async with self._changed:
            self._changed.notify_all()

    def spawn(self, coro: Coroutine, name: str | None = None) -> asyncio.Task:
        """A tracked background task (cancelled by `stop`)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("simulator task failed", task=task.get_name(), error=repr(task.exception()))

    # ------------------------------------------------------------------ what drivers and the power grid do

    def start_session(self, connector_id: int = 1, id_tag: str | None = None, *, remote: bool = False) -> bool:
        """Plug a car in and present a card (or an app start) on a connector; False if it is busy."""
        c = self.connectors.get(connector_id)
        return c is not None and self.sessions.start(c, id_tag or self.id_tag, remote=remote)

    def stop_session(self, connector_id: int = 1, reason: str = StopReason.LOCAL) -> bool:
        """End the session on a connector (the driver stops it); False if there is none."""
        c = self.connectors.get(connector_id)
        if c is None or c.session is None:
            return False
        c.session.request_stop(reason)
        return True

    def stop_transaction(self, transaction_id: int, reason: str = StopReason.REMOTE) -> bool:
        """End the session of a transaction (a remote stop); False if no session has it."""
        c = self.connectors.by_transaction(transaction_id)
        if c is None or c.session is None:
            return False
        c.session.request_stop(reason)
        return True

    async def power_cut(self, *, forget: bool | None = None) -> None:
        """Lose power: the link drops, sessions end with reason PowerLoss, the charger boots again.

        With `forget` (default: the `forgetful` quirk) unsent transaction messages are lost too, so
        the server keeps transactions that never get their end.
        """
        await self.reboot(
            hard=True, reason=StopReason.POWER_LOSS, forget="forgetful" in self.quirks if forget is None else forget
        )

    async def disconnect(self) -> None:
        """Drop the connection as a network failure would; the charger reconnects by itself."""
        if self.link.attached:
            await self.link.drop(code=1001)

    async def reboot(self, *, hard: bool, reason: str | None = None, forget: bool = False) -> None:
        """Reset: a soft reset ends sessions properly first; a hard one (or a power cut) drops everything.

        Either way the charger reconnects and boots again; the ends of sessions cut by a hard
        reset stay queued and go out after the new boot, as real chargers do, unless `forget`:
        then every unsent transaction message is lost, as with chargers that keep their queue in RAM.
        """
        self._log.info("rebooting", hard=hard, forget=forget)
        sessions = [c for c in self.connectors.values() if c.session is not None]
        if hard:
            self.link.online.clear()
            await self.link.drop()
        for c in sessions:
            if c.session is not None:
                c.session.request_stop(reason or (StopReason.HARD_RESET if hard else StopReason.SOFT_RESET))
        tasks = [c.session_task for c in sessions if c.session_task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        if forget:
            self.queue.forget()
        if not hard:
            try:
                await asyncio.wait_for(self.queue.wait_empty(), 10)
            except TimeoutError:
                pass
        for c in self.connectors.values():
            c.status = c.idle_status()
            if "register-reset" in self.quirks:
                c.meter_wh = 0.0
        if not hard:
            await self.link.drop()

    def reserve(self, connector_id: int, reservation_id: int, id_tag: str, expiry: str) -> ReservationAnswer:
        """Hold a connector for a card until `expiry` (ISO 8601), when it frees itself."""
        answer = self.connectors.reserve(connector_id, reservation_id, id_tag, expiry)
        if answer == ReservationAnswer.ACCEPTED:
            c = self.connectors[connector_id]
            self.spawn(self._expire_reservation(c, reservation_id, c.reservation["expiry"]))
        return answer

    async def _expire_reservation(self, c: Connector, reservation_id: int, expiry: datetime) -> None:
        await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()))
        if self.connectors.end_reservation(reservation_id, c.connector_id) is not None and c.session is None:
            await self._set_status(c, c.status)

    # ------------------------------------------------------------------ telling the central system

    async def send_status(self, connector_id: int) -> None:
        """Report a connector's current status now (0: the charger's own); best effort."""
        if connector_id == 0:
            status, error = self.connector0_status, NO_ERROR
        else:
            c = self.connectors[connector_id]
            status, error = c.status, c.error_code
        await self.protocol.status(connector_id, status, error)

    async def report_statuses(self, *connector_ids: int) -> None:
        """Report these connectors' statuses, in order; every one (0 first) if none is named."""
        for i in connector_ids or (0, *self.connectors):
            await self.send_status(i)

    async def send_meter_values(self, connector_id: int, context: str = Context.TRIGGER) -> None:
        """Send current meter values now (a trigger, or outside a transaction)."""
        c = self.connectors[connector_id]
        tx = c.session.transaction_id if c.session else None
        sample = c.sample(self.protocol.settings.sampled_measurands, context, self.rng)
        await self.protocol.meter_values(connector_id, tx, sample)

    def request_boot(self) -> None:
        """The central system asked for a boot notification: a charger waiting out Pending boots now."""
        self._boot_now.set()

    async def _set_status(self, c: Connector, status: str, error_code: str = NO_ERROR) -> None:
        c.status, c.error_code = status, error_code
        await self.notify()
        await self.send_status(c.connector_id)

    # ------------------------------------------------------------------ one connection

    async def _connection(self, ws: ClientConnection) -> bool:
        """Run one connection until it closes; True if the charger booted on it."""
        reader = self.link.attach(ws, self.protocol.client(ws))
        booted = False
        helpers: list[asyncio.Task] = []
        try:
            await self._boot()
            booted = True
            await self.report_statuses()
            self._set_online(True)
            self._resolve_start()
            helpers.append(asyncio.create_task(self._heartbeats()))
            if self.auto_sessions:
                for c in self.connectors.values():
                    if not any(t.get_name() == f"auto-{c.connector_id}" for t in self._tasks):
                        self.spawn(self.sessions.arrivals(c, lambda: self.connected), name=f"auto-{c.connector_id}")
            await asyncio.wait({reader})
        except Offline:
            pass
        except OCPPError as exc:
            # A CALLERROR to the boot (or its statuses): try again on a fresh connection.
            self.last_error = f"central system answered CALLERROR: {exc}"
            self._log.warning("boot failed", error=str(exc))
        finally:
            self._set_online(False)
            for t in helpers:
                t.cancel()
            reader.cancel()
            await asyncio.gather(reader, *helpers, return_exceptions=True)
            await ws.close()
            self.link.detach()
            self._log.info("disconnected", code=ws.close_code)
        return booted

    async def _boot(self) -> None:
        """Boot notifications until Accepted (waiting the interval between tries); Offline if the link drops."""
        while True:
            self._boot_now.clear()
            res = await self.protocol.boot()
            self.registration_status = res.status
            self.boot_count += 1
            await self.notify()
            if res.accepted:
                interval = self._pinned_heartbeat or res.interval or self.protocol.settings.heartbeat_interval
                self.heartbeat_interval = interval
                self.protocol.settings.heartbeat_interval = interval
                self._log.info("booted", interval=interval)
                return
            wait = res.interval if res.interval > 0 else 30
            self._log.info("boot not accepted", status=res.status, retry_in=wait)
            if res.rejected and self._require_accepted:
                self._fail_start(ChargerRefused(f"{self.charge_box_id}: BootNotification Rejected"))
            elif not self._require_accepted:
                self._resolve_start()
            # The server may ask for a boot earlier (1.6: TriggerMessage(BootNotification)).
            try:
                await asyncio.wait_for(self.link.until(self._boot_now), wait)
            except TimeoutError:
                pass

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(max(1, self.heartbeat_interval))
            await self.protocol.heartbeat()

    def _busy(self) -> bool:
        return any(c.session for c in self.connectors.values())

    async def _session_ended(self) -> None:
        self.queue.wake()
        await self.notify()

    def _resolve_start(self) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _fail_start(self, exc: Exception) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_exception(exc)

    def _set_online(self, online: bool) -> None:
        if online:
            self.link.online.set()
        else:
            self.link.online.clear()
        self.spawn(self.notify())
