"""The message journal: every command to a charger, and what its answer changed, in one write.

A command is journaled once its outcome is known (answered, CALLERROR, timeout, connection
lost), together with what the answer changes (a reservation's status, a charging profile
kept or cleared: the operation's `after` effect), in one transaction. The row keeps the
time the command was sent (`created_at`) and the time the outcome was known
(`answered_at`). Charger-initiated messages we journal (DataTransfer) go the same way.

With the database down, the charger still gets the command; the entry is logged as not
journaled. This class is where entries would wait in memory for the database instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

import asyncpg

from polaris.db.repos import ocpp_journal
from polaris.logs import get_logger
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.parsing import now_utc

log = get_logger(__name__)

Effect = Callable[[asyncpg.Connection], Awaitable[None]]


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

    async def record(self, entry: JournalEntry, effect: Effect | None = None) -> None:
        """Write the entry and, in the same transaction, what its answer changes."""
        if entry.answered_at is None:
            entry.answered_at = now_utc()
        try:
            await self._write(entry, effect)
            return
        except DB_UNAVAILABLE:
            self._not_journaled(entry)
            return
        except asyncpg.PostgresError:
            if effect is None:
                raise
            # The journal keeps the command, whatever went wrong with what it changes.
            log.exception("command outcome not stored", action=entry.action,
                          charge_box_id=entry.charge_box_id)
        try:
            await self._write(entry, None)
        except DB_UNAVAILABLE:
            self._not_journaled(entry)

    @staticmethod
    def _not_journaled(entry: JournalEntry) -> None:
        log.warning("message not journaled: database unavailable", action=entry.action, direction=entry.direction,
                    charge_box_id=entry.charge_box_id)

    async def _write(self, entry: JournalEntry, effect: Effect | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await ocpp_journal.journal_message(conn, **asdict(entry))
            if effect is not None:
                await effect(conn)
