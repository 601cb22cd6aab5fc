"""Operator alerts: mail ALERT_EMAILS when something needs a person, once per incident.

Every minute each web instance calls `evaluate_once`; one transaction under an advisory
lock (so two instances never both mail) finds what is wrong now, opens an incident for a
condition that has held longer than its threshold, clears incidents whose condition no
longer holds, and queues one mail per edge (opened, cleared) to every recipient in the
email outbox together with setting `open_notified_at` / `clear_notified_at`: a crash
before the commit sends nothing and the next run tries again, after it the mail is
queued and never queued twice.

Conditions (ALERT_* settings in polaris/config.py; docs/monitoring.md for operators):
- charger_offline: an active, non-test charger that connected once is not connected,
  last seen longer than ALERT_CHARGER_OFFLINE_MINUTES ago. Clears when it connects.
- charger_faulted: a connector of such a charger (0 = the whole charger) Faulted for
  longer than the same threshold. Clears when no connector is Faulted any more.
- sync_failing: the last ALERT_SYNC_FAILURES finished sync runs all failed. Clears at the
  next run that is not `failed`: `partial` counts as working, since it reached Lago and
  what it could not bill is held and shown by `polaris sync status`.
- site_over_limit: a site's cars draw more than its grid limit (the load-management
  controller's measured totals, ocpp.site_load) for longer than
  ALERT_SITE_OVER_LIMIT_MINUTES: a charger is ignoring its profile. Clears when under.
- outbox_stuck: the oldest undelivered mail (waiting or held) is older than
  ALERT_OUTBOX_STUCK_MINUTES. Only with CF_EMAIL_WORKER_URL set: without it mail stays in
  the outbox by design. The alert's own mail waits in that outbox too; the log line is
  the immediate signal.
Without recipients incidents are still recorded and logged; no mail is queued. An
incident still open when recipients are configured is mailed then (a clearing only
within CLEAR_MAIL_WINDOW, and only when its opening was mailed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web

from polaris.config import Settings
from polaris.db.repos import operator_alerts, sites
from polaris.logs import get_logger
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.email import send_mail
from polaris.services.outbox_worker import DB_ERRORS

log = get_logger(__name__)

CATEGORY = "operator-alert"
# How often each web instance evaluates; tests set a shorter period on the app.
ALERT_PERIOD = web.AppKey("alert_period_seconds", float)
DEFAULT_PERIOD_SECONDS = 60.0
# A clearing not mailed within this window (no recipients then) is not mailed later.
CLEAR_MAIL_WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Condition:
    """Something wrong right now; `due` once it has held longer than its threshold."""

    kind: str
    subject: str
    since: datetime
    due: bool
    detail: str


@dataclass(slots=True)
class Evaluation:
    """What one evaluation did; `ran` is False when another instance held the lock."""

    ran: bool
    opened: list[asyncpg.Record] = field(default_factory=list)
    cleared: list[asyncpg.Record] = field(default_factory=list)
    mails: int = 0


# --- detection ---------------------------------------------------------------------------


async def detect(conn: asyncpg.Connection, settings: Settings, now: datetime) -> list[Condition]:
    """Every condition that holds at `now`, due or not yet."""
    charger_limit = now - timedelta(minutes=settings.ALERT_CHARGER_OFFLINE_MINUTES)
    found: list[Condition] = []

    for r in await operator_alerts.offline_chargers(conn):
        detail = f"last seen {_iso(r['last_seen_at'])}"
        if r["description"]:
            detail += f"; {r['description']}"
        found.append(
            Condition("charger_offline", r["charge_box_id"], r["last_seen_at"], r["last_seen_at"] <= charger_limit, detail)
        )

    faulted: dict[str, list[asyncpg.Record]] = {}
    for r in await operator_alerts.faulted_connectors(conn):
        faulted.setdefault(r["charge_box_id"], []).append(r)
    for box, rows in faulted.items():
        since = min(r["since"] for r in rows)
        found.append(Condition("charger_faulted", box, since, since <= charger_limit, "; ".join(map(_fault, rows))))

    runs = await operator_alerts.recent_sync_runs(conn, settings.ALERT_SYNC_FAILURES)
    streak = 0
    while streak < len(runs) and runs[streak]["status"] == "failed":
        streak += 1
    if streak:
        error = runs[0]["error"] or "no error recorded"
        found.append(
            Condition(
                "sync_failing",
                "sync",
                runs[streak - 1]["finished_at"],
                streak >= settings.ALERT_SYNC_FAILURES,
                f"the last {streak} sync run(s) failed; last error: {error}",
            )
        )

    site_limit = now - timedelta(minutes=settings.ALERT_SITE_OVER_LIMIT_MINUTES)
    for r in await sites.sites_over(conn):
        drawn = ", ".join(f"L{i + 1} {a:.1f} A" for i, a in enumerate(r["drawn_amps"] or []))
        found.append(Condition(
            "site_over_limit", r["name"], r["over_since"], r["over_since"] <= site_limit,
            f"over its {r['limit_amps']:g} A grid limit since {_iso(r['over_since'])}: {drawn} "
            "(a charger is not following its charging profile)",
        ))
    reported = await operator_alerts.lago_reported_events(conn)
    if reported["sessions"]:
        found.append(
            Condition(
                "lago_not_billing",
                "lago",
                reported["since"],
                True,
                f"{reported['sessions']} session(s) held; e.g. {reported['example']}",
            )
        )

    if settings.email_worker_enabled:
        backlog = await operator_alerts.undelivered_mail(conn)
        oldest = backlog["oldest"]
        if oldest is not None and oldest <= now - timedelta(minutes=settings.ALERT_OUTBOX_STUCK_MINUTES):
            found.append(
                Condition(
                    "outbox_stuck",
                    "email_outbox",
                    oldest,
                    True,
                    f"{backlog['waiting']} mail(s) waiting, {backlog['held']} held",
                )
            )
    return found


def _fault(r: asyncpg.Record) -> str:
    where = "connector 0 (whole charger)" if r["connector_id"] == 0 else f"connector {r['connector_id']}"
    text = f"{where}: {r['error_code'] or 'no error code'}"
    if r["vendor_error_code"]:
        text += f", vendor code {r['vendor_error_code']}"
    if r["info"]:
        text += f" ({r['info']})"
    return text


# --- the engine --------------------------------------------------------------------------


async def evaluate_once(
    conn: asyncpg.Connection, settings: Settings, *, now: datetime | None = None
) -> Evaluation:
    """Detect, open, clear and mail, in one transaction (see the module docstring)."""
    now = now or datetime.now(UTC)
    recipients = settings.alert_recipients
    result = Evaluation(ran=True)
    async with conn.transaction():
        if not await operator_alerts.try_lock(conn):
            return Evaluation(ran=False)
        holding = {(c.kind, c.subject): c for c in await detect(conn, settings, now)}
        already_open = set()
        for row in await operator_alerts.list_open(conn):
            key = (row["kind"], row["subject"])
            already_open.add(key)
            condition = holding.get(key)
            if condition is None:
                cleared = await operator_alerts.clear_incident(conn, row["id"], cleared_at=now)
                if cleared is not None:
                    result.cleared.append(cleared)
            elif condition.detail != row["detail"]:
                await operator_alerts.set_detail(conn, row["id"], condition.detail)
        for key, c in holding.items():
            if c.due and key not in already_open:
                opened = await operator_alerts.open_incident(
                    conn, kind=c.kind, subject=c.subject, detail=c.detail, opened_at=c.since
                )
                if opened is not None:
                    result.opened.append(opened)
        if recipients:
            for row in await operator_alerts.unnotified(conn, cleared_since=now - CLEAR_MAIL_WINDOW):
                edge = "open" if row["cleared_at"] is None else "clear"
                title, message = compose(row, now)
                details = {"Incident": f"#{row['id']} {row['kind']} {row['subject']}", "Since": _iso(row["opened_at"])}
                if row["kind"] == "charger_offline":
                    details["Detail"] = row["detail"]  # last seen, and the charger's description
                if row["cleared_at"] is not None:
                    details["Cleared"] = _iso(row["cleared_at"])
                for to in recipients:
                    await send_mail(
                        conn,
                        CATEGORY,
                        to=to,
                        dedupe_key=f"{CATEGORY}:{row['id']}:{edge}:{to.lower()}",
                        title=title,
                        message=message,
                        details=details,
                    )
                    result.mails += 1
                await operator_alerts.mark_notified(conn, row["id"], edge=edge, at=now)
    # Logged after the commit: a rolled-back evaluation opened and cleared nothing.
    for row in result.opened:
        log.warning(
            "operator alert opened",
            alert_id=row["id"],
            kind=row["kind"],
            subject=row["subject"],
            since=_iso(row["opened_at"]),
            detail=row["detail"],
            mailed_to=len(recipients),
        )
    for row in result.cleared:
        log.info(
            "operator alert cleared",
            alert_id=row["id"],
            kind=row["kind"],
            subject=row["subject"],
            lasted_minutes=int((row["cleared_at"] - row["opened_at"]).total_seconds() // 60),
            mailed_to=len(recipients),
        )
    return result


# --- the mail ----------------------------------------------------------------------------


def compose(row: asyncpg.Record, now: datetime) -> tuple[str, str]:
    """Title and message of the mail for an incident's latest edge: what, since when, what to do."""
    kind, subject, detail = row["kind"], row["subject"], row["detail"]
    since = _when(row["opened_at"], now)
    cleared_at = row["cleared_at"]
    if cleared_at is not None:
        lasted = _duration(cleared_at - row["opened_at"])
        at = _when(cleared_at, now)
        title, what = {
            "charger_offline": (f"Charger {subject} back online (offline {lasted})",
                                f"Charger {subject} is connected again ({at}); it was offline from {since} for {lasted}."),
            "charger_faulted": (f"Charger {subject} no longer faulted (faulted {lasted})",
                                f"No connector of charger {subject} reports Faulted any more ({at}); the fault began {since} and lasted {lasted}."),
            "sync_failing": (f"Billing sync working again (failing {lasted})",
                             f"A billing sync run finished without failing ({at}); runs had failed since {since}, for {lasted}. "
                             "Sessions held back meanwhile are sent by this and the next runs."),
            "site_over_limit": (f"Site {subject} back under its grid limit (over {lasted})",
                                f"Site {subject} draws under its grid limit again ({at}); it was over from {since} for {lasted}."),
            "outbox_stuck": (f"Email outbox moving again (stuck {lasted})",
                             f"No email has waited longer than the threshold since {at}; the outbox was stuck from {since} for {lasted}."),
        }.get(kind, (f"{kind} {subject} cleared after {lasted}", f"{kind} {subject}: cleared {at}, after {lasted}."))
        return title, what + "\n\nNothing to do."

    age = _duration(now - row["opened_at"])
    title, what, todo = {
        "charger_offline": (
            f"Charger {subject} offline since {since} ({age})",
            f"Charger {subject} has not been connected since {since} ({age}).",
            "Check its power and network (router, mobile signal); if it was just reconfigured, its "
            "OCPP URL and password. `polaris admin charger list` shows every charger's state.",
        ),
        "charger_faulted": (
            f"Charger {subject} faulted since {since} ({age})",
            f"Charger {subject} reports Faulted: {detail}. No session can start on a faulted connector.",
            "Look at the charger's display or its vendor portal for the error; a remote reset from the "
            "console (`polaris tui`) may clear a transient fault, otherwise send a technician.",
        ),
        "sync_failing": (
            f"Billing sync failing since {since} ({age})",
            f"Billing sync is failing: {detail}. Sessions are kept and sent to Lago by the next run that works.",
            "Check LAGO_API_URL, LAGO_API_KEY and Lago's own status; `polaris sync status` shows the runs, "
            "`polaris sync --once` tries again now.",
        ),
        "site_over_limit": (
            f"Site {subject} over its grid limit since {since} ({age})",
            f"Site {subject} is {detail}.",
            "Open the site in the console (`polaris tui`, Sites) to see which charger draws more than its "
            "allocation; its answers to SetChargingProfile are in its OCPP messages. Stop or limit that "
            "charger's session, or lower the site's limit until it is fixed.",
        ),
        "lago_not_billing": (
            f"Lago stored usage it will not bill ({age})",
            f"Lago's events.errors webhook named events it stored but will not bill: {detail}.",
            "Check the billable metric LAGO_METRIC_CODE in Lago (code, field 'value'); "
            "`polaris sync status` lists the held sessions; retry them from the console or the admin "
            "API once fixed.",
        ),
        "outbox_stuck": (
            f"Email outbox stuck since {since} ({age})",
            f"The oldest undelivered email has waited since {since} ({age}): {detail}. "
            "You get this mail only once the outbox moves again.",
            "Check that the email worker at CF_EMAIL_WORKER_URL answers and that CF_EMAIL_WORKER_SECRET "
            "matches it; `polaris admin outbox --pending` lists the mail, `--release-held` retries held "
            "mail once fixed.",
        ),
    }.get(kind, (f"{kind} {subject} since {since}", f"{kind} {subject}: {detail}.", "See docs/monitoring.md."))
    return title, f"{what}\n\nWhat to do: {todo}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def _when(t: datetime, now: datetime) -> str:
    """`10:02 UTC` today, `2026-11-24 10:02 UTC` on another day."""
    t, now = t.astimezone(UTC), now.astimezone(UTC)
    return t.strftime("%H:%M UTC") if t.date() == now.date() else t.strftime("%Y-%m-%d %H:%M UTC")


def _duration(d: timedelta) -> str:
    minutes = max(int(d.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# --- the background task of the web process ----------------------------------------------


async def _loop(app: web.Application) -> None:
    period = app.get(ALERT_PERIOD, DEFAULT_PERIOD_SECONDS)
    while True:
        try:
            async with app[PG_POOL].acquire() as conn:
                await evaluate_once(conn, app[SETTINGS])
        except DB_ERRORS as exc:
            log.warning("operator alerts not evaluated: database unavailable", error=str(exc))
        except Exception:  # a bug must not stop alerting for the life of the process
            log.exception("operator alerts evaluation failed")
        await asyncio.sleep(period)


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_loop(app), name="operator-alerts")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    """Evaluate operator alerts every minute in the background (one instance at a time)."""
    app.cleanup_ctx.append(_alerts_ctx)
