"""A simulated station's OCPP 2.0.1 device model: components, variables, their values.

Keyed "Component.Variable" (as the admin API and `--ocpp` overrides name them). `V201Settings`
is the neutral `Settings` view the station's core reads, so a SetVariables takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from polaris.sim.errors import SimError


@dataclass
class Variable:
    value: str
    mutability: str = "ReadWrite"
    data_type: str = "string"
    unit: str | None = None


def default_variables(connectors: int, heartbeat_interval: int, meter_interval: int) -> dict[str, Variable]:
    measurands = "Energy.Active.Import.Register,Power.Active.Import,SoC"
    return {
        "OCPPCommCtrlr.HeartbeatInterval": Variable(str(heartbeat_interval), data_type="integer", unit="s"),
        "OCPPCommCtrlr.MessageAttempts": Variable("3", data_type="integer"),
        "OCPPCommCtrlr.MessageAttemptInterval": Variable("10", data_type="integer", unit="s"),
        "OCPPCommCtrlr.WebSocketPingInterval": Variable("60", data_type="integer", unit="s"),
        "SampledDataCtrlr.TxUpdatedInterval": Variable(str(meter_interval), data_type="integer", unit="s"),
        "SampledDataCtrlr.TxUpdatedMeasurands": Variable(measurands, data_type="MemberList"),
        "SampledDataCtrlr.TxEndedMeasurands": Variable("Energy.Active.Import.Register", data_type="MemberList"),
        "AuthCtrlr.AuthorizeRemoteStart": Variable("false", data_type="boolean"),
        "AuthCtrlr.LocalPreAuthorize": Variable("false", data_type="boolean"),
        "AuthCtrlr.LocalAuthorizeOffline": Variable("true", data_type="boolean"),
        "AuthCtrlr.OfflineTxForUnknownIdEnabled": Variable("true", data_type="boolean"),
        "AuthCacheCtrlr.Enabled": Variable("true", data_type="boolean"),
        "TxCtrlr.StopTxOnInvalidId": Variable("true", data_type="boolean"),
        "LocalAuthListCtrlr.Enabled": Variable("true", data_type="boolean"),
        "SecurityCtrlr.BasicAuthPassword": Variable("", mutability="WriteOnly"),
        "SecurityCtrlr.SecurityProfile": Variable("1", mutability="ReadOnly", data_type="integer"),
        "DeviceDataCtrlr.ItemsPerMessage": Variable("20", mutability="ReadOnly", data_type="integer"),
        "EVSE.Count": Variable(str(connectors), mutability="ReadOnly", data_type="integer"),
    }


class DeviceModel:
    def __init__(self, variables: dict[str, Variable]):
        self.variables = variables

    def get(self, key: str) -> Variable | None:
        return self.variables.get(key)

    def value(self, key: str) -> str:
        return self.variables[key].value

    def set(self, key: str, value: str, *, force: bool = False) -> str:
        """SetVariables' attributeStatus: Accepted, Rejected (read-only or bad value), UnknownVariable."""
        var = self.variables.get(key)
        if var is None:
            return "UnknownVariable" if any(k.split(".")[0] == key.split(".")[0] for k in self.variables) \
                else "UnknownComponent"
        if var.mutability == "ReadOnly" and not force:
            return "Rejected"
        if var.data_type == "integer" and not value.lstrip("-").isdigit():
            return "Rejected"
        if var.data_type == "boolean" and value.lower() not in ("true", "false"):
            return "Rejected"
        var.value = value
        return "Accepted"

    def override(self, key: str, value: str) -> None:
        if key not in self.variables:
            raise SimError(f"unknown device-model variable {key!r}")
        self.variables[key].value = value

    def report_data(self) -> list[dict]:
        """NotifyReport's reportData (snake_case, as the library takes it)."""
        out = []
        for key, var in self.variables.items():
            component, variable = key.split(".", 1)
            attribute = {"type": "Actual", "mutability": var.mutability}
            if var.mutability != "WriteOnly":
                attribute["value"] = var.value
            chars = {"data_type": var.data_type, "supports_monitoring": False}
            if var.unit:
                chars["unit"] = var.unit
            out.append({"component": {"name": component}, "variable": {"name": variable},
                        "variable_attribute": [attribute], "variable_characteristics": chars})
        return out

    def int(self, key: str) -> int:
        return int(self.value(key))

    def bool(self, key: str) -> bool:
        return self.value(key).lower() == "true"

    def list(self, key: str) -> list[str]:
        return [v.strip() for v in self.value(key).split(",") if v.strip()]


class V201Settings:
    """`polaris.sim.settings.Settings` over the device model."""

    def __init__(self, model: DeviceModel):
        self._m = model

    @property
    def heartbeat_interval(self) -> int:
        return self._m.int("OCPPCommCtrlr.HeartbeatInterval")

    @heartbeat_interval.setter
    def heartbeat_interval(self, seconds: int) -> None:
        self._m.set("OCPPCommCtrlr.HeartbeatInterval", str(seconds), force=True)

    @property
    def meter_interval(self) -> int:
        return self._m.int("SampledDataCtrlr.TxUpdatedInterval")

    @property
    def sampled_measurands(self) -> list[str]:
        return self._m.list("SampledDataCtrlr.TxUpdatedMeasurands")

    @property
    def ended_measurands(self) -> list[str]:
        return self._m.list("SampledDataCtrlr.TxEndedMeasurands")

    @property
    def authorize_remote_starts(self) -> bool:
        return self._m.bool("AuthCtrlr.AuthorizeRemoteStart")

    @property
    def stop_on_invalid_id(self) -> bool:
        return self._m.bool("TxCtrlr.StopTxOnInvalidId")

    @property
    def local_pre_authorize(self) -> bool:
        return self._m.bool("AuthCtrlr.LocalPreAuthorize")

    @property
    def local_authorize_offline(self) -> bool:
        return self._m.bool("AuthCtrlr.LocalAuthorizeOffline")

    @property
    def offline_tx_for_unknown_id(self) -> bool:
        return self._m.bool("AuthCtrlr.OfflineTxForUnknownIdEnabled")

    @property
    def auth_cache_enabled(self) -> bool:
        return self._m.bool("AuthCacheCtrlr.Enabled")

    @property
    def message_attempts(self) -> int:
        return self._m.int("OCPPCommCtrlr.MessageAttempts")

    @property
    def message_retry_interval(self) -> int:
        return self._m.int("OCPPCommCtrlr.MessageAttemptInterval")
