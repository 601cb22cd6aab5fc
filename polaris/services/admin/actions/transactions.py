"""Sessions: force-close one whose StopTransaction never came."""

from __future__ import annotations

import asyncpg

from polaris.db.repos import transaction_reports, transactions
from polaris.services.admin.actions.base import Actor, record
from polaris.services.errors import ApiError


async def force_close(conn: asyncpg.Connection, actor: Actor, transaction_id: int, *, reason: str) -> None:
    """End a session at its last energy register reading (400 when it already stopped)."""
    async with conn.transaction():
        if await transaction_reports.get_transaction_detail(conn, transaction_id) is None:
            raise ApiError(404, "not_found", f"no transaction {transaction_id}")
        closed = await transactions.force_close_transaction(conn, transaction_id, reason=reason)
        await record(
            conn, actor, "transaction.force_close", "transaction", transaction_id,
            before={"stop_timestamp": None, "meter_stop": None},
            after={k: closed[k] for k in ("stop_timestamp", "meter_stop", "stop_reason", "stopped_by")},
        )
