"""The session-summary receipt mailed when a charging session ends."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from polaris.config import Settings
from polaris.db.notify import TRANSACTION_EVENTS
from polaris.db.repos import email_outbox, live_sessions
from polaris.logs import get_logger
from polaris.services.email.templates import render

log = get_logger(__name__)

CATCH_UP_MINUTES = 60


def wants_receipt(session: asyncpg.Record | None) -> bool:
    """A finished, real session of a customer who has receipts on."""
    return bool(
        session is not None
        and session["stop_timestamp"] is not None
        and session["meter_stop"] is not None
        and session["customer_id"] is not None
        and session["email"]
        and session["receipts_enabled"]
        and not session["is_test"]
    )


def _when(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _duration(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


async def queue_receipt(conn: asyncpg.Connection, settings: Settings, session: asyncpg.Record) -> int | None:
    """Queue the receipt once per session (several instances may try: the dedupe key wins)."""
    mail = render(
        "session-summary",
        name=session["customer_name"],
        charger=session["charger_description"] or session["charge_box_id"],
        site=session["site_name"],
        started_at=_when(session["start_timestamp"]),
        stopped_at=_when(session["stop_timestamp"]),
        duration=_duration(session["stop_timestamp"] - session["start_timestamp"]),
        energy_kwh=max(session["meter_stop"] - session["meter_start"], 0) / 1000,
        session_url=f"{settings.CUSTOMER_BASE_URL.rstrip('/')}/sessions/{session['transaction_id']}",
    )
    return await email_outbox.queue(
        conn,
        to=session["email"],
        category=mail.category,
        subject=mail.subject,
        html=mail.html,
        text=mail.text,
        dedupe_key=f"session-summary:{session['transaction_id']}",
    )


async def on_session_stopped(conn: asyncpg.Connection, settings: Settings, channel: str, payload: dict,
                             session: asyncpg.Record | None) -> int | None:
    if channel != TRANSACTION_EVENTS or payload.get("event") != "stopped":
        return None
    if session is None:
        session = await live_sessions.get_session(conn, int(payload["transaction_id"]))
    if not wants_receipt(session):
        return None
    assert session is not None
    return await queue_receipt(conn, settings, session)


async def catch_up(conn: asyncpg.Connection, settings: Settings, minutes: int = CATCH_UP_MINUTES) -> int:
    """Receipts for sessions that ended while no web instance was listening."""
    queued = 0
    for session in await live_sessions.sessions_stopped_since(conn, minutes):
        if wants_receipt(session) and await queue_receipt(conn, settings, session) is not None:
            queued += 1
    if queued:
        log.info("receipts queued on catch-up", count=queued)
    return queued
