"""The OCPP 1.6 configuration keys a simulated charger answers GetConfiguration /
ChangeConfiguration with, and the neutral `Settings` the core reads from them."""

from __future__ import annotations

from dataclasses import dataclass

from ocpp.v16.enums import ConfigurationStatus, Measurand

MEASURANDS = {m.value for m in Measurand}


@dataclass
class ConfigKey:
    value: str
    readonly: bool = False
    kind: str = "str"  # str, int, bool, measurands
    # Write-only keys (the security whitepaper's AuthorizationKey) are never read back.
    secret: bool = False


def default_keys(connectors: int, heartbeat_interval: int, meter_interval: int) -> dict[str, ConfigKey]:
    """The OCPP 1.6 standard keys of a Core + optional-profiles charger, with typical values."""
    k = ConfigKey
    return {
        "AllowOfflineTxForUnknownId": k("false", kind="bool"),
        "AuthorizationCacheEnabled": k("true", kind="bool"),
        "AuthorizeRemoteTxRequests": k("false", kind="bool"),
        "ClockAlignedDataInterval": k("0", kind="int"),
        "ConnectionTimeOut": k("60", kind="int"),
        "ConnectorPhaseRotation": k(",".join(f"{i}.RST" for i in range(connectors + 1))),
        "GetConfigurationMaxKeys": k("64", readonly=True, kind="int"),
        "HeartbeatInterval": k(str(heartbeat_interval), kind="int"),
        "LocalAuthorizeOffline": k("true", kind="bool"),
        "LocalPreAuthorize": k("false", kind="bool"),
        "MeterValuesAlignedData": k("Energy.Active.Import.Register", kind="measurands"),
        "MeterValuesSampledData": k(
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
            kind="measurands",
        ),
        "MeterValueSampleInterval": k(str(meter_interval), kind="int"),
        "NumberOfConnectors": k(str(connectors), readonly=True, kind="int"),
        "ResetRetries": k("3", kind="int"),
        "StopTransactionOnEVSideDisconnect": k("true", kind="bool"),
        "StopTransactionOnInvalidId": k("true", kind="bool"),
        "StopTxnAlignedData": k("", kind="measurands"),
        "StopTxnSampledData": k("Energy.Active.Import.Register", kind="measurands"),
        "SupportedFeatureProfiles": k(
            "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
            readonly=True,
        ),
        "TransactionMessageAttempts": k("3", kind="int"),
        "TransactionMessageRetryInterval": k("30", kind="int"),
        "UnlockConnectorOnEVSideDisconnect": k("true", kind="bool"),
        "WebSocketPingInterval": k("0", kind="int"),
        "LocalAuthListEnabled": k("true", kind="bool"),
        "LocalAuthListMaxLength": k("100", readonly=True, kind="int"),
        "SendLocalListMaxLength": k("100", readonly=True, kind="int"),
        "ReserveConnectorZeroSupported": k("false", readonly=True, kind="bool"),
        "ChargeProfileMaxStackLevel": k("10", readonly=True, kind="int"),
        "ChargingScheduleAllowedChargingRateUnit": k("Current,Power", readonly=True),
        "ChargingScheduleMaxPeriods": k("24", readonly=True, kind="int"),
        "MaxChargingProfilesInstalled": k("10", readonly=True, kind="int"),
        "AuthorizationKey": k("", secret=True),
        "SecurityProfile": k("1", kind="int"),
    }


class ConfigurationStore:
    """Keys with types and read-only flags; answers like a charger's firmware would."""

    def __init__(self, keys: dict[str, ConfigKey]):
        self.keys = keys

    def values(self) -> dict[str, str]:
        """Every readable key and its value (for assertions and display)."""
        return {name: k.value for name, k in self.keys.items() if not k.secret}

    def get(self, names: list[str] | None) -> tuple[list[dict], list[str]]:
        """(configurationKey entries, unknownKey names) for a GetConfiguration request."""
        wanted = list(self.keys) if not names else names
        known, unknown = [], []
        for name in wanted:
            key = self.keys.get(name)
            if key is None or (key.secret and names):
                unknown.append(name)
            elif not key.secret:
                known.append({"key": name, "readonly": key.readonly, "value": key.value})
        return known, unknown

    def change(self, name: str, value: str) -> ConfigurationStatus:
        key = self.keys.get(name)
        if key is None:
            return ConfigurationStatus.not_supported
        if key.readonly:
            return ConfigurationStatus.rejected
        if not self._valid(name, key, value):
            return ConfigurationStatus.rejected
        key.value = value.lower() if key.kind == "bool" else value
        return ConfigurationStatus.accepted

    def set(self, name: str, value: str) -> None:
        """Set a value from the charger itself (read-only keys included)."""
        self.keys[name].value = value

    def int(self, name: str) -> int:
        return int(self.keys[name].value)

    def bool(self, name: str) -> bool:
        return self.keys[name].value.lower() == "true"

    def list(self, name: str) -> list[str]:
        return [v.strip() for v in self.keys[name].value.split(",") if v.strip()]

    @staticmethod
    def _valid(name: str, key: ConfigKey, value: str) -> bool:
        if key.kind == "int":
            return value.isdigit()
        if key.kind == "bool":
            return value.lower() in ("true", "false")
        if key.kind == "measurands":
            return all(v.strip() in MEASURANDS for v in value.split(",") if v.strip())
        if name == "AuthorizationKey":
            # OCPP security whitepaper: 16 to 40 bytes (we take the printable form).
            return 16 <= len(value) <= 40
        return True


class V16Settings:
    """`polaris.sim.settings.Settings` over the 1.6 keys: a ChangeConfiguration takes effect at once."""

    def __init__(self, store: ConfigurationStore):
        self._store = store

    @property
    def heartbeat_interval(self) -> int:
        return self._store.int("HeartbeatInterval")

    @heartbeat_interval.setter
    def heartbeat_interval(self, seconds: int) -> None:
        self._store.set("HeartbeatInterval", str(seconds))

    @property
    def meter_interval(self) -> int:
        return self._store.int("MeterValueSampleInterval")

    @property
    def sampled_measurands(self) -> list[str]:
        return self._store.list("MeterValuesSampledData")

    @property
    def ended_measurands(self) -> list[str]:
        return self._store.list("StopTxnSampledData")

    @property
    def authorize_remote_starts(self) -> bool:
        return self._store.bool("AuthorizeRemoteTxRequests")

    @property
    def stop_on_invalid_id(self) -> bool:
        return self._store.bool("StopTransactionOnInvalidId")

    @property
    def local_pre_authorize(self) -> bool:
        return self._store.bool("LocalPreAuthorize")

    @property
    def local_authorize_offline(self) -> bool:
        return self._store.bool("LocalAuthorizeOffline")

    @property
    def offline_tx_for_unknown_id(self) -> bool:
        return self._store.bool("AllowOfflineTxForUnknownId")

    @property
    def auth_cache_enabled(self) -> bool:
        return self._store.bool("AuthorizationCacheEnabled")

    @property
    def message_attempts(self) -> int:
        return self._store.int("TransactionMessageAttempts")

    @property
    def message_retry_interval(self) -> int:
        return self._store.int("TransactionMessageRetryInterval")
