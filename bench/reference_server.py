"""A bare OCPP 1.6J (and 2.0.1) central system, after the `ocpp` library's own example (examples/v16/central_system.py).

The yardstick for our server in the benchmark, and a second, independent central system the
simulator's tests run against. It keeps nothing: it accepts every charger and every message,
hands out transaction ids from a counter, and answers with the library's defaults (schema
validation on, permessage-deflate on), as the example does. Ported to the websockets 17
asyncio API and ocpp 2.x class names; all CP -> CS actions are handled (the example has five).

    python bench/reference_server.py --port 9000       # serve until SIGTERM / Ctrl-C

As a library (tests): `ReferenceServer` records what it received and can send CS -> CP calls.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import sys
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as cp
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, RegistrationStatus
from ocpp.v201 import ChargePoint as cp201
from ocpp.v201 import call_result as call_result201
from websockets.asyncio.server import ServerConnection, serve

log = logging.getLogger("reference_server")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 - kept close to the example


class ChargePoint(cp):
    def __init__(self, id: str, connection: Any, server: ReferenceServer):
        super().__init__(id, connection)
        self.server = server

    def _record(self, action: str, payload: dict) -> None:
        if self.server.record:
            self.server.received[self.id].append((action, payload))

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kwargs):
        self._record("BootNotification", {"vendor": charge_point_vendor, "model": charge_point_model, **kwargs})
        return call_result.BootNotification(
            current_time=_now(), interval=self.server.heartbeat_interval, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self):
        self._record("Heartbeat", {})
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(self, **kwargs):
        self._record("StatusNotification", kwargs)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str):
        self._record("Authorize", {"id_tag": id_tag})
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(self, **kwargs):
        self._record("StartTransaction", kwargs)
        return call_result.StartTransaction(
            transaction_id=next(self.server.transaction_ids),
            id_tag_info={"status": AuthorizationStatus.accepted},
        )

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, **kwargs):
        self._record("MeterValues", {"connector_id": connector_id, **kwargs})
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **kwargs):
        self._record("StopTransaction", kwargs)
        return call_result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.data_transfer)
    def on_data_transfer(self, **kwargs):
        self._record("DataTransfer", kwargs)
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, **kwargs):
        self._record("DiagnosticsStatusNotification", kwargs)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, **kwargs):
        self._record("FirmwareStatusNotification", kwargs)
        return call_result.FirmwareStatusNotification()


class ChargePoint201(cp201):
    """The same bare central system for OCPP 2.0.1 stations (the mixed-fleet benchmark)."""

    def __init__(self, id: str, connection: Any, server: ReferenceServer):
        super().__init__(id, connection)
        self.server = server

    @on("BootNotification")
    def on_boot_notification(self, **kwargs):
        return call_result201.BootNotification(current_time=_now(), interval=self.server.heartbeat_interval,
                                               status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs):
        return call_result201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status_notification(self, **kwargs):
        return call_result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **kwargs):
        return call_result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_transaction_event(self, **kwargs):
        return call_result201.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, **kwargs):
        return call_result201.MeterValues()


class ReferenceServer:
    """The example's server as an object: start on a port, track connected charge points."""

    def __init__(self, *, heartbeat_interval: int = 300, record: bool = False):
        self.heartbeat_interval = heartbeat_interval
        self.record = record
        self.received: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        self.charge_points: dict[str, ChargePoint] = {}
        self.transaction_ids = itertools.count(1)
        self.charge_point_class = ChargePoint
        self.port: int | None = None
        self._server: Any = None

    async def on_connect(self, websocket: ServerConnection) -> None:
        """For every new charge point that connects, create a ChargePoint and listen to it."""
        if websocket.request is None or "Sec-WebSocket-Protocol" not in websocket.request.headers:
            log.error("Client hasn't requested any Subprotocol. Closing Connection")
            return await websocket.close()
        if not websocket.subprotocol:
            log.warning("Protocols Mismatched; closing connection")
            return await websocket.close()
        charge_point_id = websocket.request.path.strip("/").rsplit("/", 1)[-1]
        cls = ChargePoint201 if websocket.subprotocol == "ocpp2.0.1" else self.charge_point_class
        charge_point = cls(charge_point_id, websocket, self)
        self.charge_points[charge_point_id] = charge_point
        try:
            await charge_point.start()
        except Exception:  # the connection closed: nothing to keep
            pass
        finally:
            if self.charge_points.get(charge_point_id) is charge_point:
                del self.charge_points[charge_point_id]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await serve(self.on_connect, host, port, subprotocols=["ocpp1.6", "ocpp2.0.1"])
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def call(self, charge_point_id: str, payload: Any) -> Any:
        """Send a CS -> CP request to a connected charger; its answer (None on CALLERROR)."""
        return await self.charge_points[charge_point_id].call(payload)

    def actions(self, charge_point_id: str, action: str) -> list[dict]:
        """Payloads of one action received from a charger (needs `record=True`)."""
        return [p for a, p in self.received[charge_point_id] if a == action]


async def main(host: str, port: int) -> None:
    server = ReferenceServer()
    bound = await server.start(host, port)
    print(f"reference server listening on ws://{host}:{bound}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--sync-validation",
        action="store_true",
        help="validate schemas on the event loop (ocpp.messages.ASYNC_VALIDATION = False) instead of "
        "the library's default thread pool",
    )
    args = parser.parse_args()
    if args.sync_validation:
        import ocpp.messages

        ocpp.messages.ASYNC_VALIDATION = False
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(args.host, args.port))
