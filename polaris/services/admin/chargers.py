"""Chargers: list with live status, detail, add / edit / deactivate, OCPP operations."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from polaris.db.repos import charger_admin, device_model, ocpp_journal
from polaris.services import appkeys
from polaris.services.admin import actions
from polaris.services.admin.common import Page, PageQuery, actor_of, decode_cursor, page_of, pool
from polaris.services.command_client import OPERATIONS
from polaris.services.errors import ApiError
from polaris.services.openapi import ADMIN, Call, Model, Out, add_endpoints, endpoint

TAG = "chargers"
BASE = "/api/admin/v1/chargers"
# SteVe's charset (charge_boxes.charge_box_id_problem says why one is refused).
ChargeBoxId = Field(min_length=1, max_length=255, pattern=r"^[^=/()<>\s\x00-\x1f\x7f](?:[^=/()<>\x00-\x1f\x7f]*[^=/()<>\s\x00-\x1f\x7f])?$")
SecurityProfile = Literal[0, 1, 2]


class ConnectorOut(Out):
    connector_id: int
    status: str | None = None
    error_code: str | None = None
    info: str | None = None
    status_at: datetime | None = None


class ChargerOut(Out):
    charge_box_id: str
    public_id: str
    description: str | None
    site_name: str | None
    site_address: str | None
    registration_status: str
    security_profile: int = Field(description="0: admitted by id alone (no password); 1, 2: HTTP Basic with its key")
    active: bool
    connected: bool
    vendor: str | None
    model: str | None
    firmware_version: str | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    last_boot_at: datetime | None
    created_at: datetime
    connectors: list[ConnectorOut] = []
    ocpp_version: str | None = Field(None, description="negotiated at its last boot: 1.6 or 2.0.1")
    ocpp_version_pinned: str | None = Field(None, description="the only version it may connect with, if pinned")


class DeviceVariableOut(Out):
    """One attribute of an OCPP 2.0.1 station's device model (NotifyReport, GetVariables, SetVariables)."""

    component: str
    component_instance: str = ""
    evse_id: int = Field(-1, description="-1: not on an EVSE")
    connector_id: int = -1
    variable: str
    variable_instance: str = ""
    attribute_type: str = "Actual"
    value: str | None = None
    mutability: str | None = None
    data_type: str | None = None
    unit: str | None = None
    updated_at: datetime | None = None


class JournalEntryOut(Out):
    id: int
    at: datetime
    direction: str
    action: str
    status: str
    request: Any = None
    response: Any = None
    error_code: str | None = None
    error_description: str | None = None
    requested_by: str | None = None


class ChargerDetailOut(ChargerOut):
    rival_claims: int = Field(0, description="refused second claimants while it was Pending: accept it only if you "
                                             "know which one is real")
    rival_claim_at: datetime | None = None
    charge_point_serial_number: str | None = None
    charge_box_serial_number: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    meter_type: str | None = None
    meter_serial_number: str | None = None
    ocpp_protocol: str | None = None
    diagnostics_status: str | None = None
    firmware_status: str | None = None
    messages: list[JournalEntryOut] = []
    variables: list[DeviceVariableOut] = Field([], description="its OCPP 2.0.1 device model (empty for 1.6)")


class ChargerListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="search id, description and site")
    state: Literal["online", "offline", "faulted", "charging"] | None = None
    active: bool | None = None
    site: str | None = Field(None, max_length=200)


class ChargerParams(Model):
    charge_box_id: str = ChargeBoxId


class OperationParams(ChargerParams):
    operation: Literal[OPERATIONS]  # type: ignore[valid-type]


class ChargerCreate(Model):
    charge_box_ids: list[str] = Field(min_length=1, max_length=1000, description="one or many, same password")
    password: str | None = Field(None, min_length=16, max_length=40,
                                 description="the chargers' AuthorizationKey; none for security profile 0")
    security_profile: SecurityProfile = Field(1, description="0: no password, admitted by id alone at the paths "
                                                             "OCPP_PROFILE0_PATHS enables; 1, 2: HTTP Basic")
    public_id: str | None = Field(None, min_length=4, max_length=32, pattern=r"^[A-Za-z0-9_-]{4,32}$",
                                  description="keep a printed QR sticker's id (one charger only)")
    description: str | None = Field(None, max_length=500)
    site_name: str | None = Field(None, min_length=1, max_length=200)
    site_address: str | None = Field(None, max_length=500)


class ChargerPatch(Model):
    description: str | None = Field(None, max_length=500)
    site_name: str | None = Field(None, min_length=1, max_length=200, description="null removes the site")
    site_address: str | None = Field(None, max_length=500)
    active: bool | None = Field(None, description="false deactivates: the charger is refused at connect")
    registration_status: Literal["Accepted", "Pending", "Rejected"] | None = None
    security_profile: SecurityProfile | None = Field(None, description="1 or 2 needs a password set first")
    ocpp_version_pinned: Literal["1.6", "2.0.1"] | None = Field(
        None, description="the only OCPP version it may connect with; null: the newest it offers")


class ChargerPassword(Model):
    password: str = Field(min_length=16, max_length=40)


class KeyChangeResult(Out):
    charge_box_id: str
    charger_updated: bool = Field(description="the charger took the new key; false: it was not connected, "
                                  "so only the stored key changed (set the same key on the charger)")
    status: str | None = Field(None, description="the charger's answer (Accepted, RebootRequired)")


class OperationResult(Out):
    operation: str
    charge_box_id: str
    status: str | None = Field(None, description="the charger's status field, when its answer has one")
    response: Any = Field(None, description="the charger's answer as the OCPP server relayed it")


ChargerPage = Page[ChargerOut]


@endpoint("GET", BASE, summary="List chargers with live status", tag=TAG, query=ChargerListQuery, response=ChargerPage)
async def list_chargers(request: web.Request, call: Call) -> ChargerPage:
    q = call.query
    after = decode_cursor(q.cursor, str)
    async with pool(request).acquire() as conn:
        rows = await charger_admin.list_charge_boxes_page(
            conn,
            limit=q.limit + 1,
            after=after[0] if after else None,
            q=q.q,
            state=q.state,
            active=q.active,
            site=q.site,
        )
    rows, cursor = page_of(rows, q.limit, lambda r: (r["charge_box_id"],))
    return ChargerPage(items=[ChargerOut.model_validate(dict(r)) for r in rows], next_cursor=cursor)


@endpoint(
    "GET",
    BASE + "/{charge_box_id}",
    summary="One charger: connectors, hardware, recent OCPP messages",
    tag=TAG,
    params=ChargerParams,
    response=ChargerDetailOut,
)
async def get_charger(request: web.Request, call: Call) -> ChargerDetailOut:
    cid = call.params.charge_box_id
    async with pool(request).acquire() as conn:
        row = await charger_admin.get_charge_box_detail(conn, cid)
        if row is None:
            raise ApiError(404, "not_found", f"no charger {cid}")
        journal = await ocpp_journal.list_journal(conn, cid, limit=50)
        variables = await device_model.list_variables(conn, row["id"])
    messages = [JournalEntryOut.model_validate({**dict(j), "at": j["created_at"]}) for j in journal]
    return ChargerDetailOut.model_validate({**dict(row), "messages": messages,
                                            "variables": [dict(v) for v in variables]})


@endpoint(
    "POST",
    BASE,
    summary="Add chargers sharing one password, or none with security profile 0 (admins: it is a secret)",
    tag=TAG,
    roles=ADMIN,
    body=ChargerCreate,
    response=ChargerPage,
    status=201,
    errors=(409,),
)
async def add_chargers(request: web.Request, call: Call) -> ChargerPage:
    b = call.body
    async with pool(request).acquire() as conn:
        rows = await actions.add_chargers(
            conn, actor_of(request, call), b.charge_box_ids, b.password,
            description=b.description, site_name=b.site_name, site_address=b.site_address,
            security_profile=b.security_profile, public_id=b.public_id,
        )
        details = [await charger_admin.get_charge_box_detail(conn, r["charge_box_id"]) for r in rows]
    return ChargerPage(items=[ChargerOut.model_validate(dict(d)) for d in details])


@endpoint(
    "PATCH",
    BASE + "/{charge_box_id}",
    summary="Edit a charger: description, site, active (deactivate), registration status",
    tag=TAG,
    params=ChargerParams,
    body=ChargerPatch,
    response=ChargerOut,
)
async def edit_charger(request: web.Request, call: Call) -> ChargerOut:
    cid = call.params.charge_box_id
    async with pool(request).acquire() as conn:
        await actions.edit_charger(conn, actor_of(request, call), cid, call.body.model_dump(exclude_unset=True))
        detail = await charger_admin.get_charge_box_detail(conn, cid)
    return ChargerOut.model_validate(dict(detail))


@endpoint(
    "PUT",
    BASE + "/{charge_box_id}/password",
    summary="Change a charger's key (AuthorizationKey) on the charger and in the database; admins only",
    tag=TAG,
    roles=ADMIN,
    params=ChargerParams,
    body=ChargerPassword,
    response=KeyChangeResult,
    errors=(409, 502, 504),
    description=(
        "A connected charger is sent the new key first; the stored key changes only when it accepts "
        "(409 key_refused otherwise: both keep the old key). A charger that is not connected: only the "
        "stored key changes (charger_updated false). 504: no answer in time, nothing stored; send the "
        "same key again."
    ),
)
async def set_charger_password(request: web.Request, call: Call) -> KeyChangeResult:
    cid = call.params.charge_box_id
    change = await actions.rotate_charger_key(
        pool(request), request.app[appkeys.COMMAND_CLIENT], actor_of(request, call), cid, call.body.password
    )
    return KeyChangeResult(charge_box_id=cid, charger_updated=change.charger_updated, status=change.status)


@endpoint(
    "POST",
    BASE + "/{charge_box_id}/operations/{operation}",
    summary="Send an OCPP operation to the charger (through the OCPP server); the charger's answer",
    tag=TAG,
    params=OperationParams,
    response=OperationResult,
    errors=(403, 409, 502, 504),
    description=(
        "The body holds the operation's OCPP 1.6 fields (e.g. {\"type\": \"Soft\"} for Reset, "
        "{\"connectorId\": 1, \"idTag\": \"ABC\"} for RemoteStartTransaction); chargeBoxId comes "
        "from the path. 409: the charger is offline; 504: it did not answer in time. "
        f"Admins only: {', '.join(actions.admin_only(OPERATIONS))}, and ChangeConfiguration of any key but "
        "the day-to-day ones (docs/security.md lists them); 403 for operators. A charger's key "
        "(AuthorizationKey) is changed with PUT .../password only (400 use_key_endpoint)."
    ),
)
async def run_operation(request: web.Request, call: Call) -> OperationResult:
    cid, op = call.params.charge_box_id, call.params.operation
    raw = await request.read()
    fields: Any = {}
    if raw.strip():
        try:
            fields = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise ApiError(400, "invalid_body", "the body must be a JSON object of the operation's fields")
    app = request.app
    outcome = await actions.run_operation(
        pool(request), app[appkeys.COMMAND_CLIENT], app[appkeys.SETTINGS], actor_of(request, call), cid, op, fields
    )
    return OperationResult(operation=op, charge_box_id=cid, status=outcome.status, response=outcome.response)


def setup(app: web.Application) -> None:
    add_endpoints(app, list_chargers, add_chargers, get_charger, edit_charger, set_charger_password, run_operation)
