"""OCPP 2.0.1 handlers: thin `@on` handlers over the version-neutral core.

`ChargePoint` is a `Session` (session.py) with the 2.0.1 framing and error codes of
`protocol.py`, the 2.0.1 command table of `operations.py`, and one handler per message a
charging station sends in the Core, Authorization, Transactions, Metering, Availability,
Reservation, Smart charging, Firmware, Diagnostics and Display blocks. Each reads the 2.0.1
message, calls core.py (or transactions.py for TransactionEvent) with plain values and builds
the 2.0.1 reply. What has no table of its own (NotifyEvent, SecurityEventNotification, ...) is
kept as received in `ocpp.station_reports`; the device model (NotifyReport) per charger in
`ocpp.device_model_variables`. Like every handler, they never call the station themselves.

Our "connector" for a 2.0.1 station is its EVSE id: sessions, statuses and meter values are
kept per EVSE, which is one connector on almost every station sold.
"""

from __future__ import annotations

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from polaris.db.repos import device_model, ocpp_journal, transaction_events
from polaris.logs import get_logger
from polaris.ocpp import core
from polaris.ocpp.parsing import iso_now, now_utc
from polaris.ocpp.session import Session
from polaris.ocpp.v201 import protocol
from polaris.ocpp.v201.metering import samples_from
from polaris.ocpp.v201.operations import OPERATIONS
from polaris.ocpp.v201.transactions import CARDLESS, transaction_event

log = get_logger(__name__)

RETRY_INTERVAL_S = 60


def id_token_info(info: dict) -> dict:
    """A 1.6-style IdTagInfo (from the core) as a 2.0.1 IdTokenInfo (snake_case)."""
    out: dict = {"status": info["status"]}
    if info.get("expiry_date"):
        out["cache_expiry_date_time"] = info["expiry_date"]
    if info.get("parent_id_tag"):
        out["group_id_token"] = {"id_token": info["parent_id_tag"], "type": "Central"}
    return out


class ChargePoint(Session):
    OCPP_VERSION = "2.0.1"
    NAME = "OCPP 2.0.1"
    SUBPROTOCOL = "ocpp2.0.1"
    OPERATIONS = OPERATIONS
    # B02: while Pending a station answers our requests (GetBaseReport's NotifyReport included).
    UNREGISTERED_ACTIONS = Session.UNREGISTERED_ACTIONS | {"NotifyReport", "FirmwareStatusNotification",
                                                           "SecurityEventNotification"}

    __slots__ = ()

    parse_frame = staticmethod(protocol.parse_frame)
    validate_call = staticmethod(protocol.validate_call)
    unknown_action_error = staticmethod(protocol.unknown_action_error)

    @staticmethod
    def format_violation(description: str) -> OCPPError:
        return protocol.format_violation(description)

    @classmethod
    def warm(cls) -> None:
        protocol.warm_schemas()

    async def _report(self, action: str, fields: dict) -> None:
        async with self.ctx.pool.acquire() as conn:
            await transaction_events.record_report(conn, self.pk, action, snake_to_camel_case(fields))

    # --- Provisioning and availability ---------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot_notification(self, charging_station: dict, reason: str, **kw):
        modem = charging_station.get("modem") or {}
        status = await core.boot(self, core.Boot(
            vendor=charging_station.get("vendor_name"), model=charging_station.get("model"),
            charge_point_serial_number=charging_station.get("serial_number"),
            firmware_version=charging_station.get("firmware_version"),
            iccid=modem.get("iccid"), imsi=modem.get("imsi"),
        ))
        interval = self.ctx.settings.OCPP_HEARTBEAT_INTERVAL if status == "Accepted" else RETRY_INTERVAL_S
        return call_result.BootNotification(current_time=iso_now(), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kw):
        core.heartbeat(self)
        return call_result.Heartbeat(current_time=iso_now())

    @on(Action.status_notification)
    async def on_status_notification(self, timestamp: str, connector_status: str, evse_id: int,
                                     connector_id: int, **kw):
        await core.connector_status(self, evse_id, connector_status, "NoError", timestamp=timestamp,
                                    info=f"connector {connector_id}" if connector_id != 1 else None)
        return call_result.StatusNotification()

    @on(Action.notify_report)
    async def on_notify_report(self, request_id: int, generated_at: str, seq_no: int, **kw):
        data = snake_to_camel_case(kw.get("report_data") or [])
        async with self.ctx.pool.acquire() as conn:
            stored = await device_model.store_report(conn, self.pk, data)
        log.info("device model reported", charge_box_id=self.id, request_id=request_id, seq_no=seq_no,
                 attributes=stored, more=bool(kw.get("tbc")))
        return call_result.NotifyReport()

    # --- Authorization -------------------------------------------------------------------

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict, **kw):
        if id_token.get("type") in CARDLESS:
            return call_result.Authorize(id_token_info={"status": "Accepted"})
        info = await core.authorize(self, str(id_token.get("id_token") or ""))
        return call_result.Authorize(id_token_info=id_token_info(info))

    # --- Transactions and metering -------------------------------------------------------

    @on(Action.transaction_event)
    async def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str, seq_no: int,
                                   transaction_info: dict, **kw):
        payload = snake_to_camel_case({"event_type": event_type, "timestamp": timestamp,
                                       "trigger_reason": trigger_reason, "seq_no": seq_no,
                                       "transaction_info": transaction_info, **kw})
        info = await transaction_event(
            self, event_type=event_type, timestamp=timestamp, trigger_reason=trigger_reason, seq_no=seq_no,
            transaction_info=transaction_info, payload=payload, meter_value=kw.get("meter_value"),
            offline=bool(kw.get("offline")), reservation_id=kw.get("reservation_id"), evse=kw.get("evse"),
            id_token=kw.get("id_token"))
        return call_result.TransactionEvent(id_token_info=id_token_info(info) if info else None)

    @on(Action.meter_values)
    async def on_meter_values(self, evse_id: int, meter_value: list, **kw):
        await core.meter_values(self, evse_id, None, samples_from(meter_value, received=now_utc()))
        return call_result.MeterValues()

    # --- Reservation, smart charging -----------------------------------------------------

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(self, reservation_id: int, reservation_update_status: str, **kw):
        async with self.ctx.pool.acquire() as conn:
            await ocpp_journal.set_reservation_status(conn, self.pk, reservation_id, reservation_update_status)
        await self._report("ReservationStatusUpdate", {"reservation_id": reservation_id,
                                                       "reservation_update_status": reservation_update_status})
        return call_result.ReservationStatusUpdate()

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, charging_limit: dict, **kw):
        await self._report("NotifyChargingLimit", {"charging_limit": charging_limit, **kw})
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(self, charging_limit_source: str, **kw):
        await self._report("ClearedChargingLimit", {"charging_limit_source": charging_limit_source, **kw})
        return call_result.ClearedChargingLimit()

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(self, request_id: int, charging_limit_source: str,
                                          charging_profile: list, evse_id: int, **kw):
        await self._report("ReportChargingProfiles", {
            "request_id": request_id, "charging_limit_source": charging_limit_source,
            "charging_profile": charging_profile, "evse_id": evse_id, **kw})
        return call_result.ReportChargingProfiles()

    # --- Firmware, diagnostics, security, display ----------------------------------------

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str, **kw):
        await core.firmware_status(self, status)
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(self, status: str, **kw):
        await core.diagnostics_status(self, status)
        await self._report("LogStatusNotification", {"status": status, **kw})
        return call_result.LogStatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, type: str, timestamp: str, **kw):
        log.warning("security event", charge_box_id=self.id, security_event=type[:50], at=timestamp)
        await self._report("SecurityEventNotification", {"type": type, "timestamp": timestamp, **kw})
        return call_result.SecurityEventNotification()

    @on(Action.notify_event)
    async def on_notify_event(self, generated_at: str, seq_no: int, event_data: list, **kw):
        await self._report("NotifyEvent", {"generated_at": generated_at, "seq_no": seq_no,
                                           "event_data": event_data, **kw})
        return call_result.NotifyEvent()

    @on(Action.notify_monitoring_report)
    async def on_notify_monitoring_report(self, request_id: int, seq_no: int, generated_at: str, **kw):
        await self._report("NotifyMonitoringReport", {"request_id": request_id, "seq_no": seq_no,
                                                      "generated_at": generated_at, **kw})
        return call_result.NotifyMonitoringReport()

    @on(Action.notify_display_messages)
    async def on_notify_display_messages(self, request_id: int, **kw):
        await self._report("NotifyDisplayMessages", {"request_id": request_id, **kw})
        return call_result.NotifyDisplayMessages()

    @on(Action.notify_customer_information)
    async def on_notify_customer_information(self, data: str, seq_no: int, generated_at: str, request_id: int,
                                             **kw):
        await self._report("NotifyCustomerInformation", {"data": data, "seq_no": seq_no,
                                                         "generated_at": generated_at, "request_id": request_id})
        return call_result.NotifyCustomerInformation()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kw):
        status, data = await core.data_transfer(self, vendor_id, kw.get("message_id"), kw.get("data"))
        return call_result.DataTransfer(status=status, data=data)
