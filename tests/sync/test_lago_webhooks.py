"""Lago webhooks: RS256 signature against the fake Lago's public key, idempotent storage,
invoices kept locally, invoice-available mail queued once.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import SecretStr
from sync_helpers import add_customer

from polaris.db.repos import billing
from polaris.services import lago_webhooks
from polaris.services.appkeys import HTTP_CLIENT, PG_POOL, SETTINGS


@pytest.fixture
def lago_key(fake_lago) -> RSAKey:
    key = RSAKey.generate_key(2048)
    fake_lago.public_key_pem = key.as_pem(private=False)
    return key


@pytest.fixture
async def client(aiohttp_client, pool, settings, fake_lago, lago_key):
    app = web.Application()
    app[SETTINGS] = settings.model_copy(
        update={"LAGO_API_URL": fake_lago.url, "LAGO_API_KEY": SecretStr(fake_lago.api_key),
                "LAGO_WEBHOOK_HMAC_KEY": SecretStr(fake_lago.hmac_key)}
    )
    app[PG_POOL] = pool
    http = httpx.AsyncClient()
    app[HTTP_CLIENT] = http
    lago_webhooks.setup(app)
    yield await aiohttp_client(app)
    await http.aclose()


def _invoice(status: str = "finalized", **extra) -> dict:
    return {
        "lago_id": extra.pop("lago_id", str(uuid.uuid4())),
        "sequential_id": 1,
        "number": "POL-202601-001",
        "issuing_date": "2026-02-01",
        "invoice_type": "subscription",
        "status": status,
        "payment_status": "pending",
        "currency": "EUR",
        "total_amount_cents": 4321,
        "file_url": None,
        "customer": {"lago_id": str(uuid.uuid4()), "external_id": "cust_ext_1"},
        "subscriptions": [{"external_id": "sub_inv"}],
        **extra,
    }


def _signed(key: RSAKey, payload: dict, *, iss: str = "http://lago") -> tuple[str, str]:
    body = json.dumps(payload)
    token = jwt.encode({"alg": "RS256"}, {"data": body, "iss": iss}, key)
    return body, token


async def _post(client, body: str, token: str | None, *, unique_key: str | None = None):
    headers = {"Content-Type": "application/json", "X-Lago-Signature-Algorithm": "jwt"}
    if token is not None:
        headers["X-Lago-Signature"] = token
    if unique_key:
        headers["X-Lago-Unique-Key"] = unique_key
    return await client.post("/api/webhook/lago", data=body, headers=headers)


async def test_signed_invoice_webhook_is_stored_once(client, conn, lago_key, fake_lago):
    await add_customer(conn, "inv@example.com", subscription="sub_inv")
    payload = {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": _invoice()}
    body, token = _signed(lago_key, payload)
    resp = await _post(client, body, token, unique_key="wh-1")
    assert resp.status == 200 and (await resp.json()) == {"ok": True, "duplicate": False}
    # Lago retries the same delivery: accepted, not processed twice.
    resp = await _post(client, body, token, unique_key="wh-1")
    assert (await resp.json())["duplicate"] is True

    invoices = await billing.list_invoices(conn)
    assert len(invoices) == 1
    inv = invoices[0]
    assert inv["customer_email"] == "inv@example.com" and inv["total_amount_cents"] == 4321
    assert inv["number"] == "POL-202601-001" and inv["status"] == "finalized"
    stored = await conn.fetchrow("SELECT deliveries, webhook_type FROM billing.lago_webhooks")
    assert stored["deliveries"] == 2 and stored["webhook_type"] == "invoice.created"
    # The public key was fetched once and cached.
    assert [r for r in fake_lago.requests if "public_key" in r[1]] == [
        ("GET", "/api/v1/webhooks/json_public_key", 200)
    ]

    mails = await conn.fetch("SELECT to_address, category, subject, text FROM app.email_outbox")
    assert [(m["to_address"], m["category"]) for m in mails] == [("inv@example.com", "invoice-available")]
    assert "POL-202601-001" in mails[0]["subject"] and "43.21 EUR" in mails[0]["text"]
    assert await conn.fetchval("SELECT email_queued_at FROM app.invoices") is not None

    # Later news about the same invoice (paid) updates it without a second mail.
    paid = {**payload, "webhook_type": "invoice.payment_status_updated",
            "invoice": {**payload["invoice"], "payment_status": "succeeded"}}
    body, token = _signed(lago_key, paid)
    assert (await _post(client, body, token, unique_key="wh-2")).status == 200
    assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == 1
    assert (await billing.list_invoices(conn))[0]["payment_status"] == "succeeded"


async def test_invoice_updates_keep_one_row(client, conn, lago_key):
    lago_id = str(uuid.uuid4())
    for n, (kind, status, payment) in enumerate(
        [("invoice.drafted", "draft", "pending"), ("invoice.created", "finalized", "pending"),
         ("invoice.payment_status_updated", "finalized", "succeeded")]
    ):
        payload = {"webhook_type": kind, "object_type": "invoice",
                   "invoice": _invoice(status, lago_id=lago_id, payment_status=payment)}
        body, token = _signed(lago_key, payload)
        assert (await _post(client, body, token, unique_key=f"k{n}")).status == 200
    rows = await conn.fetch("SELECT status, payment_status, customer_id FROM app.invoices")
    assert [(r["status"], r["payment_status"]) for r in rows] == [("finalized", "succeeded")]
    assert rows[0]["customer_id"] is None  # no customer with those Lago ids


async def test_bad_signatures_are_refused(client, conn, lago_key):
    payload = {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": _invoice()}
    body, token = _signed(lago_key, payload)
    assert (await _post(client, body, None)).status == 401
    other = RSAKey.generate_key(2048)
    _, forged = _signed(other, payload)
    resp = await _post(client, body, forged)
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    # A valid signature over another payload does not vouch for this body.
    _, token_other = _signed(lago_key, {"webhook_type": "customer.created", "object_type": "customer"})
    resp = await _post(client, body, token_other)
    assert resp.status == 401
    # A JWT sent as if it were HMAC does not verify as HMAC.
    resp = await client.post("/api/webhook/lago", data=body, headers={
        "X-Lago-Signature": token, "X-Lago-Signature-Algorithm": "hmac"})
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    resp = await client.post("/api/webhook/lago", data=body, headers={
        "X-Lago-Signature": token, "X-Lago-Signature-Algorithm": "rsa"})
    assert resp.status == 401 and "JWT or HMAC" in (await resp.json())["message"]
    assert (await _post(client, "not json", token)).status == 400
    assert await conn.fetchval("SELECT count(*) FROM billing.lago_webhooks") == 0


async def test_rotated_key_is_fetched_again(client, lago_key, fake_lago):
    payload = {"webhook_type": "customer.updated", "object_type": "customer", "customer": {}}
    body, token = _signed(lago_key, payload)
    assert (await _post(client, body, token, unique_key="a")).status == 200
    new_key = RSAKey.generate_key(2048)
    fake_lago.public_key_pem = new_key.as_pem(private=False)
    client.app[lago_webhooks.KEY_CACHE].fetched_at -= lago_webhooks.KEY_REFETCH_MIN_S + 1
    body, token = _signed(new_key, payload | {"n": 2})
    assert (await _post(client, body, token, unique_key="b")).status == 200


async def test_key_unavailable_is_503_so_lago_retries(client, lago_key, fake_lago):
    fake_lago.public_key_pem = None
    payload = {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": _invoice()}
    body, token = _signed(lago_key, payload)
    assert (await _post(client, body, token)).status == 503


async def test_hmac_signed_webhook_is_accepted_and_a_wrong_key_refused(client, conn, fake_lago):
    payload = {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": _invoice()}
    body, headers = fake_lago.sign_webhook(payload, algorithm="hmac")
    resp = await client.post("/api/webhook/lago", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    fake_lago.hmac_key = "another-organization"
    body, headers = fake_lago.sign_webhook(payload | {"n": 1}, algorithm="hmac")
    resp = await client.post("/api/webhook/lago", data=body, headers=headers)
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    assert await conn.fetchval("SELECT count(*) FROM billing.lago_webhooks") == 1


async def test_partial_and_older_payloads_do_not_wipe_newer_state(client, conn, lago_key):
    await add_customer(conn, "part@example.com", subscription="sub_inv")
    lago_id = str(uuid.uuid4())
    full = _invoice("finalized", lago_id=lago_id, file_url="https://lago.example/inv.pdf",
                    updated_at="2026-02-01T10:00:00Z")
    body, token = _signed(lago_key, {"webhook_type": "invoice.created", "object_type": "invoice",
                                     "invoice": full})
    assert (await _post(client, body, token, unique_key="p1")).status == 200
    # invoice.payment_status_updated carrying only a few fields: the rest stays.
    partial = {"lago_id": lago_id, "payment_status": "succeeded", "updated_at": "2026-02-02T10:00:00Z"}
    body, token = _signed(lago_key, {"webhook_type": "invoice.payment_status_updated",
                                     "object_type": "invoice", "invoice": partial})
    assert (await _post(client, body, token, unique_key="p2")).status == 200
    row = await conn.fetchrow("SELECT * FROM app.invoices WHERE lago_id = $1", lago_id)
    assert row["payment_status"] == "succeeded" and row["number"] == "POL-202601-001"
    assert row["total_amount_cents"] == 4321 and row["status"] == "finalized"
    assert row["file_url"] == "https://lago.example/inv.pdf" and row["customer_id"] is not None
    # A retry of an older delivery (payment still pending) arrives last: the newer state stays.
    old = _invoice("finalized", lago_id=lago_id, payment_status="pending", updated_at="2026-02-01T11:00:00Z")
    body, token = _signed(lago_key, {"webhook_type": "invoice.payment_status_updated",
                                     "object_type": "invoice", "invoice": old})
    assert (await _post(client, body, token, unique_key="p3")).status == 200
    row = await conn.fetchrow("SELECT payment_status FROM app.invoices WHERE lago_id = $1", lago_id)
    assert row["payment_status"] == "succeeded"
    assert await conn.fetchval("SELECT count(*) FROM app.email_outbox") == 1


def _big_invoice() -> dict:
    """A normal invoice.created as Lago sends it: one subscription, its fees, the customer."""
    fee = {
        "lago_id": str(uuid.uuid4()), "lago_charge_id": str(uuid.uuid4()),
        "lago_invoice_id": str(uuid.uuid4()), "lago_subscription_id": str(uuid.uuid4()),
        "external_subscription_id": "sub_inv", "amount_cents": 4321, "amount_currency": "EUR",
        "taxes_amount_cents": 0, "total_amount_cents": 4321, "units": "123.456", "events_count": 31,
        "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-31T23:59:59Z",
        "item": {"type": "charge", "code": "ev_charging_kwh", "name": "EV charging",
                 "invoice_display_name": "Charging (kWh)", "lago_item_id": str(uuid.uuid4())},
        "amount_details": {}, "precise_unit_amount": "0.35", "payment_status": "pending",
    }
    return _invoice(
        fees=[{**fee, "lago_id": str(uuid.uuid4())} for _ in range(14)],
        customer={"lago_id": str(uuid.uuid4()), "external_id": "cust_ext_1", "name": "Big Customer",
                  "email": "big@example.com", "address_line1": "1 Long Street", "city": "Town",
                  "country": "NL", "currency": "EUR", "timezone": "Europe/Amsterdam",
                  "billing_configuration": {"invoice_grace_period": 0, "payment_provider": None},
                  "metadata": [], "created_at": "2025-11-01T00:00:00Z"},
        subscriptions=[{"lago_id": str(uuid.uuid4()), "external_id": "sub_inv", "plan_code": "ev_plan",
                        "status": "active", "billing_time": "calendar",
                        "started_at": "2025-11-01T00:00:00Z", "created_at": "2025-11-01T00:00:00Z"}],
        credits=[], applied_taxes=[], metadata=[], updated_at="2026-02-01T00:00:00Z",
    )


async def test_real_web_process_takes_a_15kb_jwt_an_hmac_and_refuses_a_forgery(db_dsn, conn, fake_lago, tmp_path):
    """`polaris web` (the real aiohttp server): Lago's 15 KB signature header gets through."""
    import asyncio
    import os
    import socket
    import sys

    from polaris.config import Settings

    await add_customer(conn, "big@example.com", subscription="sub_inv")
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.update(
        DATABASE_URL=db_dsn, AUTH_SECRET="a" * 40, STEVE_PREAUTH_HMAC_KEY="p" * 40, STEVE_API_KEY="k" * 32,
        SSE_TRANSPORT="memory", LOG_FORMAT="json", WEB_METRICS_PORT=str(free_port()),
        # As copied from Lago's OpenAPI spec, /api/v1 included.
        LAGO_API_URL=fake_lago.url + "/api/v1", LAGO_API_KEY=fake_lago.api_key,
        LAGO_WEBHOOK_HMAC_KEY=fake_lago.hmac_key,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "web", "--host", "127.0.0.1", "--port", str(port),
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/api/webhook/lago"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(150):
                try:
                    await http.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    assert proc.returncode is None, "polaris web exited"
                    await asyncio.sleep(0.1)
            payload = {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": _big_invoice()}
            body, headers = fake_lago.sign_webhook(payload)
            assert len(headers["X-Lago-Signature"]) > 15_000, len(headers["X-Lago-Signature"])
            resp = await http.post(url, content=body, headers=headers)
            assert resp.status_code == 200, resp.text
            hmac_payload = {"webhook_type": "invoice.created", "object_type": "invoice",
                            "invoice": _big_invoice() | {"number": "POL-202601-002"}}
            body, headers = fake_lago.sign_webhook(hmac_payload, algorithm="hmac")
            resp = await http.post(url, content=body, headers=headers)
            assert resp.status_code == 200, resp.text
            forged = {**payload, "invoice": {**payload["invoice"], "lago_id": str(uuid.uuid4()),
                                             "total_amount_cents": 1}}
            body, headers = fake_lago.sign_webhook(forged)
            other = RSAKey.generate_key(2048)
            headers["X-Lago-Signature"] = jwt.encode({"alg": "RS256"}, {"data": body.decode()}, other)
            resp = await http.post(url, content=body, headers=headers)
            assert resp.status_code == 401
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode in (0, -15), err.decode()[-3000:]
    rows = await conn.fetch("SELECT number, customer_id FROM app.invoices ORDER BY number")
    assert [r["number"] for r in rows] == ["POL-202601-001", "POL-202601-002"]
    mails = await conn.fetch("SELECT to_address, category FROM app.email_outbox ORDER BY id")
    assert [(m["to_address"], m["category"]) for m in mails] == [("big@example.com", "invoice-available")] * 2
    # The key came from json_public_key, under the URL with one /api/v1.
    assert ("GET", "/api/v1/webhooks/json_public_key", 200) in fake_lago.requests


async def test_events_errors_hold_the_named_sessions_and_alert(client, conn, pool, fake_lago, settings):
    """Lago's events.errors: events it stored (200) but will not bill."""
    from datetime import UTC, datetime

    from sync_helpers import add_charger, add_session

    from polaris.services import alerts
    from polaris.sync.lago import LagoClient
    from polaris.sync.worker import SyncEngine

    fake_lago.add_subscription("sub_err")
    cb = await add_charger(conn)
    await add_customer(conn, "err@example.com", subscription="sub_err", tag="ERR")
    tx = await add_session(conn, cb, "ERR", energy_wh=2_500)
    sync_settings = settings.model_copy(update={"LAGO_API_URL": fake_lago.url,
                                                "LAGO_API_KEY": SecretStr(fake_lago.api_key),
                                                "SYNC_LOOKBACK_MINUTES": 10_000_000})
    async with LagoClient(fake_lago.url, fake_lago.api_key) as lago:
        await SyncEngine(pool, lago, sync_settings).run()
    tid = await conn.fetchval("SELECT transaction_id FROM billing.usage_events WHERE ocpp_transaction_id = $1", tx)
    payload = {"webhook_type": "events.errors", "object_type": "events_errors",
               "organization_id": str(uuid.uuid4()),
               "events_errors": {"invalid_code": [tid, "not_ours"], "missing_aggregation_property": [],
                                 "missing_group_key": [], "invalid_filter_values": []}}
    body, headers = fake_lago.sign_webhook(payload)
    resp = await client.post("/api/webhook/lago", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    row = await conn.fetchrow(
        "SELECT unbillable_code, unbillable_reason FROM billing.transaction_sync_state WHERE transaction_id = $1", tx)
    assert row["unbillable_code"] == "invalid_event" and "invalid_code" in row["unbillable_reason"]
    assert await conn.fetchval("SELECT status FROM billing.usage_events WHERE transaction_id = $1", tid) == "invalid"
    found = await alerts.detect(conn, settings, datetime.now(UTC))
    (cond,) = [c for c in found if c.kind == "lago_not_billing"]
    assert cond.due and "1 session(s) held" in cond.detail
