"""One simulated OCPP 1.6J charge point: connects, boots, heartbeats, charges cars, answers the server.

It behaves like a real charger where that matters to a central system:
- transaction messages (StartTransaction, MeterValues, StopTransaction) go through a queue
  that survives disconnects and is resent, in order, after the next boot;
- it reconnects with exponential backoff, honours Pending / Rejected boots and the
  heartbeat interval the server gave;
- remote operations change its state (RemoteStart really starts a session, Reset
  reboots, ChangeAvailability makes connectors Unavailable, and so on): see `protocol.py`.

Public API (used by the OCPP server's tests too)::

    charger = SimulatedCharger(url, "CP-1", "password-16-chars", id_tag="TAG1", connectors=2)
    await charger.start()          # returns once BootNotification is Accepted
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    await charger.stop()
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import zlib
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from ocpp.v16 import call
from ocpp.v16.enums import (
    AuthorizationStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    DiagnosticsStatus,
    FirmwareStatus,
    Measurand,
    ReadingContext,
    Reason,
    RegistrationStatus,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from polaris.logs import get_logger
from polaris.sim.configuration import ConfigurationStore, default_keys
from polaris.sim.vehicle import NOMINAL_VOLTAGE, PHASES, Vehicle, current_for, random_vehicle

log = get_logger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")

# Named misbehaviours of real chargers (NOTES.md "Real chargers misbehave") a charger can copy.
QUIRKS = {
    "no-subprotocol": "offer no Sec-WebSocket-Protocol at all (Grizzl-E and others)",
    "lowercase-auth": "send the Basic credentials in a lower-case `authorization` header",
    "kwh": "report the energy register in kWh with three decimals",
    "numeric-values": "send meter values as JSON numbers instead of strings",
    "no-unit": "leave out `unit` on sampled values",
    "decimal-values": "energy as a decimal string with three decimals (\"3058620.000\")",
    "forgetful": "lose unsent transaction messages on a reset or power cut (zombie transactions)",
    "register-reset": "restart the energy register at 0 after every reboot",
}


class SimError(Exception):
    """The simulated charger could not do what was asked; the message says why."""


class ChargerRefused(SimError):
    """The central system refused this charger (HTTP status at the handshake, or a Rejected boot)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class Offline(SimError):
    """No usable connection to the central system right now."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _spread(mean: float, rng: random.Random) -> float:
    """A random duration around `mean` (half to one and a half times it)."""
    return max(0.0, rng.uniform(0.5 * mean, 1.5 * mean))


@dataclass
class Session:
    """A charging session on one connector, from plug-in to StopTransaction."""

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
    begin_sample: list[dict] = field(default_factory=list)
    power_w: float = 0.0
    duration: float = 0.0

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_requested.set()


@dataclass
class CompletedTransaction:
    connector_id: int
    transaction_id: int | None
    id_tag: str
    meter_start: int
    meter_stop: int
    reason: str


@dataclass
class Connector:
    connector_id: int
    meter_wh: float
    status: str = ChargePointStatus.available
    error_code: str = ChargePointErrorCode.no_error
    operative: bool = True
    # ChangeAvailability(Inoperative) during a session is applied when it ends.
    scheduled_operative: bool | None = None
    reservation: dict | None = None
    session: Session | None = None
    session_task: asyncio.Task | None = None


@dataclass
class _Queued:
    """A transaction message waiting for the central system's answer."""

    build: Callable[[], Any]
    on_result: Callable[[Any], None] | None = None
    attempts: int = 0


class SimulatedCharger:
    """An OCPP 1.6J charge point speaking to `url`/<charge_box_id> (see the module docstring)."""

    def __init__(
        self,
        url: str,
        charge_box_id: str,
        password: str | None,
        *,
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
        unknown = set(quirks) - set(QUIRKS)
        if unknown:
            raise SimError(f"unknown quirk(s) {', '.join(sorted(unknown))}; known: {', '.join(QUIRKS)}")
        self.url = url.rstrip("/")
        self.charge_box_id = charge_box_id
        self.password = password
        self.id_tag = id_tag
        self.auto_sessions = auto_sessions
        self.vendor, self.model = vendor, model
        self.firmware_version = firmware_version
        self.serial_number = serial_number or f"SN-{charge_box_id}"
        self.max_power_w = max_power_w
        self.session_seconds = session_seconds
        self.idle_seconds = idle_seconds
        self.reconnect_max_delay = reconnect_max_delay
        self.step_delay = step_delay
        self.response_timeout = response_timeout
        self.quirks = frozenset(quirks)
        # Per-charger randomness, repeatable across runs (str hashes are salted per process).
        self.rng = random.Random(seed if seed is not None else zlib.crc32(charge_box_id.encode()))
        # A server-given interval wins unless the caller pinned one (demos, tests).
        self._pinned_heartbeat = heartbeat_interval
        self.configuration = ConfigurationStore(
            default_keys(connectors, heartbeat_interval or 300, meter_interval)
        )
        for k, v in (configuration or {}).items():
            if k not in self.configuration.keys:
                raise SimError(f"unknown configuration key {k!r}")
            self.configuration.set(k, v)
        self.connectors: dict[int, Connector] = {
            i: Connector(i, meter_wh=self.rng.uniform(100_000, 5_000_000)) for i in range(1, connectors + 1)
        }
        self.connector0_status: str = ChargePointStatus.available

        # State useful to tests and operators.
        self.registration_status: str | None = None
        self.heartbeat_interval: int = self.configuration.int("HeartbeatInterval")
        self.boot_count = 0
        self.connect_count = 0
        self.last_error: str | None = None
        self.last_request: dict[str, dict] = {}
        self.requests: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.completed_transactions: list[CompletedTransaction] = []
        self.local_list_version = 0
        self.local_list: dict[str, dict] = {}
        self.auth_cache: dict[str, str] = {}
        self.charging_profiles: dict[tuple[int, int], dict] = {}
        self.firmware_status: str = FirmwareStatus.idle
        self.diagnostics_status: str = DiagnosticsStatus.idle

        self._queue: deque[_Queued] = deque()
        self._queue_changed = asyncio.Event()
        self._online = asyncio.Event()  # connected and booted (Accepted)
        self._changed = asyncio.Condition()
        self._cp: Any = None
        self._ws: ClientConnection | None = None
        self._conn_lost: asyncio.Future | None = None
        self._boot_now = asyncio.Event()
        self._stopping = False
        self._quick_reconnect = False
        self._run_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._started: asyncio.Future | None = None
        self._require_accepted = True
        self._reservation_ids = itertools.count(1)
        self._log = log.bind(charge_box_id=charge_box_id)

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while booted (Accepted) on an open connection."""
        return self._online.is_set()

    @property
    def transaction_ids(self) -> dict[int, int | None]:
        """Current transaction id per connector (None: no session, or StartTransaction not answered yet)."""
        return {i: (c.session.transaction_id if c.session else None) for i, c in self.connectors.items()}

    @property
    def statuses(self) -> dict[int, str]:
        """Current status per connector, connector 0 included."""
        return {0: self.connector0_status, **{i: c.status for i, c in self.connectors.items()}}

    @property
    def queued_messages(self) -> int:
        """Transaction messages not yet acknowledged by the central system."""
        return len(self._queue)

    def launch(self) -> None:
        """Start connecting in the background (retrying forever); see `start` to wait for the boot."""
        if self._run_task is None:
            self._stopping = False
            self._run_task = asyncio.create_task(self._run(), name=f"sim-{self.charge_box_id}")
            self._spawn(self._send_queue())

    async def start(self, *, timeout: float = 15.0, require_accepted: bool = True) -> None:  # noqa: ASYNC109
        """Connect and boot; return once BootNotification is Accepted.

        With `require_accepted=False`, return after the first BootNotification answer, whatever its
        status. Raises `ChargerRefused` on an HTTP refusal (401, 404...) or a Rejected boot, and
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
        wait (up to `timeout`) for their StopTransaction to be acknowledged."""
        if end_sessions and self._run_task is not None:
            for c in self.connectors.values():
                if c.session:
                    c.session.request_stop(Reason.other)
            try:
                await asyncio.wait_for(self._drain(), timeout)
            except TimeoutError:
                self._log.warning("stopping with unsent transaction messages", queued=len(self._queue))
        self._stopping = True
        self._online.clear()
        tasks = [t for t in (self._run_task, *self._tasks) if t is not None]
        tasks += [c.session_task for c in self.connectors.values() if c.session_task]
        for t in tasks:
            t.cancel()
        if self._ws is not None:
            await self._ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._run_task = None
        self._tasks.clear()
        for c in self.connectors.values():
            c.session_task = None
            c.session = None

    async def wait_for(self, predicate: Callable[[SimulatedCharger], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until `predicate(self)` holds (checked on every state change); SimError on timeout."""
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        try:
            await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            raise SimError(f"{self.charge_box_id}: condition not met within {timeout:g} s") from None

    def start_session(self, connector_id: int = 1, id_tag: str | None = None, *, remote: bool = False) -> bool:
        """Plug a car in and present a card (or an app start) on a connector; False if it is busy."""
        c = self.connectors.get(connector_id)
        if c is None or c.session is not None or not c.operative:
            return False
        tag = id_tag or self.id_tag
        reservation_id = None
        if c.reservation is not None:
            if c.reservation["id_tag"].lower() != tag.lower():
                return False
            reservation_id = c.reservation["reservation_id"]
        c.session = Session(connector_id, tag, remote, random_vehicle(self.rng), reservation_id)
        c.session_task = asyncio.create_task(self._session(c, c.session))
        return True

    def stop_session(self, connector_id: int = 1, reason: str = Reason.local) -> bool:
        """End the session on a connector (the driver stops it); False if there is none."""
        c = self.connectors.get(connector_id)
        if c is None or c.session is None:
            return False
        c.session.request_stop(reason)
        return True

    async def power_cut(self, *, forget: bool | None = None) -> None:
        """Lose power: the link drops, sessions end with reason PowerLoss, the charger boots again.

        With `forget` (default: the `forgetful` quirk) unsent transaction messages are lost too, so
        the server keeps transactions that never get their StopTransaction.
        """
        from polaris.sim.protocol import reboot

        await reboot(
            self, hard=True, reason=Reason.power_loss, forget="forgetful" in self.quirks if forget is None else forget
        )

    async def disconnect(self) -> None:
        """Drop the connection as a network failure would; the charger reconnects by itself."""
        if self._ws is not None:
            self._quick_reconnect = True
            await self._ws.close(code=1001)

    # ------------------------------------------------------------------ connection life

    def _ws_url(self) -> str:
        return f"{self.url}/{quote(self.charge_box_id, safe='-._~')}"

    def _headers(self) -> list[tuple[str, str]]:
        if self.password is None:
            return []
        token = base64.b64encode(f"{self.charge_box_id}:{self.password}".encode()).decode()
        name = "authorization" if "lowercase-auth" in self.quirks else "Authorization"
        return [(name, f"Basic {token}")]

    async def _run(self) -> None:
        from polaris.sim.protocol import ChargePointClient

        failures = 0
        while not self._stopping:
            try:
                ws = await connect(
                    self._ws_url(),
                    subprotocols=None if "no-subprotocol" in self.quirks else [SUBPROTOCOL],
                    additional_headers=self._headers(),
                    compression=None,
                    proxy=None,
                    open_timeout=10,
                    ping_interval=None,
                    user_agent_header=f"polaris-sim {self.model}",
                )
            except InvalidStatus as exc:
                code = exc.response.status_code
                hint = " (wrong or missing password, or unknown charger)" if code == 401 else ""
                self.last_error = f"server refused the connection: HTTP {code}{hint}"
                self._log.warning("connection refused", status=code)
                self._fail_start(ChargerRefused(f"{self.charge_box_id}: {self.last_error}", code))
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.last_error = f"cannot connect to {self._ws_url()}: {exc}"
                self._log.info("connect failed", error=str(exc))
            else:
                self.connect_count += 1
                booted = await self._serve(ws, ChargePointClient(self.charge_box_id, ws, self))
                if booted:
                    failures = 0
            if self._stopping:
                break
            if self._quick_reconnect:
                self._quick_reconnect = False
                delay = 0.2
            else:
                delay = min(self.reconnect_max_delay, 2 ** min(failures, 10)) * self.rng.uniform(0.5, 1.0)
                failures += 1
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection, cp: Any) -> bool:
        """Run one connection until it closes; True if the charger booted on it."""
        self._ws, self._cp = ws, cp
        self._conn_lost = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(cp.start())
        reader.add_done_callback(lambda _t, f=self._conn_lost: f.done() or f.set_result(None))
        booted = False
        helpers: list[asyncio.Task] = []
        try:
            if not await self._boot():
                return False
            booted = True
            await self._report_all_statuses()
            self._set_online(True)
            self._resolve_start()
            helpers.append(asyncio.create_task(self._heartbeats()))
            if self.auto_sessions:
                for c in self.connectors.values():
                    if not any(t.get_name() == f"auto-{c.connector_id}" for t in self._tasks):
                        self._spawn(self._auto_sessions(c), name=f"auto-{c.connector_id}")
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
            self._ws = self._cp = None
            self._log.info("disconnected", code=ws.close_code)
        return booted

    async def _boot(self) -> bool:
        """BootNotification until Accepted (waiting `interval` between tries); False if the link dropped."""
        while True:
            self._boot_now.clear()
            res = await self._call(
                call.BootNotification(
                    charge_point_model=self.model,
                    charge_point_vendor=self.vendor,
                    charge_point_serial_number=self.serial_number,
                    firmware_version=self.firmware_version,
                    meter_type="SimMeter",
                )
            )
            self.registration_status = res.status
            self.boot_count += 1
            await self._notify()
            if res.status == RegistrationStatus.accepted:
                interval = self._pinned_heartbeat or res.interval or self.configuration.int("HeartbeatInterval")
                self.heartbeat_interval = interval
                self.configuration.set("HeartbeatInterval", str(interval))
                self._log.info("booted", interval=interval)
                return True
            wait = res.interval if res.interval > 0 else 30
            self._log.info("boot not accepted", status=res.status, retry_in=wait)
            if res.status == RegistrationStatus.rejected and self._require_accepted:
                self._fail_start(ChargerRefused(f"{self.charge_box_id}: BootNotification Rejected"))
            elif not self._require_accepted:
                self._resolve_start()
            # The server may ask for a boot earlier with TriggerMessage(BootNotification).
            try:
                await asyncio.wait_for(self._wait_boot_trigger(), wait)
            except TimeoutError:
                pass

    async def _wait_boot_trigger(self) -> None:
        lost = self._conn_lost
        trigger = asyncio.create_task(self._boot_now.wait())
        try:
            await asyncio.wait({trigger, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            trigger.cancel()
        if lost is not None and lost.done():
            raise Offline("connection lost")

    def _resolve_start(self) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _fail_start(self, exc: Exception) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_exception(exc)

    def _set_online(self, online: bool) -> None:
        if online:
            self._online.set()
        else:
            self._online.clear()
        self._spawn(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _spawn(self, coro: Coroutine, name: str | None = None) -> asyncio.Task:
        """A tracked background task (cancelled by `stop`)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("simulator task failed", task=task.get_name(), error=repr(task.exception()))

    async def _call(self, payload: Any, *, skip_schema_validation: bool = False) -> Any:
        """Send one CALL and return its result; Offline if the connection is (or goes) away.

        A CALLERROR raises the matching `OCPPError`.
        """
        cp, lost = self._cp, self._conn_lost
        if cp is None or lost is None or lost.done():
            raise Offline("not connected")
        action = type(payload).__name__
        task = asyncio.ensure_future(
            cp.call(payload, suppress=False, skip_schema_validation=skip_schema_validation)
        )
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            raise Offline("connection lost while waiting for the answer")
        try:
            result = task.result()
        except ConnectionClosed:
            raise Offline("connection closed") from None
        except TimeoutError:
            raise Offline(f"no answer to {action} within {self.response_timeout:g} s") from None
        self.sent[action] += 1
        return result

    async def _try_call(self, payload: Any) -> Any | None:
        """A best-effort CALL (status, heartbeat): None when offline or answered with an error."""
        try:
            return await self._call(payload)
        except (Offline, OCPPError) as exc:
            self._log.debug("call not delivered", action=type(payload).__name__, error=str(exc))
            return None

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(max(1, self.heartbeat_interval))
            await self._try_call(call.Heartbeat())

    # ------------------------------------------------------------------ transaction message queue

    def _enqueue(self, build: Callable[[], Any], on_result: Callable[[Any], None] | None = None) -> None:
        self._queue.append(_Queued(build, on_result))
        self._queue_changed.set()

    async def _drain(self) -> None:
        """Wait until every queued transaction message was acknowledged (or dropped)."""
        while self._queue or any(c.session for c in self.connectors.values()):
            self._queue_changed.clear()
            await self._queue_changed.wait()

    async def _send_queue(self) -> None:
        """Deliver queued transaction messages in order; keep them across disconnects."""
        while True:
            await self._online.wait()
            if not self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            item = self._queue[0]
            payload = item.build()
            if payload is None:  # e.g. a StopTransaction whose StartTransaction was never accepted
                self._queue.popleft()
                self._queue_changed.set()
                continue
            try:
                result = await self._call(payload, skip_schema_validation=self._quirky_meter_values)
            except Offline:
                await asyncio.sleep(0.05)
                continue
            except OCPPError as exc:
                item.attempts += 1
                limit = self.configuration.int("TransactionMessageAttempts")
                if item.attempts >= limit:
                    self._log.warning(
                        "dropping transaction message", action=type(payload).__name__, error=str(exc)
                    )
                    self._queue.popleft()
                    self._queue_changed.set()
                else:
                    await asyncio.sleep(self.configuration.int("TransactionMessageRetryInterval") * item.attempts)
                continue
            self._queue.popleft()
            if item.on_result is not None:
                item.on_result(result)
            self._queue_changed.set()
            await self._notify()

    @property
    def _quirky_meter_values(self) -> bool:
        return bool(self.quirks & {"numeric-values", "no-unit"})

    # ------------------------------------------------------------------ status

    async def _set_status(self, c: Connector, status: str, error_code: str = ChargePointErrorCode.no_error) -> None:
        c.status, c.error_code = status, error_code
        await self._notify()
        await self._send_status(c.connector_id)

    async def _send_status(self, connector_id: int) -> None:
        if connector_id == 0:
            status, error = self.connector0_status, ChargePointErrorCode.no_error
        else:
            c = self.connectors[connector_id]
            status, error = c.status, c.error_code
        await self._try_call(
            call.StatusNotification(connector_id=connector_id, error_code=error, status=status, timestamp=now_iso())
        )

    async def _report_all_statuses(self) -> None:
        for i in [0, *self.connectors]:
            await self._send_status(i)

    def _idle_status(self, c: Connector) -> str:
        if not c.operative:
            return ChargePointStatus.unavailable
        if c.reservation is not None:
            return ChargePointStatus.reserved
        return ChargePointStatus.available

    # ------------------------------------------------------------------ sessions

    async def _auto_sessions(self, c: Connector) -> None:
        """Cars arrive at random: idle gap, session, idle gap, ..."""
        while True:
            await asyncio.sleep(_spread(self.idle_seconds, self.rng))
            if not self.connected or c.session is not None:
                continue
            if self.start_session(c.connector_id) and c.session_task is not None:
                await asyncio.wait({c.session_task})

    async def _authorize(self, id_tag: str) -> str:
        """Authorize online, or from the local list / cache offline (LocalAuthorizeOffline)."""
        entry = self.local_list.get(id_tag)
        if entry is not None and self.configuration.bool("LocalPreAuthorize"):
            return entry.get("status", AuthorizationStatus.accepted)
        try:
            res = await self._call(call.Authorize(id_tag=id_tag))
        except OCPPError:
            return AuthorizationStatus.invalid
        except Offline:
            if not self.configuration.bool("LocalAuthorizeOffline"):
                return AuthorizationStatus.invalid
            if entry is not None:
                return entry.get("status", AuthorizationStatus.accepted)
            if id_tag in self.auth_cache:
                return self.auth_cache[id_tag]
            return (
                AuthorizationStatus.accepted
                if self.configuration.bool("AllowOfflineTxForUnknownId")
                else AuthorizationStatus.invalid
            )
        status = res.id_tag_info["status"]
        if self.configuration.bool("AuthorizationCacheEnabled"):
            self.auth_cache[id_tag] = status
        return status

    async def _session(self, c: Connector, s: Session) -> None:
        try:
            await self._run_session(c, s)
        finally:
            c.session = None
            c.session_task = None
            self._queue_changed.set()
            await self._notify()

    async def _run_session(self, c: Connector, s: Session) -> None:
        self._log.info("car plugged in", connector=c.connector_id, id_tag=s.id_tag, remote=s.remote)
        await self._set_status(c, ChargePointStatus.preparing)
        if not s.remote or self.configuration.bool("AuthorizeRemoteTxRequests"):
            status = await self._authorize(s.id_tag)
            if status != AuthorizationStatus.accepted:
                self._log.info("card not accepted", connector=c.connector_id, status=status)
                await asyncio.sleep(min(2.0, self.step_delay))
                await self._set_status(c, self._idle_status(c))
                return
        if s.reservation_id is not None:
            c.reservation = None
        s.meter_start = int(c.meter_wh)
        s.start_time = now_iso()
        s.begin_sample = [self._energy_sample(c, ReadingContext.transaction_begin)]
        s.duration = _spread(self.session_seconds, self.rng)

        def started(res: Any) -> None:
            s.transaction_id = res.transaction_id
            s.id_tag_status = res.id_tag_info["status"]
            self._log.info("transaction started", connector=c.connector_id, transaction_id=s.transaction_id)
            if s.id_tag_status != AuthorizationStatus.accepted and self.configuration.bool(
                "StopTransactionOnInvalidId"
            ):
                s.request_stop(Reason.de_authorized)

        self._enqueue(
            lambda: call.StartTransaction(
                connector_id=c.connector_id,
                id_tag=s.id_tag,
                meter_start=s.meter_start,
                timestamp=s.start_time,
                reservation_id=s.reservation_id,
            ),
            started,
        )
        await self._set_status(c, ChargePointStatus.charging)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.duration
        last = loop.time()
        while not s.stop_requested.is_set():
            interval = self.configuration.int("MeterValueSampleInterval")
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
                s.request_stop(Reason.ev_disconnected if s.vehicle.soc < 100 else Reason.local)
                break
            if interval > 0:
                self._enqueue_meter_values(c, s, ReadingContext.sample_periodic)
        await self._finish(c, s)

    async def _finish(self, c: Connector, s: Session) -> None:
        meter_stop = int(c.meter_wh)
        end_sample = self._energy_sample(c, ReadingContext.transaction_end)
        reason = s.stop_reason or Reason.local
        tx_data = [*s.begin_sample, end_sample] if self.configuration.list("StopTxnSampledData") else None
        stop_time = now_iso()

        def build() -> Any:
            if s.transaction_id is None:
                return None
            return call.StopTransaction(
                meter_stop=meter_stop,
                timestamp=stop_time,
                transaction_id=s.transaction_id,
                reason=reason,
                id_tag=s.id_tag,
                transaction_data=tx_data,
            )

        def stopped(_res: Any) -> None:
            self._log.info(
                "transaction stopped",
                connector=c.connector_id,
                transaction_id=s.transaction_id,
                energy_wh=meter_stop - s.meter_start,
                reason=reason,
            )
            self.completed_transactions.append(
                CompletedTransaction(c.connector_id, s.transaction_id, s.id_tag, s.meter_start, meter_stop, reason)
            )

        self._enqueue(build, stopped)
        if reason in (Reason.hard_reset, Reason.power_loss):
            return  # the charger is rebooting: its statuses go out with the next boot
        await self._set_status(c, ChargePointStatus.finishing)
        await asyncio.sleep(min(2.0, self.step_delay))
        if c.scheduled_operative is not None:
            c.operative, c.scheduled_operative = c.scheduled_operative, None
        await self._set_status(c, self._idle_status(c))

    def _station_limit_w(self, c: Connector) -> float:
        """The charger's own maximum, lowered by any charging profile in force."""
        limit = self.max_power_w
        for (conn_id, _pid), profile in self.charging_profiles.items():
            if conn_id not in (0, c.connector_id):
                continue
            limit = min(limit, profile_limit_w(profile))
        return limit

    def _advance(self, c: Connector, s: Session, seconds: float) -> None:
        s.power_w = s.vehicle.power(self._station_limit_w(c)) * self.rng.uniform(0.97, 1.0)
        energy = s.vehicle.charge(s.power_w, seconds)
        c.meter_wh += energy

    # ------------------------------------------------------------------ meter values

    def _energy_value(self, wh: float) -> tuple[Any, str]:
        if "kwh" in self.quirks:
            return self._value(f"{wh / 1000:.3f}", wh / 1000), "kWh"
        if "decimal-values" in self.quirks:
            return self._value(f"{wh:.3f}", round(wh, 3)), "Wh"
        return self._value(str(int(wh)), int(wh)), "Wh"

    def _value(self, text: str, number: float) -> Any:
        return number if "numeric-values" in self.quirks else text

    def _sampled(self, value: Any, measurand: str, unit: str, context: str, location: str | None = "Outlet") -> dict:
        sv: dict[str, Any] = {"value": value, "context": context, "measurand": measurand}
        if "no-unit" not in self.quirks:
            sv["unit"] = unit
        if location:
            sv["location"] = location
        return sv

    def _energy_sample(self, c: Connector, context: str) -> dict:
        value, unit = self._energy_value(c.meter_wh)
        return {
            "timestamp": now_iso(),
            "sampled_value": [self._sampled(value, Measurand.energy_active_import_register, unit, context)],
        }

    def meter_sample(self, c: Connector, context: str) -> dict:
        """One MeterValue with the measurands configured in MeterValuesSampledData."""
        power = c.session.power_w if c.session else 0.0
        values = []
        for m in self.configuration.list("MeterValuesSampledData"):
            if m == Measurand.energy_active_import_register:
                v, unit = self._energy_value(c.meter_wh)
                values.append(self._sampled(v, m, unit, context))
            elif m == Measurand.power_active_import:
                values.append(self._sampled(self._value(f"{power:.1f}", round(power, 1)), m, "W", context))
            elif m == Measurand.current_import:
                amps = current_for(power)
                for phase in ("L1", "L2", "L3")[:PHASES]:
                    sv = self._sampled(self._value(f"{amps:.2f}", round(amps, 2)), m, "A", context)
                    sv["phase"] = phase
                    values.append(sv)
            elif m == Measurand.voltage:
                volts = NOMINAL_VOLTAGE + self.rng.uniform(-3, 3)
                values.append(self._sampled(self._value(f"{volts:.1f}", round(volts, 1)), m, "V", context))
            elif m == Measurand.soc and c.session is not None:
                soc = c.session.vehicle.soc
                values.append(self._sampled(self._value(f"{soc:.0f}", round(soc)), m, "Percent", context, "EV"))
        return {"timestamp": now_iso(), "sampled_value": values}

    def _enqueue_meter_values(self, c: Connector, s: Session, context: str) -> None:
        sample = self.meter_sample(c, context)

        def build() -> Any:
            if s.transaction_id is None:
                return None
            return call.MeterValues(connector_id=c.connector_id, transaction_id=s.transaction_id, meter_value=[sample])

        self._enqueue(build)

    async def send_meter_values(self, connector_id: int, context: str = ReadingContext.trigger) -> None:
        """Send current meter values now (TriggerMessage, or outside a transaction)."""
        c = self.connectors[connector_id]
        tx = c.session.transaction_id if c.session else None
        await self._try_call(
            call.MeterValues(connector_id=connector_id, transaction_id=tx, meter_value=[self.meter_sample(c, context)])
        )


def profile_limit_w(profile: dict) -> float:
    """The power limit (W) of a charging profile's period in force now (snake_case profile)."""
    schedule = profile.get("charging_schedule") or {}
    periods = sorted(schedule.get("charging_schedule_period") or [], key=lambda p: p.get("start_period", 0))
    if not periods:
        return float("inf")
    set_at = profile.get("_set_at")
    elapsed = (datetime.now(UTC) - set_at).total_seconds() if set_at else 0
    current = periods[0]
    for p in periods:
        if p.get("start_period", 0) <= elapsed:
            current = p
    limit = float(current.get("limit", 0))
    if schedule.get("charging_rate_unit") == "A":
        limit *= NOMINAL_VOLTAGE * int(current.get("number_phases") or PHASES)
    return limit

