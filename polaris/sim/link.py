"""The charger's line to the central system: one WebSocket at a time, and the CALLs sent on it.

`Link.run` connects (HTTP Basic auth with the charge box id; the subprotocol the protocol
adapter speaks), hands each open connection to the station, and reconnects after it closes,
with exponential backoff and jitter so a fleet does not reconnect in a storm. `call` sends one
CALL and waits for its answer or for the connection to go, whichever comes first: the `ocpp`
library's own timeout alone would leave a charger waiting 30 s on a dead link.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from structlog.stdlib import BoundLogger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from polaris.sim.errors import ChargerRefused, Offline


class Link:
    """The connection state and its counters (`connect_count`, `sent`, `last_error`)."""

    def __init__(
        self,
        url: str,
        charge_box_id: str,
        password: str | None,
        *,
        quirks: frozenset[str],
        reconnect_max_delay: float,
        response_timeout: float,
        user_agent: str,
        rng: random.Random,
        log: BoundLogger,
    ):
        self.url = url.rstrip("/")
        self.charge_box_id = charge_box_id
        # A new AuthorizationKey is used from the next connection on.
        self.password = password
        self.quirks = quirks
        self.reconnect_max_delay = reconnect_max_delay
        self.response_timeout = response_timeout
        self.user_agent = user_agent
        self.rng = rng
        self.log = log
        self.online = asyncio.Event()  # connected and booted (Accepted): set by the station
        self.connect_count = 0
        self.last_error: str | None = None
        self.sent: Counter[str] = Counter()  # answered CALLs by action
        self.stopping = False
        self.quick_reconnect = False
        self._ws: ClientConnection | None = None
        self._cp: Any = None
        self._lost: asyncio.Future | None = None

    @property
    def ws_url(self) -> str:
        """Where this charger connects: the URL with its (percent-encoded) charge box id."""
        return f"{self.url}/{quote(self.charge_box_id, safe='-._~')}"

    def _headers(self) -> list[tuple[str, str]]:
        if self.password is None:
            return []
        token = base64.b64encode(f"{self.charge_box_id}:{self.password}".encode()).decode()
        name = "authorization" if "lowercase-auth" in self.quirks else "Authorization"
        return [(name, f"Basic {token}")]

    async def run(
        self,
        subprotocol: str,
        serve: Callable[[ClientConnection], Awaitable[bool]],
        refused: Callable[[ChargerRefused], None],
    ) -> None:
        """Connect and `serve` each connection until `stopping`; `serve` says whether the charger
        booted on it (which resets the backoff). An HTTP refusal goes to `refused` too."""
        failures = 0
        while not self.stopping:
            try:
                ws = await connect(
                    self.ws_url,
                    subprotocols=None if "no-subprotocol" in self.quirks else [Subprotocol(subprotocol)],
                    additional_headers=self._headers(),
                    compression=None,
                    proxy=None,
                    open_timeout=10,
                    ping_interval=None,
                    user_agent_header=self.user_agent,
                )
            except InvalidStatus as exc:
                code = exc.response.status_code
                hint = " (wrong or missing password, or unknown charger)" if code == 401 else ""
                self.last_error = f"server refused the connection: HTTP {code}{hint}"
                self.log.warning("connection refused", status=code)
                refused(ChargerRefused(f"{self.charge_box_id}: {self.last_error}", code))
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.last_error = f"cannot connect to {self.ws_url}: {exc}"
                self.log.info("connect failed", error=str(exc))
            else:
                self.connect_count += 1
                if await serve(ws):
                    failures = 0
            if self.stopping:
                break
            if self.quick_reconnect:
                self.quick_reconnect = False
                delay = 0.2
            else:
                delay = min(self.reconnect_max_delay, 2 ** min(failures, 10)) * self.rng.uniform(0.5, 1.0)
                failures += 1
            await asyncio.sleep(delay)

    def attach(self, ws: ClientConnection, cp: Any) -> asyncio.Task:
        """Make `cp` (the adapter's `ocpp` ChargePoint on `ws`) the one CALLs go through; the
        returned task reads its messages until the connection closes."""
        self._ws, self._cp = ws, cp
        lost = self._lost = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(cp.start())
        reader.add_done_callback(lambda _t: lost.done() or lost.set_result(None))
        return reader

    def detach(self) -> None:
        """The connection is gone: CALLs raise Offline until the next `attach`."""
        self._ws = self._cp = None

    @property
    def attached(self) -> bool:
        """True while a connection is open (booted or not)."""
        return self._ws is not None

    async def drop(self, code: int = 1000) -> None:
        """Reconnect soon, closing the connection if there is one (a reset, a network cut)."""
        self.quick_reconnect = True
        if self._ws is not None:
            await self._ws.close(code=code)

    async def close(self) -> None:
        """Close the connection for good (the caller has set `stopping`)."""
        if self._ws is not None:
            await self._ws.close()

    async def until(self, event: asyncio.Event) -> None:
        """Wait for `event`; Offline if the connection goes first."""
        lost = self._lost
        waiter = asyncio.create_task(event.wait())
        try:
            await asyncio.wait({waiter, lost} if lost else {waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if lost is not None and lost.done():
            raise Offline("connection lost")

    async def call(self, payload: Any, *, skip_schema_validation: bool = False) -> Any:
        """Send one CALL and return its result; Offline if the connection is (or goes) away.

        A CALLERROR raises the matching `OCPPError`.
        """
        cp, lost = self._cp, self._lost
        if cp is None or lost is None or lost.done():
            raise Offline("not connected")
        action = type(payload).__name__
        task = asyncio.ensure_future(
            cp.call(payload, suppress=False, skip_schema_validation=skip_schema_validation)
        )
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            raise Offline("connection lost while waiting for the answer")
        try:
            result = task.result()
        except ConnectionClosed:
            raise Offline("connection closed") from None
        except TimeoutError:
            raise Offline(f"no answer to {action} within {self.response_timeout:g} s") from None
        self.sent[action] += 1
        return result

    async def try_call(self, payload: Any) -> Any | None:
        """A best-effort CALL (status, heartbeat): None when offline or answered with an error."""
        try:
            return await self.call(payload)
        except (Offline, OCPPError) as exc:
            self.log.debug("call not delivered", action=type(payload).__name__, error=str(exc))
            return None
