"""Delivers the outbox to the email worker (CF_EMAIL_WORKER_URL), retrying through outages.

Contract: `POST {CF_EMAIL_WORKER_URL}/send`, header `X-Polaris-Sig` = hex
HMAC-SHA256(CF_EMAIL_WORKER_SECRET, raw body); body {ts (ms), nonce (base64url of 16
random bytes), to, subject, html, text, category, from, replyTo?, headers?}; 200
{ok: true}. 429 / 5xx / timeouts / connection errors: retried with backoff (a 429's
Retry-After is honoured), so an outage delays mail and never loses it. 400 / 401: held
with the worker's reason (retrying cannot help; `polaris admin outbox` shows it).
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


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def build_body(row: asyncpg.Record | dict[str, Any], *, sender: str) -> bytes:
    """The JSON body for one mail, with a fresh ts and nonce (each attempt is a new request)."""
    doc: dict[str, Any] = {
        "ts": int(time.time() * 1000),
        "nonce": base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
        "to": row["to_address"],
        "subject": row["subject"],
        "html": row["html"],
        "text": row["text"],
        "category": row["category"],
        "from": sender,
    }
    if row["reply_to"]:
        doc["replyTo"] = row["reply_to"]
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
        self._from = settings.EMAIL_FROM

    async def claim_due(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await email_outbox.claim_due(conn, limit=self.batch, lease=self.lease)

    async def next_due_at(self, conn: asyncpg.Connection) -> datetime | None:
        return await email_outbox.next_due_at(conn)

    async def deliver(self, row: asyncpg.Record) -> None:
        await self._deliver(row)

    async def _deliver(self, row: asyncpg.Record) -> None:
        body = build_body(row, sender=self._from)
        outcome: tuple[str, str, float]
        try:
            resp = await self.http.post(
                self.url,
                content=body,
                headers={"Content-Type": "application/json", "X-Polaris-Sig": sign(self._secret, body)},
                timeout=SEND_TIMEOUT,
            )
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


def _judge(resp: httpx.Response, attempts: int) -> tuple[str, str, float]:
    """What a worker answer means for the mail: sent, held (with why) or retry (after how long)."""
    detail = resp.text[:200].strip()
    if 200 <= resp.status_code < 300:
        return ("sent", "", 0.0)
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
