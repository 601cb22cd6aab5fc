"""iOS push: device registration (/api/v1/devices) and session notices through APNs (aioapns).

Session start, stop and charger fault are queued in `app.push_outbox` (one row per
device, deduplicated) and delivered by a sender per web instance (SKIP LOCKED claims,
retries with backoff, dropped after an hour: a late "charging started" is noise).
APNs answering 410, BadDeviceToken or Unregistered deletes the token. Without the
APNS_* settings nothing is queued and the process starts normally (logged once).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import ssl
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from polaris.config import Settings
from polaris.db.errors import InvalidInput
from polaris.db.notify import CHARGER_EVENTS, TRANSACTION_EVENTS
from polaris.db.repos import devices
from polaris.logs import get_logger
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.outbox_worker import OutboxWorker

log = get_logger(__name__)

SEND_TIMEOUT = 10.0
BATCH = 20
LEASE = timedelta(seconds=60)
BACKOFF_BASE = 5.0
BACKOFF_MAX = 300.0
POLL_SECONDS = 5.0
DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})

# Tests (and unusual networks) may hand the APNs client its own TLS context.
APNS_SSL_CONTEXT = web.AppKey("apns_ssl_context", ssl.SSLContext)
_told_disabled = False


def load_apns_key(settings: Settings) -> str:
    """The .p8 key as PEM text from APNS_KEY_BASE64; ValueError saying what is wrong."""
    assert settings.APNS_KEY_BASE64 is not None
    try:
        pem = base64.b64decode(settings.APNS_KEY_BASE64.get_secret_value(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("APNS_KEY_BASE64 is not base64 of a .p8 key file") from None
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except ValueError:
        raise ValueError("APNS_KEY_BASE64 does not hold a PEM private key (the .p8 file from Apple)") from None
    if not isinstance(key, EllipticCurvePrivateKey):
        raise ValueError("APNS_KEY_BASE64 must be Apple's EC (P-256) .p8 key")
    return pem


# ------------------------------------------------------------------ notices


def _alert(kind: str, session: Any, payload: dict[str, Any]) -> tuple[str, str]:
    charger = session["charger_description"] or session["charge_box_id"]
    if kind == "session-started":
        return ("Charging started", f"Your session at {charger} has started.")
    if kind == "session-stopped":
        kwh = max((session["meter_stop"] or session["meter_start"]) - session["meter_start"], 0) / 1000
        return ("Charging finished", f"{kwh:.2f} kWh at {charger}.")
    error = payload.get("error_code")
    detail = f" ({error})" if error and error != "NoError" else ""
    return ("Charger fault", f"The charger at {charger} reported a fault{detail}; charging may have stopped.")


def notice_kind(channel: str, payload: dict[str, Any]) -> str | None:
    if channel == TRANSACTION_EVENTS and payload.get("event") in ("started", "stopped"):
        return f"session-{payload['event']}"
    if channel == CHARGER_EVENTS and payload.get("event") == "status" and payload.get("status") == "Faulted":
        return "charger-fault"
    return None


async def queue_notice(conn: asyncpg.Connection, channel: str, payload: dict[str, Any], session: Any) -> int:
    """Queue a push to every device of the session's customer; returns how many."""
    kind = notice_kind(channel, payload)
    if kind is None or session is None or session["user_id"] is None or session["is_test"]:
        return 0
    title, body = _alert(kind, session, payload)
    tx = session["transaction_id"]
    message = {
        "aps": {"alert": {"title": title, "body": body}, "sound": "default", "thread-id": f"session-{tx}"},
        "kind": kind,
        "transaction_id": tx,
        "charge_box_id": session["charge_box_id"],
    }
    return await devices.queue_push_to_user(
        conn, session["user_id"], kind=kind, payload=message, dedupe_key=f"push:{kind}:{tx}"
    )


async def _push_reaction(app: web.Application, notice: Any) -> None:
    if PUSH_SENDER not in app:
        return  # APNs not configured: nothing would deliver it
    if notice_kind(notice.channel, notice.payload) is None:
        return
    async with app[PG_POOL].acquire() as conn:
        count = await queue_notice(conn, notice.channel, notice.payload, notice.session)
    if count:
        log.info("push queued", devices=count, channel=notice.channel)


# ------------------------------------------------------------------ sender


def _backoff(attempts: int) -> float:
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX) * random.uniform(0.8, 1.2)


class PushSender(OutboxWorker):
    """Delivers the push outbox through aioapns; one per web instance."""

    name = "push-outbox"
    channel = devices.PUSH_OUTBOX_CHANNEL
    batch = BATCH
    lease = LEASE
    poll_seconds = POLL_SECONDS

    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(pool, settings.database_url)
        self.settings = settings
        self._key = load_apns_key(settings)  # fails here, at start, with a clear message
        self._ssl_context = ssl_context
        self._clients: dict[bool, Any] = {}

    def _client(self, sandbox: bool) -> Any:
        from aioapns import APNs

        if sandbox not in self._clients:

            async def quiet(_request: Any, _result: Any) -> None:
                pass  # results are logged by us, with the outcome

            self._clients[sandbox] = APNs(
                key=self._key,
                key_id=self.settings.APNS_KEY_ID,
                team_id=self.settings.APNS_TEAM_ID,
                topic=self.settings.APNS_TOPIC,
                use_sandbox=sandbox,
                ssl_context=self._ssl_context,
                max_connection_attempts=1,  # our outbox retries with backoff
                err_func=quiet,
            )
        return self._clients[sandbox]

    async def close(self) -> None:
        await super().close()
        for client in self._clients.values():
            client.pool.close()

    async def claim_due(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await devices.claim_due_pushes(conn, limit=self.batch, lease=self.lease)

    async def next_due_at(self, conn: asyncpg.Connection) -> datetime | None:
        return await devices.next_push_due_at(conn)

    async def deliver(self, row: asyncpg.Record) -> None:
        await self._deliver(row)

    async def _deliver(self, row: asyncpg.Record) -> None:
        from aioapns import NotificationRequest, PushType

        request = NotificationRequest(
            device_token=row["token"],
            message=row["payload"],
            push_type=PushType.ALERT,
            collapse_key=f"{row['kind']}-{row['payload'].get('transaction_id', '')}"[:64],
        )
        status, reason = "", ""
        try:
            result = await asyncio.wait_for(self._client(row["sandbox"]).send_notification(request), SEND_TIMEOUT)
            status, reason = str(result.status), result.description or ""
        except (TimeoutError, OSError) as exc:
            reason = f"APNs unreachable: {exc.__class__.__name__}"
        except Exception as exc:  # aioapns raises its own ConnectionError / MaxAttemptsExceeded
            reason = f"APNs connection failed: {exc.__class__.__name__}"
        async with self.pool.acquire() as conn:
            if status == "200":
                await devices.finish_push(conn, row["id"], "sent")
                outcome = "sent"
            elif status == "410" or reason in DEAD_TOKEN_REASONS:
                await devices.delete_token(conn, row["token"])
                await devices.finish_push(conn, row["id"], "dropped", error=f"dead token: {status} {reason}")
                outcome = "token pruned"
            elif status in ("400", "413"):
                await devices.finish_push(conn, row["id"], "dropped", error=f"APNs refused it: {status} {reason}")
                outcome = "refused"
            else:
                # 403 (provider token), 429, 5xx, network: try again later.
                delay = _backoff(row["attempts"])
                await devices.finish_push(
                    conn, row["id"], "pending", error=f"{status or 'no answer'} {reason}".strip(),
                    retry_in=timedelta(seconds=delay),
                )
                outcome = "retry"
        (log.info if outcome == "sent" else log.warning)(
            "push " + outcome, push_id=row["id"], kind=row["kind"], status=status or None, reason=reason or None
        )


# ------------------------------------------------------------------ device API


def _problem(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _customer(request: web.Request) -> Any:
    user = request.get("user")
    if user is None:
        raise web.HTTPUnauthorized(
            text='{"error":"unauthorized","message":"sign in to register a device"}',
            content_type="application/json",
        )
    if getattr(user, "customer_id", None) is None:
        raise web.HTTPForbidden(
            text='{"error":"forbidden","message":"only customers register devices for push"}',
            content_type="application/json",
        )
    return user


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error":"invalid_json","message":"the body is not JSON"}', content_type="application/json"
        ) from None
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(
            text='{"error":"invalid_body","message":"the body must be a JSON object"}',
            content_type="application/json",
        )
    return doc


def _device_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "token": row["token"],
        "platform": row["platform"],
        "sandbox": row["sandbox"],
        "created_at": row["created_at"].isoformat(),
        "last_seen_at": row["last_seen_at"].isoformat(),
    }


async def register_device(request: web.Request) -> web.Response:
    """POST /api/v1/devices {token, sandbox?, platform?: "ios"}: 201 new, 200 refreshed."""
    user = _customer(request)
    doc = await _body(request)
    token = doc.get("token")
    sandbox = doc.get("sandbox", False)
    platform = doc.get("platform", "ios")
    if not isinstance(token, str):
        return _problem(400, "invalid_body", "token (the APNs device token, hex) is required")
    if not isinstance(sandbox, bool):
        return _problem(400, "invalid_body", "sandbox must be true or false")
    if platform != "ios":
        return _problem(400, "invalid_body", "platform must be ios")
    try:
        async with request.config_dict[PG_POOL].acquire() as conn:
            row, created = await devices.register_device(conn, user.id, token, sandbox=sandbox)
    except InvalidInput as exc:
        return _problem(400, "invalid_body", str(exc))
    return web.json_response(_device_json(row), status=201 if created else 200)


async def unregister_device(request: web.Request) -> web.Response:
    """DELETE /api/v1/devices/{token} (or DELETE /api/v1/devices with {token}): 204, or 404."""
    user = _customer(request)
    token = request.match_info.get("token")
    if token is None:
        token = (await _body(request)).get("token")
    if not isinstance(token, str):
        return _problem(400, "invalid_body", "token is required")
    try:
        async with request.config_dict[PG_POOL].acquire() as conn:
            removed = await devices.remove_device(conn, user.id, token)
    except InvalidInput as exc:
        return _problem(400, "invalid_body", str(exc))
    if not removed:
        return _problem(404, "not_found", "no such device on your account")
    return web.Response(status=204)


# ------------------------------------------------------------------ wiring

PUSH_SENDER = web.AppKey("push_sender", PushSender)


async def _push_ctx(app: web.Application) -> AsyncIterator[None]:
    global _told_disabled
    settings: Settings = app[SETTINGS]
    sender = None
    if settings.apns_enabled:
        try:
            sender = PushSender(app[PG_POOL], settings, ssl_context=app.get(APNS_SSL_CONTEXT))
        except ValueError as exc:
            log.error("iOS push is off: the APNs key is unusable", problem=str(exc))
        else:
            app[PUSH_SENDER] = sender
            sender.start()
    elif not _told_disabled:
        _told_disabled = True
        log.info("iOS push is off (APNS_KEY_ID/APNS_TEAM_ID/APNS_KEY_BASE64/APNS_TOPIC unset)")
    yield
    if sender is not None:
        await sender.close()


def setup(app: web.Application) -> None:
    """POST/DELETE /api/v1/devices, and session notices through APNs when configured."""
    from polaris.services.live import add_reaction

    app.cleanup_ctx.append(_push_ctx)
    add_reaction(app, _push_reaction)
    app.router.add_post("/api/v1/devices", register_device, name="devices_register")
    app.router.add_delete("/api/v1/devices", unregister_device, name="devices_unregister")
    app.router.add_delete("/api/v1/devices/{token}", unregister_device, name="devices_unregister_token")
