"""The original iOS app's device API (ExpresScan), at the original's paths, beside /api/v1.

Staff register the app, as in the original (vladzaharia/expressync, routes/api/devices/):

1. The app opens `/expresscan/register?codeChallenge=<S256>&label=<name>` in a browser
   session. A signed-in staff member's cookie session mints a one-time code (60 s, single
   use, bound to the PKCE challenge) and the page sends the browser to
   `expresscan://register/callback?code=<code>`.
2. The app POSTs `/api/devices/register` with the code and its PKCE verifier; the answer
   carries a 1-year bearer token `dev_...` (kept as its SHA-256) and an HMAC secret, both
   shown this once.
3. Then, with `Authorization: Bearer dev_...`: `GET /api/devices/me`,
   `POST /api/devices/heartbeat`, `PUT /api/devices/{deviceId}/push-token`,
   `DELETE /api/devices/{deviceId}` (sign out this phone), `GET /api/devices/me/state`.

Request and response bodies, status codes and error codes (`{"error": code}`) are the
original's. A registered app is a row of app.devices, so push reaches it like any device.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import random
import re
import secrets
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polaris.db.errors import InvalidInput
from polaris.db.repos import app_devices, audit
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth.middleware import AUTH_VIA
from polaris.services.auth.oidc import login_url, page
from polaris.services.auth.views import client_ip

log = get_logger(__name__)

REGISTER_PAGE = "/expresscan/register"
API = "/api/devices"
CALLBACK = "expresscan://register/callback"
# The original's capability names (src/lib/types/devices.ts), and the two older ones it renamed.
CAPABILITIES = ("scanner", "charger", "user", "kiosk", "tap", "ev")
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JITTER = (0.05, 0.15)  # the original's latency floor on register (seconds)


# ------------------------------------------------------------------ bodies (the original's zod schemas)


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    oneTimeCode: str = Field(min_length=1, max_length=256)
    codeVerifier: str = Field(min_length=43, max_length=256)
    label: str = Field(min_length=1, max_length=120)
    platform: Literal["ios", "macos", "ipados"]
    model: str = Field(min_length=1, max_length=80)
    osVersion: str = Field(min_length=1, max_length=40)
    appVersion: str = Field(min_length=1, max_length=40)
    pushToken: str | None = Field(None, max_length=512, description="APNs device token, hex")
    apnsEnvironment: Literal["sandbox", "production"]
    requestedCapabilities: list[Literal["scanner", "charger", "user", "kiosk", "tap", "ev"]] = Field(
        min_length=1, max_length=len(CAPABILITIES)
    )


class RegisterOut(BaseModel):
    ok: Literal[True]
    deviceId: str
    deviceToken: str = Field(description="send as Authorization: Bearer <deviceToken>; shown once")
    deviceSecret: str = Field(description="HMAC key for signed scan results; shown once")
    capabilities: list[str]
    expiresAtIso: str


class MeOut(BaseModel):
    ok: Literal[True]
    deviceId: str
    ownerUserId: str
    ownerDisplayName: str
    ownerName: str | None
    ownerEmail: str | None
    ownerRole: str
    planCode: str | None
    planName: str | None
    capabilities: list[str]
    label: str
    registeredAtIso: str
    createdAtIso: str
    expiresAtIso: str


class StateDevice(BaseModel):
    id: str
    label: str
    kind: Literal["phone_nfc", "tablet_nfc", "laptop_nfc"]
    ownerUserId: str
    siteId: str | None
    registeredAt: str
    lastSeenAt: str | None


class StateOwner(BaseModel):
    id: str
    role: Literal["admin", "customer"]
    displayName: str


class StateScan(BaseModel):
    armed: bool
    pairingCode: str | None
    expiresAt: str | None


class StatePush(BaseModel):
    last8: str
    environment: Literal["sandbox", "production"]


class StateConnectivity(BaseModel):
    online: bool
    lastSyncAt: str | None
    reconnectCount: int = Field(ge=0)
    pendingUploads: int = Field(ge=0)


class StateOut(BaseModel):
    """The original's DeviceState envelope (src/lib/devices/device-state.ts)."""
    device: StateDevice
    capabilities: list[Literal["scanner", "charger", "user", "kiosk"]]
    kioskAllowed: bool
    ownerUser: StateOwner
    settings: dict[str, Any]
    scanStatus: StateScan | None
    pushToken: StatePush | None
    needsPushToken: bool
    connectivity: StateConnectivity


class HeartbeatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batteryLevel: float | None = Field(None, ge=0, le=1)
    isCharging: bool | None = None
    networkType: str | None = Field(None, max_length=40)


class PushTokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pushToken: str = Field(min_length=1, max_length=512, description="APNs device token, hex")
    apnsEnvironment: Literal["sandbox", "production"]


class OkOut(BaseModel):
    ok: Literal[True]


class ErrorOut(BaseModel):
    error: str


def _json(status: int, body: dict[str, Any], *, no_store: bool = False) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                        headers=NO_STORE if no_store else None)


def _iso(value) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def s256(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _register_reason(err: ValidationError) -> str:
    """The original's error code for the first failing field."""
    first = err.errors()[0]
    top = first["loc"][0] if first["loc"] else ""
    return {
        "platform": "invalid_platform",
        "requestedCapabilities": "invalid_capabilities",
        "codeVerifier": "invalid_verifier",
        "oneTimeCode": "invalid_code",
    }.get(str(top), "invalid_body")


# ------------------------------------------------------------------ service layer


async def mint_code(conn, user_id: int, code_challenge: str, label: str) -> str:
    code = secrets.token_urlsafe(32)
    await app_devices.create_code(conn, user_id, code, code_challenge, label)
    return code


async def register_device(
    conn, body: RegisterBody, ip: str | None, idempotency_key: str | None = None
) -> dict[str, Any] | None:
    """Exchange a one-time code + PKCE verifier for a device and its credentials (None: no).

    The original replays the first answer to a retry with the same Idempotency-Key; the
    token is not kept here to replay, so such a retry (same code and verifier, code still
    live) gets fresh credentials for the same device and the earlier ones stop working.
    """
    challenge = s256(body.codeVerifier)
    async with conn.transaction():
        claim = await app_devices.claim_code(conn, body.oneTimeCode, challenge)
        retry = None
        if claim is None and idempotency_key:
            retry = await app_devices.retried_code(conn, body.oneTimeCode, challenge, idempotency_key)
        if claim is None and retry is None:
            return None
        owner = await conn.fetchrow("SELECT id, email, role, active FROM app.users WHERE id = $1",
                                    (claim or retry)["user_id"])
        if owner is None or not owner["active"] or owner["role"] not in ("admin", "operator"):
            return None
        if retry is not None:
            device = await app_devices.device_by_id(conn, retry["device_id"])
            await app_devices.revoke_tokens(conn, device["id"])
        else:
            device = await app_devices.create_device(conn, owner["id"], {
                "platform": body.platform, "push_token": body.pushToken,
                "sandbox": body.apnsEnvironment == "sandbox", "label": body.label[:120], "model": body.model,
                "os_version": body.osVersion, "app_version": body.appVersion,
                "capabilities": list(dict.fromkeys(body.requestedCapabilities)),
            })
            await app_devices.mark_code_used(conn, claim["id"], device["id"], idempotency_key)
        token = "dev_" + secrets.token_urlsafe(32)
        secret = secrets.token_urlsafe(32)
        issued = await app_devices.create_token(conn, device["id"], token, secret)
        await audit.record(
            conn, actor_user_id=owner["id"], actor_email=owner["email"],
            action="device.token.reissue" if retry is not None else "device.register",
            target_type="device", target_id=str(device["public_id"]),
            after={"label": device["label"], "platform": body.platform, "model": body.model,
                   "app_version": body.appVersion, "capabilities": device["capabilities"],
                   "token_id": issued["id"]},
            ip=ip,
        )
    return {
        "ok": True, "deviceId": str(device["public_id"]), "deviceToken": token, "deviceSecret": secret,
        "capabilities": list(device["capabilities"]), "expiresAtIso": _iso(issued["expires_at"]),
    }


def device_token(request: web.Request) -> str | None:
    """The original's header: `Authorization: Bearer dev_<base64url>`."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    raw = auth[len("Bearer "):].strip()
    if not raw.startswith("dev_") or not 6 <= len(raw) <= 256:
        return None
    return raw


async def authenticated_device(request: web.Request):
    token = device_token(request)
    if token is None:
        return None
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        return await app_devices.resolve_token(conn, token)


SCAN_CLOCK_SKEW = 60  # seconds either way, as the original's scan-result


def scan_result_nonce(secret: str, id_tag: str, pairing_code: str, device_id: str, ts: int) -> str:
    """The original app's signature of a scan result (routes/api/devices/scan-result.ts):
    hex HMAC-SHA256 under base64url-decode(deviceSecret) of
    `scan-result/v1|<ID TAG upper-case>|<pairingCode>|<deviceId>|<ts unix seconds>`."""
    # validate: a secret that is no base64url is refused, never silently shortened.
    key = base64.b64decode(secret + "=" * (-len(secret) % 4), altchars=b"-_", validate=True)
    msg = f"scan-result/v1|{id_tag.upper()}|{pairing_code}|{device_id}|{ts}"
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def check_scan_result(secret: str, id_tag: str, pairing_code: str, device_id: str, ts: int, nonce: str,
                      now: float) -> str | None:
    """None when the signed scan result is genuine and fresh, else the original's error code."""
    if abs(int(now) - ts) > SCAN_CLOCK_SKEW:
        return "clock_skew"
    try:
        expected = scan_result_nonce(secret, id_tag, pairing_code, device_id, ts)
    except ValueError:  # binascii.Error: the stored secret is no base64url
        return "invalid_nonce"
    return None if hmac.compare_digest(expected, nonce.lower()) else "invalid_nonce"


# ------------------------------------------------------------------ routes


async def register_page(request: web.Request) -> web.StreamResponse:
    """The browser step: a signed-in staff member mints the one-time code for the app."""
    challenge = request.query.get("codeChallenge", "").strip()
    label = request.query.get("label", "")[:120].strip() or "iPhone"
    user = request.get("user")
    if user is None or not user.is_staff or request.get(AUTH_VIA) != "cookie":
        if request.app.get(appkeys.OIDC) is not None:
            raise web.HTTPFound(login_url(request.path_qs))
        return page(401, "Sign in first",
                    "Sign in to the admin site in this browser as staff, then register the app again.")
    if not CHALLENGE.match(challenge):
        return page(400, "Cannot register this app",
                    "The app sent no valid codeChallenge (PKCE S256, 43 base64url characters).")
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        code = await mint_code(conn, user.id, challenge, label)
    target = CALLBACK + "?" + urlencode({"code": code})
    resp = page(200, "Registering this app",
                f"Returning to the app as {html.escape(user.email)}…",
                f"<p><a href='{html.escape(target)}'>Open the app</a></p>")
    resp.headers["Refresh"] = f"0; url={target}"
    resp.headers.update(NO_STORE)
    return resp


async def register(request: web.Request) -> web.Response:
    ip = client_ip(request)
    jitter = asyncio.create_task(asyncio.sleep(random.uniform(*JITTER)))
    try:
        try:
            raw = json.loads(await request.text())
        except ValueError:
            return _json(400, {"error": "invalid_body"}, no_store=True)
        try:
            body = RegisterBody.model_validate(raw)
        except ValidationError as err:
            return _json(400, {"error": _register_reason(err)}, no_store=True)
        async with request.app[appkeys.PG_POOL].acquire() as conn:
            try:
                key = request.headers.get("Idempotency-Key", "").strip()[:200] or None
                result = await register_device(conn, body, ip, key)
            except InvalidInput:  # a push token that is no APNs token
                return _json(400, {"error": "invalid_body"}, no_store=True)
        if result is None:
            return _json(400, {"error": "invalid_code"}, no_store=True)
        log.info("device registered", device=result["deviceId"])
        return _json(200, result, no_store=True)
    finally:
        await jitter


async def me(request: web.Request) -> web.Response:
    dev = await authenticated_device(request)
    if dev is None:
        return _json(401, {"error": "unauthorized"})
    registered = _iso(dev["registered_at"])
    return _json(200, MeOut(
        ok=True, deviceId=str(dev["public_id"]), ownerUserId=str(dev["user_id"]),
        ownerDisplayName=dev["name"] or dev["email"] or str(dev["user_id"]),
        ownerName=dev["name"], ownerEmail=dev["email"], ownerRole=dev["role"],
        # The original looks a plan up for customer owners only; owners here are staff.
        planCode=None, planName=None,
        capabilities=list(dev["capabilities"] or []), label=dev["label"] or "",
        registeredAtIso=registered, createdAtIso=registered, expiresAtIso=_iso(dev["token_expires_at"]),
    ).model_dump())


ONLINE_WINDOW = 90  # seconds since the last heartbeat, as the original's device state


def device_state(dev, now) -> StateOut:
    """The envelope of GET /api/devices/me/state, from what is kept here."""
    caps = [c for c in (dev["capabilities"] or []) if c in ("scanner", "charger", "user", "kiosk")]
    base = [c for c in caps if c != "kiosk"]
    status = dev["last_status"] if isinstance(dev["last_status"], dict) else {}

    def count(key: str) -> int:
        v = status.get(key)
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 else 0

    seen = dev["last_seen_at"]
    return StateOut(
        device=StateDevice(
            id=str(dev["public_id"]), label=dev["label"] or "", kind="phone_nfc", ownerUserId=str(dev["user_id"]),
            siteId=None, registeredAt=_iso(dev["registered_at"]), lastSeenAt=_iso(seen) if seen else None,
        ),
        capabilities=caps,
        # The original: kiosk is legal with exactly one of scanner and user.
        kioskAllowed=("scanner" in base) != ("user" in base) and "charger" not in base,
        # Owners here are staff (admins and operators): the original's "admin".
        ownerUser=StateOwner(id=str(dev["user_id"]), role="admin",
                             displayName=dev["name"] or dev["email"] or str(dev["user_id"])),
        settings={},
        # No scan can be armed for an app yet (scan-result is not served).
        scanStatus=StateScan(armed=False, pairingCode=None, expiresAt=None) if "scanner" in caps else None,
        pushToken=StatePush(last8=dev["push_token"][-8:], environment="sandbox" if dev["sandbox"] else "production")
        if dev["push_token"] else None,
        needsPushToken=False,
        connectivity=StateConnectivity(
            online=seen is not None and (now - seen).total_seconds() <= ONLINE_WINDOW,
            lastSyncAt=_iso(seen) if seen else None,
            reconnectCount=count("reconnectCount"), pendingUploads=count("pendingUploads"),
        ),
    )


async def state(request: web.Request) -> web.Response:
    dev = await authenticated_device(request)
    if dev is None:
        return _json(401, {"error": "unauthorized"})
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        now = await conn.fetchval("SELECT now()")
    return web.Response(text=device_state(dev, now).model_dump_json(), content_type="application/json")


async def heartbeat(request: web.Request) -> web.Response:
    dev = await authenticated_device(request)
    if dev is None:
        return _json(401, {"error": "unauthorized"})
    status = None
    text = await request.text()
    if text.strip():
        try:
            status = HeartbeatBody.model_validate(json.loads(text)).model_dump(exclude_none=True)
        except (ValueError, ValidationError):
            return _json(400, {"error": "invalid_body"})
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        if not await app_devices.heartbeat(conn, dev["id"], status):
            return _json(410, {"error": "device_deleted"})
    return _json(200, {"ok": True})


async def _own_device(request: web.Request):
    """(device, None) when the bearer's device is the path's, else (None, error response)."""
    dev = await authenticated_device(request)
    if dev is None:
        return None, _json(401, {"error": "unauthorized"})
    path_id = request.match_info["deviceId"]
    if not UUID.match(path_id):
        return None, _json(404, {"error": "not_found"})
    if str(dev["public_id"]) != path_id.lower():
        log.warning("a device acted on another device", device=str(dev["public_id"]), path=path_id)
        return None, _json(403, {"error": "forbidden"})
    return dev, None


async def push_token(request: web.Request) -> web.Response:
    dev, problem = await _own_device(request)
    if problem is not None:
        return problem
    try:
        body = PushTokenBody.model_validate(json.loads(await request.text()))
    except (ValueError, ValidationError):
        return _json(400, {"error": "invalid_body"})
    async with request.app[appkeys.PG_POOL].acquire() as conn:
        try:
            done = await app_devices.set_push_token(conn, dev["id"], body.pushToken,
                                                    body.apnsEnvironment == "sandbox")
        except InvalidInput:
            return _json(400, {"error": "invalid_body"})
    if not done:
        return _json(410, {"error": "device_deleted"})
    return _json(200, {"ok": True})


async def deregister(request: web.Request) -> web.Response:
    dev, problem = await _own_device(request)
    if problem is not None:
        return problem
    async with request.app[appkeys.PG_POOL].acquire() as conn, conn.transaction():
        await app_devices.deregister(conn, dev["id"])
        await audit.record(
            conn, actor_user_id=dev["user_id"], actor_email=dev["email"], action="device.deregister",
            target_type="device", target_id=str(dev["public_id"]), after={"reason": "self"},
            ip=client_ip(request),
        )
    return _json(200, {"ok": True})


def setup(app: web.Application) -> None:
    app.router.add_get(REGISTER_PAGE, register_page, name="expresscan_register_page")
    app.router.add_post(API + "/register", register, name="expresscan_register")
    app.router.add_get(API + "/me", me, name="expresscan_me")
    app.router.add_get(API + "/me/state", state, name="expresscan_state")
    app.router.add_post(API + "/heartbeat", heartbeat, name="expresscan_heartbeat")
    app.router.add_put(API + "/{deviceId}/push-token", push_token, name="expresscan_push_token")
    app.router.add_delete(API + "/{deviceId}", deregister, name="expresscan_deregister")
