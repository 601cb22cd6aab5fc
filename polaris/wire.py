"""Names fixed by wire contracts that more than one process speaks."""

# Every OCPP 1.6 operation the central system may send to a charger (core, firmware,
# local list, reservation, remote trigger, smart charging): the command API's
# `POST /api/v1/operations/{Operation}` accepts exactly these.
CS_OPERATIONS = (
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
)

# The OCPP 2.0.1 CSMS-initiated operations the command API relays (validated against the
# 2.0.1 schemas by the OCPP server).
CS_OPERATIONS_201 = (
    "CancelReservation",
    "ChangeAvailability",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetBaseReport",
    "GetChargingProfiles",
    "GetCompositeSchedule",
    "GetLocalListVersion",
    "GetLog",
    "GetReport",
    "GetTransactionStatus",
    "GetVariables",
    "RequestStartTransaction",
    "RequestStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "SetNetworkProfile",
    "SetVariables",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
)
