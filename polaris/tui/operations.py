"""The charger actions the console offers, and how each turns a form into an OCPP request.

No textual: the dialog renders these specs; validation errors are for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    name: str  # OCPP 1.6 field name, as the command API expects it
    label: str
    kind: str = "str"  # str | int | choice
    choices: tuple[str, ...] = ()
    default: str = ""
    required: bool = True


@dataclass(frozen=True)
class ActionSpec:
    key: str
    label: str
    operation: str
    fields: tuple[FieldSpec, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    warning: str = ""

    def build(self, values: dict[str, str]) -> dict[str, Any]:
        """The request body from the form's text values; ValueError names the bad field."""
        body: dict[str, Any] = dict(self.fixed)
        for f in self.fields:
            raw = (values.get(f.name) or "").strip()
            if not raw:
                if f.required:
                    raise ValueError(f"{f.label} is required")
                continue
            if f.kind == "int":
                if not raw.isdigit():
                    raise ValueError(f"{f.label} must be a whole number (got {raw!r})")
                body[f.name] = int(raw)
            elif f.kind == "choice":
                match = next((c for c in f.choices if c.lower() == raw.lower()), None)
                if match is None:
                    raise ValueError(f"{f.label} must be one of {', '.join(f.choices)}")
                body[f.name] = match
            else:
                body[f.name] = raw
        return body


CONNECTOR = FieldSpec("connectorId", "Connector", "int", default="1")
TRIGGERS = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
            "Heartbeat", "MeterValues", "StatusNotification")

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("start", "Remote start", "RemoteStartTransaction",
               (CONNECTOR, FieldSpec("idTag", "Card (idTag)"))),
    ActionSpec("stop", "Remote stop", "RemoteStopTransaction",
               (FieldSpec("transactionId", "Transaction id", "int"),)),
    ActionSpec("soft_reset", "Soft reset", "Reset", fixed={"type": "Soft"},
               warning="Running sessions are stopped."),
    ActionSpec("hard_reset", "Hard reset", "Reset", fixed={"type": "Hard"},
               warning="The charger reboots; running sessions are stopped."),
    ActionSpec("unlock", "Unlock connector", "UnlockConnector", (CONNECTOR,),
               warning="A running session on this connector is stopped."),
    ActionSpec("availability", "Change availability", "ChangeAvailability",
               (FieldSpec("connectorId", "Connector (0 = whole charger)", "int", default="0"),
                FieldSpec("type", "Availability", "choice", ("Operative", "Inoperative"), "Inoperative"))),
    ActionSpec("get_config", "Get configuration", "GetConfiguration",
               (FieldSpec("key", "Keys (comma-separated, empty = all)", required=False),)),
    ActionSpec("change_config", "Change configuration", "ChangeConfiguration",
               (FieldSpec("key", "Key"), FieldSpec("value", "Value"))),
    ActionSpec("trigger", "Trigger message", "TriggerMessage",
               (FieldSpec("requestedMessage", "Message", "choice", TRIGGERS, "StatusNotification"),
                FieldSpec("connectorId", "Connector (optional)", "int", required=False))),
    ActionSpec("clear_cache", "Clear cache", "ClearCache"),
    # OCPP 2.0.1 stations: the admin API sends ChangeConfiguration as SetVariables.
    ActionSpec("set_variable", "Set device-model variable (2.0.1)", "ChangeConfiguration",
               (FieldSpec("key", "Variable (Component.Variable)"), FieldSpec("value", "Value")),
               warning="The station applies the new value at once; some variables need a reboot."),
)

BY_KEY = {a.key: a for a in ACTIONS}


def get_configuration_body(values: dict[str, str]) -> dict[str, Any]:
    keys = [k.strip() for k in (values.get("key") or "").split(",") if k.strip()]
    return {"key": keys} if keys else {}


def build_body(action: ActionSpec, values: dict[str, str]) -> dict[str, Any]:
    if action.operation == "GetConfiguration":
        return get_configuration_body(values)
    return action.build(values)
