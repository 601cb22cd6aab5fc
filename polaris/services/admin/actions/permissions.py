"""Who may send which OCPP operation to a charger, and change which configuration.

One table by operation name, for every OCPP version (1.6 and 2.0.1 names side by side;
where a name is shared, the rule is too). Operators run the day-to-day: remote start and
stop, resets, unlocking, availability, reservations, triggers, charging profiles, the
local list, reading the configuration. Admins alone send what can take a charger away
from us or leak data: firmware (from any URL), diagnostics and logs (uploaded to any
host), certificates and security profiles, network profiles, vendor DataTransfer,
customer information. An operation not in the table is admin-only.

Configuration changes (1.6 ChangeConfiguration `key`, 2.0.1 SetVariables
`component.variable`) are checked per key: operators may change the keys listed in
`OPERATOR_KEYS`, anything else (security keys, vendor keys) needs an admin. A charger's
own key (1.6 `AuthorizationKey`, 2.0.1 `SecurityCtrlr.BasicAuthPassword`) is changed by
nobody through the passthrough: the key endpoint (`rotate_charger_key`) updates the
stored hash and the charger together, so they never fall out of step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from polaris.redaction import is_secret_key
from polaris.services.errors import ApiError

OPERATOR = "operator"
ADMIN = "admin"
# Roles from the least to the most trusted.
RANK = {OPERATOR: 1, ADMIN: 2}

# operation -> the least role that may send it (its configuration, if any, is checked apart).
OPERATIONS: dict[str, str] = {
    # OCPP 1.6: the day-to-day
    "CancelReservation": OPERATOR,
    "ChangeAvailability": OPERATOR,
    "ChangeConfiguration": OPERATOR,  # per key: OPERATOR_KEYS
    "ClearCache": OPERATOR,
    "ClearChargingProfile": OPERATOR,
    "GetCompositeSchedule": OPERATOR,
    "GetConfiguration": OPERATOR,
    "GetLocalListVersion": OPERATOR,
    "RemoteStartTransaction": OPERATOR,
    "RemoteStopTransaction": OPERATOR,
    "ReserveNow": OPERATOR,
    "Reset": OPERATOR,
    "SendLocalList": OPERATOR,
    "SetChargingProfile": OPERATOR,
    "TriggerMessage": OPERATOR,
    "UnlockConnector": OPERATOR,
    # OCPP 1.6: firmware, diagnostics, vendor extensions, the security whitepaper's additions
    "UpdateFirmware": ADMIN,
    "GetDiagnostics": ADMIN,
    "DataTransfer": ADMIN,
    "SignedUpdateFirmware": ADMIN,
    "GetLog": ADMIN,
    "ExtendedTriggerMessage": ADMIN,  # can make the charger request a new certificate
    "InstallCertificate": ADMIN,
    "DeleteCertificate": ADMIN,
    "GetInstalledCertificateIds": ADMIN,
    "CertificateSigned": ADMIN,
    # OCPP 2.0.1: the day-to-day
    "RequestStartTransaction": OPERATOR,
    "RequestStopTransaction": OPERATOR,
    "GetTransactionStatus": OPERATOR,
    "GetVariables": OPERATOR,
    "SetVariables": OPERATOR,  # per variable: OPERATOR_KEYS
    "GetBaseReport": OPERATOR,
    "GetReport": OPERATOR,
    "GetChargingProfiles": OPERATOR,
    "ClearDisplayMessage": OPERATOR,
    "GetDisplayMessages": OPERATOR,
    "SetDisplayMessage": OPERATOR,
    "CostUpdated": OPERATOR,
    "GetMonitoringReport": OPERATOR,
    "SetMonitoringBase": OPERATOR,
    "SetMonitoringLevel": OPERATOR,
    "SetVariableMonitoring": OPERATOR,
    "ClearVariableMonitoring": OPERATOR,
    # OCPP 2.0.1: firmware, logs, network and security, personal data
    "PublishFirmware": ADMIN,
    "UnpublishFirmware": ADMIN,
    "SetNetworkProfile": ADMIN,
    "CustomerInformation": ADMIN,
}

# Configuration operators may change (case-insensitive): OCPP 1.6 keys of the Core, Local
# Auth List and Smart Charging profiles that tune behaviour, and 2.0.1 variables of the
# same kind. Who may charge without a card check (AllowOfflineTxForUnknownId,
# MaxEnergyOnInvalidId), security and vendor keys are not here: they need an admin.
OPERATOR_KEYS = frozenset(
    k.lower()
    for k in (
        # 1.6
        "AuthorizationCacheEnabled", "AuthorizeRemoteTxRequests", "BlinkRepeat",
        "ClockAlignedDataInterval", "ConnectionTimeOut", "ConnectorPhaseRotation", "HeartbeatInterval",
        "LightIntensity", "LocalAuthorizeOffline", "LocalPreAuthorize", "MeterValuesAlignedData",
        "MeterValuesSampledData", "MeterValueSampleInterval", "MinimumStatusDuration", "ResetRetries",
        "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId", "StopTxnAlignedData",
        "StopTxnSampledData", "TransactionMessageAttempts", "TransactionMessageRetryInterval",
        "UnlockConnectorOnEVSideDisconnect", "WebSocketPingInterval", "LocalAuthListEnabled",
        # 2.0.1 (component.variable)
        "OCPPCommCtrlr.HeartbeatInterval", "OCPPCommCtrlr.WebSocketPingInterval",
        "OCPPCommCtrlr.MessageAttempts", "OCPPCommCtrlr.MessageAttemptInterval",
        "OCPPCommCtrlr.ResetRetries", "SampledDataCtrlr.TxUpdatedInterval",
        "SampledDataCtrlr.TxUpdatedMeasurands", "SampledDataCtrlr.TxEndedMeasurands",
        "SampledDataCtrlr.TxStartedMeasurands", "AlignedDataCtrlr.Interval", "AlignedDataCtrlr.Measurands",
        "TxCtrlr.EVConnectionTimeOut", "TxCtrlr.StopTxOnEVSideDisconnect", "TxCtrlr.StopTxOnInvalidId",
        "AuthCtrlr.AuthorizeRemoteStart", "AuthCtrlr.LocalAuthorizeOffline", "AuthCtrlr.LocalPreAuthorize",
        "AuthCacheCtrlr.Enabled", "LocalAuthListCtrlr.Enabled", "ClockCtrlr.TimeZone",
        "DisplayMessageCtrlr.Enabled",
    )
)


def admin_only(operations: Iterable[str]) -> list[str]:
    """The operations among these that only admins may send (whatever their fields), sorted."""
    return sorted(op for op in operations if OPERATIONS.get(op, ADMIN) == ADMIN)


def configuration_keys(operation: str, fields: dict[str, Any]) -> list[str]:
    """The configuration an operation would change: 1.6 `key`, 2.0.1 `component.variable` names."""
    if operation == "ChangeConfiguration":
        key = fields.get("key")
        # No key (or not a string): nothing is changed, the OCPP server refuses the request.
        return [key] if isinstance(key, str) and key else []
    if operation == "SetVariables":
        items = fields.get("setVariableData")
        names = []
        for item in items if isinstance(items, list) else []:
            component = item.get("component") if isinstance(item, dict) else None
            variable = item.get("variable") if isinstance(item, dict) else None
            c = component.get("name") if isinstance(component, dict) else None
            v = variable.get("name") if isinstance(variable, dict) else None
            names.append(f"{c}.{v}")
        return names
    return []


def required_role(operation: str, fields: dict[str, Any]) -> str:
    """The least role that may send `operation` with these fields."""
    role = OPERATIONS.get(operation, ADMIN)
    keys = configuration_keys(operation, fields)
    if any(key.lower() not in OPERATOR_KEYS for key in keys):
        role = ADMIN
    return role


def check_operation(role: str | None, operation: str, fields: dict[str, Any]) -> None:
    """Refuse (403) what `role` may not send, and a charger key sent past the key endpoint (400).

    `role` None is the shell (`polaris admin ...`): it may do what an admin may.
    """
    if any(is_secret_key(key) for key in configuration_keys(operation, fields)):
        raise ApiError(
            400,
            "use_key_endpoint",
            "a charger's key is changed with PUT /api/admin/v1/chargers/{id}/password (admins), "
            "which updates the charger and the stored key together",
        )
    needed = required_role(operation, fields)
    if RANK.get(role or ADMIN, 0) < RANK[needed]:
        what = operation
        keys = [k for k in configuration_keys(operation, fields) if k.lower() not in OPERATOR_KEYS]
        if keys:
            what = f"{operation} of {', '.join(keys)}"
        raise ApiError(403, "forbidden", f"{what} needs the {needed} role; you are {role}")
