"""How a simulated 2.0.1 station answers the CSMS (OCPP 2.0.1 CSMS -> CS operations).

Thin, as the 1.6 handlers: a 2.0.1 request becomes a call on the station's public API, its
answer a 2.0.1 status. The device model answers GetVariables / SetVariables, and GetBaseReport
is followed by NotifyReport messages. Follow-ups run after the reply went out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from polaris.logs import get_logger
from polaris.sim.clock import now_iso
from polaris.sim.smart_charging import ChargingProfile, Period, ProfilePurpose
from polaris.sim.station import Station

log = get_logger(__name__)
ECHO_VENDOR_ID = "Polaris"
REPORT_PAGE = 20  # variables per NotifyReport (DeviceDataCtrlr.ItemsPerMessage)


def boot_notification(station: Station, reason: str = "PowerUp") -> call.BootNotification:
    return call.BootNotification(charging_station={
        "model": station.model, "vendor_name": station.vendor, "serial_number": station.serial_number,
        "firmware_version": station.firmware_version}, reason=reason)


def neutral_profile(profile: dict) -> ChargingProfile:
    """A 2.0.1 `chargingProfile` (snake_case) in neutral terms: its first schedule."""
    schedule = (profile.get("charging_schedule") or [{}])[0]
    purpose = profile.get("charging_profile_purpose", "")
    if purpose == "ChargingStationMaxProfile":  # 2.0.1's name for 1.6's ChargePointMaxProfile
        purpose = ProfilePurpose.STATION_MAX
    return ChargingProfile(
        profile_id=profile.get("id", 0), purpose=purpose,
        stack_level=profile.get("stack_level", 0), rate_unit=schedule.get("charging_rate_unit", "W"),
        periods=tuple(Period(p.get("start_period", 0), float(p.get("limit", 0)), p.get("number_phases"))
                      for p in schedule.get("charging_schedule_period") or []),
    )


def _key(item: dict) -> str:
    return f"{(item.get('component') or {}).get('name')}.{(item.get('variable') or {}).get('name')}"


class StationClient(ChargePoint):
    """The `ocpp` library's 2.0.1 charging station, answering with the station's state."""

    def __init__(self, charge_box_id: str, connection: Any, sim: Station, adapter: Any):
        # `adapter` is the station's V201Adapter (its device model and transaction ids); not
        # imported here, since the adapter builds this client.
        super().__init__(charge_box_id, connection, response_timeout=sim.response_timeout)
        self.sim = sim
        self.adapter = adapter
        self._followups: list[Callable[[], Coroutine]] = []

    def later(self, factory: Callable[[], Coroutine]) -> None:
        self._followups.append(factory)

    async def _handle_call(self, msg: Any) -> Any:
        # As in the 1.6 client: record each request, run follow-ups once the reply is out.
        self.sim.last_request[msg.action] = msg.payload
        self.sim.requests[msg.action] += 1
        self._followups = []
        result = await super()._handle_call(msg)
        for factory in self._followups:
            self.sim.spawn(factory(), name=f"after-{msg.action}")
        self._followups = []
        self.sim.spawn(self.sim.notify())
        return result

    # -- Provisioning ----------------------------------------------------------

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list, **_: Any):
        results = []
        for item in get_variable_data:
            var = self.adapter.configuration.get(_key(item))
            result = {"component": item["component"], "variable": item["variable"]}
            if var is None:
                result["attribute_status"] = "UnknownVariable"
            elif var.mutability == "WriteOnly":
                result["attribute_status"] = "Rejected"
            else:
                result.update(attribute_status="Accepted", attribute_value=var.value)
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list, **_: Any):
        results = []
        for item in set_variable_data:
            key = _key(item)
            status = self.adapter.configuration.set(key, str(item["attribute_value"]))
            if status == "Accepted":
                if key == "OCPPCommCtrlr.HeartbeatInterval":
                    self.sim.heartbeat_interval = int(item["attribute_value"]) or self.sim.heartbeat_interval
                elif key == "SecurityCtrlr.BasicAuthPassword":
                    self.sim.password = str(item["attribute_value"])  # used from the next connection
            results.append({"attribute_status": status, "component": item["component"], "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any):
        self.later(lambda: self._report(request_id))
        return call_result.GetBaseReport(status="Accepted")

    async def _report(self, request_id: int) -> None:
        data = self.adapter.configuration.report_data()
        pages = [data[i:i + REPORT_PAGE] for i in range(0, len(data), REPORT_PAGE)] or [[]]
        for seq, page in enumerate(pages):
            await self.sim.link.try_call(call.NotifyReport(request_id=request_id, generated_at=now_iso(), seq_no=seq,
                                                           report_data=page or None, tbc=seq < len(pages) - 1))

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any):
        self.later(lambda: self.sim.reboot(hard=type == "Immediate"))
        return call_result.Reset(status="Accepted")

    # -- Transactions -----------------------------------------------------------

    @on(Action.request_start_transaction)
    def on_request_start_transaction(self, id_token: dict, remote_start_id: int, evse_id: int | None = None, **_: Any):
        sim = self.sim
        id_tag = str(id_token.get("id_token"))
        target = sim.connectors.for_remote_start(id_tag, evse_id)
        if target is None:
            return call_result.RequestStartTransaction(status="Rejected")
        cid = target.connector_id
        self.later(lambda: _start(sim, cid, id_tag))
        return call_result.RequestStartTransaction(status="Accepted")

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str, **_: Any):
        cid = self.adapter.connector_of(transaction_id)
        ok = cid is not None and self.sim.stop_session(cid, reason="Remote")
        return call_result.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @on(Action.get_transaction_status)
    def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any):
        ongoing = transaction_id is not None and self.adapter.connector_of(transaction_id) is not None
        return call_result.GetTransactionStatus(messages_in_queue=self.sim.queued_messages > 0,
                                                ongoing_indicator=ongoing if transaction_id else None)

    # -- Availability ------------------------------------------------------------

    @on(Action.change_availability)
    def on_change_availability(self, operational_status: str, evse: dict | None = None, **_: Any):
        answer, changed = self.sim.connectors.set_availability((evse or {}).get("id", 0),
                                                               operational_status == "Operative")
        if changed:
            self.later(lambda: self.sim.report_statuses(*changed))
        return call_result.ChangeAvailability(status=str(answer))

    @on(Action.unlock_connector)
    def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any):
        if connector_id != 1 or not self.sim.connectors.unlock(evse_id):
            return call_result.UnlockConnector(status="UnknownConnector")
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, evse: dict | None = None, **_: Any):
        sim = self.sim
        evse_id = (evse or {}).get("id")
        if requested_message == "Heartbeat":
            self.later(lambda: sim.protocol.heartbeat())
        elif requested_message == "StatusNotification":
            self.later(lambda: sim.report_statuses(*([evse_id] if evse_id else [])))
        elif requested_message == "MeterValues":
            self.later(lambda: _meter_values(sim, evse_id))
        elif requested_message == "BootNotification":
            self.later(lambda: sim.link.try_call(boot_notification(sim, "Triggered")))
        else:
            return call_result.TriggerMessage(status="NotImplemented")
        return call_result.TriggerMessage(status="Accepted")

    # -- Authorization, smart charging, vendor -------------------------------------

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any):
        self.sim.auth_cache.clear()
        return call_result.ClearCache(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any):
        return call_result.GetLocalListVersion(version_number=self.sim.local_list_version)

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_: Any):
        if evse_id != 0 and evse_id not in self.sim.connectors:
            return call_result.SetChargingProfile(status="Rejected")
        self.sim.smart_charging.install(evse_id, neutral_profile(charging_profile))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, charging_profile_id: int | None = None, **_: Any):
        cleared = self.sim.smart_charging.clear(profile_id=charging_profile_id)
        return call_result.ClearChargingProfile(status="Accepted" if cleared else "Unknown")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any):
        if vendor_id != ECHO_VENDOR_ID:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data=data)


async def _start(sim: Station, connector_id: int, id_tag: str) -> None:
    if not sim.start_session(connector_id, id_tag, remote=True):
        log.warning("remote start accepted but connector became busy", charge_box_id=sim.charge_box_id)


async def _meter_values(sim: Station, evse_id: int | None) -> None:
    for i in [evse_id] if evse_id else list(sim.connectors):
        await sim.send_meter_values(i)
        await asyncio.sleep(0)
