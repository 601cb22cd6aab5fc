"""SteVe's REST operations (`POST /api/v1/operations/{Operation}`), mapped onto our command code.

SteVe's request bodies name the chargers in `chargeBoxIdList` and use its web form's field
names (`availType`, `resetType`, `triggerMessage`, `confKeyList`, `expiry`,
`chargingProfilePk`, ...); `to_ocpp` turns one into the OCPP 1.6 payload `send_command`
sends (the same code our own command API uses). The answer is SteVe's
`OcppOperationResponse`: `{taskId, taskFinished, successResponses[{chargeBoxId, response}],
errorResponses[{chargeBoxId, errorCode, errorDescription, errorDetails}],
exceptions[{chargeBoxId, exceptionMessage}]}`, where `response` is what SteVe puts there:
the status string for most operations, `{configurationKeys, unknownKeys}` for
GetConfiguration, the version number for GetLocalListVersion, the charger's answer otherwise.
Unlike SteVe (which answers at once and fills the task in later), the answer waits for
every charger (at most the command timeout), so `taskFinished` is true.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import asyncpg

from polaris.db.repos import id_tags, ocpp_journal
from polaris.ocpp import authorize
from polaris.ocpp.commands import CommandHost, send_command
from polaris.ocpp.errors import DB_UNAVAILABLE, ChargerCallError, CommandError
from polaris.ocpp.parsing import now_utc

MAX_TASKS = 1000


class BadParams(ValueError):
    """SteVe's form validation failing: answered with `status` (400)."""

    status = 400


class Unavailable(BadParams):
    status = 503


def _req(params: dict, name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise BadParams(f"{name} is required")
    return value


def _int(params: dict, name: str, *, required: bool = False) -> int | None:
    value = _req(params, name) if required else params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadParams(f"{name} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise BadParams(f"{name} must be an integer") from None


def _enum(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """SteVe's enums arrive as SOFT / Soft / soft: the OCPP spelling."""
    for choice in choices:
        if isinstance(value, str) and value.replace("_", "").lower() == choice.lower():
            return choice
    raise BadParams(f"{name} must be one of {', '.join(choices)}")


def _when(value: Any, name: str) -> str:
    """SteVe's LocalDateTime (2022-10-10T09:00:00, no zone: UTC) or an ISO time with offset."""
    if not isinstance(value, str):
        raise BadParams(f"{name} must be a date-time")
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadParams(f"{name} must be a date-time like 2022-10-10T09:00:00") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _some(**fields: Any) -> dict:
    return {k: v for k, v in fields.items() if v is not None}


async def _profile(conn: asyncpg.Connection, pk: int) -> dict:
    row = await ocpp_journal.charging_profile_by_pk(conn, pk)
    if row is None:
        raise BadParams(f"no charging profile {pk} (chargingProfilePk is the id in ocpp.charging_profiles)")
    return row


async def _local_list(conn: asyncpg.Connection, params: dict) -> dict:
    update = _enum(params.get("updateType") or "FULL", "updateType", ("Full", "Differential"))
    entries = []
    now = now_utc()
    for tag in params.get("addUpdateList") or []:
        info = authorize.tag_info(await id_tags.get_id_tag(conn, str(tag)), now)
        entries.append({"idTag": str(tag), "idTagInfo": _camel(info)})
    for tag in params.get("deleteList") or []:
        entries.append({"idTag": str(tag)})
    return {"listVersion": _int(params, "listVersion", required=True), "updateType": update,
            "localAuthorizationList": entries}


def _camel(info: dict) -> dict:
    names = {"expiry_date": "expiryDate", "parent_id_tag": "parentIdTag"}
    return {names.get(k, k): v for k, v in info.items()}


async def to_ocpp(conn: asyncpg.Connection, operation: str, p: dict) -> dict:
    """The OCPP 1.6 payload for SteVe's params of `operation`; BadParams says what is wrong."""
    match operation:
        case "ChangeAvailability":
            return {"connectorId": _int(p, "connectorId") or 0,
                    "type": _enum(_req(p, "availType"), "availType", ("Inoperative", "Operative"))}
        case "ChangeConfiguration":
            custom = str(p.get("keyType") or "PREDEFINED").upper() == "CUSTOM"
            key = _req(p, "customConfKey" if custom else "confKey")
            return {"key": str(key), "value": str(_req(p, "value"))}
        case "ClearCache" | "GetLocalListVersion":
            return {}
        case "GetDiagnostics":
            return _some(location=_req(p, "location"), retries=_int(p, "retries"),
                         retryInterval=_int(p, "retryInterval"),
                         startTime=_when(p["start"], "start") if p.get("start") else None,
                         stopTime=_when(p["stop"], "stop") if p.get("stop") else None)
        case "RemoteStartTransaction":
            payload = _some(connectorId=_int(p, "connectorId"), idTag=str(_req(p, "idTag")))
            if p.get("chargingProfilePk") is not None:
                payload["chargingProfile"] = (await _profile(conn, _int(p, "chargingProfilePk")))["profile"]
            return payload
        case "RemoteStopTransaction":
            return {"transactionId": _int(p, "transactionId", required=True)}
        case "Reset":
            return {"type": _enum(_req(p, "resetType"), "resetType", ("Hard", "Soft"))}
        case "UnlockConnector":
            return {"connectorId": _int(p, "connectorId", required=True)}
        case "UpdateFirmware":
            return _some(location=_req(p, "location"), retries=_int(p, "retries"),
                         retryInterval=_int(p, "retryInterval"), retrieveDate=_when(_req(p, "retrieve"), "retrieve"))
        case "ReserveNow":
            return {"connectorId": _int(p, "connectorId", required=True), "expiryDate": _when(_req(p, "expiry"), "expiry"),
                    "idTag": str(_req(p, "idTag"))}
        case "CancelReservation":
            return {"reservationId": _int(p, "reservationId", required=True)}
        case "DataTransfer":
            return _some(vendorId=_req(p, "vendorId"), messageId=p.get("messageId"), data=p.get("data"))
        case "GetConfiguration":
            keys = [str(k) for k in p.get("confKeyList") or []]
            keys += [k.strip() for k in str(p.get("commaSeparatedCustomConfKeys") or "").split(",") if k.strip()]
            return {"key": keys} if keys else {}
        case "SendLocalList":
            return await _local_list(conn, p)
        case "TriggerMessage":
            return _some(requestedMessage=_req(p, "triggerMessage"), connectorId=_int(p, "connectorId"))
        case "GetCompositeSchedule":
            return _some(connectorId=_int(p, "connectorId", required=True),
                         duration=_int(p, "durationInSeconds", required=True),
                         chargingRateUnit=p.get("chargingRateUnit"))
        case "ClearChargingProfile":
            by_id = str(p.get("filterType") or "ChargingProfileId").lower() == "chargingprofileid"
            if by_id:
                row = await _profile(conn, _int(p, "chargingProfilePk", required=True))
                return {"id": row["charging_profile_id"]}
            return _some(connectorId=_int(p, "connectorId"), chargingProfilePurpose=p.get("chargingProfilePurpose"),
                         stackLevel=_int(p, "stackLevel"))
        case "SetChargingProfile":
            row = await _profile(conn, _int(p, "chargingProfilePk", required=True))
            return {"connectorId": _int(p, "connectorId", required=True), "csChargingProfiles": row["profile"]}
    raise BadParams(f"{operation} is not an operation of SteVe's REST API")


def steve_response(operation: str, answer: dict) -> Any:
    """What SteVe puts in successResponses[].response for this operation's answer."""
    if operation == "GetConfiguration":
        return {"configurationKeys": answer.get("configurationKey") or [], "unknownKeys": answer.get("unknownKey") or []}
    if operation == "GetLocalListVersion":
        return answer.get("listVersion")
    if operation == "UpdateFirmware":
        return "OK"  # 1.6 answers an empty object; SteVe reports OK
    if set(answer) == {"status"}:
        return answer["status"]
    return answer


class Tasks:
    """SteVe's task store: the latest operations' outcomes by taskId (in memory, bounded)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._tasks: OrderedDict[int, dict] = OrderedDict()

    def get(self, task_id: int) -> dict | None:
        return self._tasks.get(task_id)

    async def run(self, host: CommandHost, operation: str, params: dict, *, requested_by: str) -> dict:
        ids = params.get("chargeBoxIdList")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise BadParams("chargeBoxIdList (a list of charge box ids) is required")
        try:
            async with host.ctx.pool.acquire() as conn:
                payload = await to_ocpp(conn, operation, params)
        except DB_UNAVAILABLE:
            raise Unavailable("the database is unavailable; try again") from None
        task_id = next(self._ids)
        task = {"taskId": task_id, "taskFinished": False, "successResponses": [], "errorResponses": [],
                "exceptions": []}
        self._tasks[task_id] = task
        while len(self._tasks) > MAX_TASKS:
            self._tasks.popitem(last=False)
        await asyncio.gather(*(self._one(host, task, cid, operation, payload, requested_by) for cid in ids))
        task["taskFinished"] = True
        return task

    @staticmethod
    async def _one(host: CommandHost, task: dict, charge_box_id: str, operation: str, payload: dict,
                   requested_by: str) -> None:
        try:
            answer = await send_command(host, charge_box_id, operation, dict(payload), requested_by=requested_by)
        except ChargerCallError as exc:
            details = exc.answer.details
            task["errorResponses"].append({
                "chargeBoxId": charge_box_id, "errorCode": exc.answer.code, "errorDescription": exc.answer.description,
                "errorDetails": json.dumps(details) if details not in (None, {}) else None})
        except CommandError as exc:  # offline, no answer in time, a payload the charger would refuse
            task["exceptions"].append({"chargeBoxId": charge_box_id, "exceptionMessage": str(exc)})
        except DB_UNAVAILABLE:
            task["exceptions"].append({"chargeBoxId": charge_box_id,
                                       "exceptionMessage": "the database is unavailable; try again"})
        else:
            task["successResponses"].append({"chargeBoxId": charge_box_id,
                                             "response": steve_response(operation, answer)})
