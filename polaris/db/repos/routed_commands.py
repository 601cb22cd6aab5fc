"""Commands routed between OCPP server instances (see migration 0061).

jsonb columns take and give Python values (the pool's codec).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from polaris.db import notify


async def create(
    conn: asyncpg.Connection,
    *,
    target_instance: str,
    charge_box_id: str,
    operation: str,
    payload: dict,
    requested_by: str | None,
    answer_timeout: float,
) -> int:
    """Write the command and tell the holding instance (in one transaction)."""
    async with conn.transaction():
        command_id = await conn.fetchval(
            """
            INSERT INTO ocpp.routed_commands
                (target_instance, charge_box_id, operation, payload, requested_by, answer_timeout)
            VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING id
            """,
            target_instance, charge_box_id, operation, payload, requested_by, answer_timeout,
        )
        await conn.execute(
            "SELECT pg_notify($1, $2)", notify.OCPP_COMMANDS,
            json.dumps({"id": command_id, "instance": target_instance}),
        )
    return command_id


async def claim(conn: asyncpg.Connection, command_id: int | None, instance: str, *, max_age_s: float) -> list[asyncpg.Record]:
    """Claim one command (or, with None, every recent unclaimed one) addressed to `instance`."""
    return await conn.fetch(
        """
        UPDATE ocpp.routed_commands SET claimed_at = now()
        WHERE claimed_at IS NULL AND target_instance = $2 AND ($1::bigint IS NULL OR id = $1)
          AND created_at > now() - make_interval(secs => $3)
        RETURNING id, charge_box_id, operation, payload, requested_by, answer_timeout
        """,
        command_id, instance, max_age_s,
    )


async def answer(
    conn: asyncpg.Connection,
    command_id: int,
    *,
    outcome: str,
    answer: Any = None,
    error_message: str | None = None,
    call_error: dict | None = None,
) -> None:
    """Store the outcome and tell the requester (nothing happens if it gave up meanwhile)."""
    async with conn.transaction():
        found = await conn.fetchval(
            """
            UPDATE ocpp.routed_commands
            SET answered_at = now(), outcome = $2, answer = $3::jsonb, error_message = $4, call_error = $5::jsonb
            WHERE id = $1 RETURNING id
            """,
            command_id, outcome, answer, error_message, call_error,
        )
        if found is not None:
            await conn.execute(
                "SELECT pg_notify($1, $2)", notify.OCPP_COMMANDS, json.dumps({"id": command_id, "answered": True})
            )


async def take_answered(conn: asyncpg.Connection, command_id: int) -> asyncpg.Record | None:
    """Remove the command and return its outcome, if it has one yet (else leave it, None)."""
    return await conn.fetchrow(
        "DELETE FROM ocpp.routed_commands WHERE id = $1 AND outcome IS NOT NULL "
        "RETURNING outcome, answer, error_message, call_error",
        command_id,
    )


async def take(conn: asyncpg.Connection, command_id: int) -> asyncpg.Record | None:
    """Remove the command; its outcome if it has one (None fields while unanswered)."""
    return await conn.fetchrow(
        "DELETE FROM ocpp.routed_commands WHERE id = $1 RETURNING outcome, answer, error_message, call_error",
        command_id,
    )


async def forget_old(conn: asyncpg.Connection, *, older_than_s: float) -> int:
    """Rows left by a requester that stopped while waiting."""
    status = await conn.execute(
        "DELETE FROM ocpp.routed_commands WHERE created_at < now() - make_interval(secs => $1)", older_than_s
    )
    return int(status.split()[-1])


async def instance_alive(conn: asyncpg.Connection, application_name: str) -> bool:
    """Whether an instance's command listener is connected to Postgres right now."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)", application_name
    ))
