"""How a simulated charger answers the central system's requests (OCPP 1.6 CS -> CP operations).

Handlers decide and answer at once; anything that sends messages of its own (status changes,
a session starting, a reboot) is queued as a follow-up and run after the reply has gone out,
since the `ocpp` library reads nothing else while a handler runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    CancelReservationStatus,
    ChargePointStatus,
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
    Reason,
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
from polaris.sim.charger import now_iso, profile_limit_w
from polaris.sim.vehicle import NOMINAL_VOLTAGE, PHASES

if TYPE_CHECKING:
    from polaris.sim.charger import Connector, SimulatedCharger

log = get_logger(__name__)

# DataTransfer with this vendor id is echoed back (handy to test the command API end to end).
ECHO_VENDOR_ID = "Polaris"


def _parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class ChargePointClient(ChargePoint):
    """The `ocpp` library's charge point, answering with the simulator's state."""

    def __init__(self, charge_box_id: str, connection: Any, sim: SimulatedCharger):
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
            self.sim._spawn(factory(), name=f"after-{msg.action}")
        self._followups = []
        self.sim._spawn(self.sim._notify())
        return result

    # -- helpers -------------------------------------------------------------

    def _connector(self, connector_id: int | None) -> Connector | None:
        return self.sim.connectors.get(connector_id) if connector_id is not None else None

    def _status_later(self, *connector_ids: int) -> None:
        async def send() -> None:
            for i in connector_ids:
                await self.sim._send_status(i)

        self.later(send)

    # -- Core ----------------------------------------------------------------

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None):
        sim = self.sim
        if connector_id is None:
            free = [
                c for c in sim.connectors.values()
                if c.session is None and c.operative
                and (c.reservation is None or c.reservation["id_tag"].lower() == id_tag.lower())
            ]
            target = free[0] if free else None
        else:
            target = self._connector(connector_id)
            if target is not None and (
                target.session is not None
                or not target.operative
                or (target.reservation is not None and target.reservation["id_tag"].lower() != id_tag.lower())
            ):
                target = None
        if target is None:
            return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.rejected)
        if charging_profile is not None:
            sim.charging_profiles[(target.connector_id, charging_profile.get("charging_profile_id", 0))] = {
                **charging_profile, "_set_at": datetime.now(UTC)
            }
        cid = target.connector_id
        self.later(lambda: _start(sim, cid, id_tag))
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int):
        for c in self.sim.connectors.values():
            if c.session is not None and c.session.transaction_id == transaction_id:
                c.session.request_stop(Reason.remote)
                return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.rejected)

    @on(Action.reset)
    def on_reset(self, type: str):
        self.later(lambda: reboot(self.sim, hard=type == ResetType.hard))
        return call_result.Reset(status=ResetStatus.accepted)

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str):
        sim = self.sim
        operative = type == AvailabilityType.operative
        if connector_id == 0:
            targets = list(sim.connectors.values())
        else:
            c = self._connector(connector_id)
            if c is None:
                return call_result.ChangeAvailability(status=AvailabilityStatus.rejected)
            targets = [c]
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
                    c.status = sim._idle_status(c)
                    changed.append(c.connector_id)
        if connector_id == 0 and not scheduled:
            sim.connector0_status = ChargePointStatus.available if operative else ChargePointStatus.unavailable
            changed.insert(0, 0)
        if changed:
            self._status_later(*changed)
        status = AvailabilityStatus.scheduled if scheduled else AvailabilityStatus.accepted
        return call_result.ChangeAvailability(status=status)

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
        c = self._connector(connector_id)
        if c is None:
            return call_result.UnlockConnector(status=UnlockStatus.not_supported)
        if c.session is not None:
            c.session.request_stop(Reason.unlock_command)
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
        if update_type == UpdateType.differential and list_version <= sim.local_list_version:
            return call_result.SendLocalList(status=UpdateStatus.version_mismatch)
        new = {} if update_type == UpdateType.full else dict(sim.local_list)
        for entry in entries:
            info = entry.get("id_tag_info")
            if info is None:
                new.pop(entry["id_tag"], None)
            else:
                new[entry["id_tag"]] = info
        if len(new) > sim.configuration.int("LocalAuthListMaxLength"):
            return call_result.SendLocalList(status=UpdateStatus.failed)
        sim.local_list, sim.local_list_version = new, list_version
        return call_result.SendLocalList(status=UpdateStatus.accepted)

    # -- Reservation -----------------------------------------------------------

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int, **_: Any):
        sim = self.sim
        if connector_id == 0 and not sim.configuration.bool("ReserveConnectorZeroSupported"):
            return call_result.ReserveNow(status=ReservationStatus.rejected)
        c = self._connector(connector_id)
        if c is None:
            return call_result.ReserveNow(status=ReservationStatus.rejected)
        if c.status == ChargePointStatus.faulted:
            return call_result.ReserveNow(status=ReservationStatus.faulted)
        if not c.operative:
            return call_result.ReserveNow(status=ReservationStatus.unavailable)
        if c.session is not None or (c.reservation and c.reservation["reservation_id"] != reservation_id):
            return call_result.ReserveNow(status=ReservationStatus.occupied)
        try:
            expiry = _parse_time(expiry_date)
        except ValueError:
            return call_result.ReserveNow(status=ReservationStatus.rejected)
        c.reservation = {"reservation_id": reservation_id, "id_tag": id_tag, "expiry": expiry}
        c.status = ChargePointStatus.reserved
        self._status_later(c.connector_id)
        sim._spawn(_expire_reservation(sim, c, reservation_id, expiry))
        return call_result.ReserveNow(status=ReservationStatus.accepted)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int):
        for c in self.sim.connectors.values():
            if c.reservation and c.reservation["reservation_id"] == reservation_id:
                c.reservation = None
                if c.session is None:
                    c.status = self.sim._idle_status(c)
                    self._status_later(c.connector_id)
                return call_result.CancelReservation(status=CancelReservationStatus.accepted)
        return call_result.CancelReservation(status=CancelReservationStatus.rejected)

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
        if connector_id != 0 and connector_id not in sim.connectors:
            return call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        purpose = cs_charging_profiles.get("charging_profile_purpose")
        if purpose == ChargingProfilePurposeType.tx_profile:
            c = self._connector(connector_id)
            if c is None or c.session is None:
                return call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        if purpose == ChargingProfilePurposeType.charge_point_max_profile and connector_id != 0:
            return call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        if cs_charging_profiles.get("stack_level", 0) > sim.configuration.int("ChargeProfileMaxStackLevel"):
            return call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        key = (connector_id, cs_charging_profiles["charging_profile_id"])
        if key not in sim.charging_profiles and len(sim.charging_profiles) >= sim.configuration.int(
            "MaxChargingProfilesInstalled"
        ):
            return call_result.SetChargingProfile(status=ChargingProfileStatus.rejected)
        sim.charging_profiles[key] = {**cs_charging_profiles, "_set_at": datetime.now(UTC)}
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ):
        sim = self.sim
        doomed = [
            key for key, p in sim.charging_profiles.items()
            if (id is None or key[1] == id)
            and (connector_id is None or key[0] == connector_id)
            and (charging_profile_purpose is None or p.get("charging_profile_purpose") == charging_profile_purpose)
            and (stack_level is None or p.get("stack_level") == stack_level)
        ]
        for key in doomed:
            del sim.charging_profiles[key]
        status = ClearChargingProfileStatus.accepted if doomed else ClearChargingProfileStatus.unknown
        return call_result.ClearChargingProfile(status=status)

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None):
        sim = self.sim
        if connector_id != 0 and connector_id not in sim.connectors:
            return call_result.GetCompositeSchedule(status=GetCompositeScheduleStatus.rejected)
        limit_w = sim.max_power_w
        for (cid, _pid), profile in sim.charging_profiles.items():
            if cid in (0, connector_id) or connector_id == 0:
                limit_w = min(limit_w, profile_limit_w(profile))
        unit = charging_rate_unit or "W"
        limit = limit_w if unit == "W" else limit_w / (NOMINAL_VOLTAGE * PHASES)
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


async def _start(sim: SimulatedCharger, connector_id: int, id_tag: str) -> None:
    if not sim.start_session(connector_id, id_tag, remote=True):
        log.warning("remote start accepted but connector became busy", charge_box_id=sim.charge_box_id)


async def _expire_reservation(sim: SimulatedCharger, c: Connector, reservation_id: int, expiry: datetime) -> None:
    await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()))
    if c.reservation and c.reservation["reservation_id"] == reservation_id:
        c.reservation = None
        if c.session is None:
            await sim._set_status(c, sim._idle_status(c))


async def reboot(sim: SimulatedCharger, *, hard: bool, reason: str | None = None, forget: bool = False) -> None:
    """Reset: a soft reset ends sessions properly first; a hard one (or a power cut) drops everything.

    Either way the charger reconnects and boots again; StopTransactions of sessions cut by a hard
    reset stay queued and go out after the new boot, as real chargers do, unless `forget`: then
    every unsent transaction message is lost, as with chargers that keep their queue in RAM.
    """
    log.info("rebooting", charge_box_id=sim.charge_box_id, hard=hard, forget=forget)
    sessions = [c for c in sim.connectors.values() if c.session is not None]
    if hard:
        sim._quick_reconnect = True
        sim._online.clear()
        if sim._ws is not None:
            await sim._ws.close()
    for c in sessions:
        if c.session is not None:
            c.session.request_stop(reason or (Reason.hard_reset if hard else Reason.soft_reset))
    tasks = [c.session_task for c in sessions if c.session_task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    if forget:
        sim._queue.clear()
        sim._queue_changed.set()
    if not hard:
        try:
            await asyncio.wait_for(_queue_empty(sim), 10)
        except TimeoutError:
            pass
    for c in sim.connectors.values():
        c.status = sim._idle_status(c)
        if "register-reset" in sim.quirks:
            c.meter_wh = 0.0
    if not hard:
        sim._quick_reconnect = True
        if sim._ws is not None:
            await sim._ws.close()


async def _queue_empty(sim: SimulatedCharger) -> None:
    while sim._queue:
        sim._queue_changed.clear()
        await sim._queue_changed.wait()


async def upload_diagnostics(sim: SimulatedCharger) -> None:
    """Simulated upload: Uploading, then Uploaded (nothing is actually sent to `location`)."""
    for status in (DiagnosticsStatus.uploading, DiagnosticsStatus.uploaded):
        await asyncio.sleep(sim.step_delay)
        sim.diagnostics_status = status
        await sim._try_call(call.DiagnosticsStatusNotification(status=status))


async def update_firmware(sim: SimulatedCharger, location: str, retrieve_date: str) -> None:
    """Simulated update: wait for retrieve_date, download, install, reboot, report Installed."""
    try:
        wait = (_parse_time(retrieve_date) - datetime.now(UTC)).total_seconds()
    except ValueError:
        wait = 0
    await asyncio.sleep(min(max(0.0, wait), timedelta(hours=1).total_seconds()))
    for status in (FirmwareStatus.downloading, FirmwareStatus.downloaded, FirmwareStatus.installing):
        sim.firmware_status = status
        await sim._try_call(call.FirmwareStatusNotification(status=status))
        await asyncio.sleep(sim.step_delay)
    major, _, rest = sim.firmware_version.partition(".")
    sim.firmware_version = f"{major}.{int(rest.split('.')[0] or 0) + 1 if rest else 1}.0"
    boots = sim.boot_count
    await reboot(sim, hard=False)
    await sim.wait_for(lambda s: s.boot_count > boots and s.connected, timeout=3600)
    sim.firmware_status = FirmwareStatus.installed
    await sim._try_call(call.FirmwareStatusNotification(status=FirmwareStatus.installed))
    sim.firmware_status = FirmwareStatus.idle


async def triggered(sim: SimulatedCharger, message: str, connector_id: int | None) -> None:
    """Send the message a TriggerMessage asked for."""
    targets = [connector_id] if connector_id else list(sim.connectors)
    if message == MessageTrigger.boot_notification:
        sim._boot_now.set()
        if sim.connected:
            res = await sim._try_call(
                call.BootNotification(
                    charge_point_model=sim.model,
                    charge_point_vendor=sim.vendor,
                    charge_point_serial_number=sim.serial_number,
                    firmware_version=sim.firmware_version,
                )
            )
            if res is not None:
                sim.registration_status = res.status
    elif message == MessageTrigger.heartbeat:
        await sim._try_call(call.Heartbeat())
    elif message == MessageTrigger.status_notification:
        for i in [connector_id] if connector_id is not None else [0, *sim.connectors]:
            await sim._send_status(i)
    elif message == MessageTrigger.meter_values:
        for i in targets:
            await sim.send_meter_values(i)
    elif message == MessageTrigger.firmware_status_notification:
        await sim._try_call(call.FirmwareStatusNotification(status=sim.firmware_status))
    elif message == MessageTrigger.diagnostics_status_notification:
        await sim._try_call(call.DiagnosticsStatusNotification(status=sim.diagnostics_status))

