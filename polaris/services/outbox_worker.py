"""The delivery loop shared by every outbox (email, push): claim, deliver, sleep until due.

Rows are claimed with a lease (FOR UPDATE SKIP LOCKED in the repository), so several web
instances never deliver the same row; a NOTIFY on the outbox's channel, and every LISTEN
reconnect, wakes the loop early.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import asyncpg

from polaris.db.listen import PgListener
from polaris.logs import get_logger

log = get_logger(__name__)

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class OutboxWorker:
    """Subclasses name their channel and implement claim_due, next_due_at and deliver."""

    name = "outbox"
    channel = ""
    batch = 10
    lease = timedelta(seconds=60)
    poll_seconds = 5.0

    def __init__(self, pool: asyncpg.Pool, dsn: str | None) -> None:
        self.pool = pool
        self._dsn = dsn
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: PgListener | None = None

    # --- what each outbox provides --------------------------------------------------------

    async def claim_due(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def next_due_at(self, conn: asyncpg.Connection) -> datetime | None:
        raise NotImplementedError

    async def deliver(self, row: asyncpg.Record) -> None:
        raise NotImplementedError

    # --- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._dsn:
            self._listener = PgListener(
                self._dsn,
                [self.channel],
                lambda _c, _p: self._wake.set(),
                name=self.name,
                on_connect=self._on_connect,
            )
            self._listener.start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _on_connect(self) -> None:
        self._wake.set()  # anything queued while we were not listening

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except DB_ERRORS as exc:
                log.warning("outbox sender cannot reach the database", outbox=self.name, error=str(exc))
                busy = False
                await asyncio.sleep(self.poll_seconds)
            if busy:
                continue
            self._wake.clear()
            # Not inline: an Event.wait() coroutine created before a cancelled await would leak.
            idle = await self._idle_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)

    async def _idle_seconds(self) -> float:
        try:
            async with self.pool.acquire() as conn:
                due = await self.next_due_at(conn)
                now = await conn.fetchval("SELECT now()")
        except DB_ERRORS:
            return self.poll_seconds
        if due is None:
            return self.poll_seconds
        return min(max((due - now).total_seconds(), 0.05), self.poll_seconds)

    async def run_once(self) -> bool:
        """Claim and deliver one batch; True when there was something to send."""
        async with self.pool.acquire() as conn:
            rows = await self.claim_due(conn)
        if not rows:
            return False
        await asyncio.gather(*(self.deliver(row) for row in rows))
        return True
