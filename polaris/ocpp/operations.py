"""A central-system operation, as the version-neutral command code sees it.

Each OCPP version's package has a table of these (`v16/operations.py`): how a request is
checked before anything is sent, what must exist before the charger hears of it
(`prepare`: ReserveNow's reservation), and what the charger's answer changes (`after`,
written with the journal entry in one transaction).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

# (conn, charge_box_pk, payload) -> the payload to send
Prepare = Callable[[asyncpg.Connection, int, dict], Awaitable[dict]]
# (conn, charge_box_pk, payload sent, answer)
After = Callable[[asyncpg.Connection, int, dict, dict], Awaitable[None]]
Effect = Callable[[asyncpg.Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    validate: Callable[[dict], None]  # raises InvalidCommand naming the field
    prepare: Prepare | None = None  # before sending, in its own transaction
    after: After | None = None  # with the journal entry, in its transaction
    after_on: frozenset[str] | None = None  # answer statuses `after` applies to (None: any answer)

    def effect(self, charge_box_pk: int, payload: dict, answer: object) -> Effect | None:
        """What this answer changes, as a write for the journal's transaction (None: nothing)."""
        after = self.after
        if after is None:
            return None
        status = answer.get("status") if isinstance(answer, dict) else None
        if self.after_on is not None and status not in self.after_on:
            return None
        answered = answer if isinstance(answer, dict) else {}

        async def write(conn: asyncpg.Connection) -> None:
            await after(conn, charge_box_pk, payload, answered)

        return write
