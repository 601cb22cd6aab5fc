"""What a simulated charger asks of the OCPP version it speaks.

The version-neutral core (`station.py`, `sessions.py`) says what happened in its own words: a
connector's status, a card to authorize, a transaction started, readings during it, its end.
An `OcppAdapter` says that in its version's messages, keeps its version's settings store
(1.6 configuration keys; 2.0.1 device model) behind the neutral `Settings`, and builds the
`ocpp` library ChargePoint whose handlers answer the central system through the station's
public API. `polaris.sim.v16` is the OCPP 1.6J adapter; a 2.0.1 one (TransactionEvent with
seqNo, the device model) sits beside it, and `charger.py` picks one per charger.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection

from polaris.sim.connectors import Connector, Session
from polaris.sim.metering import MeterSample
from polaris.sim.settings import Settings


@dataclass(frozen=True)
class Defaults:
    """What the version's settings start from (the station's constructor arguments)."""

    connectors: int
    heartbeat_interval: int
    meter_interval: int
    overrides: Mapping[str, str]  # in the version's own names (1.6: configuration keys)


@dataclass(frozen=True)
class BootAnswer:
    status: str  # Accepted, Pending or Rejected (the same words in 1.6 and 2.0.1)
    interval: int

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"

    @property
    def rejected(self) -> bool:
        return self.status == "Rejected"


@dataclass(frozen=True)
class TransactionEnd:
    meter_stop: int
    timestamp: str
    reason: str
    samples: list[MeterSample]  # begin and end readings, if the settings ask for them


class OcppAdapter(ABC):
    """One OCPP version's side of a station. The station builds it as `Adapter(station, defaults)`
    once its link and transaction queue exist, which the adapter sends through."""

    subprotocol: ClassVar[str]
    settings: Settings
    configuration: Any  # the version's own store, as tests and operators see it

    @abstractmethod
    def client(self, ws: ClientConnection) -> Any:
        """The `ocpp` ChargePoint for one connection: it answers the central system's requests."""

    @abstractmethod
    async def boot(self) -> BootAnswer:
        """Send the boot notification; Offline or OCPPError if it was not answered."""

    @abstractmethod
    async def heartbeat(self) -> None:
        """Best effort."""

    @abstractmethod
    async def status(self, connector_id: int, status: str, error_code: str) -> None:
        """Report a connector's status (0: the charger as a whole); best effort."""

    @abstractmethod
    async def authorize(self, id_tag: str) -> str:
        """Ask about a card; its status. Offline or OCPPError if not answered."""

    @abstractmethod
    def transaction_started(
        self, connector: Connector, session: Session, started: Callable[[int, str], None]
    ) -> None:
        """Queue the start; `started(transaction_id, id_tag_status)` once it is answered."""

    @abstractmethod
    def transaction_updated(self, connector: Connector, session: Session, sample: MeterSample) -> None:
        """Queue readings taken during the transaction."""

    @abstractmethod
    def transaction_ended(
        self, connector: Connector, session: Session, end: TransactionEnd, ended: Callable[[], None]
    ) -> None:
        """Queue the end; `ended()` once it is answered."""

    @abstractmethod
    async def meter_values(self, connector_id: int, transaction_id: int | None, sample: MeterSample) -> None:
        """Send readings now, outside the queue (a trigger); best effort."""
