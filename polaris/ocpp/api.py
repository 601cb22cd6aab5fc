"""The OCPP server's command API (aiohttp, OCPP_API_PORT), used by the web process.

HTTP Basic with STEVE_API_USERNAME / STEVE_API_KEY (or SteVe's older `X-API-KEY:
STEVE_API_KEY` header) on everything but /healthz and /metrics. Every route below is also
served under `/steve/api/...` (the original web app's STEVE_BASE_URL `.../steve` + `/api`),
beside SteVe's own REST API (steve_api.py: operations with `chargeBoxIdList`, tasks,
chargeBoxes, ocppTags, transactions without `stuck`).

  POST /api/v1/operations/{Operation}    body {"chargeBoxId": ..., <the operation's fields>}
       200 {"chargeBoxId", "operation", "response": <the charger's CALLRESULT payload>}
       400 invalid_json / invalid_request (the reason names the field), 404 unknown_operation,
       409 charger_offline, 502 call_error (the charger answered CALLERROR: errorCode,
       errorDescription, errorDetails), 504 timeout. Errors: {"error": code, "message": text}.
  POST /api/v1/transactions/{id}/force-close   close a stuck session at its last meter reading
  GET  /api/v1/transactions?stuck=true         open (or only stuck) sessions
  GET  /api/v1/status                          connected chargers on this instance
  GET  /api/v1/chargers/{chargeBoxId}          one charger's connection state
  GET  /healthz                                liveness, no auth
  GET  /metrics                                Prometheus metrics: no Basic auth; with METRICS_TOKEN set,
                                               `Authorization: Bearer <METRICS_TOKEN>` (this port is
                                               internal: never behind Caddy's public hostnames)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from typing import Any

from aiohttp import web

from polaris.db.errors import InvalidInput, NotFound
from polaris.db.repos import transactions
from polaris.keys import bearer_ok
from polaris.logs import get_logger
from polaris.ocpp.commands import send_command
from polaris.ocpp.errors import DB_UNAVAILABLE, ChargerCallError, CommandError
from polaris.ocpp.metrics import CONTENT_TYPE
from polaris.ocpp.server import OcppServer
from polaris.ocpp.steve_api import PREFIXES as STEVE_PREFIXES
from polaris.ocpp.steve_api import SteveApi

log = get_logger(__name__)

SERVER_KEY = web.AppKey("ocpp_server", OcppServer)


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


def _credentials_ok(header: str | None, username: str, password: str) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, _, pw = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared in full, constant time: no early exit on the user name.
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_pw = hmac.compare_digest(pw.encode(), password.encode())
    return ok_user and ok_pw


def _auth_middleware(username: str, password: str, metrics_token: str | None):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path == "/metrics":
            if not bearer_ok(metrics_token, request.headers.get("Authorization")):
                return _error(401, "unauthorized", "metrics need Authorization: Bearer <METRICS_TOKEN>")
            return await handler(request)
        if request.path == "/healthz":
            return await handler(request)
        api_key = request.headers.get("X-API-KEY") or request.headers.get("STEVE-API-KEY")
        key_ok = bool(password) and api_key is not None and hmac.compare_digest(api_key.encode(), password.encode())
        if not key_ok and (not password or not _credentials_ok(request.headers.get("Authorization"), username, password)):
            resp = _error(401, "unauthorized", "HTTP Basic credentials STEVE_API_USERNAME / STEVE_API_KEY required")
            resp.headers["WWW-Authenticate"] = 'Basic realm="polaris-ocpp"'
            return resp
        return await handler(request)

    return middleware


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def status(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    return web.json_response(
        {
            "instance": server.instance,
            "connected": len(server.connections),
            "meterValueHookDropped": server.hooks.dropped,
        }
    )


async def charger(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    cbid = request.match_info["charge_box_id"]
    cp = server.connections.get(cbid)
    return web.json_response(
        {
            "chargeBoxId": cbid,
            "connected": cp is not None,
            "instance": server.instance if cp is not None else None,
            "registrationStatus": cp.auth.registration_status if cp is not None else None,
        }
    )


async def operation(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    op = request.match_info["operation"]
    known = server.versions.operation_names()
    if op not in known:
        return _error(404, "unknown_operation", f"unknown operation {op!r}; one of: {', '.join(known)}")
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        return _error(400, "invalid_json", "the request body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "invalid_request", "the body is a JSON object naming chargeBoxId")
    charge_box_id = body.pop("chargeBoxId", None)
    if not isinstance(charge_box_id, str) or not charge_box_id:
        return _error(400, "invalid_request", "chargeBoxId (a string) is required")
    started = time.perf_counter()
    try:
        answer = await send_command(server, charge_box_id, op, body,
                                    requested_by=request.headers.get("X-Requested-By"))
    except CommandError as exc:
        server.metrics.command_seconds.labels(op).observe(time.perf_counter() - started)
        server.metrics.commands.labels(op, exc.code).inc()
        if not isinstance(exc, ChargerCallError):
            return _error(exc.status, exc.code, str(exc))
        return _error(exc.status, exc.code, str(exc), errorCode=exc.answer.code,
                      errorDescription=exc.answer.description, errorDetails=exc.answer.details)
    except DB_UNAVAILABLE:
        return _error(503, "database_unavailable", "the database is unavailable; try again")
    server.metrics.command_seconds.labels(op).observe(time.perf_counter() - started)
    server.metrics.commands.labels(op, "answered").inc()
    log.info("command answered", charge_box_id=charge_box_id, operation=op)
    return web.json_response({"chargeBoxId": charge_box_id, "operation": op, "response": answer})


def _tx_json(row: Any) -> dict:
    out = {}
    for key, value in dict(row).items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


async def force_close(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    try:
        tx_id = int(request.match_info["transaction_id"])
    except ValueError:
        return _error(400, "invalid_request", "the transaction id is an integer")
    try:
        async with server.pool.acquire() as conn:
            row = await transactions.force_close_transaction(conn, tx_id)
    except NotFound as exc:
        return _error(404, exc.code, str(exc))
    except InvalidInput as exc:
        return _error(409, "already_stopped", str(exc))
    except DB_UNAVAILABLE:
        return _error(503, "database_unavailable", "the database is unavailable; try again")
    log.warning("transaction force-closed", transaction_id=tx_id, meter_stop=row["meter_stop"])
    return web.json_response({"transaction": _tx_json(row)})


async def list_transactions(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    stuck = request.query.get("stuck", "").lower() in ("1", "true", "yes")
    async with server.pool.acquire() as conn:
        rows = await transactions.list_open_transactions(conn, stuck_only=stuck)
    return web.json_response({"transactions": [_tx_json(r) for r in rows]})


def create_app(server: OcppServer) -> web.Application:
    settings = server.settings
    key = settings.STEVE_API_KEY.get_secret_value() if settings.STEVE_API_KEY else ""
    metrics_token = settings.METRICS_TOKEN.get_secret_value() if settings.METRICS_TOKEN else None
    app = web.Application(middlewares=[_auth_middleware(settings.STEVE_API_USERNAME, key, metrics_token)],
                          client_max_size=256 * 1024)
    app[SERVER_KEY] = server
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for prefix in STEVE_PREFIXES:
        app.router.add_get(prefix + "/v1/status", status)
        app.router.add_get(prefix + "/v1/chargers/{charge_box_id}", charger)
        app.router.add_post(prefix + "/v1/transactions/{transaction_id}/force-close", force_close)
    # Operations and the transaction list: SteVe's or ours, by what the request carries.
    app.add_routes(SteveApi(server, operation, list_transactions).routes())
    return app
