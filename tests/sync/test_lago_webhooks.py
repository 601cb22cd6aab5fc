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
        update={"LAGO_API_URL": fake_lago.url, "LAGO_API_KEY": SecretStr(fake_lago.api_key)}
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
    assert [r for r in fake_lago.requests if r[1].endswith("/webhooks/public_key")] == [
        ("GET", "/api/v1/webhooks/public_key", 200)
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
    resp = await client.post("/api/webhook/lago", data=body, headers={
        "X-Lago-Signature": token, "X-Lago-Signature-Algorithm": "hmac"})
    assert resp.status == 401 and "JWT" in (await resp.json())["message"]
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
