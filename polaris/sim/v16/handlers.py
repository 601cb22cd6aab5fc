"""How a simulated charger answers the central system's requests (OCPP 1.6 CS -> CP operations).

Handlers are thin: they turn a 1.6 request into a call on the station's public API (the rules
themselves live in the version-neutral `Connectors`, `LocalAuthorization` and
`ChargingProfiles`), and its answer into a 1.6 status. Anything that sends messages of its own
(status changes, a session starting, a reboot) is queued as a follow-up and run after the reply
has gone out, since the `ocpp` library reads nothing else while a handler runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    CancelReservationStatus,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ClearCacheStatus,
    ClearChargingProfileStatus,
    ConfigurationStatus,
    DataTransferStatus,
    DiagnosticsStatus,
    FirmwareStatus,
    GetCompositeScheduleStatus,
    MessageTrigger,
    RemoteStartStopStatus,
    ReservationStatus,
    ResetStatus,
    ResetType,
    TriggerMessageStatus,
    UnlockStatus,
    UpdateStatus,
    UpdateType,
)

from polaris.logs import get_logger
from polaris.sim.clock import now_iso, parse_time
from polaris.sim.connectors import ReservationAnswer
from polaris.sim.smart_charging import ChargingProfile, Period
from polaris.sim.station import Station

log = get_logger(__name__)

# DataTransfer with this vendor id is echoed back (handy to test the command API end to end).
ECHO_VENDOR_ID = "Polaris"


def boot_notification(station: Station, *, meter_type: str | None = None) -> call.BootNotification:
    """The station's BootNotification."""
    return call.BootNotification(
        charge_point_model=station.model,
        charge_point_vendor=station.vendor,
        charge_point_serial_number=station.serial_number,
        firmware_version=station.firmware_version,
        meter_type=meter_type,
    )


def neutral_profile(profile: dict) -> ChargingProfile:
    """A 1.6 `csChargingProfiles` (snake_case, as the library gives it) in neutral terms."""
    schedule = profile.get("charging_schedule") or {}
    return ChargingProfile(
        profile_id=profile.get("charging_profile_id", 0),
        purpose=profile.get("charging_profile_purpose", ""),
        stack_level=profile.get("stack_level", 0),
        rate_unit=schedule.get("charging_rate_unit", "W"),
        periods=tuple(
            Period(p.get("start_period", 0), float(p.get("limit", 0)), p.get("number_phases"))
            for p in schedule.get("charging_schedule_period") or []
        ),
    )


class ChargePointClient(ChargePoint):
    """The `ocpp` library's charge point, answering with the station's state."""

    def __init__(self, charge_box_id: str, connection: Any, sim: Station):
        super().__init__(charge_box_id, connection, response_timeout=sim.response_timeout)
        self.sim = sim
        self._followups: list[Callable[[], Coroutine]] = []

    def later(self, factory: Callable[[], Coroutine]) -> None:
        """Run `factory()` once the current reply has been sent."""
        self._followups.append(factory)

    async def _handle_call(self, msg: Any) -> Any:
        # Overridden (ocpp 2.1 internals) to record each request and to start follow-ups only
        # after the CALLRESULT went out: the library's own @after hooks are untracked tasks.
        self.sim.last_request[msg.action] = msg.payload
        self.sim.requests[msg.action] += 1
        self._followups = []
        result = await super()._handle_call(msg)
        for factory in self._followups:
            self.sim.spawn(factory(), name=f"after-{msg.action}")
        self._followups = []
        self.sim.spawn(self.sim.notify())
        return result

    def _status_later(self, *connector_ids: int) -> None:
        self.later(lambda: self.sim.report_statuses(*connector_ids))

    # -- Core ----------------------------------------------------------------

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None):
        sim = self.sim
        target = sim.connectors.for_remote_start(id_tag, connector_id)
        if target is None:
            return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.rejected)
        if charging_profile is not None:
            sim.smart_charging.install(target.connector_id, neutral_profile(charging_profile))
        cid = target.connector_id
        self.later(lambda: _start(sim, cid, id_tag))
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int):
        accepted = self.sim.stop_transaction(transaction_id)
        return call_result.RemoteStopTransaction(
            status=RemoteStartStopStatus.accepted if accepted else RemoteStartStopStatus.rejected
        )

    @on(Action.reset)
    def on_reset(self, type: str):
        self.later(lambda: self.sim.reboot(hard=type == ResetType.hard))
        return call_result.Reset(status=ResetStatus.accepted)

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str):
        answer, changed = self.sim.connectors.set_availability(connector_id, type == AvailabilityType.operative)
        if changed:
            self._status_later(*changed)
        return call_result.ChangeAvailability(status=AvailabilityStatus(answer))

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str):
        sim = self.sim
        status = sim.configuration.change(key, value)
        if status == ConfigurationStatus.accepted:
            if key == "HeartbeatInterval":
                sim.heartbeat_interval = int(value) or sim.heartbeat_interval
            elif key == "AuthorizationKey":
                # The new key is used from the next connection on, as the security whitepaper says.
                sim.password = value
        return call_result.ChangeConfiguration(status=status)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None):
        known, unknown = self.sim.configuration.get(key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.clear_cache)
    def on_clear_cache(self):
        self.sim.auth_cache.clear()
        return call_result.ClearCache(status=ClearCacheStatus.accepted)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: str | None = None):
        if vendor_id != ECHO_VENDOR_ID:
            return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)
        return call_result.DataTransfer(status=DataTransferStatus.accepted, data=data)

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int):
        if not self.sim.connectors.unlock(connector_id):
            return call_result.UnlockConnector(status=UnlockStatus.not_supported)
        return call_result.UnlockConnector(status=UnlockStatus.unlocked)

    # -- Firmware management -------------------------------------------------

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, **_: Any):
        sim = self.sim
        name = f"diagnostics-{sim.charge_box_id}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
        self.later(lambda: upload_diagnostics(sim))
        return call_result.GetDiagnostics(file_name=name)

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, **_: Any):
        self.later(lambda: update_firmware(self.sim, location, retrieve_date))
        return call_result.UpdateFirmware()

    # -- Local auth list -----------------------------------------------------

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self):
        version = self.sim.local_list_version if self.sim.configuration.bool("LocalAuthListEnabled") else -1
        return call_result.GetLocalListVersion(list_version=version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str, local_authorization_list: list | None = None):
        sim = self.sim
        entries = local_authorization_list or []
        if not sim.configuration.bool("LocalAuthListEnabled"):
            return call_result.SendLocalList(status=UpdateStatus.not_supported)
        if len(entries) > sim.configuration.int("SendLocalListMaxLength"):
            return call_result.SendLocalList(status=UpdateStatus.failed)
        answer = sim.authorization.update_list(
            list_version,
            [(e["id_tag"], e.get("id_tag_info")) for e in entries],
            full=update_type == UpdateType.full,
            max_entries=sim.configuration.int("LocalAuthListMaxLength"),
        )
        return call_result.SendLocalList(status=UpdateStatus(answer))

    # -- Reservation -----------------------------------------------------------

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int, **_: Any):
        sim = self.sim
        if connector_id == 0 and not sim.configuration.bool("ReserveConnectorZeroSupported"):
            return call_result.ReserveNow(status=ReservationStatus.rejected)
        answer = sim.reserve(connector_id, reservation_id, id_tag, expiry_date)
        if answer == ReservationAnswer.ACCEPTED:
            self._status_later(connector_id)
        return call_result.ReserveNow(status=ReservationStatus(answer))

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int):
        c = self.sim.connectors.end_reservation(reservation_id)
        if c is None:
            return call_result.CancelReservation(status=CancelReservationStatus.rejected)
        if c.session is None:
            self._status_later(c.connector_id)
        return call_result.CancelReservation(status=CancelReservationStatus.accepted)

    # -- Remote trigger --------------------------------------------------------

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None):
        sim = self.sim
        if connector_id is not None and connector_id != 0 and connector_id not in sim.connectors:
            return call_result.TriggerMessage(status=TriggerMessageStatus.rejected)
        if requested_message not in {m.value for m in MessageTrigger} or requested_message in (
            "LogStatusNotification", "SignChargePointCertificate"
        ):
            return call_result.TriggerMessage(status=TriggerMessageStatus.not_implemented)
        self.later(lambda: triggered(sim, requested_message, connector_id))
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    # -- Smart charging ----------------------------------------------------------

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict):
        sim = self.sim
        rejected = call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        if connector_id != 0 and connector_id not in sim.connectors:
            return rejected
        purpose = cs_charging_profiles.get("charging_profile_purpose")
        if purpose == ChargingProfilePurposeType.tx_profile:
            c = sim.connectors.get(connector_id)
            if c is None or c.session is None:
                return rejected
        if purpose == ChargingProfilePurposeType.charge_point_max_profile and connector_id != 0:
            return rejected
        if cs_charging_profiles.get("stack_level", 0) > sim.configuration.int("ChargeProfileMaxStackLevel"):
            return rejected
        key = (connector_id, cs_charging_profiles["charging_profile_id"])
        if key not in sim.charging_profiles and len(sim.charging_profiles) >= sim.configuration.int(
            "MaxChargingProfilesInstalled"
        ):
            return rejected
        sim.smart_charging.install(connector_id, neutral_profile(cs_charging_profiles))
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ):
        cleared = self.sim.smart_charging.clear(
            profile_id=id, connector_id=connector_id, purpose=charging_profile_purpose, stack_level=stack_level
        )
        status = ClearChargingProfileStatus.accepted if cleared else ClearChargingProfileStatus.unknown
        return call_result.ClearChargingProfile(status=status)

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None):
        if connector_id != 0 and connector_id not in self.sim.connectors:
            return call_result.GetCompositeSchedule(status=GetCompositeScheduleStatus.rejected)
        unit = charging_rate_unit or "W"
        limit = self.sim.smart_charging.limit(connector_id, unit)
        return call_result.GetCompositeSchedule(
            status=GetCompositeScheduleStatus.accepted,
            connector_id=connector_id,
            schedule_start=now_iso(),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": 0, "limit": round(limit, 1)}],
            },
        )


# ---------------------------------------------------------------------- follow-ups


async def _start(sim: Station, connector_id: int, id_tag: str) -> None:
    if not sim.start_session(connector_id, id_tag, remote=True):
        log.warning("remote start accepted but connector became busy", charge_box_id=sim.charge_box_id)


async def upload_diagnostics(sim: Station) -> None:
    """Simulated upload: Uploading, then Uploaded (nothing is actually sent to `location`)."""
    for status in (DiagnosticsStatus.uploading, DiagnosticsStatus.uploaded):
        await asyncio.sleep(sim.step_delay)
        sim.diagnostics_status = status
        await sim.link.try_call(call.DiagnosticsStatusNotification(status=status))


async def update_firmware(sim: Station, location: str, retrieve_date: str) -> None:
    """Simulated update: wait for retrieve_date, download, install, reboot, report Installed."""
    try:
        wait = (parse_time(retrieve_date) - datetime.now(UTC)).total_seconds()
    except ValueError:
        wait = 0
    await asyncio.sleep(min(max(0.0, wait), timedelta(hours=1).total_seconds()))
    for status in (FirmwareStatus.downloading, FirmwareStatus.downloaded, FirmwareStatus.installing):
        sim.firmware_status = status
        await sim.link.try_call(call.FirmwareStatusNotification(status=status))
        await asyncio.sleep(sim.step_delay)
    major, _, rest = sim.firmware_version.partition(".")
    sim.firmware_version = f"{major}.{int(rest.split('.')[0] or 0) + 1 if rest else 1}.0"
    boots = sim.boot_count
    await sim.reboot(hard=False)
    await sim.wait_for(lambda s: s.boot_count > boots and s.connected, timeout=3600)
    sim.firmware_status = FirmwareStatus.installed
    await sim.link.try_call(call.FirmwareStatusNotification(status=FirmwareStatus.installed))
    sim.firmware_status = FirmwareStatus.idle


async def triggered(sim: Station, message: str, connector_id: int | None) -> None:
    """Send the message a TriggerMessage asked for."""
    if message == MessageTrigger.boot_notification:
        sim.request_boot()
        if sim.connected:
            res = await sim.link.try_call(boot_notification(sim))
            if res is not None:
                sim.registration_status = res.status
    elif message == MessageTrigger.heartbeat:
        await sim.protocol.heartbeat()
    elif message == MessageTrigger.status_notification:
        await sim.report_statuses(*([connector_id] if connector_id is not None else []))
    elif message == MessageTrigger.meter_values:
        for i in [connector_id] if connector_id else list(sim.connectors):
            await sim.send_meter_values(i)
    elif message == MessageTrigger.firmware_status_notification:
        await sim.link.try_call(call.FirmwareStatusNotification(status=sim.firmware_status))
    elif message == MessageTrigger.diagnostics_status_notification:
        await sim.link.try_call(call.DiagnosticsStatusNotification(status=sim.diagnostics_status))
