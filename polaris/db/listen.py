"""A dedicated Postgres connection that LISTENs on channels and survives a Postgres restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from polaris.db.pool import connect
from polaris.logs import get_logger

log = get_logger(__name__)


class PgListener:
    """LISTEN on `channels` and call `on_notify(channel, payload)` for each notification.

    With `lock_key`, the connection first takes a session advisory lock and listens only
    while it holds it: of several web instances exactly one listens, and another takes
    over when it dies (the lock goes with its connection). `on_connect` runs after each
    (re)connect, to catch up on what was sent while nobody listened. `application_name`
    names the connection in `pg_stat_activity`, so others can tell whether it is alive.
    """

    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        *,
        name: str,
        lock_key: int | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        check_interval: float = 10.0,
        lock_retry: float = 5.0,
        application_name: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._channels = list(channels)
        self._on_notify = on_notify
        self._name = name
        self._lock_key = lock_key
        self._on_connect = on_connect
        self._check_interval = check_interval
        self._lock_retry = lock_retry
        self._server_settings = {"application_name": application_name} if application_name else None
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pglisten-{self._name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _callback(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self._on_notify(channel, payload)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._session()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: reconnect later
                log.warning("listener lost the database", listener=self._name, error=str(exc))
            finally:
                self.listening.clear()
                conn, self._conn = self._conn, None
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _session(self) -> None:
        conn = self._conn = await connect(self._dsn, timeout=10, server_settings=self._server_settings)
        if self._lock_key is not None:
            while True:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    break
                await asyncio.sleep(self._lock_retry)
            log.info("listener took the lead", listener=self._name)
        for channel in self._channels:
            await conn.add_listener(channel, self._callback)
        self.listening.set()
        if self._on_connect is not None:
            await self._on_connect()
        # A closed connection is noticed at once; a half-open one by the periodic check.
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._check_interval)
            if lost.is_set() or conn.is_closed():
                raise ConnectionError("the listening connection was closed")
            await conn.fetchval("SELECT 1", timeout=5)
