"""Commands for a charger held by another `polaris ocpp` instance, routed through Postgres.

Several OCPP server instances can run behind one balancer; each records which chargers
it holds (`charge_boxes.connected_instance`). The command API of any instance accepts a
command for any charger: when the charger is held elsewhere, the command is written to
`ocpp.routed_commands` and the holder is told with NOTIFY ocpp_commands. The holder sends
it (journaled there, as any command) and writes the outcome back; the caller gets the
same answer or error it would have got from the holder itself.

Each instance's listener connection is named `polaris-ocpp:<instance>` in Postgres, so a
command for a charger whose recorded holder is not running (it crashed before it could
mark its chargers disconnected) is refused at once as offline instead of timing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from polaris.db import notify
from polaris.db.listen import PgListener
from polaris.db.repos import charge_boxes, routed_commands
from polaris.logs import get_logger
from polaris.ocpp.commands import QUEUE_TIMEOUT_S, CommandHost, send_command
from polaris.ocpp.errors import (
    COMMAND_ERRORS,
    DB_UNAVAILABLE,
    CallErrorAnswer,
    ChargerCallError,
    ChargerOffline,
    CommandError,
    CommandTimeout,
)

log = get_logger(__name__)

# How long a routed command waits beyond the charger's own answer timeout: its turn in
# the holder's queue for the charger, and the two hops through Postgres.
GRACE_S = QUEUE_TIMEOUT_S + 2.0
# While waiting, the row is also read this often: an answer whose NOTIFY was missed (the
# listener was reconnecting) is still picked up.
POLL_S = 1.0
# Unclaimed commands older than this are stale when an instance (re)connects.
CATCH_UP_S = 60.0


def application_name(instance: str) -> str:
    return f"polaris-ocpp:{instance}"[:63]


class CommandRouter:
    """Both sides of routing for one instance: `holder`/`forward` (commands.Forwarder) for
    commands it cannot send itself, and serving the commands other instances route to it."""

    def __init__(self, host: CommandHost):
        self.host = host
        self.ctx = ctx = host.ctx
        self.grace = GRACE_S
        self._waiting: dict[int, asyncio.Event] = {}
        self._listener = PgListener(
            ctx.settings.database_url,
            [notify.OCPP_COMMANDS],
            self._on_notify,
            name="ocpp-commands",
            on_connect=self._catch_up,
            application_name=application_name(ctx.instance),
        )

    @property
    def listening(self) -> asyncio.Event:
        return self._listener.listening

    def start(self) -> None:
        self._listener.start()

    async def close(self) -> None:
        await self._listener.close()

    # --- the requesting side -------------------------------------------------------------

    async def holder(self, charge_box_id: str) -> str | None:
        """The other, running instance holding this charger, if any."""
        async with self.ctx.pool.acquire() as conn:
            row = await charge_boxes.get_connection_state(conn, charge_box_id)
            instance = row["connected_instance"] if row is not None and row["connected"] else None
            if not instance or instance == self.ctx.instance:
                return None
            if not await routed_commands.instance_alive(conn, application_name(instance)):
                raise ChargerOffline(
                    f"charger {charge_box_id} was last connected to OCPP server instance {instance}, "
                    "which is not running; it reconnects to a running one by itself"
                )
            return instance

    async def forward(
        self, instance: str, charge_box_id: str, operation: str, payload: dict, *,
        requested_by: str | None, answer_timeout: float,
    ) -> dict:
        """Have `instance` send the command; its answer, or the error it got."""
        async with self.ctx.pool.acquire() as conn:
            command_id = await routed_commands.create(
                conn, target_instance=instance, charge_box_id=charge_box_id, operation=operation,
                payload=payload, requested_by=requested_by, answer_timeout=answer_timeout,
            )
        answered = self._waiting[command_id] = asyncio.Event()
        row = None
        try:
            async with asyncio.timeout(answer_timeout + self.grace):
                while row is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(answered.wait(), POLL_S)
                    async with self.ctx.pool.acquire() as conn:
                        row = await routed_commands.take_answered(conn, command_id)
        except TimeoutError:
            raise CommandTimeout(
                f"OCPP server instance {instance}, which holds charger {charge_box_id}, did not report an "
                f"answer to {operation} within {answer_timeout + self.grace:g} s"
            ) from None
        finally:
            self._waiting.pop(command_id, None)
            if row is None:  # gave up: the holder must not send it after the caller was told so
                with contextlib.suppress(*DB_UNAVAILABLE):
                    async with self.ctx.pool.acquire() as conn:
                        await routed_commands.take(conn, command_id)
        return _outcome(row)

    # --- the holding side ----------------------------------------------------------------

    def _on_notify(self, _channel: str, payload: str) -> None:
        try:
            msg = json.loads(payload)
            command_id = int(msg["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("malformed ocpp_commands notification", payload=payload[:200])
            return
        if msg.get("answered"):
            event = self._waiting.get(command_id)
            if event is not None:
                event.set()
        elif msg.get("instance") == self.ctx.instance:
            self.ctx.spawn(self._serve(command_id))

    async def _catch_up(self) -> None:
        """Commands sent to this instance while its listener was down."""
        await self._serve(None)

    async def _serve(self, command_id: int | None) -> None:
        try:
            async with self.ctx.pool.acquire() as conn:
                if command_id is None:
                    await routed_commands.forget_old(conn, older_than_s=3600)
                rows = await routed_commands.claim(conn, command_id, self.ctx.instance, max_age_s=CATCH_UP_S)
        except DB_UNAVAILABLE:
            log.warning("routed command not claimed: database unavailable", command_id=command_id)
            return
        await asyncio.gather(*(self._run(row) for row in rows))

    async def _run(self, row: Any) -> None:
        fields: dict[str, Any] = {"outcome": "answered"}
        try:
            fields["answer"] = await send_command(
                self.host, row["charge_box_id"], row["operation"], row["payload"],
                requested_by=row["requested_by"], answer_timeout=row["answer_timeout"], route=False,
            )
        except ChargerCallError as exc:
            a = exc.answer
            fields = {"outcome": exc.code, "error_message": str(exc),
                      "call_error": {"code": a.code, "description": a.description, "details": a.details}}
        except CommandError as exc:
            fields = {"outcome": exc.code, "error_message": str(exc)}
        except Exception as exc:  # the caller must hear something, whatever happened here
            log.exception("routed command failed", command_id=row["id"])
            fields = {"outcome": "error", "error_message": f"{type(exc).__name__}: {exc}"}
        try:
            async with self.ctx.pool.acquire() as conn:
                await routed_commands.answer(conn, row["id"], **fields)
        except DB_UNAVAILABLE:
            log.warning("routed command answer lost: database unavailable", command_id=row["id"])


def _outcome(row: Any) -> dict:
    if row["outcome"] == "answered":
        return row["answer"]
    message = row["error_message"] or row["outcome"]
    if row["outcome"] == ChargerCallError.code and row["call_error"]:
        e = row["call_error"]
        raise ChargerCallError(CallErrorAnswer(e["code"], e["description"], e["details"]))
    raise COMMAND_ERRORS.get(row["outcome"], CommandError)(message)
