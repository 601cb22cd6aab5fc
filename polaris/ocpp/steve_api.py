"""SteVe's REST API, as the original web app calls it, beside our command API on OCPP_API_PORT.

Served under `/steve/api/v1/...` (the original's STEVE_BASE_URL `http://host:port/steve`
plus `/api`) and `/api/v1/...`, with SteVe's shapes and status codes:

  POST /v1/operations/{Operation}     SteVe's params with `chargeBoxIdList`; 200 with SteVe's
                                      OcppOperationResponse even when a charger is offline
                                      (it is in `exceptions`); a body naming `chargeBoxId`
                                      instead is our own dialect (api.operation)
  GET  /v1/operations/tasks/{taskId}  a task's outcome (also /v1/operations/{taskId}, where the
                                      original app polls, and SteVe's /v1/tasks/task?id=)
  GET  /v1/chargeBoxes                [{chargeBoxPk, chargeBoxId, ...}]
  GET  /v1/ocppTags                   SteVe's tag overview, filters idTag, parentIdTag,
                                      ocppTagPk, blocked / expired / inTransaction (ALL|TRUE|FALSE)
  POST /v1/ocppTags                   OcppTagForm -> 201 the tag; PUT /v1/ocppTags/{pk} replaces
                                      it; DELETE removes it (answering the tag as it was)
  GET  /v1/transactions               SteVe's Transaction list, filters type (ACTIVE|ALL),
                                      periodType (ALL|TODAY|LAST_10|LAST_30|LAST_90|FROM_TO),
                                      from, to (no zone: UTC), chargeBoxId, ocppIdTag,
                                      transactionPk (with `stuck`, or under /api with none
                                      of these: our own list, api.py)
Errors are SteVe's ApiErrorResponse: {timestamp, status, error, message, path}. The
operations run through the same command code as ours (commands.send_command), so they are
journaled the same way. Tag changes are audited as `steve-api:<user>`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web

from polaris.db.errors import AlreadyExists, InvalidInput, NotFound, RepoError
from polaris.db.repos import audit, steve_views
from polaris.logs import get_logger
from polaris.ocpp.commands import CommandHost
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.parsing import now_utc
from polaris.ocpp.steve_operations import BadParams, Tasks

log = get_logger(__name__)

PREFIXES = ("/steve/api", "/api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PERIOD_DAYS = {"LAST_10": 10, "LAST_30": 30, "LAST_90": 90}
TRI_STATE = {"ALL": None, "TRUE": True, "FALSE": False}


def api_error(request: web.Request, status: int, message: str) -> web.Response:
    """SteVe's ApiErrorResponse."""
    return web.json_response({"timestamp": now_utc().isoformat(), "status": status,
                              "error": HTTPStatus(status).phrase, "message": message, "path": request.path},
                             status=status)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def _local(value: str | None, name: str) -> datetime | None:
    """SteVe's LocalDateTime query parameter (2022-10-10T09:00:00: UTC), or an ISO time."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadParams(f"{name} must be a date-time like 2022-10-10T09:00:00") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _tag_json(r: Any) -> dict:
    return {
        "ocppTagPk": r["id"], "idTag": r["id_tag"], "parentOcppTagPk": r["parent_pk"], "parentIdTag": r["parent_id_tag"],
        "expiryDate": _iso(r["expiry_date"]), "blocked": r["blocked"], "inTransaction": r["active"] > 0,
        "activeTransactionCount": r["active"], "note": r["note"],
        "maxActiveTransactionCount": 0 if r["blocked"] else r["max_active_transactions"],
    }


def _tx_json(r: Any) -> dict:
    actor = {"charger": "station", "operator": "manual", "inferred": "manual"}.get(r["stopped_by"])
    return {
        "id": r["id"], "chargeBoxId": r["charge_box_id"], "chargeBoxPk": r["charge_box_pk"],
        "connectorId": r["connector_id"], "ocppIdTag": r["id_tag"], "ocppTagPk": r["ocpp_tag_pk"],
        "startTimestamp": _iso(r["start_timestamp"]), "startValue": str(r["meter_start"]),
        "stopTimestamp": _iso(r["stop_timestamp"]),
        "stopValue": str(r["meter_stop"]) if r["meter_stop"] is not None else None,
        "stopEventActor": actor if r["stop_timestamp"] is not None else None, "stopReason": r["stop_reason"],
    }


class SteveApi:
    """The handlers, over one command host (the OCPP server)."""

    def __init__(self, host: CommandHost, own_operation: Handler, own_transactions: Handler):
        self.host = host
        self.tasks = Tasks()
        self._own_operation = own_operation
        self._own_transactions = own_transactions

    @property
    def pool(self):
        return self.host.ctx.pool

    def routes(self) -> list[web.RouteDef]:
        out = []
        for prefix in PREFIXES:
            v1 = prefix + "/v1"
            out += [
                web.post(v1 + "/operations/{operation}", self.operation),
                web.get(v1 + "/operations/tasks/{task_id}", self.task),
                web.get(v1 + r"/operations/{task_id:\d+}", self.task),
                web.get(v1 + "/tasks/task", self.task),
                web.get(v1 + "/chargeBoxes", self.charge_boxes),
                web.get(v1 + "/ocppTags", self.list_tags),
                web.get(v1 + r"/ocppTags/{pk:\d+}", self.get_tag),
                web.post(v1 + "/ocppTags", self.create_tag),
                web.put(v1 + r"/ocppTags/{pk:\d+}", self.update_tag),
                web.delete(v1 + r"/ocppTags/{pk:\d+}", self.delete_tag),
                web.get(v1 + "/transactions", self.transactions),
            ]
        return out

    async def _body(self, request: web.Request) -> dict:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise BadParams("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadParams("the request body is a JSON object")
        return body

    def _actor(self, request: web.Request) -> str:
        return request.headers.get("X-Requested-By") or f"steve-api:{self.host.ctx.settings.STEVE_API_USERNAME}"

    # --- operations ----------------------------------------------------------------------

    async def operation(self, request: web.Request) -> web.StreamResponse:
        op = request.match_info["operation"]
        steve_path = request.path.startswith("/steve/")
        try:
            body = await self._body(request)
        except BadParams as exc:
            if not steve_path:
                return await self._own_operation(request)  # it explains the body in our dialect
            return api_error(request, 400, str(exc))
        # SteVe's dialect names chargeBoxIdList; ours chargeBoxId (the default under /api).
        if "chargeBoxIdList" not in body and ("chargeBoxId" in body or not steve_path):
            return await self._own_operation(request)
        if op not in self.host.versions.operation_names():
            return api_error(request, 404, f"unknown operation {op}")
        try:
            task = await self.tasks.run(self.host, op, body, requested_by=self._actor(request))
        except BadParams as exc:
            return api_error(request, exc.status, str(exc))
        log.info("steve api operation", operation=op, task_id=task["taskId"], chargers=len(body["chargeBoxIdList"]),
                 answered=len(task["successResponses"]))
        return web.json_response(task)

    async def task(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info.get("task_id") or request.query.get("id", "")
        task = self.tasks.get(int(raw)) if raw.isdigit() else None
        if task is None:
            return api_error(request, 404, f"Task not found: {raw}")
        return web.json_response(task)

    # --- charge boxes, tags, transactions -------------------------------------------------

    async def charge_boxes(self, request: web.Request) -> web.StreamResponse:
        async with self.pool.acquire() as conn:
            rows = await steve_views.charge_boxes(conn)
        return web.json_response([{
            "chargeBoxPk": r["chargeBoxPk"], "chargeBoxId": r["chargeBoxId"], "description": r["description"],
            "registrationStatus": r["registration_status"], "ocppProtocol": r["ocpp_protocol"],
            "lastHeartbeatTimestamp": _iso(r["last_heartbeat_at"]), "connected": r["connected"]} for r in rows])

    async def list_tags(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            flags = {name: TRI_STATE[q.get(param, "ALL").upper()]
                     for name, param in (("blocked", "blocked"), ("expired", "expired"),
                                         ("in_transaction", "inTransaction"))}
            pk = int(q["ocppTagPk"]) if q.get("ocppTagPk") else None
        except (KeyError, ValueError):
            return api_error(request, 400, "blocked, expired and inTransaction are ALL, TRUE or FALSE; "
                                           "ocppTagPk is an integer")
        async with self.pool.acquire() as conn:
            rows = await steve_views.ocpp_tags(conn, pk=pk, id_tag=q.get("idTag") or None,
                                               parent_id_tag=q.get("parentIdTag") or None, **flags)
        return web.json_response([_tag_json(r) for r in rows])

    async def _one_tag(self, request: web.Request, pk: int) -> web.StreamResponse:
        async with self.pool.acquire() as conn:
            rows = await steve_views.ocpp_tags(conn, pk=pk)
        if not rows:
            return api_error(request, 404, "Could not find this ocppTag")
        return web.json_response(_tag_json(rows[0]), status=201 if request.method == "POST" else 200)

    async def get_tag(self, request: web.Request) -> web.StreamResponse:
        return await self._one_tag(request, int(request.match_info["pk"]))

    async def create_tag(self, request: web.Request) -> web.StreamResponse:
        return await self._save_tag(request, None)

    async def update_tag(self, request: web.Request) -> web.StreamResponse:
        return await self._save_tag(request, int(request.match_info["pk"]))

    async def _save_tag(self, request: web.Request, pk: int | None) -> web.StreamResponse:
        try:
            body = await self._body(request)
            id_tag = body.get("idTag")
            if pk is None and not (isinstance(id_tag, str) and id_tag.strip()):
                raise BadParams("idTag is required")
            max_active = body.get("maxActiveTransactionCount", 1)
            if isinstance(max_active, bool) or not isinstance(max_active, int):
                raise BadParams("maxActiveTransactionCount must be an integer")
            fields = dict(id_tag=(id_tag or "").strip(), parent_id_tag=body.get("parentIdTag") or None,
                          expiry_date=_local(body.get("expiryDate"), "expiryDate"), max_active=max_active,
                          note=body.get("note"))
        except BadParams as exc:
            return api_error(request, 400, str(exc))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                pk, before, after = await steve_views.save_ocpp_tag(conn, pk, **fields)
                await audit.record(conn, actor_user_id=None, actor_email=self._actor(request),
                                   action="id_tag.create" if not before and request.method == "POST" else "id_tag.edit",
                                   target_type="id_tag", target_id=pk, before=before or None, after=after)
        except NotFound as exc:
            return api_error(request, 404, str(exc))
        except AlreadyExists as exc:
            return api_error(request, 422, str(exc))
        except (InvalidInput, RepoError) as exc:
            return api_error(request, 400, str(exc))
        return await self._one_tag(request, pk)

    async def delete_tag(self, request: web.Request) -> web.StreamResponse:
        pk = int(request.match_info["pk"])
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await steve_views.ocpp_tags(conn, pk=pk)
            if not rows:
                return api_error(request, 404, "Could not find this ocppTag")
            await steve_views.delete_ocpp_tag(conn, pk)
            await audit.record(conn, actor_user_id=None, actor_email=self._actor(request), action="id_tag.delete",
                               target_type="id_tag", target_id=pk, before={"id_tag": rows[0]["id_tag"]})
        return web.json_response(_tag_json(rows[0]))

    async def transactions(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        # Ours (api.list_transactions) asks `stuck`; under /api, a query without any of
        # SteVe's filters is ours too, so our own command API stays as it was.
        steve_filters = {"type", "periodType", "from", "to", "chargeBoxId", "ocppIdTag", "transactionPk"}
        if "stuck" in q or (not request.path.startswith("/steve/") and not steve_filters & set(q)):
            return await self._own_transactions(request)
        try:
            kind = q.get("type", "ALL").upper()
            period = q.get("periodType", "ALL").upper()
            if kind not in ("ACTIVE", "ALL") or period not in ("ALL", "TODAY", "FROM_TO", *PERIOD_DAYS):
                raise BadParams("type is ACTIVE or ALL; periodType is ALL, TODAY, LAST_10, LAST_30, LAST_90 or FROM_TO")
            since = until = None
            now = now_utc()
            if period == "TODAY":
                since = now.replace(hour=0, minute=0, second=0, microsecond=0)
            elif period in PERIOD_DAYS:
                since = now - timedelta(days=PERIOD_DAYS[period])
            elif period == "FROM_TO":
                since, until = _local(q.get("from"), "from"), _local(q.get("to"), "to")
                if since is None or until is None:
                    raise BadParams("periodType FROM_TO needs from and to")
            tx_pk = int(q["transactionPk"]) if q.get("transactionPk") else None
        except ValueError as exc:
            return api_error(request, 400, str(exc) if isinstance(exc, BadParams) else "transactionPk is an integer")
        try:
            async with self.pool.acquire() as conn:
                rows = await steve_views.transactions(
                    conn, active_only=kind == "ACTIVE", since=since, until=until,
                    charge_box_id=q.get("chargeBoxId") or None, id_tag=q.get("ocppIdTag") or None,
                    transaction_pk=tx_pk)
        except DB_UNAVAILABLE:
            return api_error(request, 503, "the database is unavailable; try again")
        return web.json_response([_tx_json(r) for r in rows])
