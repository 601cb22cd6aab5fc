"""Typed views of the admin API's JSON, as the console uses them.

Tolerant on purpose: unknown fields are ignored and most fields are optional, so a
newer server does not break an older console.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Me(ApiModel):
    id: int | None = None
    email: str
    role: str
    name: str | None = None


class TokenGrant(ApiModel):
    """`POST /auth/token` (and the device flow's final answer): shown once."""

    token: str
    user: Me | None = None

    @property
    def email(self) -> str | None:
        return self.user.email if self.user else None


class DeviceAuthorization(ApiModel):
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    expires_in: int = 600
    interval: int = 5


class Connector(ApiModel):
    connector_id: int
    status: str | None = None
    error_code: str | None = None
    info: str | None = None
    status_at: datetime | None = None


class Charger(ApiModel):
    charge_box_id: str
    description: str | None = None
    site_name: str | None = None
    connected: bool = False
    active: bool = True
    registration_status: str | None = None
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    last_heartbeat_at: datetime | None = None
    last_seen_at: datetime | None = None
    connectors: list[Connector] = []
    ocpp_version: str | None = None  # 1.6 or 2.0.1, as negotiated at its last boot

    @property
    def status(self) -> str:
        """One word for the table: the worst connector state, or Offline."""
        return summarize_status(self.connected, [(c.connector_id, c.status) for c in self.connectors])


class JournalEntry(ApiModel):
    """One OCPP message the charger sent or received (the server's journal)."""

    at: datetime | None = None
    direction: str | None = None
    action: str | None = None
    status: str | None = None
    request: Any = None
    response: Any = None
    error_code: str | None = None


class DeviceVariable(ApiModel):
    """One attribute of a 2.0.1 station's device model."""

    component: str
    variable: str
    evse_id: int = -1
    attribute_type: str = "Actual"
    value: str | None = None
    mutability: str | None = None

    @property
    def key(self) -> str:
        """'Component.Variable', as the set-variable action names it."""
        return f"{self.component}.{self.variable}"


class ChargerDetail(Charger):
    public_id: str | None = None
    security_profile: int | None = None  # 0: no password, admitted by id alone
    rival_claims: int = 0  # refused second claimants while it was Pending
    charge_point_serial_number: str | None = None
    ocpp_protocol: str | None = None
    last_boot_at: datetime | None = None
    messages: list[JournalEntry] = []
    variables: list[DeviceVariable] = []  # OCPP 2.0.1 device model




class OperationResult(ApiModel):
    """What the charger answered to a command (its OCPP reply payload)."""

    operation: str | None = None
    charge_box_id: str | None = None
    status: str | None = None
    response: Any = None


class MeterSample(ApiModel):
    sampled_at: datetime
    value: float | None = None
    measurand: str | None = None
    unit: str | None = None


class Transaction(ApiModel):
    id: int
    charge_box_id: str | None = None
    connector_id: int | None = None
    id_tag: str | None = None
    customer_email: str | None = None
    start_timestamp: datetime | None = None
    stop_timestamp: datetime | None = None
    energy_wh: float | None = None
    stop_reason: str | None = None
    stuck_since: datetime | None = None
    billing_state: str | None = None
    unbillable_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.stop_timestamp is None


class TransactionDetail(Transaction):
    meter_values: list[MeterSample] = []

    def power_series(self) -> list[float]:
        """Power samples in kW for the sparkline (Power.Active.Import, W or kW)."""
        out: list[float] = []
        for s in self.meter_values:
            if s.value is None or (s.measurand or "") != "Power.Active.Import":
                continue
            out.append(s.value if (s.unit or "W").lower() == "kw" else s.value / 1000)
        return out


class IdTag(ApiModel):
    id_tag: str
    label: str | None = None
    customer_email: str | None = None
    blocked: bool = False
    unknown: bool = False
    expiry_date: datetime | None = None
    last_seen_at: datetime | None = None


class Customer(ApiModel):
    id: int
    email: str
    name: str | None = None
    active: bool = True
    lago_subscription_id: str | None = None
    lago_url: str | None = None
    id_tag_count: int | None = None
    id_tags: list[IdTag] = []  # only in the detail (`GET /customers/{id}`)


class SyncRun(ApiModel):
    id: int
    started_at: datetime
    finished_at: datetime | None = None
    status: str
    tier: str | None = None
    trigger: str | None = None
    events_sent: int = 0
    kwh_sent: float = 0
    error: str | None = None


class SyncStatus(ApiModel):
    tier: str | None = None
    adaptive_tier: str | None = None
    pinned_tier: str | None = None
    pinned_by: str | None = None
    last_run: SyncRun | None = None
    backlog: int | None = None
    unbillable_count: int | None = None


class Unbillable(ApiModel):
    transaction_id: int
    code: str | None = None
    reason: str | None = None
    charge_box_id: str | None = None
    energy_wh: float | None = None


class Released(ApiModel):
    """A held session released by an operator (settled or retried)."""

    transaction_id: int
    action: str
    energy_wh: int | None = None
    events: int | None = None
    message: str


class AuditEntry(ApiModel):
    id: int
    at: datetime
    actor: str | None = None
    action: str
    target: str | None = None
    before: Any = None
    after: Any = None


class Alert(ApiModel):
    severity: str = "warning"
    kind: str | None = None
    message: str


class Dashboard(ApiModel):
    chargers_online: int = 0
    chargers_offline: int = 0
    chargers_faulted: int = 0
    chargers_charging: int = 0
    active_sessions: int = 0
    stuck_sessions: int = 0
    power_kw: float = 0
    energy_today_kwh: float = 0
    sync: SyncStatus | None = None
    alerts: list[Alert] = []


class HealthCheck(ApiModel):
    name: str
    ok: bool
    status: str | None = None  # ok, warning, critical, unknown
    detail: str | None = None
    fix: str | None = None


T = TypeVar("T")


class Page(ApiModel, Generic[T]):
    items: list[T]
    total: int | None = None
    next_cursor: str | None = None


STATUS_RANK = {
    "Faulted": 0,
    "Unavailable": 1,
    "Charging": 2,
    "SuspendedEV": 3,
    "SuspendedEVSE": 3,
    "Finishing": 4,
    "Preparing": 5,
    "Reserved": 6,
    "Available": 7,
}


def summarize_status(connected: bool, connectors: list[tuple[int, str | None]]) -> str:
    """Worst state among the real connectors (connector 0 is the whole box)."""
    if not connected:
        return "Offline"
    states = [s for cid, s in connectors if s and cid != 0] or [s for _, s in connectors if s]
    if not states:
        return "Unknown"
    return min(states, key=lambda s: STATUS_RANK.get(s, 8))


class Site(ApiModel):
    """A site and its grid limit, with the live load the controller measured."""

    name: str
    limit_amps: float | None = None
    limit_kw: float | None = None
    phases: int = 3
    margin_amps: float = 0
    policy: str = "equal"
    chargers: int | None = None
    drawn_amps: list[float] | None = None
    allocated_amps: list[float] | None = None
    over_since: datetime | None = None
    controller: str | None = None


class SiteSession(ApiModel):
    """One charging connector's allocation at a site: what it may draw, what it draws."""

    charge_box_id: str
    connector_id: int
    circuit: str | None = None
    limit_amps: float
    drawn_amps: float | None = None
    sent_amps: float | None = None
    answer: str | None = None
    paused_reason: str | None = None


class SiteDetail(ApiModel):
    site: Site
    load: dict | None = None
    sessions: list[SiteSession] = []
