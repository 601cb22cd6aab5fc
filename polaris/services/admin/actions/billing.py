"""The billing sync: pin the cadence, run now, and release a held session (settle or retry)."""

from __future__ import annotations

import asyncpg

from polaris.db.repos import billing
from polaris.services.admin.actions.base import Actor, record
from polaris.services.errors import ApiError


async def pin_tier(conn: asyncpg.Connection, actor: Actor, tier: str | None) -> None:
    """Pin the sync cadence to a tier (active, idle, dormant); None unpins (adaptive)."""
    async with conn.transaction():
        before = await billing.get_cadence_state(conn)
        await billing.set_cadence_pin(conn, tier, actor.email)
        await record(conn, actor, "sync.pin", "sync_cadence", "1",
                     before={"pinned_tier": before["pinned_tier"] if before else None}, after={"pinned_tier": tier})


async def request_sync(conn: asyncpg.Connection, actor: Actor) -> None:
    """Ask the sync worker for a run now (NOTIFY sync_trigger, sent on commit)."""
    async with conn.transaction():
        await billing.request_sync_now(conn, actor.email)
        await record(conn, actor, "sync.trigger", "sync_run", None, after={"requested_by": actor.email})


async def _held(conn: asyncpg.Connection, transaction_id: int, code: str, what: str) -> asyncpg.Record:
    hold = await billing.get_hold(conn, transaction_id)
    if hold is None:
        raise ApiError(404, "not_found", f"session {transaction_id} is not known to the billing sync (yet)")
    if hold["unbillable_code"] != code:
        now = f"held: {hold['unbillable_code']}" if hold["unbillable_code"] else "not held"
        raise ApiError(409, "not_held", f"session {transaction_id} is {now}; only a session held as {code} can {what}")
    return hold


async def settle_anomaly(conn: asyncpg.Connection, actor: Actor, transaction_id: int, energy_wh: int) -> None:
    """Bill `energy_wh` for a session held as `anomaly` (sent on the next run; the hold clears)."""
    tx = transaction_id
    async with conn.transaction():
        hold = await _held(conn, tx, "anomaly", "be settled with an energy")
        if energy_wh < hold["recorded_wh"]:
            raise ApiError(
                400, "invalid_input",
                f"{hold['recorded_wh']} Wh were already billed while session {tx} ran; "
                f"settle at {hold['recorded_wh']} Wh or more (Lago takes no negative usage)",
            )
        await billing.set_energy_override(conn, tx, energy_wh, actor.email)
        await record(
            conn, actor, "sync.settle", "transaction", tx,
            before={"code": hold["unbillable_code"], "reason": hold["unbillable_reason"],
                    "energy_override_wh": hold["energy_override_wh"]},
            after={"energy_override_wh": energy_wh},
        )


async def retry_refused(conn: asyncpg.Connection, actor: Actor, transaction_id: int) -> int:
    """Queue the events Lago refused for a session held as `invalid_event` again; how many."""
    async with conn.transaction():
        hold = await _held(conn, transaction_id, "invalid_event", "be retried")
        events = await billing.retry_refused_events(conn, transaction_id)
        await record(
            conn, actor, "sync.retry", "transaction", transaction_id,
            before={"code": hold["unbillable_code"], "reason": hold["unbillable_reason"]},
            after={"events_queued": events},
        )
    return events
