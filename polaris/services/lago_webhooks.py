"""`POST /api/webhook/lago`: Lago's webhooks, signature checked, stored once, invoices kept.

Lago signs each webhook in `X-Lago-Signature`, by the endpoint's `signature_algo`:

- `jwt` (the default): an RS256 JWT whose `data` claim is the JSON payload (no `iat`/`exp`
  claims, so none are required), verified against the key from
  `GET /api/v1/webhooks/json_public_key` (`{"webhook": {"public_key": base64 PEM}}`; the
  plain-text `public_key` endpoint is deprecated and only tried when the JSON one is 404).
  Cached, fetched again once when a signature does not verify (a rotated key). The JWT
  carries the whole payload, so a normal invoice makes a 15 KB header: the web app accepts
  header fields up to MAX_SIGNATURE_HEADER (aiohttp's default is 8,190 bytes).
- `hmac`: base64 of HMAC-SHA256 of the raw body with the organization's HMAC key
  (LAGO_WEBHOOK_HMAC_KEY); a short header whatever the payload's size.

Webhooks are stored idempotently by `X-Lago-Unique-Key` (Lago retries a delivery whose
answer it did not get); invoice webhooks update the local invoice kept for the portal and
the console (a partial payload only changes what it carries; an older `updated_at` does
not overwrite a newer state), and a finalized invoice queues an `invoice-available` mail
once, through the email outbox in the same transaction. `events.errors` (events Lago stored
but will not bill: invalid_code, missing_aggregation_property, ...) holds the named sessions
with the reason; the operator alert `lago_not_billing` opens while any is held. (Lago does not
report events for an unknown subscription there: reconcile's usage comparison finds those.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from polaris.config import Settings
from polaris.db.repos import billing
from polaris.logs import get_logger
from polaris.services.appkeys import HTTP_CLIENT, PG_POOL, SETTINGS
from polaris.services.email import send_mail

log = get_logger(__name__)

PATH = "/api/webhook/lago"
KEY_TTL_S = 3600.0
# A key fetched this recently is not fetched again for a bad signature (no refetch storms).
KEY_REFETCH_MIN_S = 30.0
MAX_BODY = 5 * 1024 * 1024
# Header fields the web app accepts (aiohttp's `max_field_size`): a JWT signature carries the
# whole payload base64-encoded, so an invoice with many fees makes a header of 100 KB or more.
MAX_SIGNATURE_HEADER = 1024 * 1024
HANDLER_ARGS = {"max_field_size": MAX_SIGNATURE_HEADER}


@dataclass
class _KeyCache:
    key: RSAKey | None = None
    fetched_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


KEY_CACHE = web.AppKey("lago_webhook_key", _KeyCache)


def setup(app: web.Application) -> None:
    """Add the Lago webhook receiver to the (root) app."""
    app[KEY_CACHE] = _KeyCache()
    app.router.add_post(PATH, receive, name="lago_webhook")


def _reply(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _public_key(app: web.Application, *, refresh: bool) -> RSAKey:
    cache = app[KEY_CACHE]
    async with cache.lock:
        age = time.monotonic() - cache.fetched_at
        fresh = cache.key is not None and age < KEY_TTL_S
        if fresh and not (refresh and age >= KEY_REFETCH_MIN_S):
            assert cache.key is not None
            return cache.key
        settings: Settings = app[SETTINGS]
        if not settings.LAGO_API_KEY:
            raise LookupError("LAGO_API_KEY is not set: the webhook key cannot be fetched from Lago")
        root = settings.lago_api_root
        headers = {"Authorization": f"Bearer {settings.LAGO_API_KEY.get_secret_value()}"}
        resp = await app[HTTP_CLIENT].get(
            root + "/api/v1/webhooks/json_public_key", headers=headers, timeout=10
        )
        if resp.status_code == 200:
            try:
                encoded = (resp.json().get("webhook") or {}).get("public_key") or ""
            except (ValueError, AttributeError):
                raise LookupError("Lago's json_public_key answer is not the JSON it should be") from None
        elif resp.status_code == 404:
            # An older self-hosted Lago: only the deprecated plain-text endpoint.
            resp = await app[HTTP_CLIENT].get(root + "/api/v1/webhooks/public_key", headers=headers, timeout=10)
            if resp.status_code != 200:
                raise LookupError(f"Lago answered {resp.status_code} for its webhook public key")
            encoded = resp.text
        else:
            raise LookupError(f"Lago answered {resp.status_code} for its webhook public key")
        try:
            cache.key = RSAKey.import_key(base64.b64decode(encoded.strip()))
        except (binascii.Error, ValueError, JoseError) as exc:
            raise LookupError(f"Lago's webhook public key could not be read: {exc}") from None
        cache.fetched_at = time.monotonic()
        log.info("lago webhook key fetched")
        return cache.key


async def _verify(app: web.Application, token: str) -> dict[str, Any]:
    """The JWT's claims if Lago signed it; raises JoseError otherwise."""
    try:
        return jwt.decode(token, await _public_key(app, refresh=False), algorithms=["RS256"]).claims
    except JoseError:
        # Perhaps Lago rotated its key: fetch it once more and try again.
        return jwt.decode(token, await _public_key(app, refresh=True), algorithms=["RS256"]).claims


async def receive(request: web.Request) -> web.Response:
    if request.content_length and request.content_length > MAX_BODY:
        return _reply(413, "too_large", "webhook body too large")
    raw = await request.read()
    token = request.headers.get("X-Lago-Signature")
    if not token:
        return _reply(401, "missing_signature", "X-Lago-Signature is missing")
    algorithm = request.headers.get("X-Lago-Signature-Algorithm", "jwt").strip().lower()
    if algorithm not in ("jwt", "hmac"):
        return _reply(
            401,
            "unsupported_signature",
            f"signature algorithm {algorithm!r} is not accepted: set the webhook endpoint's "
            "signature to JWT or HMAC in Lago",
        )
    try:
        body = json.loads(raw)
    except ValueError:
        return _reply(400, "invalid_json", "the body is not JSON")
    settings: Settings = request.app[SETTINGS]
    if algorithm == "hmac":
        key = settings.LAGO_WEBHOOK_HMAC_KEY
        if key is None or not key.get_secret_value():
            log.error("lago hmac webhook refused: LAGO_WEBHOOK_HMAC_KEY is not set")
            return _reply(
                401,
                "unsupported_signature",
                "HMAC-signed webhook, but LAGO_WEBHOOK_HMAC_KEY is not set: copy the HMAC key "
                "from Lago (Developers > API keys), or set the endpoint's signature to JWT",
            )
        expected = base64.b64encode(
            hmac.new(key.get_secret_value().encode(), raw, hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(expected.encode(), token.strip().encode()):
            log.warning("lago webhook signature refused", algorithm="hmac")
            return _reply(401, "bad_signature", "the HMAC signature does not match the body")
        signed = body
        data: Any = raw.decode("utf-8", "replace")
    else:
        try:
            claims = await _verify(request.app, token)
        except LookupError as exc:
            log.error("lago webhook key unavailable", error=str(exc))
            return _reply(503, "key_unavailable", "cannot check the signature now; Lago will retry")
        except Exception as exc:  # any httpx failure reaching Lago as well
            if isinstance(exc, JoseError):
                log.warning("lago webhook signature refused", error=exc.__class__.__name__)
                return _reply(401, "bad_signature", "the signature does not verify against Lago's key")
            log.error("lago webhook key unavailable", error=f"{exc.__class__.__name__}: {exc}")
            return _reply(503, "key_unavailable", "cannot check the signature now; Lago will retry")
        data = claims.get("data")
        try:
            signed = json.loads(data) if isinstance(data, str) else data
        except ValueError:
            signed = None
        if not isinstance(signed, dict) or signed != body:
            return _reply(401, "bad_signature", "the signed payload does not match the body")
    if not isinstance(signed, dict):
        return _reply(400, "invalid_body", "the body is not a JSON object")
    webhook_type = signed.get("webhook_type")
    if not isinstance(webhook_type, str) or not webhook_type:
        return _reply(400, "invalid_body", "webhook_type is missing")
    unique_key = request.headers.get("X-Lago-Unique-Key") or hashlib.sha256(
        (data if isinstance(data, str) else json.dumps(data, sort_keys=True)).encode()
    ).hexdigest()
    object_type = signed.get("object_type")
    async with request.app[PG_POOL].acquire() as conn, conn.transaction():
        new = await billing.store_lago_webhook(
            conn, unique_key=unique_key, webhook_type=webhook_type, object_type=object_type, payload=signed
        )
        queued = False
        if new and object_type == "invoice" and isinstance(signed.get("invoice"), dict):
            queued = await _handle_invoice(conn, settings, signed["invoice"])
        if new and webhook_type == "events.errors" and isinstance(signed.get("events_errors"), dict):
            held = await billing.hold_reported_events(
                conn, {k: v for k, v in signed["events_errors"].items() if isinstance(v, list)}
            )
            if held:
                log.error(
                    "lago will not bill stored events",
                    sessions=[r["ocpp_transaction_id"] for r in held],
                    errors=sorted({r["error"] for r in held}),
                )
    log.info(
        "lago webhook received",
        webhook_type=webhook_type,
        unique_key=unique_key,
        duplicate=not new,
        mail_queued=queued,
    )
    return web.json_response({"ok": True, "duplicate": not new})


async def _handle_invoice(conn: asyncpg.Connection, settings: Settings, invoice: dict[str, Any]) -> bool:
    """Keep the invoice; queue invoice-available once when it is finalized. True if queued."""
    if not invoice.get("lago_id"):
        return False
    row = await billing.upsert_invoice(conn, invoice)
    if row["status"] != "finalized" or row["email_queued_at"] is not None or row["customer_id"] is None:
        return False
    person = await billing.claim_invoice_email(conn, row["id"])
    if person is None:
        return False
    amount = row["total_amount_cents"] or 0
    await send_mail(
        conn,
        "invoice-available",
        to=person["email"],
        dedupe_key=f"invoice-available:{row['lago_id']}",
        name=person["name"],
        invoice_number=row["number"] or row["lago_id"],
        amount=f"{amount / 100:.2f}",
        currency=row["currency"] or "",
        # Lago's PDF when it has one; the portal's billing page otherwise.
        invoice_url=row["file_url"] or f"{settings.CUSTOMER_BASE_URL.rstrip('/')}/billing",
    )
    return True
