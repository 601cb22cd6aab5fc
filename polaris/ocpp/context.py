"""What a charger's connection may use: the narrow context handed to every `Session`.

The server builds one `OcppContext` at start and gives it to each connection, to the
command code and to maintenance jobs, instead of itself. Handlers of every OCPP version
see the same thing: the pool, settings, hooks to the web process, metrics, presence
buffers, the message journal, and `spawn` for follow-up work. Adding something here is a
decision about what handlers may reach; the registry of connections, admission and the
WebSocket server stay out of reach on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from polaris.config import Settings
from polaris.ocpp.hooks import Hooks
from polaris.ocpp.journal import Journal
from polaris.ocpp.metrics import OcppMetrics
from polaris.ocpp.presence import Presence

# vendorId -> async (session, message_id, data) -> (status, data)
DataTransferHandler = Callable[[Any, Any, Any], Awaitable[tuple[str, Any]]]


class TaskSet:
    """Follow-up work in tasks we keep: never garbage-collected, cancelled at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(slots=True, eq=False)
class OcppContext:
    """Shared by every connection of one server process."""

    settings: Settings
    pool: asyncpg.Pool
    instance: str  # this process's name in charge_boxes.connected_instance
    hooks: Hooks
    metrics: OcppMetrics
    presence: Presence
    journal: Journal
    response_timeout: float  # how long a command waits for a charger's answer
    tasks: TaskSet = field(default_factory=TaskSet)
    data_transfer_handlers: dict[str, DataTransferHandler] = field(default_factory=dict)
    # Set when a session starts or stops or meter values show current or power: the
    # load-management controller (load_control.py) recomputes soon.
    load_wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The last current (A) or power (W) each (charger pk, connector) reported, to wake only on a change.
    load_seen: dict[tuple[int, int], float] = field(default_factory=dict)

    def spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> asyncio.Task:
        """Run follow-up work in a task we keep (cancelled at shutdown, never garbage-collected)."""
        return self.tasks.spawn(coro)
