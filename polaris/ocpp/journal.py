"""The message journal: every command to a charger, and what its answer changed, in one write.

A command is journaled once its outcome is known (answered, CALLERROR, timeout, connection
lost), together with what the answer changes (a reservation's status, a charging profile
kept or cleared: the operation's `after` effect), in one transaction. The row keeps the
time the command was sent (`created_at`) and the time the outcome was known
(`answered_at`). Charger-initiated messages we journal (DataTransfer) go the same way.

With the database down, the charger still gets the command; the entry and its effect wait
here, in order, and the `journal-flush` job (every `FLUSH_INTERVAL_S`) writes them once the
database is back, so every command is journaled and an accepted SetChargingProfile still
reaches `ocpp.charging_profiles`. At most `MAX_WAITING` wait (the oldest go first, logged);
the server's `close()` flushes once more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

import asyncpg

from polaris.db.repos import ocpp_journal
from polaris.logs import get_logger
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.jobs import Job
from polaris.ocpp.parsing import now_utc

log = get_logger(__name__)

Effect = Callable[[asyncpg.Connection], Awaitable[None]]
FLUSH_INTERVAL_S = 5.0
MAX_WAITING = 10_000


@dataclass(slots=True)
class JournalEntry:
    charge_box_id: str
    action: str
    unique_id: str
    request: dict
    status: str  # answered | call_error | timeout | failed
    direction: str = "cs_to_cp"  # cs_to_cp: a command; cp_to_cs: a message from the charger
    requested_by: str | None = None
    response: object | None = None
    error_code: str | None = None
    error_description: str | None = None
    sent_at: datetime = field(default_factory=now_utc)
    answered_at: datetime | None = None


class Journal:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.waiting: deque[tuple[JournalEntry, Effect | None]] = deque()

    def jobs(self) -> list[Job]:
        """The writer of entries that waited for the database, for the server's job runner."""
        return [Job("journal-flush", self.flush, every=FLUSH_INTERVAL_S)]

    async def record(self, entry: JournalEntry, effect: Effect | None = None) -> None:
        """Write the entry and, in the same transaction, what its answer changes (later, if the
        database is down now)."""
        if entry.answered_at is None:
            entry.answered_at = now_utc()
        if self.waiting:
            self._wait(entry, effect)  # keep the order: earlier entries go first
            return
        try:
            await self._write_one(entry, effect)
        except DB_UNAVAILABLE:
            self._wait(entry, effect)

    async def flush(self) -> None:
        """Write what waited, oldest first; stop (keeping the rest) when the database goes again."""
        written = 0
        while self.waiting:
            entry, effect = self.waiting[0]
            try:
                await self._write_one(entry, effect)
            except DB_UNAVAILABLE:
                break
            self.waiting.popleft()
            written += 1
        if written:
            log.info("journal entries written after a database outage", count=written, waiting=len(self.waiting))

    def _wait(self, entry: JournalEntry, effect: Effect | None) -> None:
        if len(self.waiting) >= MAX_WAITING:
            lost, _ = self.waiting.popleft()
            log.error("journal entry dropped: too many waiting for the database", action=lost.action,
                      charge_box_id=lost.charge_box_id, waiting=len(self.waiting))
        self.waiting.append((entry, effect))
        log.warning("journal entry waits for the database", action=entry.action, direction=entry.direction,
                    charge_box_id=entry.charge_box_id, waiting=len(self.waiting))

    async def _write_one(self, entry: JournalEntry, effect: Effect | None) -> None:
        try:
            await self._write(entry, effect)
        except asyncpg.PostgresError as exc:
            if effect is None or isinstance(exc, DB_UNAVAILABLE):
                raise
            # The journal keeps the command, whatever went wrong with what it changes.
            log.exception("command outcome not stored", action=entry.action,
                          charge_box_id=entry.charge_box_id)
            await self._write(entry, None)

    async def _write(self, entry: JournalEntry, effect: Effect | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await ocpp_journal.journal_message(conn, **asdict(entry))
            if effect is not None:
                await effect(conn)
