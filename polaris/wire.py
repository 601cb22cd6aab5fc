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
