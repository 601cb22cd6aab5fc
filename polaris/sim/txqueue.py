"""Transaction messages that must reach the central system, in order, across disconnects.

Real chargers keep transaction messages (1.6: StartTransaction, MeterValues, StopTransaction;
2.0.1: TransactionEvent) in a queue and resend them after the next boot; the central system's
answer to one may be needed to build the next (the transaction id), so each entry is built only
when it is its turn. A CALLERROR answer is retried a few times (the version's
"message attempts" setting), then the message is dropped, as the specification says.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import OCPPError
from structlog.stdlib import BoundLogger

from polaris.sim.errors import Offline
from polaris.sim.link import Link
from polaris.sim.settings import Settings


@dataclass
class _Queued:
    """A transaction message waiting for the central system's answer."""

    build: Callable[[], Any]
    on_result: Callable[[Any], None] | None
    lenient: bool
    attempts: int = 0


class TransactionQueue:
    """First in, first out; sent only while the link is online (booted)."""

    def __init__(self, link: Link, *, notify: Callable[[], Awaitable[None]], log: BoundLogger):
        self._link = link
        self._notify = notify
        self._log = log
        self._items: deque[_Queued] = deque()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def enqueue(
        self,
        build: Callable[[], Any],
        on_result: Callable[[Any], None] | None = None,
        *,
        lenient: bool = False,
    ) -> None:
        """Queue a message. `build()` makes the payload when it is sent (None: nothing to send any
        more, e.g. a stop whose start was never accepted); `on_result` gets the answer;
        `lenient` sends it without schema validation (quirky meter values)."""
        self._items.append(_Queued(build, on_result, lenient))
        self._changed.set()

    def wake(self) -> None:
        """Wake whoever waits for the queue (a session ended: `drain` may be done)."""
        self._changed.set()

    def forget(self) -> None:
        """Lose every unsent message (a charger keeping its queue in RAM, after a power cut)."""
        self._items.clear()
        self._changed.set()

    async def wait_empty(self) -> None:
        """Until every queued message was acknowledged (or dropped)."""
        await self.drain(lambda: False)

    async def drain(self, busy: Callable[[], bool]) -> None:
        """Until the queue is empty and `busy()` (sessions still running) is false."""
        while self._items or busy():
            self._changed.clear()
            await self._changed.wait()

    async def run(self, settings: Settings) -> None:
        """Deliver queued messages in order, forever; they stay queued across disconnects."""
        while True:
            await self._link.online.wait()
            if not self._items:
                self._changed.clear()
                await self._changed.wait()
                continue
            item = self._items[0]
            payload = item.build()
            if payload is None:
                self._items.popleft()
                self._changed.set()
                continue
            try:
                result = await self._link.call(payload, skip_schema_validation=item.lenient)
            except Offline:
                await asyncio.sleep(0.05)
                continue
            except OCPPError as exc:
                item.attempts += 1
                if item.attempts >= settings.message_attempts:
                    self._log.warning(
                        "dropping transaction message", action=type(payload).__name__, error=str(exc)
                    )
                    self._items.popleft()
                    self._changed.set()
                else:
                    await asyncio.sleep(settings.message_retry_interval * item.attempts)
                continue
            self._items.popleft()
            if item.on_result is not None:
                item.on_result(result)
            self._changed.set()
            await self._notify()
