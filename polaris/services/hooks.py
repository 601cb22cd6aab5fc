"""Hooks the OCPP server calls: pre-authorize (may a card charge?) and meter values (live energy).

Wire contract (ARCHITECTURE.md): `X-Signature` is the lowercase hex HMAC-SHA256 of the
raw body keyed with STEVE_PREAUTH_HMAC_KEY (meter values: STEVE_METERVALUE_HMAC_KEY,
falling back to the pre-authorize key). 401 for a bad signature; 400 `invalid_json` or
`invalid_body` (also for a `ts` more than 5 minutes off); 409 `replayed` for a signed
request seen before (hook_guard.py). Pre-authorize answers `{"override": "BLOCKED"}` or
`{"override": null}` within the OCPP server's 200 ms budget, from local data only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from polaris.db.repos import card_pairings, charging_policy, live_sessions
from polaris.logs import get_logger
from polaris.services import hook_guard
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.live import (
    ADMIN_TOPIC,
    EVENT_BUS,
    customer_topic,
    pairing_topic,
)

log = get_logger(__name__)

PRE_AUTHORIZE_PATH = "/api/ocpp/pre-authorize"
METER_VALUES_PATH = "/api/ocpp/meter-values"
MAX_BODY = 64 * 1024

HOOK_TASKS = web.AppKey("hook_tasks", set)

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"


class BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sign(key: str, body: bytes) -> str:
    """The X-Signature of `body`: lowercase hex HMAC-SHA256 keyed with the key's UTF-8 bytes."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(key: str, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    expected = sign(key, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _signed_json(request: web.Request, key: SecretStr | None) -> dict[str, Any]:
    """The verified JSON object of a hook request; raises a ready error response otherwise."""
    if key is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "not_configured", "message": "the hook's HMAC key is not set"}),
            content_type="application/json",
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest("invalid_body", f"body larger than {MAX_BODY} bytes")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise BadRequest("invalid_body", f"body larger than {MAX_BODY} bytes")
    if not signature_ok(key.get_secret_value(), body, request.headers.get("X-Signature")):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "bad_signature", "message": "X-Signature does not match the body"}),
            content_type="application/json",
        )
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object")
    # Replays: a stale `ts`, or a signature already answered (both hooks alike).
    hook_guard.check_ts(doc)
    signature = bytes.fromhex(sign(key.get_secret_value(), body))
    await hook_guard.check_new(request, request.config_dict[PG_POOL], signature)
    return doc


def _str(doc: dict[str, Any], name: str, *, max_len: int = 255) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise BadRequest("invalid_body", f"{name} must be a non-empty string of at most {max_len} characters")
    return value


def _int(doc: dict[str, Any], name: str, *, optional: bool = False) -> int | None:
    value = doc.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest("invalid_body", f"{name} must be a non-negative integer")
    return value


def _spawn(request: web.Request, coro: Coroutine[Any, Any, Any]) -> None:
    """Run work after answering (the reply must not wait for it); kept so shutdown awaits it."""
    tasks: set[asyncio.Task[Any]] = request.config_dict[HOOK_TASKS]
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


# ------------------------------------------------------------------ pre-authorize


async def pre_authorize(request: web.Request) -> web.Response:
    """POST /api/ocpp/pre-authorize: BLOCKED for a tap caught by a pairing window or refused by policy."""
    settings = request.config_dict[SETTINGS]
    try:
        doc = await _signed_json(request, settings.STEVE_PREAUTH_HMAC_KEY)
        id_tag = _str(doc, "idTag", max_len=20)
        charge_box_id = _str(doc, "chargeBoxId", max_len=48)
        connector_id = _int(doc, "connectorId", optional=True)
        is_start_tx = doc.get("isStartTx")
        if not isinstance(is_start_tx, bool):
            raise BadRequest("invalid_body", "isStartTx must be true or false")
    except BadRequest as exc:
        return _error(400, exc.code, exc.message)

    async with request.config_dict[PG_POOL].acquire() as conn:
        pairing = await card_pairings.catch_tap(conn, charge_box_id, id_tag)
        if pairing is not None:
            reason = f"caught by {pairing['purpose']} pairing {pairing['id']}"
            if pairing["first_tap"]:
                _spawn(request, _announce_tap(request.config_dict, pairing))
        else:
            policy = await charging_policy.effective_policy(conn, settings.CHARGING_POLICY)
            reason = charging_policy.refusal(await charging_policy.card_facts(conn, id_tag), policy=policy)
            if reason:
                # The operator sees why in the console (and the admin event stream).
                _spawn(request, _announce_refusal(request.config_dict, {
                    "charge_box_id": charge_box_id, "connector_id": connector_id, "id_tag": id_tag,
                    "reason": reason, "policy": policy, "start": is_start_tx,
                }))
    log.info(
        "pre-authorize",
        charge_box_id=charge_box_id,
        connector_id=connector_id,
        start=is_start_tx,
        override="BLOCKED" if reason else None,
        reason=reason,
    )
    return web.json_response({"override": "BLOCKED" if reason else None})


CARD_REFUSED_EVENT = "card.refused"


async def _announce_refusal(app: web.Application | Any, data: dict[str, Any]) -> None:
    bus = app.get(EVENT_BUS)
    if bus is None:
        return
    try:
        await bus.publish([ADMIN_TOPIC], CARD_REFUSED_EVENT, data)
    except Exception:
        log.exception("could not publish a card refusal", charge_box_id=data["charge_box_id"])


async def _announce_tap(app: web.Application | Any, pairing: Any) -> None:
    """Tell the page waiting on this window (and, for linking, the customer's stream)."""
    bus = app.get(EVENT_BUS)
    if bus is None:
        return
    topics = [pairing_topic(pairing["id"])]
    data: dict[str, Any] = {
        "pairing_id": pairing["id"],
        "purpose": pairing["purpose"],
        "charge_box_id": pairing["charge_box_id"],
        "tapped_at": pairing["tapped_at"],
    }
    if pairing["purpose"] == "link" and pairing["customer_id"] is not None:
        topics.append(customer_topic(pairing["customer_id"]))
        data["id_tag"] = pairing["tapped_id_tag"]
    try:
        await bus.publish(topics, "pairing.tapped", data, dedupe_key=f"pairing:{pairing['id']}")
    except Exception:
        log.exception("could not publish a pairing tap", pairing_id=pairing["id"])


# ------------------------------------------------------------------ meter values


def _number(value: Any) -> float | None:
    # Chargers send a JSON number or a decimal string ("3058620.000").
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_samples(doc: dict[str, Any]) -> list[dict[str, Any]]:
    samples = doc.get("samples")
    if not isinstance(samples, list) or not samples:
        raise BadRequest("invalid_body", "samples must be a non-empty list")
    if len(samples) > 500:
        raise BadRequest("invalid_body", "at most 500 samples per request")
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise BadRequest("invalid_body", f"samples[{i}] must be an object")
        value = sample.get("value")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadRequest("invalid_body", f"samples[{i}].value must be a number or a string")
        for opt in ("measurand", "unit", "context", "phase", "location"):
            if sample.get(opt) is not None and not isinstance(sample[opt], str):
                raise BadRequest("invalid_body", f"samples[{i}].{opt} must be a string")
    return samples


def live_figures(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """Energy register (Wh), power (kW) and state of charge from one MeterValues message.

    Totals only (no phase); a sample without measurand is the energy register (OCPP default);
    kWh / kW units are scaled.
    """
    register_wh = power_kw = soc = None
    for s in samples:
        if s.get("phase"):
            continue
        number = _number(s.get("value"))
        if number is None:
            continue
        measurand = s.get("measurand") or ENERGY_REGISTER
        unit = (s.get("unit") or "").lower()
        if measurand == ENERGY_REGISTER:
            register_wh = number * 1000 if unit == "kwh" else number
        elif measurand == POWER:
            power_kw = number if unit == "kw" else number / 1000
        elif measurand == "SoC":
            soc = number
    return {"register_wh": register_wh, "power_kw": power_kw, "soc": soc}


async def meter_values(request: web.Request) -> web.Response:
    """POST /api/ocpp/meter-values: forward live energy to the admin and the customer's streams.

    The OCPP server has already stored the values; this only feeds live views.
    """
    settings = request.config_dict[SETTINGS]
    try:
        doc = await _signed_json(request, settings.metervalue_hmac_key)
        charge_box_id = _str(doc, "chargeBoxId", max_len=48)
        transaction_pk = _int(doc, "transactionPk", optional=True)
        connector_id = _int(doc, "connectorId")
        timestamp = doc.get("timestamp")
        if timestamp is not None and not isinstance(timestamp, str):
            raise BadRequest("invalid_body", "timestamp must be an ISO 8601 string")
        samples = _check_samples(doc)
    except BadRequest as exc:
        return _error(400, exc.code, exc.message)

    figures = live_figures(samples)
    data: dict[str, Any] = {
        "charge_box_id": charge_box_id,
        "connector_id": connector_id,
        "transaction_id": transaction_pk,
        "timestamp": timestamp,
        "power_kw": figures["power_kw"],
        "soc": figures["soc"],
        "energy_kwh": None,
        "samples": samples,
    }
    topics = [ADMIN_TOPIC]
    if transaction_pk is not None:
        async with request.config_dict[PG_POOL].acquire() as conn:
            session = await live_sessions.get_session(conn, transaction_pk)
        if session is not None and session["charge_box_id"] == charge_box_id:
            if figures["register_wh"] is not None:
                data["energy_kwh"] = round(max(0.0, figures["register_wh"] - session["meter_start"]) / 1000, 3)
            if session["customer_id"] is not None:
                topics.append(customer_topic(session["customer_id"]))
    bus = request.config_dict.get(EVENT_BUS)
    if bus is not None:
        await bus.publish(topics, "session.meter", data)
    return web.json_response({"ok": True})


# ------------------------------------------------------------------ wiring


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    app[HOOK_TASKS] = set()
    yield
    if app[HOOK_TASKS]:
        await asyncio.wait(app[HOOK_TASKS], timeout=5)


def setup(app: web.Application) -> None:
    """POST /api/ocpp/pre-authorize and /api/ocpp/meter-values (answer on any host)."""
    app.cleanup_ctx.append(_tasks_ctx)
    hook_guard.setup(app)
    app.router.add_post(PRE_AUTHORIZE_PATH, pre_authorize, name="ocpp_pre_authorize")
    app.router.add_post(METER_VALUES_PATH, meter_values, name="ocpp_meter_values")
