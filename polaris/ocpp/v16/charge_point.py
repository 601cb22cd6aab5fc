"""OCPP 1.6J handlers: thin `@on` handlers over the version-neutral core.

`ChargePoint` is a `Session` (the connection core in session.py) with the 1.6 framing and
schema rules of `protocol.py`, the 1.6 command table of `operations.py`, and one handler
per charger-initiated 1.6 action: each reads the 1.6 message, calls core.py with plain
values and builds the 1.6 reply. Whatever they use beyond that comes through `self.ctx`
(an `OcppContext`), never the server. They never call the charger themselves (the
library reads one frame at a time, so a call inside a handler would wait for a reply it
cannot read); follow-ups go through `self.ctx.spawn()`, which tracks the task.
"""

from __future__ import annotations

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import FormationViolationError, OCPPError
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from polaris.ocpp import core
from polaris.ocpp.parsing import iso_now, now_utc, samples_from
from polaris.ocpp.session import Session
from polaris.ocpp.v16 import protocol
from polaris.ocpp.v16.operations import OPERATIONS

RETRY_INTERVAL_S = 60  # BootNotification interval while Pending / Rejected: when to ask again


class ChargePoint(Session):
    OCPP_VERSION = "1.6"
    NAME = "OCPP 1.6J"
    SUBPROTOCOL = "ocpp1.6"
    OPERATIONS = OPERATIONS
    # While Pending or Rejected a 1.6 charger boots, heartbeats and reports its state, nothing more.
    UNREGISTERED_ACTIONS = Session.UNREGISTERED_ACTIONS | {"DiagnosticsStatusNotification", "FirmwareStatusNotification"}

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

    # --- charger-initiated messages: 1.6 shapes in, the core, 1.6 replies out --------------

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kw):
        status = await core.boot(self, core.Boot(
            vendor=charge_point_vendor, model=charge_point_model,
            charge_point_serial_number=kw.get("charge_point_serial_number"),
            charge_box_serial_number=kw.get("charge_box_serial_number"),
            firmware_version=kw.get("firmware_version"), iccid=kw.get("iccid"), imsi=kw.get("imsi"),
            meter_type=kw.get("meter_type"), meter_serial_number=kw.get("meter_serial_number"),
        ))
        interval = self.ctx.settings.OCPP_HEARTBEAT_INTERVAL if status == "Accepted" else RETRY_INTERVAL_S
        return call_result.BootNotification(current_time=iso_now(), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kw):
        core.heartbeat(self)
        return call_result.Heartbeat(current_time=iso_now())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str, **kw):
        await core.connector_status(
            self, connector_id, status, error_code, info=kw.get("info"), vendor_id=kw.get("vendor_id"),
            vendor_error_code=kw.get("vendor_error_code"), timestamp=kw.get("timestamp"),
        )
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kw):
        return call_result.Authorize(id_tag_info=await core.authorize(self, id_tag))

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int,
                                   timestamp: str, **kw):
        transaction_id, info = await core.start_transaction(
            self, connector_id=connector_id, id_tag=id_tag, meter_start=meter_start, timestamp=timestamp,
            reservation_id=kw.get("reservation_id"),
        )
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=info)

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, **kw):
        id_tag = kw.get("id_tag")
        data = kw.get("transaction_data")
        raw_data = snake_to_camel_case(data) if data is not None else None
        info = await core.stop_transaction(
            self, transaction_id=transaction_id, meter_stop=meter_stop, timestamp=timestamp,
            id_tag=id_tag, reason=kw.get("reason"), samples=samples_from(data, received=now_utc()),
            transaction_data=raw_data,
            payload={"meterStop": meter_stop, "timestamp": timestamp, "transactionId": transaction_id,
                     "idTag": id_tag, "reason": kw.get("reason"), "transactionData": raw_data},
        )
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, **kw):
        await core.meter_values(self, connector_id, kw.get("transaction_id"),
                                samples_from(meter_value, received=now_utc()))
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kw):
        status, data = await core.data_transfer(self, vendor_id, kw.get("message_id"), kw.get("data"))
        return call_result.DataTransfer(status=status, data=data)

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, status: str, **kw):
        await core.diagnostics_status(self, status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str, **kw):
        await core.firmware_status(self, status)
        return call_result.FirmwareStatusNotification()
