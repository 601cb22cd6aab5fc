"""The station's events in OCPP 1.6J messages (charge point -> central system).

Transactions are StartTransaction, MeterValues and StopTransaction through the station's
transaction queue (the 1.6 transaction id comes from the StartTransaction answer, so later
messages are built only once it is known); statuses, heartbeats and boots go straight out.
The meter-value quirks live here, where readings become 1.6 `sampledValue`s: `kwh`,
`decimal-values`, `numeric-values` (numbers where the schema says strings: such messages are
sent without schema validation) and `no-unit`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocpp.v16 import call
from websockets.asyncio.client import ClientConnection

from polaris.sim.adapter import BootAnswer, Defaults, OcppAdapter, TransactionEnd
from polaris.sim.clock import now_iso
from polaris.sim.connectors import Connector, Session
from polaris.sim.errors import SimError
from polaris.sim.metering import Measurand, MeterSample, Reading
from polaris.sim.station import Station
from polaris.sim.v16.configuration import ConfigurationStore, V16Settings, default_keys
from polaris.sim.v16.handlers import ChargePointClient, boot_notification


class V16Adapter(OcppAdapter):
    subprotocol = "ocpp1.6"

    def __init__(self, station: Station, defaults: Defaults):
        self.station = station
        self.configuration = ConfigurationStore(
            default_keys(defaults.connectors, defaults.heartbeat_interval, defaults.meter_interval)
        )
        for key, value in defaults.overrides.items():
            if key not in self.configuration.keys:
                raise SimError(f"unknown configuration key {key!r}")
            self.configuration.set(key, value)
        self.settings = V16Settings(self.configuration)
        self._quirks = station.quirks
        # Numbers or missing units break the 1.6 schema: such chargers' transaction messages
        # are sent unvalidated, as the real ones are.
        self._lenient = bool(self._quirks & {"numeric-values", "no-unit"})

    def client(self, ws: ClientConnection) -> ChargePointClient:
        return ChargePointClient(self.station.charge_box_id, ws, self.station)

    # ------------------------------------------------------------------ straight out

    async def boot(self) -> BootAnswer:
        res = await self.station.link.call(boot_notification(self.station, meter_type="SimMeter"))
        return BootAnswer(res.status, res.interval)

    async def heartbeat(self) -> None:
        await self.station.link.try_call(call.Heartbeat())

    async def status(self, connector_id: int, status: str, error_code: str) -> None:
        await self.station.link.try_call(
            call.StatusNotification(connector_id=connector_id, error_code=error_code, status=status, timestamp=now_iso())
        )

    async def authorize(self, id_tag: str) -> str:
        res = await self.station.link.call(call.Authorize(id_tag=id_tag))
        return res.id_tag_info["status"]

    async def meter_values(self, connector_id: int, transaction_id: int | None, sample: MeterSample) -> None:
        await self.station.link.try_call(
            call.MeterValues(connector_id=connector_id, transaction_id=transaction_id, meter_value=[self.meter_value(sample)])
        )

    # ------------------------------------------------------------------ through the transaction queue

    def transaction_started(
        self, connector: Connector, session: Session, started: Callable[[int, str], None]
    ) -> None:
        self.station.queue.enqueue(
            lambda: call.StartTransaction(
                connector_id=connector.connector_id,
                id_tag=session.id_tag,
                meter_start=session.meter_start,
                timestamp=session.start_time,
                reservation_id=session.reservation_id,
            ),
            lambda res: started(res.transaction_id, res.id_tag_info["status"]),
            lenient=self._lenient,
        )

    def transaction_updated(self, connector: Connector, session: Session, sample: MeterSample) -> None:
        meter_value = self.meter_value(sample)

        def build() -> Any:
            if session.transaction_id is None:
                return None
            return call.MeterValues(
                connector_id=connector.connector_id, transaction_id=session.transaction_id, meter_value=[meter_value]
            )

        self.station.queue.enqueue(build, lenient=self._lenient)

    def transaction_ended(
        self, connector: Connector, session: Session, end: TransactionEnd, ended: Callable[[], None]
    ) -> None:
        transaction_data = [self.meter_value(sample) for sample in end.samples] or None

        def build() -> Any:
            if session.transaction_id is None:  # its StartTransaction was never accepted
                return None
            return call.StopTransaction(
                meter_stop=end.meter_stop,
                timestamp=end.timestamp,
                transaction_id=session.transaction_id,
                reason=end.reason,
                id_tag=session.id_tag,
                transaction_data=transaction_data,
            )

        self.station.queue.enqueue(build, lambda _res: ended(), lenient=self._lenient)

    # ------------------------------------------------------------------ readings as 1.6 sampled values

    def meter_value(self, sample: MeterSample) -> dict:
        """One 1.6 MeterValue (snake_case, as the `ocpp` library takes it)."""
        return {"timestamp": sample.timestamp, "sampled_value": [self._sampled_value(r) for r in sample.readings]}

    def _sampled_value(self, r: Reading) -> dict:
        if r.measurand == Measurand.ENERGY:
            value, unit = self._energy_value(r.value)
        else:
            value = self._value(f"{r.value:.{r.decimals}f}", round(r.value, r.decimals) if r.decimals else round(r.value))
            unit = r.unit
        sv: dict[str, Any] = {"value": value, "context": r.context, "measurand": r.measurand}
        if "no-unit" not in self._quirks:
            sv["unit"] = unit
        if r.location:
            sv["location"] = r.location
        if r.phase:
            sv["phase"] = r.phase
        return sv

    def _energy_value(self, wh: float) -> tuple[Any, str]:
        if "kwh" in self._quirks:
            return self._value(f"{wh / 1000:.3f}", wh / 1000), "kWh"
        if "decimal-values" in self._quirks:
            return self._value(f"{wh:.3f}", round(wh, 3)), "Wh"
        return self._value(str(int(wh)), int(wh)), "Wh"

    def _value(self, text: str, number: float) -> Any:
        return number if "numeric-values" in self._quirks else text
