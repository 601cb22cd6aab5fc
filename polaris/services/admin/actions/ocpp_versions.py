"""The admin API's version-neutral charger actions, said in the charger's OCPP version.

The console and the admin API speak the 1.6 names (RemoteStartTransaction,
RemoteStopTransaction, Reset, UnlockConnector, ChangeAvailability, GetConfiguration,
ChangeConfiguration). For a charger that speaks OCPP 2.0.1 each becomes the 2.0.1 message
(`translate`) and the answer is said back in the 1.6 shape the console reads (`answer_back`),
so the console needs no second code path. A 2.0.1 operation named directly passes unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from polaris.services.errors import ApiError

# 1.6 configuration keys and the 2.0.1 variable that means the same (component, variable).
KEY_VARIABLES: dict[str, tuple[str, str]] = {
    "heartbeatinterval": ("OCPPCommCtrlr", "HeartbeatInterval"),
    "websocketpinginterval": ("OCPPCommCtrlr", "WebSocketPingInterval"),
    "metervaluesampleinterval": ("SampledDataCtrlr", "TxUpdatedInterval"),
    "metervaluessampleddata": ("SampledDataCtrlr", "TxUpdatedMeasurands"),
    "stoptxnsampleddata": ("SampledDataCtrlr", "TxEndedMeasurands"),
    "clockaligneddatainterval": ("AlignedDataCtrlr", "Interval"),
    "metervaluesaligneddata": ("AlignedDataCtrlr", "Measurands"),
    "connectiontimeout": ("TxCtrlr", "EVConnectionTimeOut"),
    "stoptransactiononevsidedisconnect": ("TxCtrlr", "StopTxOnEVSideDisconnect"),
    "stoptransactiononinvalidid": ("TxCtrlr", "StopTxOnInvalidId"),
    "authorizeremotetxrequests": ("AuthCtrlr", "AuthorizeRemoteStart"),
    "localauthorizeoffline": ("AuthCtrlr", "LocalAuthorizeOffline"),
    "localpreauthorize": ("AuthCtrlr", "LocalPreAuthorize"),
    "authorizationcacheenabled": ("AuthCacheCtrlr", "Enabled"),
    "localauthlistenabled": ("LocalAuthListCtrlr", "Enabled"),
    "resetretries": ("OCPPCommCtrlr", "ResetRetries"),
}
RESET_TYPES = {"Soft": "OnIdle", "Hard": "Immediate"}


@dataclass(frozen=True, slots=True)
class Translated:
    operation: str
    fields: dict[str, Any]
    neutral: str | None  # the 1.6 name it stands for (None: sent as named)


def speaks_201(ocpp_version: str | None, ocpp_protocol: str | None) -> bool:
    return (ocpp_version or "").startswith("2") or (ocpp_protocol or "").lower().startswith("ocpp2")


def _variable(key: str) -> tuple[str, str]:
    """A 1.6 key we know, or 'Component.Variable' as 2.0.1 names it."""
    known = KEY_VARIABLES.get(key.lower())
    if known:
        return known
    if "." in key:
        component, variable = key.split(".", 1)
        if component and variable:
            return component, variable
    raise ApiError(400, "invalid_input", f"{key!r} has no OCPP 2.0.1 counterpart we know: name the variable as "
                                         "Component.Variable (e.g. OCPPCommCtrlr.HeartbeatInterval)")


async def translate(conn: asyncpg.Connection, charge_box_pk: int, operation: str, fields: dict[str, Any]) -> Translated:
    """The 2.0.1 message for a 1.6-named action (unchanged for any other operation)."""
    if operation == "RemoteStartTransaction":
        if "chargingProfile" in fields:
            raise ApiError(400, "invalid_input", "this charger speaks OCPP 2.0.1: send RequestStartTransaction "
                                                 "with a 2.0.1 chargingProfile")
        out: dict[str, Any] = {"idToken": {"idToken": fields.get("idTag"), "type": "Central"}}
        if fields.get("connectorId"):
            out["evseId"] = fields["connectorId"]
        return Translated("RequestStartTransaction", out, operation)
    if operation == "RemoteStopTransaction":
        charger_tx_id = await conn.fetchval(
            "SELECT charger_tx_id FROM ocpp.transaction_ids WHERE charge_box_pk = $1 AND transaction_id = $2",
            charge_box_pk, fields.get("transactionId") if isinstance(fields.get("transactionId"), int) else -1)
        if charger_tx_id is None:
            raise ApiError(404, "not_found", f"no OCPP 2.0.1 transaction {fields.get('transactionId')} on this charger")
        return Translated("RequestStopTransaction", {"transactionId": charger_tx_id}, operation)
    if operation == "Reset":
        kind = RESET_TYPES.get(str(fields.get("type")), fields.get("type"))
        return Translated("Reset", {"type": kind}, operation)
    if operation == "UnlockConnector":
        return Translated("UnlockConnector", {"evseId": fields.get("connectorId"), "connectorId": 1}, operation)
    if operation == "ChangeAvailability":
        out = {"operationalStatus": fields.get("type")}
        if fields.get("connectorId"):
            out["evse"] = {"id": fields["connectorId"]}
        return Translated("ChangeAvailability", out, operation)
    if operation == "ChangeConfiguration":
        component, variable = _variable(str(fields.get("key") or ""))
        return Translated("SetVariables", {"setVariableData": [{
            "component": {"name": component}, "variable": {"name": variable},
            "attributeValue": str(fields.get("value"))}]}, operation)
    if operation == "GetConfiguration":
        keys = fields.get("key") or []
        if not keys:
            # Everything: the station reports its device model (NotifyReport), stored per charger.
            return Translated("GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"}, operation)
        data = []
        for key in keys:
            component, variable = _variable(str(key))
            data.append({"component": {"name": component}, "variable": {"name": variable}})
        return Translated("GetVariables", {"getVariableData": data}, operation)
    return Translated(operation, fields, None)


def answer_back(translated: Translated, answer: Any) -> Any:
    """The station's 2.0.1 answer in the 1.6 shape the console reads (unchanged when sent as named)."""
    if translated.neutral is None or not isinstance(answer, dict):
        return answer
    response = answer.get("response", answer)
    if not isinstance(response, dict):
        return answer
    if translated.operation == "GetVariables":
        known, unknown = [], []
        for r in response.get("getVariableResult") or []:
            key = f"{r.get('component', {}).get('name')}.{r.get('variable', {}).get('name')}"
            if r.get("attributeStatus") == "Accepted":
                known.append({"key": key, "readonly": False, "value": r.get("attributeValue")})
            else:
                unknown.append(key)
        response = {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}
    elif translated.operation == "SetVariables":
        results = response.get("setVariableResult") or [{}]
        response = {"status": results[0].get("attributeStatus")}
    return {**answer, "response": response} if "response" in answer else response
