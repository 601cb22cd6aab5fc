"""Delivers the outbox to the email worker (CF_EMAIL_WORKER_URL), retrying through outages.

Contract: `POST {CF_EMAIL_WORKER_URL}/send`, header `X-Polaris-Sig` = hex
HMAC-SHA256(CF_EMAIL_WORKER_SECRET, raw body); body {ts (ms), nonce (base64url of 16
random bytes), to, subject, html, text, category, from, replyTo?, headers?}; 200
{ok: true}. 429 / 5xx / timeouts / connection errors: retried with backoff (a 429's
Retry-After is honoured), so an outage delays mail and never loses it. 400 / 401: held
with the worker's reason (retrying cannot help; `polaris admin outbox` shows it), except
a 401 for a stale timestamp or a reused nonce: that request is sent again at once with a
fresh ts and nonce, and if the worker still finds the time outside its window the mail
waits (retried with backoff) and the reason says clock skew, not a wrong secret.

The deployed worker (the original product's) allows only its own categories and senders:
operator alerts go out as `admin-password-reset`, the one operator category it knows (as
the original sent its operator mail), from EMAIL_FROM_ADMIN; customer mail from EMAIL_FROM.
Several senders (web instances) share the outbox: rows are claimed with SKIP LOCKED.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx

from polaris.config import Settings
from polaris.db.repos import email_outbox
from polaris.logs import get_logger
from polaris.services.outbox_worker import OutboxWorker

log = get_logger(__name__)

SEND_TIMEOUT = 10.0
BATCH = 10
LEASE = timedelta(seconds=60)  # longer than SEND_TIMEOUT: a live sender never loses its lease
BACKOFF_BASE = 5.0
BACKOFF_MAX = 900.0
POLL_SECONDS = 5.0


# Our categories the worker does not know, and the allowed category each is sent as.
WIRE_CATEGORY = {"operator-alert": "admin-password-reset"}
# Mail to operators, sent from EMAIL_FROM_ADMIN (the original's rule).
ADMIN_CATEGORIES = frozenset({"admin-password-reset", "operator-alert"})
# The worker's 401 bodies that a fresh request can cure (see cloudflare/email-worker).
STALE_TS_ERROR = "stale or future timestamp"
NONCE_REUSE_ERROR = "nonce reuse"
CLOCK_SKEW_REASON = (
    "clock skew: the email worker finds our timestamp outside its window (TS_WINDOW_MS, 5 minutes) even "
    "when freshly made; check this host's clock (NTP, `timedatectl`); the mail is retried"
)


def wire_category(category: str) -> str:
    return WIRE_CATEGORY.get(category, category)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def build_body(row: asyncpg.Record | dict[str, Any], *, sender: str, reply_to: str | None = None) -> bytes:
    """The JSON body for one mail, with a fresh ts and nonce (each attempt is a new request)."""
    doc: dict[str, Any] = {
        "ts": int(time.time() * 1000),
        "nonce": base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
        "to": row["to_address"],
        "subject": row["subject"],
        "html": row["html"],
        "text": row["text"],
        "category": wire_category(row["category"]),
        "from": sender,
    }
    if row["reply_to"] or reply_to:
        doc["replyTo"] = row["reply_to"] or reply_to
    if row["headers"]:
        doc["headers"] = row["headers"]
    return json.dumps(doc, separators=(",", ":")).encode()


def backoff(attempts: int) -> float:
    """Seconds before the next try: exponential, capped, with jitter so senders spread out."""
    delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX)
    return delay * random.uniform(0.8, 1.2)


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return min(float(raw), BACKOFF_MAX)
    return None


class EmailSender(OutboxWorker):
    """One per web instance: claims due mail, posts it to the worker, records the outcome."""

    name = "email-outbox"
    channel = email_outbox.EMAIL_OUTBOX_CHANNEL
    batch = BATCH
    lease = LEASE
    poll_seconds = POLL_SECONDS

    def __init__(self, pool: asyncpg.Pool, settings: Settings, http: httpx.AsyncClient) -> None:
        if not settings.CF_EMAIL_WORKER_URL or not settings.CF_EMAIL_WORKER_SECRET:
            raise ValueError("the email sender needs CF_EMAIL_WORKER_URL and CF_EMAIL_WORKER_SECRET")
        super().__init__(pool, settings.database_url)
        self.http = http
        self.url = settings.CF_EMAIL_WORKER_URL.rstrip("/") + "/send"
        self._secret = settings.CF_EMAIL_WORKER_SECRET.get_secret_value()
        sender = settings.email_sender
        if sender is None:
            raise ValueError(settings.email_sender_problem() or "EMAIL_FROM is not set")
        self._from = sender
        self._from_admin = settings.email_admin_sender or sender
        self._reply_to = settings.OPERATOR_CONTACT_EMAIL  # customer mail's Reply-To (the original's)

    async def claim_due(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await email_outbox.claim_due(conn, limit=self.batch, lease=self.lease)

    async def next_due_at(self, conn: asyncpg.Connection) -> datetime | None:
        return await email_outbox.next_due_at(conn)

    async def deliver(self, row: asyncpg.Record) -> None:
        await self._deliver(row)

    def sender_for(self, category: str) -> str:
        return self._from_admin if category in ADMIN_CATEGORIES else self._from

    async def _post(self, row: asyncpg.Record) -> httpx.Response:
        admin = row["category"] in ADMIN_CATEGORIES
        body = build_body(  # a fresh ts and nonce each time
            row, sender=self.sender_for(row["category"]), reply_to=None if admin else self._reply_to
        )
        return await self.http.post(
            self.url,
            content=body,
            headers={"Content-Type": "application/json", "X-Polaris-Sig": sign(self._secret, body)},
            timeout=SEND_TIMEOUT,
        )

    async def _deliver(self, row: asyncpg.Record) -> None:
        outcome: tuple[str, str, float]
        try:
            resp = await self._post(row)
            if _curable_401(resp):
                # The request was late (a slow hop) or our clock is off: once more, freshly made.
                log.info("email worker refused a stale request; sending it again", mail_id=row["id"],
                         worker_error=_worker_error(resp))
                resp = await self._post(row)
        except httpx.TimeoutException:
            outcome = ("retry", "the email worker did not answer in time", backoff(row["attempts"]))
        except httpx.TransportError as exc:
            outcome = ("retry", f"cannot reach the email worker: {exc.__class__.__name__}", backoff(row["attempts"]))
        else:
            outcome = _judge(resp, row["attempts"])
        kind, reason, delay = outcome
        async with self.pool.acquire() as conn:
            if kind == "sent":
                await email_outbox.mark_sent(conn, row["id"])
            elif kind == "held":
                await email_outbox.mark_held(conn, row["id"], reason=reason)
            else:
                await email_outbox.mark_retry(conn, row["id"], delay=timedelta(seconds=delay), error=reason)
        log_fn = log.info if kind == "sent" else log.warning
        log_fn(
            "mail " + kind,
            mail_id=row["id"],
            category=row["category"],
            attempt=row["attempts"],
            reason=reason or None,
            retry_in=round(delay, 1) if kind == "retry" else None,
        )


def _worker_error(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""


def _curable_401(resp: httpx.Response) -> bool:
    return resp.status_code == 401 and _worker_error(resp) in (STALE_TS_ERROR, NONCE_REUSE_ERROR)


def _judge(resp: httpx.Response, attempts: int) -> tuple[str, str, float]:
    """What a worker answer means for the mail: sent, held (with why) or retry (after how long)."""
    detail = resp.text[:200].strip()
    if 200 <= resp.status_code < 300:
        return ("sent", "", 0.0)
    if _curable_401(resp):
        if _worker_error(resp) == STALE_TS_ERROR:
            return ("retry", f"{CLOCK_SKEW_REASON} (HTTP 401 {detail})", backoff(attempts))
        return ("retry", f"the email worker saw a nonce twice (HTTP 401 {detail})", backoff(attempts))
    if resp.status_code in (400, 401, 403):
        what = {400: "refused the mail", 401: "refused our signature (check CF_EMAIL_WORKER_SECRET)",
                403: "refused the request"}[resp.status_code]
        return ("held", f"the email worker {what}: HTTP {resp.status_code} {detail}", 0.0)
    delay = _retry_after(resp) if resp.status_code == 429 else None
    return (
        "retry",
        f"the email worker answered HTTP {resp.status_code} {detail}",
        delay if delay is not None else backoff(attempts),
    )
