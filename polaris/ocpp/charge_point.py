"""One connected charger: thin `@on` handlers over the repositories, and outgoing calls.

Built on the `ocpp` library's ChargePoint (its `@on` routing, message classes, payload
dataclasses and case helpers), with our own frame routing from `protocol.py` so error
codes follow OCPP-J 1.6. Handlers never call the charger themselves (the library reads
one frame at a time, so a call inside a handler would wait for a reply it cannot read);
follow-ups go through `server.spawn()`, which tracks the task.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import FormationViolationError, InternalError, OCPPError
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import on
from ocpp.v16 import ChargePoint as LibraryChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from polaris.db.repos import charge_boxes, connectors, id_tags, meter_values, transactions
from polaris.db.repos.ocpp_journal import journal_answer, journal_sent
from polaris.logs import get_logger
from polaris.ocpp import authorize
from polaris.ocpp.parsing import iso_now, now_utc, parse_timestamp, samples_from
from polaris.ocpp.protocol import (
    FrameError,
    call_error_json,
    parse_frame,
    unknown_action_error,
    validate_call,
)

if TYPE_CHECKING:
    from polaris.ocpp.server import ChargerAuth, OcppServer

log = get_logger(__name__)

# Errors that mean "the database is not there right now": the charger should resend.
DB_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError,
                  asyncpg.CannotConnectNowError)
RETRY_INTERVAL_S = 60
HOOK_MAX_SAMPLES = 500  # the web's meter-values hook takes at most this many per request  # BootNotification interval while Pending / Rejected: when to ask again


_SNAKE_KEYS: dict[str, str] = {}
_SNAKE_KEYS_MAX = 4096  # keys come from chargers (extra properties are tolerated): bounded


def snake_case_keys(data: Any) -> Any:
    """The library's camel_to_snake_case with each key converted once, not by two regexes
    per key per message (~60 us of every MeterValues)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            snake = _SNAKE_KEYS.get(key)
            if snake is None:
                snake = next(iter(camel_to_snake_case({key: None})))
                if len(_SNAKE_KEYS) < _SNAKE_KEYS_MAX:
                    _SNAKE_KEYS[key] = snake
            out[snake] = snake_case_keys(value)
        return out
    if isinstance(data, list):
        return [snake_case_keys(v) for v in data]
    return data


class ChargerGone(Exception):
    """The connection closed while a call was waiting for its answer."""


class CallErrorAnswer(Exception):
    """The charger answered a call with CALLERROR."""

    def __init__(self, code: str, description: str, details: object):
        super().__init__(f"{code}: {description}")
        self.code, self.description, self.details = code, description, details


class ChargePoint(LibraryChargePoint):
    # The library builds its route map per instance (a dict of bound methods per charger);
    # ours is built once per class, which matters at 10,000 connections.
    ROUTES: dict[str, Any] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.ROUTES = _routes(cls)

    def __init__(self, server: OcppServer, connection: Any, auth: ChargerAuth):
        # Deliberately not calling the library's __init__ (see ROUTES); `call()` is ours too.
        self.id = auth.charge_box_id
        self.pk = auth.pk
        self.auth = auth
        self.server = server
        self._connection = connection
        self._pending: dict[str, asyncio.Future] = {}
        self._call_lock: asyncio.Lock | None = None  # created on the first command
        self.current_unique_id = ""

    # --- reading frames ------------------------------------------------------------------

    async def start(self) -> None:
        async for raw in self._connection:
            await self.route_message(raw)

    async def route_message(self, raw: str | bytes) -> None:
        try:
            msg = parse_frame(raw)
        except FrameError as exc:
            log.info("malformed frame", charge_box_id=self.id, error=exc.error.code,
                     reason=exc.error.description)
            if exc.unique_id is not None:
                await self._send(exc.call_error_json())
            return
        self.server.saw(self.pk)
        if isinstance(msg, Call):
            await self._handle_call(msg)
            return
        future = self._pending.pop(msg.unique_id, None)
        if future is None or future.done():
            log.info("answer to no pending call dropped", charge_box_id=self.id, unique_id=msg.unique_id)
            return
        future.set_result(msg)

    async def _handle_call(self, msg: Call) -> None:
        handler = self.ROUTES.get(msg.action)
        if handler is None:
            error = unknown_action_error(msg.action)
            self._count("unknown", error.code)
            await self._send(call_error_json(msg.unique_id, error))
            return
        try:
            try:
                tolerated = validate_call(msg)
            except RecursionError:
                raise FormationViolationError(description="payload nested too deeply", details={}) from None
        except OCPPError as exc:
            log.info("invalid payload", charge_box_id=self.id, action=msg.action, error=exc.code,
                     reason=exc.description)
            self._count(msg.action, exc.code)
            await self._send(call_error_json(msg.unique_id, exc))
            return
        if tolerated:
            log.info("schema deviations tolerated", charge_box_id=self.id, action=msg.action,
                     deviations=tolerated[:5])
        self.current_unique_id = msg.unique_id  # one CALL at a time per charger: safe to keep here
        try:
            result = await handler(self, **snake_case_keys(msg.payload))
        except OCPPError as exc:
            self._count(msg.action, exc.code)
            await self._send(call_error_json(msg.unique_id, exc))
            return
        except DB_UNAVAILABLE as exc:
            self._count(msg.action, "InternalError")
            log.warning("database unavailable; charger will resend", charge_box_id=self.id,
                        action=msg.action, error=exc.__class__.__name__)
            await self._send(call_error_json(msg.unique_id, InternalError(
                description="the central system could not store this message; please resend",
                details={})))
            return
        except Exception:
            self._count(msg.action, "InternalError")
            log.exception("handler failed", charge_box_id=self.id, action=msg.action)
            await self._send(call_error_json(msg.unique_id, InternalError(
                description="the central system failed to process this message", details={})))
            return
        payload = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
        self._count(msg.action, "ok")
        await self._send(CallResult(msg.unique_id, payload).to_json())

    def _count(self, action: str, outcome: str) -> None:
        self.server.metrics.messages.labels(action, outcome).inc()

    async def _send(self, message: str) -> None:
        await self._connection.send(message)

    # --- calling the charger -------------------------------------------------------------

    async def call_raw(self, action: str, payload: dict, *, unique_id: str | None = None,
                       answer_timeout: float, queue_timeout: float) -> dict:
        """Send one CALL and return the charger's CALLRESULT payload.

        One outstanding CALL per charger (OCPP-J): later ones wait their turn for at most
        `queue_timeout`. Raises TimeoutError, ChargerGone or CallErrorAnswer.
        """
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        unique_id = unique_id or str(uuid.uuid4())
        async with asyncio.timeout(queue_timeout):
            await self._call_lock.acquire()
        try:
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[unique_id] = future
            try:
                await self._send(Call(unique_id, action, payload).to_json())
                async with asyncio.timeout(answer_timeout):
                    answer = await future
            finally:
                self._pending.pop(unique_id, None)
        finally:
            self._call_lock.release()
        if isinstance(answer, CallError):
            raise CallErrorAnswer(answer.error_code, answer.error_description, answer.error_details)
        return answer.payload

    def connection_lost(self) -> None:
        """Fail calls still waiting for an answer: it will never come on this socket."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChargerGone(f"{self.id} disconnected"))
        self._pending.clear()

    # --- charger-initiated messages --------------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kw):
        try:
            async with self.server.pool.acquire() as conn:
                status = await charge_boxes.record_boot(
                    conn, self.pk,
                    vendor=charge_point_vendor, model=charge_point_model,
                    charge_point_serial_number=kw.get("charge_point_serial_number"),
                    charge_box_serial_number=kw.get("charge_box_serial_number"),
                    firmware_version=kw.get("firmware_version"),
                    iccid=kw.get("iccid"), imsi=kw.get("imsi"),
                    meter_type=kw.get("meter_type"), meter_serial_number=kw.get("meter_serial_number"),
                )
                await connectors.notify_charger_event(conn, {"event": "boot", "charge_box_id": self.id})
            self.auth.registration_status = status or self.auth.registration_status
        except DB_UNAVAILABLE:
            # A boot is no transaction message: answer from what we knew at connect time.
            log.warning("boot not stored: database unavailable", charge_box_id=self.id)
        status = self.auth.registration_status
        interval = self.server.settings.OCPP_HEARTBEAT_INTERVAL if status == "Accepted" else RETRY_INTERVAL_S
        return call_result.BootNotification(current_time=iso_now(), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kw):
        self.server.heartbeat(self.pk)
        return call_result.Heartbeat(current_time=iso_now())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str, **kw):
        record = dict(
            charge_box_pk=self.pk, charge_box_id=self.id, connector_id=connector_id, status=status,
            error_code=error_code, info=kw.get("info"), vendor_id=kw.get("vendor_id"),
            vendor_error_code=kw.get("vendor_error_code"),
            status_at=parse_timestamp(kw.get("timestamp")),
        )
        try:
            async with self.server.pool.acquire() as conn:
                await connectors.record_status(conn, **record)
        except DB_UNAVAILABLE:
            self.server.defer_status(record)  # written when the database is back
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kw):
        async with self.server.pool.acquire() as conn:
            info = await authorize.decide(conn, id_tag, self.pk, now_utc(), keep_unknown=False,
                                          check_concurrent=True)
        await self._apply_override(info, id_tag, None, is_start_tx=False)
        return call_result.Authorize(id_tag_info=info)

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int,
                                   timestamp: str, **kw):
        now = now_utc()
        async with self.server.pool.acquire() as conn:
            info = await authorize.decide(conn, id_tag, self.pk, now, keep_unknown=True,
                                          check_concurrent=False)
        await self._apply_override(info, id_tag, connector_id, is_start_tx=True)
        async with self.server.pool.acquire() as conn:
            started = await transactions.start_transaction(
                conn, charge_box_pk=self.pk, charge_box_id=self.id, connector_id=connector_id,
                id_tag=id_tag, id_tag_status=info["status"],
                start_timestamp=parse_timestamp(timestamp, received=now), meter_start=meter_start,
                reservation_id=kw.get("reservation_id"),
            )
            if info["status"] == "Accepted" and await transactions.has_open_transaction(
                conn, id_tag, excluding=started.transaction_id
            ):
                info["status"] = "ConcurrentTx"
                await transactions.set_id_tag_status(conn, started.transaction_id, "ConcurrentTx")
        log.info("transaction started" if started.created else "transaction start resent",
                 charge_box_id=self.id, transaction_id=started.transaction_id, status=info["status"])
        return call_result.StartTransaction(transaction_id=started.transaction_id, id_tag_info=info)

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, **kw):
        now = now_utc()
        id_tag = kw.get("id_tag")
        data = kw.get("transaction_data")
        raw_data = snake_to_camel_case(data) if data is not None else None
        groups = samples_from(data, received=now)
        async with self.server.pool.acquire() as conn:
            result = await transactions.stop_transaction(
                conn, charge_box_pk=self.pk, charge_box_id=self.id, transaction_id=transaction_id,
                id_tag=id_tag, stop_timestamp=parse_timestamp(timestamp, received=now),
                meter_stop=meter_stop, reason=kw.get("reason"), transaction_data=raw_data,
                payload={"meterStop": meter_stop, "timestamp": timestamp,
                         "transactionId": transaction_id, "idTag": id_tag, "reason": kw.get("reason"),
                         "transactionData": raw_data},
            )
            rows = [s for _, samples in groups for s in samples]
            linked = None
            if rows:
                linked = await meter_values.insert_meter_values(
                    conn, self.pk, result.connector_id or 0,
                    transaction_id if result.outcome == "stopped" else None, rows)
            info = None
            if id_tag:
                info = authorize.tag_info(await id_tags.get_id_tag(conn, id_tag), now)
        if result.outcome != "stopped":
            log.warning("StopTransaction kept, not applied", charge_box_id=self.id,
                        transaction_id=transaction_id, outcome=result.outcome)
        if linked is not None:
            self._post_meter_values(linked, result.connector_id or 0, data)
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, **kw):
        tx = kw.get("transaction_id")
        groups = samples_from(meter_value, received=now_utc())
        rows = [s for _, samples in groups for s in samples]
        async with self.server.pool.acquire() as conn:
            linked = await meter_values.insert_meter_values(conn, self.pk, connector_id, tx, rows)
        if linked is not None:
            self._post_meter_values(linked, connector_id, meter_value)
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kw):
        handler = self.server.data_transfer_handlers.get(vendor_id)
        if handler is None:
            status, data = "UnknownVendorId", None
        else:
            status, data = await handler(self, kw.get("message_id"), kw.get("data"))
        self.server.spawn(self._journal_data_transfer(self.current_unique_id, vendor_id, kw, status, data))
        return call_result.DataTransfer(status=status, data=data)

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, status: str, **kw):
        await self._store_quietly(charge_boxes.set_diagnostics_status, status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str, **kw):
        await self._store_quietly(charge_boxes.set_firmware_status, status)
        return call_result.FirmwareStatusNotification()

    # --- helpers ---------------------------------------------------------------------------

    async def _apply_override(self, info: dict, id_tag: str, connector_id: int | None,
                              *, is_start_tx: bool) -> None:
        override = await self.server.hooks.pre_authorize(id_tag, self.id, connector_id, is_start_tx)
        if override == "BLOCKED" and info["status"] in ("Accepted", "ConcurrentTx"):
            info["status"] = "Blocked"

    def _post_meter_values(self, transaction_pk: int, connector_id: int, meter_value: list | None) -> None:
        received = now_utc()
        for mv in meter_value or ():
            if not isinstance(mv, dict):
                continue
            samples = [
                {k: sv[k] for k in ("value", "measurand", "unit", "context", "phase", "location")
                 if sv.get(k) is not None}
                for sv in mv.get("sampled_value") or () if isinstance(sv, dict) and sv.get("value") is not None
            ]
            at = parse_timestamp(mv.get("timestamp"), received=received).isoformat()
            for i in range(0, len(samples), HOOK_MAX_SAMPLES):
                self.server.hooks.meter_values(self.id, transaction_pk, connector_id, at,
                                               samples[i:i + HOOK_MAX_SAMPLES])

    async def _store_quietly(self, fn: Any, *args: Any) -> None:
        try:
            async with self.server.pool.acquire() as conn:
                await fn(conn, self.pk, *args)
        except DB_UNAVAILABLE:
            log.warning("status not stored: database unavailable", charge_box_id=self.id)

    async def _journal_data_transfer(self, unique_id: str, vendor_id: str, kw: dict, status: str,
                                     data: Any) -> None:
        request = {"vendorId": vendor_id, "messageId": kw.get("message_id"), "data": kw.get("data")}
        try:
            async with self.server.pool.acquire() as conn:
                jid = await journal_sent(conn, charge_box_id=self.id, action="DataTransfer",
                                         unique_id=unique_id, request=request, direction="cp_to_cs")
                await journal_answer(conn, jid, status="answered",
                                     response={"status": status, "data": data})
        except DB_UNAVAILABLE:
            pass


def _routes(cls: type) -> dict[str, Any]:
    routes: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            action = getattr(attr, "_on_action", None)
            if action is not None:
                routes[str(Action(action).value)] = attr
    return routes


ChargePoint.ROUTES = _routes(ChargePoint)
