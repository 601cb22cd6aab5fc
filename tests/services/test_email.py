"""Email: templates, the outbox, the sender against a local fake email worker, receipts, the CLI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web

from polaris.db.errors import InvalidInput
from polaris.db.notify import TRANSACTION_EVENTS
from polaris.db.repos import charge_boxes, customers, email_outbox, id_tags
from polaris.services import email, live
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.email import receipts, sender
from polaris.services.email.templates import CATEGORIES, render

SECRET = "e" * 40  # tests/conftest.py's CF_EMAIL_WORKER_SECRET

SAMPLE_CONTEXT = {
    "link": "http://localhost:8000/auth/magic/abc",
    "expires_minutes": 15,
    "portal_url": "http://localhost:8000/account",
    "charger": "Main street #1",
    "started_at": "2026-11-25 08:00 UTC",
    "stopped_at": "2026-11-25 09:05 UTC",
    "duration": "1 h 05 min",
    "energy_kwh": 12.345,
    "session_url": "http://localhost:8000/sessions/7",
    "reserved_until": "2026-11-25 10:00 UTC",
    "invoice_number": "INV-0001",
    "amount": "12.30",
    "currency": "EUR",
    "invoice_url": "http://localhost:8000/invoices/1",
    "title": "Charger CB-1 is offline",
    "message": "No heartbeat for 15 minutes.",
}


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_every_category_renders_text_and_html(category):
    context = {k: SAMPLE_CONTEXT[k] for k in CATEGORIES[category].required}
    mail = render(category, name="<b>Ada</b>", **context)
    assert mail.subject and "\n" not in mail.subject
    assert mail.text.strip() and "<html" not in mail.text
    assert mail.html.lstrip().startswith("<!doctype html>")
    assert "<b>Ada" not in mail.html  # names are escaped in HTML
    for key in ("link", "portal_url", "session_url", "invoice_url"):
        if key in context:
            assert context[key] in mail.text and context[key] in mail.html


def test_render_refuses_unknown_categories_and_missing_values():
    with pytest.raises(InvalidInput, match="no mail category"):
        render("newsletter")
    with pytest.raises(InvalidInput, match="needs link"):
        render("magic-link", expires_minutes=15)


def test_session_summary_reads_well():
    mail = render("session-summary", **{k: SAMPLE_CONTEXT[k] for k in CATEGORIES["session-summary"].required})
    assert mail.subject == "Your charging session at Main street #1: 12.35 kWh"
    assert "Energy:    12.35 kWh" in mail.text
    assert "1 h 05 min" in mail.html


# ------------------------------------------------------------------ outbox


async def queue_one(conn, n: int = 0, **kw):
    return await email.send_mail(
        conn, "magic-link", to=kw.pop("to", f"user{n}@example.com"), link=f"http://x/{n}", expires_minutes=15, **kw
    )


async def test_queue_dedupes_and_follows_the_callers_transaction(pool):
    async with pool.acquire() as conn:
        assert await queue_one(conn, 1, dedupe_key="k1") is not None
        assert await queue_one(conn, 1, dedupe_key="k1") is None
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await queue_one(conn, 2)
                raise RuntimeError("the change failed")
        assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == 1
        with pytest.raises(InvalidInput):
            await queue_one(conn, to="not an address")
        with pytest.raises(InvalidInput, match="one non-empty line"):
            await email_outbox.queue(conn, to="a@example.com", category="x", subject="a\nBcc: b", html="h", text="t")


# ------------------------------------------------------------------ the fake email worker


class FakeWorker:
    """Speaks the email worker's contract; `script` decides each answer in turn, then `ok`."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.script: list[str] = []
        self.delivered: list[dict] = []
        self.nonces: set[str] = set()
        self.requests = 0
        self.problems: list[str] = []

    async def send(self, request: web.Request) -> web.Response:
        self.requests += 1
        raw = await request.read()
        mode = self.script.pop(0) if self.script else "ok"
        expected = hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Polaris-Sig", "")):
            return web.json_response({"ok": False, "error": "bad signature"}, status=401)
        doc = json.loads(raw)
        for key in ("ts", "nonce", "to", "subject", "html", "text", "category", "from"):
            if key not in doc:
                self.problems.append(f"missing {key}")
                return web.json_response({"ok": False, "error": f"missing {key}"}, status=400)
        if abs(time.time() * 1000 - doc["ts"]) > 60_000:
            self.problems.append("stale ts")
        if len(base64.urlsafe_b64decode(doc["nonce"] + "==")) != 16 or doc["nonce"] in self.nonces:
            self.problems.append("bad or reused nonce")
        self.nonces.add(doc["nonce"])
        if mode == "hang":
            await asyncio.sleep(2)  # longer than the sender's timeout: this attempt is lost
            return web.json_response({"ok": False}, status=500)
        if mode == "429":
            return web.json_response({"ok": False, "error": "slow down"}, status=429, headers={"Retry-After": "0"})
        if mode in ("500", "502"):
            return web.json_response({"ok": False, "error": "upstream"}, status=int(mode))
        if mode == "400":
            return web.json_response({"ok": False, "error": "recipient rejected"}, status=400)
        self.delivered.append(doc)
        return web.json_response({"ok": True})


@pytest.fixture
async def worker(aiohttp_server):
    fake = FakeWorker()
    app = web.Application()
    app.router.add_post("/send", fake.send)

    async def health(_request):
        return web.json_response({"ok": True})

    app.router.add_get("/health", health)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("/")).rstrip("/")
    return fake


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(sender, "BACKOFF_BASE", 0.05)
    monkeypatch.setattr(sender, "BACKOFF_MAX", 0.3)
    monkeypatch.setattr(sender, "SEND_TIMEOUT", 0.5)
    monkeypatch.setattr(sender.EmailSender, "poll_seconds", 0.2)


async def wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_an_outage_delays_mail_but_never_loses_or_doubles_it(pool, settings, worker, fast):
    settings.CF_EMAIL_WORKER_URL = worker.url
    async with pool.acquire() as conn:
        for n in range(3):
            await queue_one(conn, n)
    # The worker is fine for three mails, then fails every way it can, then recovers.
    worker.script = ["ok", "ok", "ok", "500", "hang", "429", "502", "500", "hang", "500", "429", "500", "502"]
    async with httpx.AsyncClient() as http:
        senders = [email.EmailSender(pool, settings, http) for _ in range(2)]  # two web instances
        for s in senders:
            s.start()
        try:
            async with pool.acquire() as conn:
                for n in range(3, 12):
                    await queue_one(conn, n)

            async def all_sent():
                return await pool.fetchval("SELECT count(*) FROM app.email_outbox WHERE status = 'sent'") == 12

            await wait_for(all_sent)
        finally:
            for s in senders:
                await s.close()
    received = Counter(d["to"] for d in worker.delivered)
    assert received == Counter(f"user{n}@example.com" for n in range(12))  # each exactly once
    assert worker.problems == []
    assert worker.requests >= 12 + 10
    retried = await pool.fetchval("SELECT count(*) FROM app.email_outbox WHERE attempts > 1")
    assert retried >= 1
    doc = worker.delivered[0]
    assert doc["from"] == settings.email_sender and doc["category"] == "magic-link"


async def test_a_refused_signature_holds_mail_with_the_reason(pool, settings, worker, fast):
    settings.CF_EMAIL_WORKER_URL = worker.url
    worker.secret = "another secret entirely, 40 characters.."
    async with pool.acquire() as conn:
        mail_id = await queue_one(conn, 1)
    async with httpx.AsyncClient() as http:
        s = email.EmailSender(pool, settings, http)
        assert await s.run_once()
        assert not await s.run_once()  # held mail is not retried
    row = await pool.fetchrow("SELECT status, last_error FROM app.email_outbox WHERE id = $1", mail_id)
    assert row["status"] == "held"
    assert "CF_EMAIL_WORKER_SECRET" in row["last_error"]

    worker.secret = SECRET
    async with pool.acquire() as conn:
        assert await email_outbox.release_held(conn) == 1
    async with httpx.AsyncClient() as http:
        assert await email.EmailSender(pool, settings, http).run_once()
    assert await pool.fetchval("SELECT status FROM app.email_outbox WHERE id = $1", mail_id) == "sent"


async def test_a_refused_mail_is_held(pool, settings, worker, fast):
    settings.CF_EMAIL_WORKER_URL = worker.url
    worker.script = ["400"]
    async with pool.acquire() as conn:
        mail_id = await queue_one(conn, 1)
    async with httpx.AsyncClient() as http:
        await email.EmailSender(pool, settings, http).run_once()
    row = await pool.fetchrow("SELECT status, last_error FROM app.email_outbox WHERE id = $1", mail_id)
    assert (row["status"], "refused the mail" in row["last_error"]) == ("held", True)


async def test_a_sender_that_died_mid_send_gives_its_mail_back(pool, settings, worker, fast):
    settings.CF_EMAIL_WORKER_URL = worker.url
    async with pool.acquire() as conn:
        mail_id = await queue_one(conn, 1)
        claimed = await email_outbox.claim_due(conn, limit=5, lease=timedelta(milliseconds=200))
        assert [r["id"] for r in claimed] == [mail_id]
        assert await email_outbox.claim_due(conn, limit=5, lease=timedelta(seconds=60)) == []
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as http:
        assert await email.EmailSender(pool, settings, http).run_once()
    assert [d["to"] for d in worker.delivered] == ["user1@example.com"]


# ------------------------------------------------------------------ wiring and receipts


def build_app(settings, pool) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[PG_POOL] = pool
    live.setup(app)
    email.setup(app)
    return app


async def test_without_a_worker_url_mail_stays_in_the_outbox(settings, pool, aiohttp_client):
    settings.SSE_TRANSPORT = "memory"
    client = await aiohttp_client(build_app(settings, pool))
    assert email.EMAIL_SENDER not in client.server.app
    async with pool.acquire() as conn:
        await queue_one(conn, 1)
    await asyncio.sleep(0.3)
    assert await pool.fetchval("SELECT status FROM app.email_outbox") == "pending"


async def test_the_app_delivers_queued_mail_promptly(settings, pool, worker, fast, aiohttp_client):
    settings.SSE_TRANSPORT = "memory"
    settings.CF_EMAIL_WORKER_URL = worker.url
    await aiohttp_client(build_app(settings, pool))
    t0 = time.monotonic()
    async with pool.acquire() as conn:
        await queue_one(conn, 1)

    async def sent():
        return len(worker.delivered) == 1

    await wait_for(sent, 5)
    assert time.monotonic() - t0 < 2  # woken by NOTIFY, not by a slow poll


@pytest.fixture
async def finished_session(pool):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1"], "charger-key-0123456789", description="Main street #1")
        await customers.add_customer(conn, "alice@example.com", name="Alice", lago_subscription_id="s1")
        await id_tags.add_id_tag(conn, "ALICE1", customer_email="alice@example.com")
        start = datetime.now(UTC) - timedelta(minutes=65)
        return await conn.fetchval(
            """
            INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start,
                                           stop_timestamp, meter_stop, stopped_by, customer_id)
            SELECT id, 1, 'ALICE1', $1, 1000, $2, 13345, 'charger',
                   (SELECT customer_id FROM app.id_tags WHERE id_tag = 'ALICE1')
            FROM ocpp.charge_boxes
            RETURNING id
            """,
            start,
            start + timedelta(minutes=65),
        )


async def test_a_receipt_is_mailed_once_when_a_session_ends(settings, pool, finished_session, monkeypatch, aiohttp_client):
    monkeypatch.setattr(live.ingest, "INGEST_LOCK_RETRY_SECONDS", 0.1)
    settings.SSE_TRANSPORT = "postgres"
    one = await aiohttp_client(build_app(settings, pool))
    two = await aiohttp_client(build_app(settings, pool))
    for _ in range(200):
        if any(c.server.app[live.OCPP_INGEST].listener.listening.is_set() for c in (one, two)):
            break
        await asyncio.sleep(0.02)
    payload = {"event": "stopped", "transaction_id": finished_session, "charge_box_id": "CB-1",
               "connector_id": 1, "id_tag": "ALICE1"}
    await pool.execute("SELECT pg_notify($1, $2)", TRANSACTION_EVENTS, json.dumps(payload))
    await pool.execute("SELECT pg_notify($1, $2)", TRANSACTION_EVENTS, json.dumps(payload))  # a repeat

    async def queued():
        return await pool.fetchval("SELECT count(*) FROM app.email_outbox") >= 1

    await wait_for(queued, 5)
    await asyncio.sleep(0.3)
    rows = await pool.fetch("SELECT to_address, category, subject, text FROM app.email_outbox")
    assert len(rows) == 1
    assert (rows[0]["to_address"], rows[0]["category"]) == ("alice@example.com", "session-summary")
    assert "12.35 kWh" in rows[0]["subject"]
    assert "Main street #1" in rows[0]["text"] and "1 h 05 min" in rows[0]["text"]
    assert f"/sessions/{finished_session}" in rows[0]["text"]


async def test_no_receipt_when_the_customer_turned_them_off(settings, pool, finished_session):
    await pool.execute("UPDATE app.customers SET receipts_enabled = false")
    payload = {"event": "stopped", "transaction_id": finished_session}
    async with pool.acquire() as conn:
        assert await receipts.on_session_stopped(conn, settings, TRANSACTION_EVENTS, payload, None) is None
        assert await receipts.catch_up(conn, settings) == 0
        await conn.execute("UPDATE app.customers SET receipts_enabled = true")
        # Missed while no instance listened: the catch-up finds it, once.
        assert await receipts.catch_up(conn, settings) == 1
        assert await receipts.catch_up(conn, settings) == 0
        assert await receipts.on_session_stopped(conn, settings, TRANSACTION_EVENTS, payload, None) is None


# ------------------------------------------------------------------ polaris admin outbox


async def test_admin_outbox_lists_mail_with_links(db_dsn, settings, pool, monkeypatch, capsys):
    from polaris.cli.main import main

    async with pool.acquire() as conn:
        await queue_one(conn, 1)
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    monkeypatch.chdir("/tmp")  # no .env
    # The command runs its own event loop: give it a thread.
    assert await asyncio.to_thread(main, ["admin", "outbox", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert docs[0]["to"] == "user1@example.com"
    assert docs[0]["status"] == "pending"
    assert docs[0]["links"] == ["http://x/1"]
    assert await asyncio.to_thread(main, ["admin", "outbox"]) == 0
    out = capsys.readouterr().out
    assert "link: http://x/1" in out and "PENDING" in out and "CF_EMAIL_WORKER_URL unset" in out
