"""OCPP 1.6J handlers: thin `@on` handlers over the repositories, one class per version.

`ChargePoint` is a `Session` (the version-neutral connection core in session.py) with the
1.6 framing and schema rules of `protocol.py`, the 1.6 command table of `operations.py`,
and one handler per charger-initiated 1.6 action. Handlers reach the database, hooks,
presence buffers and journal through `self.ctx` (an `OcppContext`), never the server.
They never call the charger themselves (the library reads one frame at a time, so a call
inside a handler would wait for a reply it cannot read); follow-ups go through
`self.ctx.spawn()`, which tracks the task.
"""

from __future__ import annotations

from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import FormationViolationError, OCPPError
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from polaris.db.repos import charge_boxes, connectors, id_tags, meter_values, transactions
from polaris.logs import get_logger
from polaris.ocpp import authorize
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.journal import JournalEntry
from polaris.ocpp.parsing import iso_now, now_utc, parse_timestamp, samples_from
from polaris.ocpp.session import Session
from polaris.ocpp.v16 import protocol
from polaris.ocpp.v16.operations import OPERATIONS

log = get_logger(__name__)

RETRY_INTERVAL_S = 60  # BootNotification interval while Pending / Rejected: when to ask again
HOOK_MAX_SAMPLES = 500  # the web's meter-values hook takes at most this many per request


class ChargePoint(Session):
    OCPP_VERSION = "1.6"
    NAME = "OCPP 1.6J"
    SUBPROTOCOL = "ocpp1.6"
    OPERATIONS = OPERATIONS

    __slots__ = ()

    parse_frame = staticmethod(protocol.parse_frame)
    validate_call = staticmethod(protocol.validate_call)
    unknown_action_error = staticmethod(protocol.unknown_action_error)

    @staticmethod
    def format_violation(description: str) -> OCPPError:
        return FormationViolationError(description=description, details={})

    @classmethod
    def warm(cls) -> None:
        protocol.warm_schemas()

    # --- charger-initiated messages --------------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kw):
        try:
            async with self.ctx.pool.acquire() as conn:
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
        interval = self.ctx.settings.OCPP_HEARTBEAT_INTERVAL if status == "Accepted" else RETRY_INTERVAL_S
        return call_result.BootNotification(current_time=iso_now(), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kw):
        self.ctx.presence.heartbeat(self.pk)
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
            async with self.ctx.pool.acquire() as conn:
                await connectors.record_status(conn, **record)
        except DB_UNAVAILABLE:
            self.ctx.presence.defer_status(record)  # written when the database is back
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kw):
        async with self.ctx.pool.acquire() as conn:
            info = await authorize.decide(conn, id_tag, self.pk, now_utc(), keep_unknown=False,
                                          check_concurrent=True)
        await self._apply_override(info, id_tag, None, is_start_tx=False)
        return call_result.Authorize(id_tag_info=info)

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int,
                                   timestamp: str, **kw):
        now = now_utc()
        async with self.ctx.pool.acquire() as conn:
            info = await authorize.decide(conn, id_tag, self.pk, now, keep_unknown=True,
                                          check_concurrent=False)
        await self._apply_override(info, id_tag, connector_id, is_start_tx=True)
        async with self.ctx.pool.acquire() as conn:
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
        async with self.ctx.pool.acquire() as conn:
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
        async with self.ctx.pool.acquire() as conn:
            linked = await meter_values.insert_meter_values(conn, self.pk, connector_id, tx, rows)
        if linked is not None:
            self._post_meter_values(linked, connector_id, meter_value)
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kw):
        handler = self.ctx.data_transfer_handlers.get(vendor_id)
        if handler is None:
            status, data = "UnknownVendorId", None
        else:
            status, data = await handler(self, kw.get("message_id"), kw.get("data"))
        self.ctx.spawn(self._journal_data_transfer(self.current_unique_id, vendor_id, kw, status, data))
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
        override = await self.ctx.hooks.pre_authorize(id_tag, self.id, connector_id, is_start_tx)
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
                self.ctx.hooks.meter_values(self.id, transaction_pk, connector_id, at,
                                               samples[i:i + HOOK_MAX_SAMPLES])

    async def _store_quietly(self, fn: Any, *args: Any) -> None:
        try:
            async with self.ctx.pool.acquire() as conn:
                await fn(conn, self.pk, *args)
        except DB_UNAVAILABLE:
            log.warning("status not stored: database unavailable", charge_box_id=self.id)

    async def _journal_data_transfer(self, unique_id: str, vendor_id: str, kw: dict, status: str,
                                     data: Any) -> None:
        request = {"vendorId": vendor_id, "messageId": kw.get("message_id"), "data": kw.get("data")}
        await self.ctx.journal.record(JournalEntry(
            charge_box_id=self.id, action="DataTransfer", unique_id=unique_id, request=request,
            direction="cp_to_cs", status="answered", response={"status": status, "data": data}))
