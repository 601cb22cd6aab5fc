"""The station's events in OCPP 2.0.1 messages (charging station -> CSMS).

A transaction is one TransactionEvent stream: Started, Updated (meter values), Ended, each
with the station's own transaction id (a UUID) and a `seqNo` counting from 0, through the
station's transaction queue: queued while offline (then sent with `offline: true`), replayed
in order after the next boot, each stamped with the time it happened. Our "connector" k is
EVSE k with its connector 1, as on almost every 2.0.1 station.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

from ocpp.v201 import call
from websockets.asyncio.client import ClientConnection

from polaris.sim.adapter import BootAnswer, Defaults, OcppAdapter, TransactionEnd
from polaris.sim.clock import now_iso
from polaris.sim.connectors import Connector, Session
from polaris.sim.metering import Measurand, MeterSample, Reading
from polaris.sim.station import Station
from polaris.sim.v201.device_model import DeviceModel, V201Settings, default_variables
from polaris.sim.v201.handlers import StationClient, boot_notification

# 1.6-style statuses of the neutral core -> 2.0.1 ConnectorStatusEnumType
CONNECTOR_STATUS = {"Available": "Available", "Preparing": "Occupied", "Charging": "Occupied",
                    "SuspendedEV": "Occupied", "SuspendedEVSE": "Occupied", "Finishing": "Occupied",
                    "Reserved": "Reserved", "Unavailable": "Unavailable", "Faulted": "Faulted"}
# neutral stop reasons -> 2.0.1 ReasonEnumType (and the trigger that goes with the Ended)
STOP_REASON = {"Local": ("Local", "StopAuthorized"), "Remote": ("Remote", "RemoteStop"),
               "EVDisconnected": ("EVDisconnected", "EVCommunicationLost"),
               "DeAuthorized": ("DeAuthorized", "Deauthorized"), "UnlockCommand": ("Other", "UnlockCommand"),
               "SoftReset": ("ImmediateReset", "ResetCommand"), "HardReset": ("ImmediateReset", "ResetCommand"),
               "PowerLoss": ("PowerLoss", "AbnormalCondition"), "Reboot": ("Reboot", "ResetCommand")}


class _Tx:
    """One transaction's id and its next seqNo."""

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self._seq = itertools.count()

    def next_seq(self) -> int:
        return next(self._seq)


class V201Adapter(OcppAdapter):
    subprotocol = "ocpp2.0.1"

    def __init__(self, station: Station, defaults: Defaults):
        self.station = station
        self.configuration = DeviceModel(default_variables(defaults.connectors, defaults.heartbeat_interval,
                                                           defaults.meter_interval))
        for key, value in defaults.overrides.items():
            self.configuration.override(key, value)
        self.settings = V201Settings(self.configuration)
        self.transactions: dict[int, _Tx] = {}  # connector -> its running transaction

    def client(self, ws: ClientConnection) -> StationClient:
        return StationClient(self.station.charge_box_id, ws, self.station, self)

    def connector_of(self, transaction_id: str) -> int | None:
        return next((c for c, tx in self.transactions.items() if tx.id == transaction_id), None)

    # ------------------------------------------------------------------ straight out

    async def boot(self) -> BootAnswer:
        res = await self.station.link.call(boot_notification(self.station))
        return BootAnswer(res.status, res.interval)

    async def heartbeat(self) -> None:
        await self.station.link.try_call(call.Heartbeat())

    async def status(self, connector_id: int, status: str, error_code: str) -> None:
        if connector_id == 0:
            return  # 2.0.1 has no connector 0: the station's own state is in its device model
        await self.station.link.try_call(call.StatusNotification(
            timestamp=now_iso(), connector_status=CONNECTOR_STATUS.get(status, "Unavailable"),
            evse_id=connector_id, connector_id=1))

    async def authorize(self, id_tag: str) -> str:
        res = await self.station.link.call(call.Authorize(id_token=self.id_token(id_tag)))
        return res.id_token_info["status"]

    async def meter_values(self, connector_id: int, transaction_id: Any, sample: MeterSample) -> None:
        await self.station.link.try_call(call.MeterValues(evse_id=connector_id, meter_value=[self.meter_value(sample)]))

    # ------------------------------------------------------------------ TransactionEvent, queued

    def _event(self, event_type: str, tx: _Tx, trigger: str, *, at: str, offline: bool, **fields: Any) -> Callable:
        def build() -> Any:
            return call.TransactionEvent(
                event_type=event_type, timestamp=at, trigger_reason=trigger, seq_no=tx.next_seq(),
                transaction_info={"transaction_id": tx.id, **fields.pop("info", {})},
                offline=True if offline else None, **fields)

        return build

    def transaction_started(self, connector: Connector, session: Session, started: Callable[[Any, str], None]) -> None:
        tx = self.transactions[connector.connector_id] = _Tx()
        begin = [self.meter_value(session.begin_sample)] if session.begin_sample else None
        if begin is None:
            begin = [self.meter_value(MeterSample(session.start_time, (
                Reading(Measurand.ENERGY, session.meter_start, "Wh", "Transaction.Begin"),)))]
        build = self._event(
            "Started", tx, "RemoteStart" if session.remote else "Authorized", at=session.start_time,
            offline=not self.station.connected, id_token=self.id_token(session.id_tag),
            evse={"id": connector.connector_id, "connector_id": 1}, meter_value=begin,
            info={"charging_state": "Charging", **({"remote_start_id": 1} if session.remote else {})},
            **({"reservation_id": session.reservation_id} if session.reservation_id else {}))

        def answered(res: Any) -> None:
            info = res.id_token_info or {}
            started(tx.id, info.get("status", "Accepted"))

        self.station.queue.enqueue(build, answered)

    def transaction_updated(self, connector: Connector, session: Session, sample: MeterSample) -> None:
        tx = self.transactions.get(connector.connector_id)
        if tx is None:
            return
        self.station.queue.enqueue(self._event("Updated", tx, "MeterValuePeriodic", at=sample.timestamp,
                                               offline=not self.station.connected,
                                               meter_value=[self.meter_value(sample)]))

    def transaction_ended(self, connector: Connector, session: Session, end: TransactionEnd,
                          ended: Callable[[], None]) -> None:
        tx = self.transactions.pop(connector.connector_id, None)
        if tx is None:
            ended()
            return
        reason, trigger = STOP_REASON.get(end.reason, ("Other", "AbnormalCondition"))
        samples = [self.meter_value(s) for s in end.samples] or [self.meter_value(MeterSample(end.timestamp, (
            Reading(Measurand.ENERGY, end.meter_stop, "Wh", "Transaction.End"),)))]
        self.station.queue.enqueue(self._event(
            "Ended", tx, trigger, at=end.timestamp, offline=not self.station.connected,
            id_token=self.id_token(session.id_tag) if session.id_tag else None, meter_value=samples,
            info={"stopped_reason": reason, "charging_state": "Idle"}), lambda _res: ended())

    # ------------------------------------------------------------------ 2.0.1 shapes

    @staticmethod
    def id_token(id_tag: str) -> dict:
        return {"id_token": id_tag, "type": "ISO14443"}

    @staticmethod
    def meter_value(sample: MeterSample) -> dict:
        out = []
        for r in sample.readings:
            sv: dict[str, Any] = {"value": round(r.value, r.decimals) if r.decimals else round(r.value),
                                  "measurand": r.measurand, "context": r.context,
                                  "unit_of_measure": {"unit": "Percent" if r.unit == "Percent" else r.unit}}
            if r.location:
                sv["location"] = r.location
            if r.phase:
                sv["phase"] = r.phase
            out.append(sv)
        return {"timestamp": sample.timestamp, "sampled_value": out}
