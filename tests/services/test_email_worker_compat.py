"""Every mail we send is accepted by the original product's deployed email worker.

`OriginalWorker` applies the rules of vladzaharia/expressync's cloudflare/email-worker
(src/index.ts), read from its source: HMAC over the raw body, the field checks, its fixed
category allowlist, the `from` allowlist (two addresses), the |now - ts| <= 5 min window
(judged by the worker's own clock) and nonce dedupe, each refusal with the worker's own
status and `{"error": ...}` body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import httpx
import pytest
from aiohttp import web

from polaris.config import OPTIONAL_EMAIL_CATEGORIES, Settings
from polaris.db.repos import customers
from polaris.services import email, live
from polaris.services.admin.actions import customers as customer_actions
from polaris.services.admin.actions.base import Actor
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.email import sender
from polaris.services.email.templates import CATEGORIES
from tests.services.test_email import SAMPLE_CONTEXT, SECRET, wait_for

# The original worker's lists, as deployed.
ORIGINAL_CATEGORIES = frozenset({
    "magic-link", "welcome", "session-summary", "reservation-cancelled", "account-reactivated",
    "admin-password-reset", "invoice-available", "account-inactive",
})
ORIGINAL_SENDERS = frozenset({"noreply@polaris.express", "admin-noreply@polaris.express"})
TS_WINDOW_MS = 5 * 60 * 1000
ORIGINAL_FROM = "Polaris Express <noreply@polaris.express>"
ORIGINAL_FROM_ADMIN = "ExpresSync Operator <admin-noreply@polaris.express>"


def _address(header: str) -> str:
    m = re.search(r"<([^>]+)>", header)
    return (m.group(1) if m else header).strip().lower()


class OriginalWorker:
    def __init__(self) -> None:
        self.clock_offset_ms = 0  # the worker's clock minus ours
        self.stale_next = 0  # answer this many requests as if they arrived late
        self.nonces: set[str] = set()
        self.delivered: list[dict] = []
        self.refused: list[tuple[int, str]] = []

    def _no(self, status: int, error: str) -> web.Response:
        self.refused.append((status, error))
        return web.json_response({"error": error}, status=status)

    async def send(self, request: web.Request) -> web.Response:
        raw = await request.read()
        sig = request.headers.get("x-polaris-sig", "")
        if not sig:
            return self._no(401, "missing signature")
        if not hmac.compare_digest(hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest(), sig):
            return self._no(401, "bad signature")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._no(400, "invalid json")
        if not isinstance(body.get("ts"), int | float):
            return self._no(400, "ts must be a number")
        if not isinstance(body.get("nonce"), str) or len(body["nonce"]) < 8:
            return self._no(400, "nonce must be a string ≥ 8 chars")
        if not isinstance(body.get("to"), str) or "@" not in body["to"]:
            return self._no(400, "to must be a valid email")
        for key in ("subject", "html", "text"):
            if not isinstance(body.get(key), str) or not body[key]:
                return self._no(400, f"{key} required")
        if body.get("category") not in ORIGINAL_CATEGORIES:
            return self._no(400, "unknown category")
        from_header = body.get("from") or ORIGINAL_FROM
        if _address(from_header) not in ORIGINAL_SENDERS:
            return self._no(400, f"sender {_address(from_header)} not allowlisted")
        now_ms = time.time() * 1000 + self.clock_offset_ms
        if self.stale_next > 0:
            self.stale_next -= 1
            now_ms += 10 * 60 * 1000
        if abs(now_ms - body["ts"]) > TS_WINDOW_MS:
            return self._no(401, "stale or future timestamp")
        if body["nonce"] in self.nonces:
            return self._no(401, "nonce reuse")
        self.nonces.add(body["nonce"])
        self.delivered.append(body)
        return web.json_response({"ok": True})


@pytest.fixture
async def original_worker(aiohttp_server):
    fake = OriginalWorker()
    app = web.Application()
    app.router.add_post("/send", fake.send)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("/")).rstrip("/")
    return fake


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(sender, "BACKOFF_BASE", 0.05)
    monkeypatch.setattr(sender, "BACKOFF_MAX", 0.3)


def prod(settings: Settings, worker: OriginalWorker, **extra) -> Settings:
    """Production URLs (https), the original's senders, the fake worker."""
    return settings.model_copy(update={
        "ADMIN_BASE_URL": "https://manage.example.com", "CUSTOMER_BASE_URL": "https://polaris.example.com",
        "COOKIE_DOMAIN": ".example.com", "CF_EMAIL_WORKER_URL": worker.url,
        "EMAIL_FROM": ORIGINAL_FROM, "EMAIL_FROM_ADMIN": ORIGINAL_FROM_ADMIN, **extra,
    })


async def test_every_category_we_send_is_accepted(pool, settings, original_worker):
    s = prod(settings, original_worker, OPERATOR_CONTACT_EMAIL="support@example.com")
    async with pool.acquire() as conn:
        for n, category in enumerate(CATEGORIES):
            await email.send_mail(conn, category, to=f"u{n}@example.com", **SAMPLE_CONTEXT)
    async with httpx.AsyncClient() as http:
        worker = email.EmailSender(pool, s, http)
        while await worker.run_once():
            pass
    assert original_worker.refused == []
    rows = await pool.fetch("SELECT category, status FROM app.email_outbox ORDER BY id")
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == len(CATEGORIES)
    by_to = {d["to"]: d for d in original_worker.delivered}
    names = list(CATEGORIES)
    alert = by_to[f"u{names.index('operator-alert')}@example.com"]
    assert alert["category"] == "admin-password-reset" and alert["from"] == ORIGINAL_FROM_ADMIN
    assert alert["subject"].endswith(SAMPLE_CONTEXT["title"])  # our alert's words, the allowed category
    reset = by_to[f"u{names.index('admin-password-reset')}@example.com"]
    assert reset["from"] == ORIGINAL_FROM_ADMIN
    receipt = by_to[f"u{names.index('session-summary')}@example.com"]
    assert receipt["from"] == ORIGINAL_FROM and receipt["category"] == "session-summary"
    assert receipt["replyTo"] == "support@example.com"  # OPERATOR_CONTACT_EMAIL
    assert "replyTo" not in alert


async def test_operator_mail_falls_back_to_email_from(pool, settings, original_worker):
    s = prod(settings, original_worker, EMAIL_FROM_ADMIN=None)
    async with pool.acquire() as conn:
        await email.send_mail(conn, "operator-alert", to="ops@example.com", title="t", message="m")
    async with httpx.AsyncClient() as http:
        assert await email.EmailSender(pool, s, http).run_once()
    assert [d["from"] for d in original_worker.delivered] == [ORIGINAL_FROM]


async def test_a_late_request_is_sent_again_with_a_fresh_timestamp(pool, settings, original_worker):
    s = prod(settings, original_worker)
    original_worker.stale_next = 1
    async with pool.acquire() as conn:
        await email.send_mail(conn, "magic-link", to="a@example.com", link="https://x/y", expires_minutes=15)
    async with httpx.AsyncClient() as http:
        assert await email.EmailSender(pool, s, http).run_once()
    assert original_worker.refused == [(401, "stale or future timestamp")]
    assert len(original_worker.delivered) == 1
    assert await pool.fetchval("SELECT status FROM app.email_outbox") == "sent"


async def test_clock_skew_is_reported_as_such_and_the_mail_waits(pool, settings, original_worker, fast):
    s = prod(settings, original_worker)
    original_worker.clock_offset_ms = 7 * 60 * 1000  # the worker's clock is 7 minutes ahead of ours
    async with pool.acquire() as conn:
        mail_id = await email.send_mail(conn, "magic-link", to="a@example.com", link="https://x/y", expires_minutes=15)
    async with httpx.AsyncClient() as http:
        worker = email.EmailSender(pool, s, http)
        assert await worker.run_once()
        row = await pool.fetchrow("SELECT status, last_error FROM app.email_outbox WHERE id = $1", mail_id)
        assert row["status"] == "pending"  # not held: fixing the clock lets it through
        assert "clock skew" in row["last_error"] and "CF_EMAIL_WORKER_SECRET" not in row["last_error"]
        assert original_worker.refused == [(401, "stale or future timestamp")] * 2  # sent, and sent fresh once more

        original_worker.clock_offset_ms = 0  # NTP fixed it

        async def sent():
            await worker.run_once()
            return await pool.fetchval("SELECT status FROM app.email_outbox WHERE id = $1", mail_id) == "sent"

        await wait_for(sent, 10)


async def test_a_wrong_secret_is_still_held_as_one(pool, settings, original_worker):
    s = prod(settings, original_worker).model_copy(update={"CF_EMAIL_WORKER_SECRET": type(settings.CF_EMAIL_WORKER_SECRET)("x" * 40)})
    async with pool.acquire() as conn:
        await email.send_mail(conn, "magic-link", to="a@example.com", link="https://x/y", expires_minutes=15)
    async with httpx.AsyncClient() as http:
        assert await email.EmailSender(pool, s, http).run_once()
    row = await pool.fetchrow("SELECT status, last_error FROM app.email_outbox")
    assert row["status"] == "held" and "CF_EMAIL_WORKER_SECRET" in row["last_error"]
    assert original_worker.refused == [(401, "bad signature")]


async def test_production_without_a_sender_attempts_no_mail(pool, settings, original_worker, aiohttp_client):
    s = prod(settings, original_worker, EMAIL_FROM=None, EMAIL_FROM_ADMIN=None, SSE_TRANSPORT="memory")
    assert s.email_sender is None and "EMAIL_FROM is not set" in (s.email_sender_problem() or "")
    assert any("EMAIL_FROM is not set" in line for line in s.disabled_features())
    with pytest.raises(ValueError, match="EMAIL_FROM"):
        email.EmailSender(pool, s, httpx.AsyncClient())
    app = web.Application()
    app[SETTINGS] = s
    app[PG_POOL] = pool
    live.setup(app)
    email.setup(app)
    client = await aiohttp_client(app)
    assert email.EMAIL_SENDER not in client.server.app
    async with pool.acquire() as conn:
        await email.send_mail(conn, "magic-link", to="a@example.com", link="https://x/y", expires_minutes=15)
    assert await pool.fetchval("SELECT status FROM app.email_outbox") == "pending"
    assert original_worker.delivered == [] and original_worker.refused == []
    # Local mode (plain-http URLs) keeps its localhost stand-in.
    assert settings.email_sender == "Polaris Express <no-reply@localhost>"


async def test_mail_the_original_never_sent_is_off_unless_turned_on(pool, settings):
    assert set(OPTIONAL_EMAIL_CATEGORIES) == {"welcome", "account-inactive", "account-reactivated"}
    actor = Actor(user_id=None, email="cli:test")
    async with pool.acquire() as conn:
        cust = await customers.add_customer(conn, "ann@example.com", name="Ann")
        await customer_actions.edit_customer(conn, settings, actor, cust["id"], {"active": False})
        assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == 0
        on = settings.model_copy(update={"EMAIL_OPTIONAL_CATEGORIES": "account-inactive, account-reactivated"})
        await customer_actions.edit_customer(conn, on, actor, cust["id"], {"active": True})
        assert await conn.fetchval("SELECT category FROM app.email_outbox") == "account-reactivated"
    assert email.category_enabled(settings, "magic-link") and not email.category_enabled(settings, "welcome")
    bad = settings.model_copy(update={"EMAIL_OPTIONAL_CATEGORIES": "welcome,operator-alert"})
    assert any("EMAIL_OPTIONAL_CATEGORIES has operator-alert" in p for p in bad._check_email())
