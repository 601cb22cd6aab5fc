"""Commands to chargers (central-system-initiated operations), journaled, for every version.

`send_command` takes the operation from the charger's version's table (`Session.OPERATIONS`,
e.g. v16/operations.py), validates the payload before anything is sent, lets the operation
`prepare` what must exist before the charger hears of it (ReserveNow's reservation), sends
it through the charger's one-call-at-a-time queue, and journals the outcome together with
what the answer changes (the operation's `after`) in one transaction.

A charger held by another running instance gets the command through it: the host's
`router` (routing.py) forwards it, and that instance calls `send_command(..., route=False)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from polaris.db.repos import charge_boxes
from polaris.logs import get_logger
from polaris.ocpp.errors import (
    DB_UNAVAILABLE,
    CallErrorAnswer,
    ChargerCallError,
    ChargerGone,
    ChargerOffline,
    CommandTimeout,
    UnknownOperation,
)
from polaris.ocpp.journal import JournalEntry

if TYPE_CHECKING:
    from polaris.ocpp.context import OcppContext
    from polaris.ocpp.session import Session
    from polaris.ocpp.versions import Versions

log = get_logger(__name__)

# How long a command waits behind others for the same charger. With the 30 s answer
# timeout this stays under the web's 40 s client timeout, so the caller sees our 504.
QUEUE_TIMEOUT_S = 5.0


class Forwarder(Protocol):
    """Sends a command through the instance holding the charger (routing.CommandRouter)."""

    async def holder(self, charge_box_id: str) -> str | None: ...

    async def forward(self, instance: str, charge_box_id: str, operation: str, payload: dict, *,
                      requested_by: str | None, answer_timeout: float) -> dict: ...


class CommandHost(Protocol):
    """What the command code needs of a server (OcppServer is one)."""

    @property
    def ctx(self) -> OcppContext: ...

    @property
    def connections(self) -> Mapping[str, Session]: ...

    @property
    def router(self) -> Forwarder | None: ...

    @property
    def versions(self) -> Versions: ...


async def send_command(
    host: CommandHost,
    charge_box_id: str,
    operation: str,
    payload: dict,
    *,
    requested_by: str | None = None,
    answer_timeout: float | None = None,
    route: bool = True,
) -> dict:
    """Send one operation to a connected charger and return its CALLRESULT payload.

    Raises a CommandError (errors.py) saying why there is no answer. ReserveNow without a
    reservationId gets one allocated by the database.
    """
    ctx = host.ctx
    cp = connected(host.connections, charge_box_id)
    if cp is not None:
        charge_box_id = cp.id  # as stored: ids match ignoring case
    operations = host.versions.operations(cp)
    if cp is None:
        # Held by another instance (or offline): validate as the version it last booted with.
        stored = await stored_version(host, charge_box_id)
        operations = stored.OPERATIONS if stored is not None else operations
    op = operations.get(operation)
    if op is None:
        raise UnknownOperation(f"unknown operation {operation!r}; one of: {', '.join(operations)}")
    op.validate(payload)
    timeout = answer_timeout or ctx.response_timeout
    router = host.router
    if cp is None and route and router is not None:
        try:
            holder = await router.holder(charge_box_id)
        except DB_UNAVAILABLE:
            holder = None
        if holder is not None:
            return await router.forward(holder, charge_box_id, operation, payload,
                                        requested_by=requested_by, answer_timeout=timeout)
    if cp is None:
        raise ChargerOffline(await _offline_reason(ctx, charge_box_id))
    if op.prepare is not None:
        async with ctx.pool.acquire() as conn:
            payload = await op.prepare(conn, cp.pk, payload)
    entry = JournalEntry(charge_box_id=charge_box_id, action=operation, unique_id=str(uuid.uuid4()),
                         request=payload, status="answered", requested_by=requested_by)
    try:
        answer = await cp.call_raw(operation, payload, unique_id=entry.unique_id, answer_timeout=timeout,
                                   queue_timeout=QUEUE_TIMEOUT_S)
    except TimeoutError:
        entry.status = "timeout"
        await ctx.journal.record(entry)
        raise CommandTimeout(
            f"charger {charge_box_id} did not answer {operation} within {timeout:g} s"
            + (" (commands ahead of it were still waiting)" if cp.busy else "")
        ) from None
    except ChargerGone:
        entry.status, entry.error_description = "failed", "connection lost"
        await ctx.journal.record(entry)
        raise ChargerOffline(
            f"charger {charge_box_id} disconnected before answering {operation}"
        ) from None
    except CallErrorAnswer as exc:
        entry.status, entry.error_code, entry.error_description = "call_error", exc.code, exc.description
        entry.response = exc.details
        await ctx.journal.record(entry)
        raise ChargerCallError(exc) from None
    entry.response = answer
    await ctx.journal.record(entry, op.effect(cp.pk, payload, answer))
    return answer


async def stored_version(host: CommandHost, charge_box_id: str) -> type[Session] | None:
    """The version a charger not connected here last booted with (None: unknown)."""
    try:
        async with host.ctx.pool.acquire() as conn:
            row = await charge_boxes.get_connection_state(conn, charge_box_id)
    except DB_UNAVAILABLE:
        return None
    return host.versions.by_version(row["ocpp_version"]) if row is not None else None


def connected(connections: Mapping[str, Session], charge_box_id: str) -> Session | None:
    """The charger's connection here, its id matched ignoring case (as SteVe does)."""
    cp = connections.get(charge_box_id)
    if cp is None:
        folded = charge_box_id.lower()
        cp = next((s for key, s in connections.items() if key.lower() == folded), None)
    return cp


async def _offline_reason(ctx: OcppContext, charge_box_id: str) -> str:
    """Say where the charger is, when the database knows (another instance, never seen, ...)."""
    try:
        async with ctx.pool.acquire() as conn:
            row = await charge_boxes.get_connection_state(conn, charge_box_id)
    except DB_UNAVAILABLE:
        return f"charger {charge_box_id} is not connected to this server"
    if row is None:
        return f"no charger {charge_box_id} is registered"
    instance = row["connected_instance"]
    if row["connected"] and instance and instance != ctx.instance:
        # Only when routing is off or this is a routed command the holder no longer holds.
        return f"charger {charge_box_id} is connected to another OCPP server instance ({instance})"
    seen = row["last_seen_at"].isoformat() if row["last_seen_at"] else "never"
    return f"charger {charge_box_id} is offline (last seen {seen})"
